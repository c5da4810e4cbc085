"""One durable SQLite file behind a lock: the common base of the small SQLite stores.

The dead-letter store, the alarm journal, the notification log and the incident store each keep
one connection in autocommit mode (``isolation_level=None``: transactions are explicit ``BEGIN
IMMEDIATE ... COMMIT``), WAL journaling and ``synchronous=FULL`` (a committed row survives a power
cut), used from several threads behind one lock. This class opens, guards and closes that file;
the stores add their schema and queries.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Final, Self

from pipesentinel.ingest.storage.base import StorageError

BUSY_TIMEOUT_S: Final = 30.0  # how long a writer waits for another process's write lock [s]


class SqliteFile:
    """A SQLite file opened for durable writes; thread-safe (one connection, one lock).

    Parameters
    ----------
    path
        The file; parent directories are created [-].
    what
        What the file is, for error messages ("alarm journal", "dead-letter store", ...) [-].
    busy_timeout_s
        How long a writer waits for another process's write lock [s].

    Raises
    ------
    StorageError
        When the file cannot be opened.
    """

    def __init__(self, path: Path | str, *, what: str, busy_timeout_s: float = BUSY_TIMEOUT_S):
        self.path = Path(path)
        self._what = what
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._connection: sqlite3.Connection | None = sqlite3.connect(
                self.path, timeout=busy_timeout_s, check_same_thread=False, isolation_level=None
            )
            self._connection.execute("PRAGMA journal_mode=WAL")
            self._connection.execute("PRAGMA synchronous=FULL")
        except (sqlite3.Error, OSError) as error:
            raise self._open_error(error) from error

    def _open_error(self, error: BaseException) -> StorageError:
        """The error to raise when opening (or preparing the schema of) the file fails."""
        return StorageError(f"{self._what} {self.path}: cannot open: {error}")

    def _apply_schema(self, script: str, *, version: int | None = None) -> None:
        """Create the store's tables (idempotent script); with ``version``, refuse a newer file.

        ``PRAGMA user_version`` holds the schema version: a file written by a newer version of
        the store is refused (:class:`StorageError`), an older or new one is brought to
        ``version``. Any failure closes the file and raises :class:`StorageError`.
        """
        try:
            database = self._database()
            if version is not None:
                (found,) = database.execute("PRAGMA user_version").fetchone()
                if found > version:
                    raise StorageError(
                        f"{self._what} {self.path}: schema version {found} is newer than "
                        f"{version}; refusing to open it"
                    )
            database.executescript(script)
            if version is not None:
                database.execute(f"PRAGMA user_version={int(version)}")
        except StorageError:
            self.close()
            raise
        except (sqlite3.Error, OSError) as error:
            self.close()
            raise self._open_error(error) from error

    def _database(self) -> sqlite3.Connection:
        """The open connection; :class:`StorageError` once closed. Call with the lock held."""
        if self._connection is None:
            raise StorageError(f"{self._what} {self.path} is closed")
        return self._connection

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE ... COMMIT`` under the lock; rolled back if the body raises."""
        with self._lock:
            database = self._database()
            database.execute("BEGIN IMMEDIATE")
            try:
                yield database
            except BaseException:
                database.execute("ROLLBACK")
                raise
            database.execute("COMMIT")

    def close(self) -> None:
        """Close the file (idempotent)."""
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
