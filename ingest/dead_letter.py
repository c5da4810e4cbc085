"""The dead-letter store: every rejected MQTT message, raw bytes included, in SQLite.

Each :class:`~pipesentinel.ingest.records.Rejection` is kept with its reason, detail, topic, raw
payload and receive time, so that a vendor's fault can be diagnosed and a message rejected by a
since-fixed bug can be replayed. Writes are durable when :meth:`DeadLetterStore.add` returns (WAL,
``synchronous=FULL``); the ingest service acknowledges a rejected message to the broker only then.

Retention is bounded and never silent. After each :meth:`~DeadLetterStore.add`, if the store holds
more than ``max_rows`` rows or more than ``max_payload_bytes`` of payload, the oldest rows are
deleted down to :data:`PRUNE_TARGET_FRACTION` of the limit (so pruning runs rarely), and rows
received more than ``max_age_s`` before the newest one are deleted. Every pruned row is counted by
reason in the ``pruned`` table (:meth:`~DeadLetterStore.pruned_by_reason`) and each pruning is
logged at WARNING with its counts.
"""

from __future__ import annotations

import logging
import math
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from pipesentinel.ingest.records import Rejection, RejectReason
from pipesentinel.ingest.storage.base import StorageError
from pipesentinel.ingest.storage.sqlite_file import SqliteFile

logger = logging.getLogger(__name__)

DEFAULT_MAX_ROWS: Final = 100_000
DEFAULT_MAX_PAYLOAD_BYTES: Final = 512 * 1024 * 1024  # 512 MiB: ~128 full-size 4 MiB frames
DEFAULT_MAX_AGE_S: Final = 30 * 86_400.0  # 30 days
PRUNE_TARGET_FRACTION: Final = 0.9
BUSY_TIMEOUT_S: Final = 10.0
DEFAULT_QUERY_LIMIT: Final = 1000

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS dead_letter (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    received_time_s REAL NOT NULL,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    payload_bytes INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS dead_letter_by_time ON dead_letter (received_time_s);
CREATE INDEX IF NOT EXISTS dead_letter_by_reason_time ON dead_letter (reason, received_time_s);
CREATE TABLE IF NOT EXISTS pruned (
    reason TEXT PRIMARY KEY,
    count INTEGER NOT NULL
);
"""
_COUNT_BY_REASON: Final = (
    "SELECT reason, count(*), coalesce(sum(payload_bytes), 0) FROM dead_letter"
)
_SELECT_ROWS: Final = "SELECT id, reason, detail, topic, payload, received_time_s FROM dead_letter"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A stored rejection; ``id`` increases in the order the rejections were added."""

    id: int
    reason: RejectReason
    detail: str
    topic: str
    payload: bytes
    received_time_s: float

    def rejection(self) -> Rejection:
        """The stored rejection without its row id."""
        return Rejection(
            reason=self.reason,
            detail=self.detail,
            topic=self.topic,
            payload=self.payload,
            received_time_s=self.received_time_s,
        )


def _time_filter(
    reason: RejectReason | None, start_s: float | None, end_s: float | None
) -> tuple[str, list[object]]:
    clauses: list[str] = []
    arguments: list[object] = []
    if reason is not None:
        clauses.append("reason = ?")
        arguments.append(RejectReason(reason).value)
    if start_s is not None:
        clauses.append("received_time_s >= ?")
        arguments.append(start_s)
    if end_s is not None:
        clauses.append("received_time_s < ?")
        arguments.append(end_s)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    return where, arguments


class DeadLetterStore(SqliteFile):
    """Rejected messages in a SQLite file; thread-safe (one connection behind a lock).

    Parameters
    ----------
    path
        The SQLite file (``settings.ingest.dead_letter_path``); parent directories are created.
    max_rows
        Retention: most rows kept [-].
    max_payload_bytes
        Retention: most raw payload bytes kept in total [B].
    max_age_s
        Retention: rows received longer than this before the newest row are deleted [s].
    """

    def __init__(
        self,
        path: Path,
        *,
        max_rows: int = DEFAULT_MAX_ROWS,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
        max_age_s: float = DEFAULT_MAX_AGE_S,
    ) -> None:
        if max_rows < 1:
            raise ValueError(f"max_rows must be at least 1, got {max_rows}")
        if max_payload_bytes < 1:
            raise ValueError(f"max_payload_bytes must be at least 1, got {max_payload_bytes}")
        if not max_age_s > 0:
            raise ValueError(f"max_age_s must be positive, got {max_age_s}")
        super().__init__(path, what="dead-letter store", busy_timeout_s=BUSY_TIMEOUT_S)
        self.max_rows = max_rows
        self.max_payload_bytes = max_payload_bytes
        self.max_age_s = max_age_s
        try:
            database = self._database()
            database.executescript(_SCHEMA)
            rows, payload_bytes, newest = database.execute(
                "SELECT count(*), coalesce(sum(payload_bytes), 0), max(received_time_s) "
                "FROM dead_letter"
            ).fetchone()
        except (sqlite3.Error, OSError) as error:
            self.close()
            raise self._open_error(error) from error
        self._rows: int = rows
        self._payload_bytes: int = payload_bytes
        self._newest_s: float = -math.inf if newest is None else float(newest)

    # --- writing ---------------------------------------------------------------------------------

    def add(self, rejections: Sequence[Rejection]) -> int:
        """Store ``rejections`` durably in one transaction, then apply the retention.

        Returns
        -------
        int
            How many old rows the retention pruned (also counted by reason and logged).

        Raises
        ------
        StorageError
            When the rows could not be committed; nothing of the batch is stored then.
        """
        if not rejections:
            return 0
        rows = [
            (
                rejection.received_time_s,
                RejectReason(rejection.reason).value,
                rejection.detail,
                rejection.topic,
                bytes(rejection.payload),
                len(rejection.payload),
            )
            for rejection in rejections
        ]
        added_bytes = sum(row[5] for row in rows)
        with self._lock:
            database = self._database()
            newest_s = max(self._newest_s, *(row[0] for row in rows))
            try:
                database.execute("BEGIN IMMEDIATE")
                try:
                    database.executemany(
                        "INSERT INTO dead_letter (received_time_s, reason, detail, topic, "
                        "payload, payload_bytes) VALUES (?, ?, ?, ?, ?, ?)",
                        rows,
                    )
                    pruned = self._prune(
                        database,
                        rows=self._rows + len(rows),
                        payload_bytes=self._payload_bytes + added_bytes,
                        newest_s=newest_s,
                    )
                    database.execute("COMMIT")
                except BaseException:
                    database.execute("ROLLBACK")
                    raise
            except sqlite3.Error as error:
                raise StorageError(
                    f"dead-letter store {self.path}: {len(rows)} rejection(s) not stored: {error}"
                ) from error
            pruned_rows = sum(count for count, _ in pruned.values())
            self._rows += len(rows) - pruned_rows
            self._payload_bytes += added_bytes - sum(size for _, size in pruned.values())
            self._newest_s = newest_s
        if pruned:
            logger.warning(
                "dead-letter store %s: retention pruned %d oldest rejection(s): %s "
                "(limits: %d rows, %d payload bytes, %g s)",
                self.path,
                pruned_rows,
                ", ".join(f"{reason}={count}" for reason, (count, _) in sorted(pruned.items())),
                self.max_rows,
                self.max_payload_bytes,
                self.max_age_s,
            )
        return pruned_rows

    def _prune(
        self, database: sqlite3.Connection, *, rows: int, payload_bytes: int, newest_s: float
    ) -> dict[str, tuple[int, int]]:
        """Delete what the retention excludes, inside the open transaction.

        Returns (rows, payload bytes) deleted by reason.
        """
        conditions: list[tuple[str, tuple[object, ...]]] = [
            ("received_time_s < ?", (newest_s - self.max_age_s,))
        ]
        if rows > self.max_rows:
            keep_rows = math.floor(self.max_rows * PRUNE_TARGET_FRACTION)
            cutoff = database.execute(
                "SELECT id FROM dead_letter ORDER BY id DESC LIMIT 1 OFFSET ?", (keep_rows,)
            ).fetchone()
            if cutoff is not None:
                conditions.append(("id <= ?", (cutoff[0],)))
        if payload_bytes > self.max_payload_bytes:
            keep_bytes = math.floor(self.max_payload_bytes * PRUNE_TARGET_FRACTION)
            cutoff = database.execute(
                "SELECT id FROM (SELECT id, sum(payload_bytes) OVER (ORDER BY id DESC) AS kept "
                "FROM dead_letter) WHERE kept > ? ORDER BY id DESC LIMIT 1",
                (keep_bytes,),
            ).fetchone()
            if cutoff is not None:
                conditions.append(("id <= ?", (cutoff[0],)))
        # The clauses are fixed text of this module; every value is a bound parameter.
        where = " OR ".join(f"({condition})" for condition, _ in conditions)
        arguments = [argument for _, values in conditions for argument in values]
        count_sql = f"{_COUNT_BY_REASON} WHERE {where} GROUP BY reason"
        counts = {
            str(reason): (int(count), int(size))
            for reason, count, size in database.execute(count_sql, arguments)
        }
        if counts:
            database.execute(f"DELETE FROM dead_letter WHERE {where}", arguments)  # noqa: S608
            database.executemany(
                "INSERT INTO pruned (reason, count) VALUES (?, ?) "
                "ON CONFLICT (reason) DO UPDATE SET count = count + excluded.count",
                [(reason, count) for reason, (count, _) in counts.items()],
            )
        return counts

    # --- reading ---------------------------------------------------------------------------------

    def query(
        self,
        *,
        reason: RejectReason | None = None,
        start_s: float | None = None,
        end_s: float | None = None,
        limit: int = DEFAULT_QUERY_LIMIT,
    ) -> list[DeadLetter]:
        """Stored rejections, oldest first, optionally of one reason and ``start_s <= t < end_s``.

        Parameters
        ----------
        reason
            Only this reason; ``None``: all.
        start_s, end_s
            Receive-time range, seconds since the Unix epoch [s]; ``None``: unbounded.
        limit
            At most this many rows (the oldest matching ones) [-].
        """
        where, arguments = _time_filter(reason, start_s, end_s)
        with self._lock:
            try:
                sql = f"{_SELECT_ROWS} {where} ORDER BY id LIMIT ?"
                rows = self._database().execute(sql, [*arguments, limit]).fetchall()
            except sqlite3.Error as error:
                raise StorageError(
                    f"dead-letter store {self.path}: query failed: {error}"
                ) from error
        return [
            DeadLetter(
                id=row[0],
                reason=RejectReason(row[1]),
                detail=row[2],
                topic=row[3],
                payload=bytes(row[4]),
                received_time_s=row[5],
            )
            for row in rows
        ]

    def count_by_reason(
        self, *, start_s: float | None = None, end_s: float | None = None
    ) -> dict[RejectReason, int]:
        """Stored rejections by reason with ``start_s <= received time < end_s`` [s]."""
        where, arguments = _time_filter(None, start_s, end_s)
        with self._lock:
            try:
                sql = f"SELECT reason, count(*) FROM dead_letter {where} GROUP BY reason"  # noqa: S608
                rows = self._database().execute(sql, arguments).fetchall()
            except sqlite3.Error as error:
                raise StorageError(
                    f"dead-letter store {self.path}: count failed: {error}"
                ) from error
        return {RejectReason(reason): int(count) for reason, count in rows}

    def count(self) -> int:
        """Number of stored rejections."""
        with self._lock:
            return self._rows

    def payload_bytes(self) -> int:
        """Raw payload bytes stored [B]."""
        with self._lock:
            return self._payload_bytes

    def pruned_by_reason(self) -> dict[RejectReason, int]:
        """How many rejections the retention has deleted since the file was created, by reason."""
        with self._lock:
            try:
                rows = self._database().execute("SELECT reason, count FROM pruned").fetchall()
            except sqlite3.Error as error:
                raise StorageError(
                    f"dead-letter store {self.path}: read failed: {error}"
                ) from error
        return {RejectReason(reason): int(count) for reason, count in rows}

    # --- lifetime --------------------------------------------------------------------------------
