"""The alarm journal: every alarm transition and operator action, append-only, in SQLite.

One row per :class:`~pipesentinel.detection.alarms.AlarmEvent`, keyed by its sequence number.
The database itself refuses what an append-only journal must not do:

* ``UPDATE`` and ``DELETE`` abort (``BEFORE`` triggers that ``RAISE(ABORT, ...)``);
* an ``INSERT`` whose sequence is not the last one plus 1, or whose time is before the last
  entry's, aborts (so ``INSERT OR REPLACE`` cannot overwrite a row either: the trigger runs before
  the conflict is resolved);
* each row carries ``entry_hash`` = SHA-256 of the previous row's hash and this row's canonical
  content, so an edit made around the triggers (dropping them, editing the file) is detected by
  :meth:`SqliteAlarmJournal.verify`.

Durability: WAL with ``synchronous=FULL``; each :meth:`SqliteAlarmJournal.append` is one
``BEGIN IMMEDIATE ... COMMIT`` transaction, so the entries of one manager call are on disk when it
returns, or none of them are. The schema is listed in ``docs/alarm-lifecycle.md``.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Final

from pipesentinel.detection.alarms import AlarmEvent, AlarmState, EventType, JsonValue
from pipesentinel.ingest.storage.base import StorageError
from pipesentinel.ingest.storage.hash_chain import GENESIS_HASH, entry_hash, verify_chain
from pipesentinel.ingest.storage.sqlite_file import SqliteFile

__all__ = ["SCHEMA_VERSION", "JournalIntegrityError", "SqliteAlarmJournal"]

SCHEMA_VERSION: Final = 1
BUSY_TIMEOUT_S: Final = 30.0  # how long a writer waits for another process's write lock [s]
PAGE_ROWS: Final = 1000  # rows read per query when streaming the journal

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS alarm_journal (
    sequence INTEGER PRIMARY KEY CHECK (sequence >= 1),
    time_s REAL NOT NULL,
    alarm_id TEXT,
    event TEXT NOT NULL,
    from_state TEXT,
    to_state TEXT,
    user TEXT,
    reason TEXT,
    value REAL,
    detail TEXT NOT NULL,
    annunciation INTEGER NOT NULL CHECK (annunciation IN (0, 1)),
    details_json TEXT NOT NULL CHECK (json_valid(details_json)),
    entry_hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS alarm_journal_by_alarm ON alarm_journal (alarm_id, sequence);
CREATE INDEX IF NOT EXISTS alarm_journal_by_time ON alarm_journal (time_s);
CREATE TRIGGER IF NOT EXISTS alarm_journal_no_update BEFORE UPDATE ON alarm_journal
BEGIN
    SELECT RAISE(ABORT, 'alarm_journal is append-only: UPDATE refused');
END;
CREATE TRIGGER IF NOT EXISTS alarm_journal_no_delete BEFORE DELETE ON alarm_journal
BEGIN
    SELECT RAISE(ABORT, 'alarm_journal is append-only: DELETE refused');
END;
CREATE TRIGGER IF NOT EXISTS alarm_journal_in_order BEFORE INSERT ON alarm_journal
WHEN NEW.sequence IS NOT (SELECT coalesce(max(sequence), 0) + 1 FROM alarm_journal)
    OR NEW.time_s < (SELECT time_s FROM alarm_journal ORDER BY sequence DESC LIMIT 1)
BEGIN
    SELECT RAISE(ABORT, 'alarm_journal: sequence must be the last + 1, time must not go back');
END;
"""

_COLUMNS: Final = (
    "sequence, time_s, alarm_id, event, from_state, to_state, user, reason, value, detail,"
    " annunciation, details_json, entry_hash"
)
# Both built from the fixed column list above; values are always bound parameters.
_INSERT: Final = (
    f"INSERT INTO alarm_journal ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"  # noqa: S608
)
_SELECT: Final = f"SELECT {_COLUMNS} FROM alarm_journal"  # noqa: S608

Row = tuple[Any, ...]


class JournalIntegrityError(StorageError):
    """The stored journal is not what was appended (hash chain broken, undecodable row)."""


def _details_json(details: dict[str, JsonValue]) -> str:
    return json.dumps(details, sort_keys=True, separators=(",", ":"), allow_nan=False)


def _row(event: AlarmEvent) -> Row:
    """The row of ``event`` without its hash; ``ValueError`` for a non-finite time or value."""
    if not math.isfinite(event.time_s):
        raise ValueError(f"time_s={event.time_s!r} is not finite")
    if event.value is not None and not math.isfinite(event.value):
        raise ValueError(f"value={event.value!r} is not finite")
    return (
        event.sequence,
        float(event.time_s),
        event.alarm_id,
        EventType(event.event).value,
        None if event.from_state is None else AlarmState(event.from_state).value,
        None if event.to_state is None else AlarmState(event.to_state).value,
        event.user,
        event.reason,
        None if event.value is None else float(event.value),
        event.detail,
        int(bool(event.annunciation)),
        _details_json(event.details),
    )


def _event(row: Row) -> AlarmEvent:
    """The event stored in ``row``; :class:`JournalIntegrityError` naming the row if malformed."""
    sequence = row[0]
    try:
        details = json.loads(row[11])
        if not isinstance(details, dict):
            raise TypeError(f"details_json is a {type(details).__name__}, not an object")
        return AlarmEvent(
            sequence=int(sequence),
            time_s=float(row[1]),
            event=EventType(row[3]),
            alarm_id=row[2],
            from_state=None if row[4] is None else AlarmState(row[4]),
            to_state=None if row[5] is None else AlarmState(row[5]),
            user=row[6],
            reason=row[7],
            value=None if row[8] is None else float(row[8]),
            detail=str(row[9]),
            annunciation=bool(row[10]),
            details=details,
        )
    except (TypeError, ValueError) as error:
        raise JournalIntegrityError(
            f"alarm journal entry {sequence}: cannot decode: {error}"
        ) from error


class SqliteAlarmJournal(SqliteFile):
    """The append-only alarm journal in one SQLite file; thread-safe (one connection, a lock).

    Implements :class:`pipesentinel.detection.alarms.AlarmJournal`: pass it to
    :class:`~pipesentinel.detection.alarms.AlarmManager`, which replays it on start.

    Parameters
    ----------
    path
        The SQLite file; parent directories are created [-].

    Raises
    ------
    StorageError
        When the file cannot be opened or has a newer schema.
    """

    def __init__(self, path: Path) -> None:
        super().__init__(path, what="alarm journal", busy_timeout_s=BUSY_TIMEOUT_S)
        self._apply_schema(_SCHEMA, version=SCHEMA_VERSION)

    # --- writing ---------------------------------------------------------------------------------

    def append(self, events: Sequence[AlarmEvent]) -> None:
        """Append ``events`` durably in one transaction: all of them or none.

        Raises
        ------
        StorageError
            When the entries could not be committed (I/O error, a sequence that does not follow
            the last stored one, a time before it, a value that is not finite); nothing of the
            batch is stored then.
        """
        if not events:
            return
        rows: list[Row] = []
        for event in events:
            try:
                rows.append(_row(event))
            except (ValueError, TypeError) as error:
                raise StorageError(
                    f"alarm journal {self.path}: entry {event.sequence} ({event.event}, "
                    f"{event.alarm_id}) not stored: {error}"
                ) from error
        with self._lock:
            database = self._database()
            try:
                database.execute("BEGIN IMMEDIATE")
                try:
                    previous = database.execute(
                        "SELECT entry_hash FROM alarm_journal ORDER BY sequence DESC LIMIT 1"
                    ).fetchone()
                    previous_hash = GENESIS_HASH if previous is None else str(previous[0])
                    hashed = []
                    for row in rows:
                        previous_hash = entry_hash(previous_hash, row)
                        hashed.append((*row, previous_hash))
                    database.executemany(_INSERT, hashed)
                    database.execute("COMMIT")
                except BaseException:
                    database.execute("ROLLBACK")
                    raise
            except sqlite3.Error as error:
                raise StorageError(
                    f"alarm journal {self.path}: entries {rows[0][0]}..{rows[-1][0]} not stored: "
                    f"{error}"
                ) from error

    # --- reading ---------------------------------------------------------------------------------

    def _page(self, where: str, arguments: Sequence[object]) -> list[Row]:
        with self._lock:
            try:
                return self._database().execute(f"{_SELECT} {where}", arguments).fetchall()
            except sqlite3.Error as error:
                raise StorageError(f"alarm journal {self.path}: cannot read: {error}") from error

    def _rows(self, after_sequence: int = 0) -> Iterator[Row]:
        while True:
            page = self._page(
                "WHERE sequence > ? ORDER BY sequence LIMIT ?", (after_sequence, PAGE_ROWS)
            )
            yield from page
            if len(page) < PAGE_ROWS:
                return
            after_sequence = int(page[-1][0])

    def events(self, *, after_sequence: int = 0) -> Iterator[AlarmEvent]:
        """Every entry after ``after_sequence``, in sequence order (read page by page)."""
        for row in self._rows(after_sequence):
            yield _event(row[:12])

    def read(
        self,
        *,
        alarm_id: str | None = None,
        start_s: float | None = None,
        end_s: float | None = None,
        limit: int | None = None,
    ) -> list[AlarmEvent]:
        """Entries of one alarm and/or a time window ``[start_s, end_s)`` [s], in order.

        Parameters
        ----------
        alarm_id
            Only this alarm's entries (None: all, including site entries such as floods) [-].
        start_s, end_s
            Time window [s].
        limit
            At most this many entries, the first ones [1].
        """
        clauses: list[str] = []
        arguments: list[object] = []
        if alarm_id is not None:
            clauses.append("alarm_id = ?")
            arguments.append(alarm_id)
        if start_s is not None:
            clauses.append("time_s >= ?")
            arguments.append(float(start_s))
        if end_s is not None:
            clauses.append("time_s < ?")
            arguments.append(float(end_s))
        where = f"WHERE {' AND '.join(clauses)} " if clauses else ""
        if limit is not None:
            if limit < 0:
                raise ValueError(f"limit must be >= 0, got {limit}")
            arguments.append(limit)
        rows = self._page(
            f"{where}ORDER BY sequence{' LIMIT ?' if limit is not None else ''}", arguments
        )
        return [_event(row[:12]) for row in rows]

    def last_sequence(self) -> int:
        """The sequence number of the last entry (0 if empty)."""
        with self._lock:
            try:
                (last,) = (
                    self._database()
                    .execute("SELECT coalesce(max(sequence), 0) FROM alarm_journal")
                    .fetchone()
                )
            except sqlite3.Error as error:
                raise StorageError(f"alarm journal {self.path}: cannot read: {error}") from error
        return int(last)

    def verify(self) -> int:
        """Check the hash chain and that every row decodes; returns the number of entries.

        Raises
        ------
        JournalIntegrityError
            Naming the first entry whose hash, sequence or content does not check.
        """
        return verify_chain(
            self._rows(),
            width=12,
            decode=_event,
            error=JournalIntegrityError,
            what=f"alarm journal {self.path}",
        )

    # --- lifecycle -------------------------------------------------------------------------------
