"""SQLite-specific behaviour: durability, atomic batches, threads, schema and errors."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from numpy.testing import assert_array_equal

from pipesentinel.ingest.records import DeviceStatus, GasReading
from pipesentinel.ingest.storage.base import StorageError
from pipesentinel.ingest.storage.factory import open_telemetry_store
from pipesentinel.ingest.storage.sqlite import SCHEMA_VERSION, SQLiteStore
from pipesentinel.settings import StorageSettings

T0 = 1_700_000_000.0


def gas(device: str, time_s: float, methane: float = 1e-6, site: str = "s") -> GasReading:
    return GasReading(
        site_id=site,
        device_id=device,
        time_s=time_s,
        seq=0,
        methane_mole_fraction=methane,
        propane_mole_fraction=0.0,
        status=DeviceStatus.OK,
        fault_code=None,
        received_time_s=time_s,
    )


def test_writes_survive_closing_and_reopening(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "telemetry.sqlite3"  # the directory is created
    with SQLiteStore(path) as store:
        store.write([gas("G1", T0 + k, k * 1e-6) for k in range(5)])
    with SQLiteStore(path) as reopened:
        assert reopened.count(site_id="s") == 5
        series = reopened.query(
            site_id="s", device_id="G1", field="methane_mole_fraction", start_s=T0, end_s=T0 + 5
        )
        assert_array_equal(series.value, [0.0, 1e-6, 2e-6, 3e-6, 4e-6])


def test_a_returned_write_survives_a_crash_of_the_writer(tmp_path: Path) -> None:
    path = tmp_path / "telemetry.sqlite3"
    # The child writes, then dies at once without closing anything (no atexit, no finalizers).
    child = textwrap.dedent(
        f"""
        import os
        from pipesentinel.ingest.records import DeviceStatus, GasReading
        from pipesentinel.ingest.storage.sqlite import SQLiteStore
        store = SQLiteStore({str(path)!r})
        store.write([
            GasReading("s", "G1", {T0} + k, k, 1e-6, 0.0, DeviceStatus.OK, None, {T0})
            for k in range(100)
        ])
        os._exit(0)
        """
    )
    subprocess.run([sys.executable, "-c", child], check=True, timeout=60)
    with SQLiteStore(path) as store:
        assert store.count(site_id="s") == 100


def test_a_failing_batch_leaves_nothing_behind(tmp_path: Path) -> None:
    path = tmp_path / "telemetry.sqlite3"
    with SQLiteStore(path) as store:
        store.write([gas("G1", T0)])
        # A real SQLite failure in the middle of a batch: a trigger that aborts on one device.
        with sqlite3.connect(path) as raw:
            raw.execute(
                "CREATE TRIGGER refuse_boom BEFORE INSERT ON gas WHEN NEW.device_id = 'BOOM' "
                "BEGIN SELECT RAISE(ABORT, 'boom refused'); END"
            )
        batch = [gas("G2", T0 + k) for k in range(10)] + [gas("BOOM", T0)]
        with pytest.raises(StorageError, match=r"writing 11 records to .*boom refused"):
            store.write(batch)
        assert store.count(site_id="s") == 1  # none of the ten good readings either
        store.write([gas("G2", T0 + k) for k in range(10)])  # the store is still usable
        assert store.count(site_id="s") == 11


def test_the_database_is_in_wal_mode_and_queries_use_the_primary_key(tmp_path: Path) -> None:
    path = tmp_path / "telemetry.sqlite3"
    with SQLiteStore(path) as store:
        store.write([gas("G1", T0)])
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        plan = raw.execute(
            "EXPLAIN QUERY PLAN SELECT time_ms, methane_mole_fraction FROM gas "
            "WHERE site_id = ? AND device_id = ? AND time_ms >= ? AND time_ms < ?",
            ("s", "G1", 0, 1),
        ).fetchall()
    assert "PRIMARY KEY" in " ".join(str(row[-1]) for row in plan)


def test_readers_and_a_writer_in_threads(tmp_path: Path) -> None:
    batches, per_batch = 40, 250
    errors: list[BaseException] = []
    with SQLiteStore(tmp_path / "telemetry.sqlite3") as store:

        def write() -> None:
            try:
                for batch in range(batches):
                    store.write([gas("G1", T0 + batch * per_batch + k) for k in range(per_batch)])
            except BaseException as error:  # noqa: BLE001 - collected and asserted below
                errors.append(error)

        def read(seen: list[int]) -> None:
            try:
                while writer.is_alive():
                    seen.append(store.count(site_id="s"))
            except BaseException as error:  # noqa: BLE001 - collected and asserted below
                errors.append(error)

        writer = threading.Thread(target=write)
        seen_by_reader: list[list[int]] = [[], []]
        readers = [threading.Thread(target=read, args=(seen,)) for seen in seen_by_reader]
        writer.start()
        for reader in readers:
            reader.start()
        writer.join()
        for reader in readers:
            reader.join()
        assert errors == []
        assert store.count(site_id="s") == batches * per_batch
        for seen in seen_by_reader:
            # A reader sees whole batches only, never a part of one, and never goes backwards.
            assert all(value % per_batch == 0 for value in seen)
            assert seen == sorted(seen)


def test_a_file_of_another_schema_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "telemetry.sqlite3"
    with sqlite3.connect(path) as raw:
        raw.execute("PRAGMA user_version = 99")
    with pytest.raises(StorageError, match=r"telemetry\.sqlite3.*version 99"):
        SQLiteStore(path)


def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "telemetry.sqlite3"
    path.write_bytes(b"this is not an SQLite database, just some text" * 100)
    with pytest.raises(StorageError, match=r"telemetry\.sqlite3"):
        SQLiteStore(path)


def test_a_closed_store_says_so(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "telemetry.sqlite3")
    store.close()
    with pytest.raises(StorageError, match="closed"):
        store.write([gas("G1", T0)])
    with pytest.raises(StorageError, match="closed"):
        store.count(site_id="s")


def test_not_a_record_is_a_type_error(tmp_path: Path) -> None:
    with SQLiteStore(tmp_path / "telemetry.sqlite3") as store:
        with pytest.raises(TypeError, match="not a telemetry record: str"):
            store.write(["G1 1.0"])  # type: ignore[list-item]
        assert store.count(site_id="s") == 0


def test_the_factory_opens_the_configured_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "from-settings.sqlite3"
    store = open_telemetry_store(StorageSettings(backend="sqlite", sqlite_path=path))
    try:
        assert isinstance(store, SQLiteStore)
        assert store.path == path
        store.write([gas("G1", T0)])
    finally:
        store.close()
    assert path.is_file()
