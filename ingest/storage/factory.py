"""Build the configured stores from the ``storage`` section of the settings."""

from __future__ import annotations

from pipesentinel.ingest.storage.base import TelemetryStore
from pipesentinel.ingest.storage.frames import FileFrameStore
from pipesentinel.ingest.storage.influxdb import InfluxDBStore
from pipesentinel.ingest.storage.sqlite import SQLiteStore
from pipesentinel.settings import StorageSettings


def open_telemetry_store(settings: StorageSettings) -> TelemetryStore:
    """The telemetry store of ``settings.backend``: SQLite (embedded) or InfluxDB.

    SQLite opens (and if needed creates) ``settings.sqlite_path`` now; InfluxDB connects lazily
    and creates its database with the first request. Close the store when done.
    """
    if settings.backend == "sqlite":
        return SQLiteStore(settings.sqlite_path)
    return InfluxDBStore.from_settings(settings)


def open_frame_store(settings: StorageSettings) -> FileFrameStore:
    """The camera frame store under ``settings.frames_dir``."""
    return FileFrameStore.from_settings(settings)
