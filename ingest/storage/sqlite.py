"""The embedded telemetry store: one SQLite file in WAL mode.

Schema (version :data:`SCHEMA_VERSION`, kept in ``PRAGMA user_version``): one table per record
kind (:class:`~pipesentinel.ingest.storage.base.RecordKind`), named like it, whose primary key is
the record's identity ``(site_id, device_id[, channel], time_ms)``; the tables are ``WITHOUT
ROWID``, so the primary key is the clustered index that every query (by site, device, kind and
time) walks. Missing optional values are NULL, never zero. ``docs/storage.md`` lists the columns.

Durability: each :meth:`SQLiteStore.write` is one ``BEGIN IMMEDIATE ... COMMIT`` transaction with
``synchronous=FULL``, so the batch is on disk when ``write`` returns, or none of it is.

Threads: every thread gets its own connection (WAL lets readers run while the writer writes);
writes from threads of this process are serialised by a lock, and other processes by SQLite's
busy timeout.
"""

from __future__ import annotations

import contextlib
import functools
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Final

import numpy as np

from pipesentinel.ingest.records import (
    CameraFrame,
    DeviceStatus,
    DeviceStatusChange,
    GasReading,
    LaserReading,
    Record,
    WindReading,
)
from pipesentinel.ingest.storage.base import (
    MILLISECONDS_PER_SECOND,
    Aggregate,
    DeviceState,
    RecordKind,
    ResolvedQuery,
    Series,
    StorageError,
    check_storable,
    device_states,
    numeric_values,
    resolve_query,
    resolve_range,
    time_to_ms,
)

SCHEMA_VERSION: Final = 1
BUSY_TIMEOUT_S: Final = 30.0  # how long a writer waits for another process's write lock [s]

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS gas (
    site_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    time_ms INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    methane_mole_fraction REAL NOT NULL,
    propane_mole_fraction REAL NOT NULL,
    status TEXT NOT NULL,
    fault_code TEXT,
    received_time_s REAL NOT NULL,
    PRIMARY KEY (site_id, device_id, time_ms)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS wind (
    site_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    time_ms INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    speed_m_per_s REAL NOT NULL,
    direction_from_rad REAL NOT NULL,
    sigma_theta_rad REAL NOT NULL,
    temperature_k REAL,
    pressure_pa REAL,
    received_time_s REAL NOT NULL,
    PRIMARY KEY (site_id, device_id, time_ms)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS laser (
    site_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    time_ms INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    path_integral_mole_fraction_m REAL NOT NULL,
    status TEXT NOT NULL,
    received_time_s REAL NOT NULL,
    PRIMARY KEY (site_id, device_id, time_ms)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS camera_frame (
    site_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    time_ms INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    width_px INTEGER NOT NULL,
    height_px INTEGER NOT NULL,
    image_bytes INTEGER NOT NULL,
    received_time_s REAL NOT NULL,
    PRIMARY KEY (site_id, device_id, channel, time_ms)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS device_status (
    site_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    time_ms INTEGER NOT NULL,
    online INTEGER NOT NULL CHECK (online IN (0, 1)),
    received_time_s REAL NOT NULL,
    PRIMARY KEY (site_id, device_id, time_ms)
) WITHOUT ROWID;
"""

_INSERT: Final[dict[RecordKind, str]] = {
    RecordKind.GAS: (
        "INSERT OR REPLACE INTO gas (site_id, device_id, time_ms, seq, methane_mole_fraction,"
        " propane_mole_fraction, status, fault_code, received_time_s)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
    ),
    RecordKind.WIND: (
        "INSERT OR REPLACE INTO wind (site_id, device_id, time_ms, seq, speed_m_per_s,"
        " direction_from_rad, sigma_theta_rad, temperature_k, pressure_pa, received_time_s)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    ),
    RecordKind.LASER: (
        "INSERT OR REPLACE INTO laser (site_id, device_id, time_ms, seq,"
        " path_integral_mole_fraction_m, status, received_time_s) VALUES (?, ?, ?, ?, ?, ?, ?)"
    ),
    RecordKind.CAMERA_FRAME: (
        "INSERT OR REPLACE INTO camera_frame (site_id, device_id, channel, time_ms, seq, width_px,"
        " height_px, image_bytes, received_time_s) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
    ),
    RecordKind.DEVICE_STATUS: (
        "INSERT OR REPLACE INTO device_status (site_id, device_id, time_ms, online,"
        " received_time_s) VALUES (?, ?, ?, ?, ?)"
    ),
}

# Kinds whose rows are readings with a device-reported status, and their fault-code column.
_STATUS_COLUMNS: Final = ((RecordKind.GAS, "fault_code"), (RecordKind.LASER, "NULL"))

_SQL_AGGREGATE: Final = {Aggregate.MEAN: "AVG", Aggregate.MIN: "MIN", Aggregate.MAX: "MAX"}

Row = tuple[Any, ...]


def _row(record: Record) -> tuple[RecordKind, Row]:
    """The table and the row of one record; ``ValueError`` for a non-finite value."""
    kind = check_storable(record)
    if isinstance(record, GasReading):
        gas = numeric_values(record)
        return kind, (
            record.site_id,
            record.device_id,
            time_to_ms(record.time_s),
            record.seq,
            gas["methane_mole_fraction"],
            gas["propane_mole_fraction"],
            DeviceStatus(record.status).value,
            record.fault_code,
            float(record.received_time_s),
        )
    if isinstance(record, WindReading):
        wind = numeric_values(record)
        return kind, (
            record.site_id,
            record.device_id,
            time_to_ms(record.time_s),
            record.seq,
            wind["speed_m_per_s"],
            wind["direction_from_rad"],
            wind["sigma_theta_rad"],
            wind["temperature_k"],
            wind["pressure_pa"],
            float(record.received_time_s),
        )
    if isinstance(record, LaserReading):
        laser = numeric_values(record)
        return kind, (
            record.site_id,
            record.device_id,
            time_to_ms(record.time_s),
            record.seq,
            laser["path_integral_mole_fraction_m"],
            DeviceStatus(record.status).value,
            float(record.received_time_s),
        )
    if isinstance(record, CameraFrame):
        return kind, (
            record.site_id,
            record.device_id,
            record.channel.value,
            time_to_ms(record.time_s),
            record.seq,
            record.width_px,
            record.height_px,
            len(record.image),
            float(record.received_time_s),
        )
    return kind, (
        record.site_id,
        record.device_id,
        time_to_ms(record.received_time_s),
        int(record.online),
        float(record.received_time_s),
    )


@functools.lru_cache(maxsize=64)
def _multi_row_insert(kind: RecordKind, rows: int) -> str:
    """``_INSERT[kind]`` with ``rows`` value tuples."""
    head, _, values = _INSERT[kind].partition(" VALUES ")
    return f"{head} VALUES {', '.join([values] * rows)}"


def _rollback(connection: sqlite3.Connection) -> None:
    """Roll back an open transaction; a failing rollback leaves SQLite to undo it on close."""
    if connection.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            connection.execute("ROLLBACK")


class SQLiteStore:
    """Telemetry in one SQLite file (a :class:`~pipesentinel.ingest.storage.base.TelemetryStore`).

    Parameters
    ----------
    path
        The database file; its directory is created if missing. An existing file must be a
        PipeSentinel telemetry database of schema :data:`SCHEMA_VERSION`.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._closed = False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StorageError(f"cannot create the directory of {self.path}: {error}") from error
        self._create_schema()

    # -- connections -----------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        if self._closed:
            raise StorageError(f"the SQLite store {self.path} is closed")
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is not None:
            return connection
        try:
            connection = sqlite3.connect(
                self.path,
                timeout=BUSY_TIMEOUT_S,
                isolation_level=None,  # autocommit; transactions are explicit BEGIN ... COMMIT
                check_same_thread=False,  # used by its own thread only, but closed by close()
            )
            mode = connection.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            connection.execute("PRAGMA synchronous=FULL")
        except sqlite3.Error as error:
            raise StorageError(f"cannot open {self.path} as a SQLite database: {error}") from error
        if str(mode).lower() != "wal":
            connection.close()
            raise StorageError(f"{self.path}: SQLite refused WAL mode (journal_mode is {mode})")
        self._local.connection = connection
        with self._connections_lock:
            self._connections.append(connection)
        return connection

    def _create_schema(self) -> None:
        connection = self._connection()
        with self._write_lock:
            try:
                version = connection.execute("PRAGMA user_version").fetchone()[0]
                if version not in (0, SCHEMA_VERSION):
                    raise StorageError(
                        f"{self.path}: telemetry schema version {version}, this code reads "
                        f"version {SCHEMA_VERSION}"
                    )
                connection.execute("BEGIN IMMEDIATE")
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        connection.execute(statement)
                connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                connection.execute("COMMIT")
            except sqlite3.Error as error:
                _rollback(connection)
                raise StorageError(f"cannot create the schema in {self.path}: {error}") from error

    def _fetch(self, sql: str, parameters: Sequence[Any]) -> list[Row]:
        try:
            return self._connection().execute(sql, parameters).fetchall()
        except sqlite3.Error as error:
            raise StorageError(f"reading {self.path} failed: {error}") from error

    # -- TelemetryStore --------------------------------------------------------------------

    def write(self, records: Sequence[Record]) -> None:
        """Store a batch in one transaction, durable on return.

        Raises
        ------
        ValueError, TypeError
            A record is not finite or not a telemetry record; nothing was written.
        StorageError
            SQLite failed; nothing of the batch was written.
        """
        rows: dict[RecordKind, list[Row]] = {}
        for record in records:
            kind, row = _row(record)
            rows.setdefault(kind, []).append(row)
        if not rows:
            return
        connection = self._connection()
        with self._write_lock:
            try:
                connection.execute("BEGIN IMMEDIATE")
                variables = connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
                for kind, kind_rows in rows.items():
                    # One multi-row statement per chunk rather than executemany: one SQLite step
                    # (one GIL release) per chunk instead of per row; later rows still replace
                    # earlier ones with the same identity, in order.
                    per_statement = max(variables // len(kind_rows[0]), 1)
                    for start in range(0, len(kind_rows), per_statement):
                        chunk = kind_rows[start : start + per_statement]
                        connection.execute(
                            _multi_row_insert(kind, len(chunk)),
                            [value for row in chunk for value in row],
                        )
                connection.execute("COMMIT")
            except sqlite3.Error as error:
                _rollback(connection)
                raise StorageError(
                    f"writing {len(records)} records to {self.path} failed: {error}"
                ) from error
            except BaseException:
                _rollback(connection)  # never leave a transaction open for the next batch
                raise

    def query(
        self,
        *,
        site_id: str,
        device_id: str,
        field: str,
        start_s: float,
        end_s: float,
        every_s: float | None = None,
        aggregate: Aggregate = Aggregate.MEAN,
    ) -> Series:
        """Readings of ``field`` of a device in ``[start_s, end_s)`` [s], optionally downsampled.

        Buckets are ``floor((time - start) / every)``, computed in SQL on integer milliseconds;
        ``last`` is the value of the newest reading of a bucket.
        """
        resolved = resolve_query(
            field=field, start_s=start_s, end_s=end_s, every_s=every_s, aggregate=aggregate
        )
        rows = self._fetch(*self._query_sql(resolved, site_id=site_id, device_id=device_id))
        if resolved.every_ms is None:
            times_ms = np.array([row[0] for row in rows], dtype=np.int64)
            values = np.array([row[1] for row in rows], dtype=np.float64)
            counts = np.ones(len(rows), dtype=np.int64)
        else:
            buckets = np.array([row[0] for row in rows], dtype=np.int64)
            times_ms = resolved.start_ms + buckets * resolved.every_ms
            values = np.array([row[1] for row in rows], dtype=np.float64)
            counts = np.array([row[2] for row in rows], dtype=np.int64)
        return Series(
            device_id=device_id,
            field=field,
            time_s=times_ms / MILLISECONDS_PER_SECOND,
            value=values,
            count=counts,
        )

    @staticmethod
    def _query_sql(
        resolved: ResolvedQuery, *, site_id: str, device_id: str
    ) -> tuple[str, list[Any]]:
        # Table and column names come from the fixed tables in base.py, never from the caller.
        table, column = resolved.kind.value, resolved.field
        where = (
            f"FROM {table} WHERE site_id = ? AND device_id = ? AND time_ms >= ? AND time_ms < ?"
            f" AND {column} IS NOT NULL"
        )
        where_parameters: list[Any] = [site_id, device_id, resolved.start_ms, resolved.end_ms]
        if resolved.every_ms is None:
            return f"SELECT time_ms, {column} {where} ORDER BY time_ms", where_parameters
        bucket = "(time_ms - ?) / ?"  # both integers, time_ms >= start: integer division = floor
        bucket_parameters: list[Any] = [resolved.start_ms, resolved.every_ms]
        if resolved.aggregate is Aggregate.LAST:
            # SQLite's bare-column rule: with one max(), bare columns come from the row of the max.
            select = f"SELECT {bucket} AS bucket, {column}, COUNT({column}), MAX(time_ms)"
        else:
            reduce = _SQL_AGGREGATE[resolved.aggregate]
            select = f"SELECT {bucket} AS bucket, {reduce}({column}), COUNT({column})"
        return (
            f"{select} {where} GROUP BY bucket ORDER BY bucket",
            bucket_parameters + where_parameters,
        )

    def count(self, *, site_id: str, device_id: str | None = None) -> int:
        """Number of stored records of all kinds of a site, or of one of its devices."""
        condition = "site_id = ?" if device_id is None else "site_id = ? AND device_id = ?"
        parameters = [site_id] if device_id is None else [site_id, device_id]
        terms = [
            f"(SELECT COUNT(*) FROM {kind.value} WHERE {condition})"  # noqa: S608 - fixed names
            for kind in RecordKind
        ]
        rows = self._fetch("SELECT " + " + ".join(terms), parameters * len(terms))
        return int(rows[0][0])

    def latest_status(self, *, site_id: str) -> dict[str, DeviceState]:
        """The latest known state of every device of ``site_id`` that has stored records."""
        online: dict[str, tuple[bool, float]] = {
            row[0]: (bool(row[1]), float(row[2]))
            for row in self._fetch(
                "SELECT device_id, online, received_time_s, MAX(time_ms) FROM device_status"
                " WHERE site_id = ? GROUP BY device_id",
                [site_id],
            )
        }
        reported: dict[str, tuple[int, DeviceStatus, str | None]] = {}
        for kind, fault_column in _STATUS_COLUMNS:
            for device, status, fault_code, time_ms in self._fetch(
                f"SELECT device_id, status, {fault_column}, MAX(time_ms) FROM {kind.value}"  # noqa: S608 - fixed names
                " WHERE site_id = ? GROUP BY device_id",
                [site_id],
            ):
                if device not in reported or reported[device][0] < time_ms:
                    reported[device] = (int(time_ms), DeviceStatus(status), fault_code)
        last_reading_ms: dict[str, int] = {}
        for kind in (RecordKind.GAS, RecordKind.WIND, RecordKind.LASER, RecordKind.CAMERA_FRAME):
            for device, time_ms in self._fetch(
                f"SELECT device_id, MAX(time_ms) FROM {kind.value} WHERE site_id = ?"  # noqa: S608 - fixed names
                " GROUP BY device_id",
                [site_id],
            ):
                previous_ms = last_reading_ms.get(device)
                last_reading_ms[device] = (
                    int(time_ms) if previous_ms is None else max(int(time_ms), previous_ms)
                )
        return device_states(online=online, reported=reported, last_reading_ms=last_reading_ms)

    def status_changes(
        self, *, site_id: str, start_s: float, end_s: float, device_id: str | None = None
    ) -> tuple[DeviceStatusChange, ...]:
        """Online/offline changes with ``start_s <= received_time < end_s`` [s], oldest first."""
        sql = (
            "SELECT device_id, online, received_time_s FROM device_status"
            " WHERE site_id = ? AND time_ms >= ? AND time_ms < ?"
        )
        start_ms, end_ms = resolve_range(start_s=start_s, end_s=end_s)
        parameters: list[Any] = [site_id, start_ms, end_ms]
        if device_id is not None:
            sql += " AND device_id = ?"
            parameters.append(device_id)
        rows = self._fetch(sql + " ORDER BY time_ms, device_id", parameters)
        return tuple(
            DeviceStatusChange(
                site_id=site_id,
                device_id=device,
                online=bool(online),
                received_time_s=float(received_time_s),
            )
            for device, online, received_time_s in rows
        )

    def close(self) -> None:
        """Close every thread's connection; the store cannot be used afterwards."""
        self._closed = True
        with self._connections_lock:
            connections, self._connections = self._connections, []
        for connection in connections:
            connection.close()

    def __enter__(self) -> SQLiteStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
