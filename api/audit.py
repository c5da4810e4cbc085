"""The API's audit log: every write request, append-only, hash-chained, in SQLite.

One row per write request (POST to ``/api/v1``, whatever its outcome, refused ones included): when,
who (token name, or ``-`` without a valid token) and role, method and route, a summary of the
body, the HTTP status and a result text. Like the alarm journal (``ingest/storage/journal.py``)
the database refuses ``UPDATE`` and ``DELETE`` and out-of-order inserts (triggers), and each row
carries SHA-256 over the previous row's hash and its own content
(:mod:`pipesentinel.ingest.storage.hash_chain`), so an edit around the triggers is found by
:meth:`AuditLog.verify`.
"""

from __future__ import annotations

import math
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from pipesentinel.ingest.storage.base import StorageError
from pipesentinel.ingest.storage.hash_chain import GENESIS_HASH, entry_hash, verify_chain
from pipesentinel.ingest.storage.sqlite_file import SqliteFile

__all__ = ["AuditEntry", "AuditIntegrityError", "AuditLog"]

SCHEMA_VERSION: Final = 1
SUMMARY_MAX_CHARS: Final = 500  # body summary kept per entry (design choice)

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS audit_log (
    sequence INTEGER PRIMARY KEY CHECK (sequence >= 1),
    time_s REAL NOT NULL,
    actor TEXT NOT NULL,
    role TEXT NOT NULL,
    method TEXT NOT NULL,
    route TEXT NOT NULL,
    body_summary TEXT NOT NULL,
    status_code INTEGER NOT NULL,
    result TEXT NOT NULL,
    entry_hash TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only: UPDATE refused');
END;
CREATE TRIGGER IF NOT EXISTS audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'audit_log is append-only: DELETE refused');
END;
CREATE TRIGGER IF NOT EXISTS audit_log_in_order BEFORE INSERT ON audit_log
WHEN NEW.sequence IS NOT (SELECT coalesce(max(sequence), 0) + 1 FROM audit_log)
BEGIN
    SELECT RAISE(ABORT, 'audit_log: sequence must be the last + 1');
END;
"""
_COLUMNS: Final = (
    "sequence, time_s, actor, role, method, route, body_summary, status_code, result, entry_hash"
)
_WIDTH: Final = 9  # content columns before the hash


class AuditIntegrityError(StorageError):
    """The stored audit log is not what was appended."""


@dataclass(frozen=True)
class AuditEntry:
    """One audited write request. ``time_s`` [s] since the Unix epoch."""

    sequence: int
    time_s: float
    actor: str
    role: str
    method: str
    route: str
    body_summary: str
    status_code: int
    result: str

    def to_json_dict(self) -> dict[str, object]:
        """Plain JSON."""
        return {
            "sequence": self.sequence,
            "time_s": self.time_s,
            "actor": self.actor,
            "role": self.role,
            "method": self.method,
            "route": self.route,
            "body_summary": self.body_summary,
            "status_code": self.status_code,
            "result": self.result,
        }


def _entry(row: tuple[Any, ...]) -> AuditEntry:
    try:
        return AuditEntry(
            sequence=int(row[0]),
            time_s=float(row[1]),
            actor=str(row[2]),
            role=str(row[3]),
            method=str(row[4]),
            route=str(row[5]),
            body_summary=str(row[6]),
            status_code=int(row[7]),
            result=str(row[8]),
        )
    except (TypeError, ValueError) as error:
        raise AuditIntegrityError(f"audit entry {row[0]}: cannot decode: {error}") from error


def summarize(
    body: bytes, *, limit: int = SUMMARY_MAX_CHARS, total_bytes: int | None = None
) -> str:
    """The body as text, cut to ``limit`` characters (with the full length said when cut).

    ``total_bytes``: the full body's length when ``body`` is only its beginning [B].
    """
    size = len(body) if total_bytes is None else total_bytes
    text = body.decode("utf-8", errors="replace")
    if len(text) <= limit and size == len(body):
        return text
    return f"{text[:limit]}... ({size} bytes)"


class AuditLog(SqliteFile):
    """The append-only audit log in one SQLite file; thread-safe.

    Parameters
    ----------
    path
        The SQLite file; parent directories are created [-].
    """

    def __init__(self, path: Path | str) -> None:
        super().__init__(path, what="API audit log")
        self._apply_schema(_SCHEMA, version=SCHEMA_VERSION)

    def append(
        self,
        *,
        time_s: float,
        actor: str,
        role: str,
        method: str,
        route: str,
        body_summary: str,
        status_code: int,
        result: str,
    ) -> AuditEntry:
        """Append one entry durably and return it.

        Raises
        ------
        StorageError
            When it cannot be committed (nothing is stored then).
        """
        if not math.isfinite(time_s):
            raise StorageError(f"audit log {self.path}: time_s={time_s!r} is not finite")
        try:
            with self._transaction() as database:
                last = database.execute(
                    "SELECT sequence, entry_hash FROM audit_log ORDER BY sequence DESC LIMIT 1"
                ).fetchone()
                sequence = 1 if last is None else int(last[0]) + 1
                previous_hash = GENESIS_HASH if last is None else str(last[1])
                row = (
                    sequence,
                    float(time_s),
                    actor,
                    role,
                    method,
                    route,
                    body_summary,
                    int(status_code),
                    result,
                )
                database.execute(
                    f"INSERT INTO audit_log ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",  # noqa: S608 - constant column list
                    (*row, entry_hash(previous_hash, row)),
                )
        except sqlite3.Error as error:
            raise StorageError(f"audit log {self.path}: entry not stored: {error}") from error
        return _entry(row)

    def entries(self, *, limit: int, before_sequence: int | None = None) -> list[AuditEntry]:
        """The newest ``limit`` entries (before ``before_sequence`` if given), newest first."""
        where = "" if before_sequence is None else "WHERE sequence < ? "
        arguments: tuple[int, ...] = (
            (limit,) if before_sequence is None else (before_sequence, limit)
        )
        with self._lock:
            try:
                rows = (
                    self._database()
                    .execute(
                        f"SELECT {_COLUMNS} FROM audit_log {where}ORDER BY sequence DESC LIMIT ?",  # noqa: S608 - constant column list and clause
                        arguments,
                    )
                    .fetchall()
                )
            except sqlite3.Error as error:
                raise StorageError(f"audit log {self.path}: cannot read: {error}") from error
        return [_entry(row) for row in rows]

    def verify(self) -> int:
        """Check the hash chain; returns the number of entries.

        Raises
        ------
        AuditIntegrityError
            Naming the first entry that does not check.
        """
        with self._lock:
            query = f"SELECT {_COLUMNS} FROM audit_log ORDER BY sequence"  # noqa: S608 - constant
            rows = self._database().execute(query).fetchall()
        return verify_chain(
            rows,
            width=_WIDTH,
            decode=_entry,
            error=AuditIntegrityError,
            what=f"audit log {self.path}",
        )
