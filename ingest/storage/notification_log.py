"""The notification log: every attempt to notify someone, in SQLite (WAL, ``synchronous=FULL``).

One row per attempt (or per decision not to attempt: superseded, dropped, abandoned) of one event
on one channel. The channel is ``mqtt`` for the retained alarm/incident state, or the webhook URL
with any user-info and query string redacted
(:func:`pipesentinel.ingest.notifications.webhook_channel`).

The log is also the memory of what was delivered: :meth:`NotificationLog.delivered_keys` is read
back at start-up so that an event delivered once on a channel is never delivered again on it
("no notification is sent twice"), across restarts of the notifier.

Schema (table ``attempts``)::

    id              INTEGER PRIMARY KEY AUTOINCREMENT  order of recording
    event_id        TEXT NOT NULL     the event's unique id (from detection or the escalation)
    channel         TEXT NOT NULL     'mqtt' or the redacted webhook URL
    kind            TEXT NOT NULL     'alarm' | 'incident' | 'escalation'
    subject_id      TEXT NOT NULL     the alarm id or incident id
    attempt         INTEGER NOT NULL  1, 2, ... (0: nothing was attempted, e.g. superseded)
    time_s          REAL NOT NULL     start of the attempt, Unix epoch [s]
    outcome         TEXT NOT NULL     see :class:`Outcome`
    http_status     INTEGER           the webhook's HTTP status; NULL for MQTT and network errors
    error           TEXT              what went wrong; NULL when delivered
    latency_s       REAL              request to response (webhook) or PUBLISH to PUBACK (MQTT) [s]

Indexes: ``(event_id, channel)`` and ``(time_s)``.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Final

from pipesentinel.ingest.storage.base import StorageError
from pipesentinel.ingest.storage.sqlite_file import SqliteFile

logger = logging.getLogger(__name__)

BUSY_TIMEOUT_S: Final = 10.0
DEFAULT_QUERY_LIMIT: Final = 10_000

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS attempts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    kind TEXT NOT NULL,
    subject_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    time_s REAL NOT NULL,
    outcome TEXT NOT NULL,
    http_status INTEGER,
    error TEXT,
    latency_s REAL
);
CREATE INDEX IF NOT EXISTS attempts_by_event ON attempts (event_id, channel);
CREATE INDEX IF NOT EXISTS attempts_by_time ON attempts (time_s);
"""
_COLUMNS: Final = (
    "event_id, channel, kind, subject_id, attempt, time_s, outcome, http_status, error, latency_s"
)
_INSERT: Final = (
    "INSERT INTO attempts (event_id, channel, kind, subject_id, attempt, time_s, outcome, "
    "http_status, error, latency_s) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


class Outcome(StrEnum):
    """What became of one attempt (or of an event that was not attempted)."""

    DELIVERED = "delivered"
    """The broker acknowledged (PUBACK) or the webhook answered 2xx."""
    RETRY = "retry"
    """This attempt failed; another one is scheduled."""
    FAILED = "failed"
    """This attempt failed and no other follows (not retryable, or the last allowed attempt)."""
    EXPIRED = "expired"
    """This attempt failed and the next one would have been past the maximum age."""
    SUPERSEDED = "superseded"
    """MQTT: a newer state of the same alarm/incident replaced it before it was acknowledged."""
    DROPPED = "dropped"
    """A bounded queue was full: the event was not queued on this channel."""
    ABANDONED = "abandoned"
    """The notifier stopped before the event was delivered."""


class Channel(StrEnum):
    """Channels that are not webhook URLs."""

    MQTT = "mqtt"


@dataclass(frozen=True, slots=True)
class Attempt:
    """One row of the notification log (see the module docstring for the fields)."""

    event_id: str
    channel: str
    kind: str
    subject_id: str
    attempt: int
    time_s: float
    outcome: Outcome
    http_status: int | None = None
    error: str | None = None
    latency_s: float | None = None

    def row(self) -> tuple[object, ...]:
        """The values in the column order of the table."""
        return (
            self.event_id,
            self.channel,
            self.kind,
            self.subject_id,
            self.attempt,
            self.time_s,
            Outcome(self.outcome).value,
            self.http_status,
            self.error,
            self.latency_s,
        )


def _attempt(row: Sequence[object]) -> Attempt:
    event_id, channel, kind, subject_id, attempt, time_s, outcome, status, error, latency = row
    return Attempt(
        event_id=str(event_id),
        channel=str(channel),
        kind=str(kind),
        subject_id=str(subject_id),
        attempt=int(attempt),  # type: ignore[call-overload]  # SQLite INTEGER
        time_s=float(time_s),  # type: ignore[arg-type]  # SQLite REAL
        outcome=Outcome(str(outcome)),
        http_status=None if status is None else int(status),  # type: ignore[call-overload]
        error=None if error is None else str(error),
        latency_s=None if latency is None else float(latency),  # type: ignore[arg-type]
    )


class NotificationLog(SqliteFile):
    """The attempts log in a SQLite file; thread-safe (one connection behind a lock).

    Parameters
    ----------
    path
        The SQLite file (``settings.notifications.log_path``); parent directories are created.
    """

    def __init__(self, path: Path) -> None:
        super().__init__(path, what="notification log", busy_timeout_s=BUSY_TIMEOUT_S)
        try:
            self._database().executescript(_SCHEMA)
        except sqlite3.Error as error:
            self.close()
            raise self._open_error(error) from error

    def record(self, attempts: Iterable[Attempt]) -> None:
        """Store ``attempts`` durably in one transaction; :class:`StorageError` if not stored."""
        rows = [attempt.row() for attempt in attempts]
        if not rows:
            return
        with self._lock:
            database = self._database()
            try:
                database.execute("BEGIN IMMEDIATE")
                try:
                    database.executemany(_INSERT, rows)
                    database.execute("COMMIT")
                except BaseException:
                    database.execute("ROLLBACK")
                    raise
            except sqlite3.Error as error:
                raise StorageError(
                    f"notification log {self.path}: {len(rows)} attempt(s) not stored: {error}"
                ) from error

    def delivered_keys(self, *, since_time_s: float | None = None) -> set[tuple[str, str]]:
        """``(event_id, channel)`` of every delivery recorded (at or after ``since_time_s`` [s])."""
        sql = "SELECT DISTINCT event_id, channel FROM attempts WHERE outcome = ?"
        arguments: list[object] = [Outcome.DELIVERED.value]
        if since_time_s is not None:
            sql += " AND time_s >= ?"
            arguments.append(since_time_s)
        with self._lock:
            try:
                rows = self._database().execute(sql, arguments).fetchall()
            except sqlite3.Error as error:
                raise StorageError(f"notification log {self.path}: {error}") from error
        return {(str(event_id), str(channel)) for event_id, channel in rows}

    def was_delivered(self, event_id: str, channel: str) -> bool:
        """Whether a delivery of ``event_id`` on ``channel`` is recorded."""
        with self._lock:
            try:
                row = (
                    self._database()
                    .execute(
                        "SELECT 1 FROM attempts WHERE event_id = ? AND channel = ? AND outcome = ? "
                        "LIMIT 1",
                        (event_id, channel, Outcome.DELIVERED.value),
                    )
                    .fetchone()
                )
            except sqlite3.Error as error:
                raise StorageError(f"notification log {self.path}: {error}") from error
        return row is not None

    def attempts(
        self,
        *,
        event_id: str | None = None,
        channel: str | None = None,
        limit: int = DEFAULT_QUERY_LIMIT,
    ) -> list[Attempt]:
        """Recorded rows, oldest first, optionally of one event and/or one channel."""
        clauses: list[str] = []
        arguments: list[object] = []
        if event_id is not None:
            clauses.append("event_id = ?")
            arguments.append(event_id)
        if channel is not None:
            clauses.append("channel = ?")
            arguments.append(channel)
        # The clauses are fixed text of this module; every value is a bound parameter.
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        sql = f"SELECT {_COLUMNS} FROM attempts {where} ORDER BY id LIMIT ?"  # noqa: S608
        arguments.append(limit)
        with self._lock:
            try:
                rows = self._database().execute(sql, arguments).fetchall()
            except sqlite3.Error as error:
                raise StorageError(f"notification log {self.path}: {error}") from error
        return [_attempt(row) for row in rows]

    def counts_by_outcome(self) -> dict[Outcome, int]:
        """How many rows of each outcome."""
        with self._lock:
            try:
                rows = (
                    self._database()
                    .execute("SELECT outcome, count(*) FROM attempts GROUP BY outcome")
                    .fetchall()
                )
            except sqlite3.Error as error:
                raise StorageError(f"notification log {self.path}: {error}") from error
        return {Outcome(str(outcome)): int(count) for outcome, count in rows}

    def prune(self, *, before_time_s: float) -> int:
        """Delete rows older than ``before_time_s`` [s]; returns how many (also logged)."""
        with self._lock:
            try:
                deleted = (
                    self._database()
                    .execute("DELETE FROM attempts WHERE time_s < ?", (before_time_s,))
                    .rowcount
                )
            except sqlite3.Error as error:
                raise StorageError(f"notification log {self.path}: {error}") from error
        if deleted:
            logger.info(
                "notification log %s: retention deleted %d row(s) older than %.0f",
                self.path,
                deleted,
                before_time_s,
            )
        return int(deleted)
