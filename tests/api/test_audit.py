"""The audit log: append-only in the database, hash-chained against edits around it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from pipesentinel.api.audit import AuditIntegrityError, AuditLog, summarize
from pipesentinel.ingest.storage.hash_chain import GENESIS_HASH, entry_hash


def _append(log: AuditLog, index: int) -> None:
    log.append(
        time_s=1.0e9 + index,
        actor="alice",
        role="duty_officer",
        method="POST",
        route="/api/v1/alarms/{alarm_id}/acknowledge",
        body_summary=f'{{"comment": "{index}"}}',
        status_code=200,
        result="ok",
    )


def test_entries_come_back_newest_first_and_verify(tmp_path: Path) -> None:
    with AuditLog(tmp_path / "audit.sqlite3") as log:
        for index in range(5):
            _append(log, index)
        entries = log.entries(limit=3)
        assert [e.sequence for e in entries] == [5, 4, 3]
        assert [e.sequence for e in log.entries(limit=10, before_sequence=3)] == [2, 1]
        assert entries[0].body_summary == '{"comment": "4"}'
        assert log.verify() == 5


def test_the_first_hash_is_sha256_over_genesis_and_the_row(tmp_path: Path) -> None:
    path = tmp_path / "audit.sqlite3"
    with AuditLog(path) as log:
        _append(log, 0)
    with sqlite3.connect(path) as database:
        row = database.execute("SELECT * FROM audit_log").fetchone()
    assert row[-1] == entry_hash(GENESIS_HASH, row[:-1])


@pytest.mark.parametrize(
    "statement", ["UPDATE audit_log SET actor = 'eve'", "DELETE FROM audit_log"]
)
def test_updates_and_deletes_are_refused_by_the_database(tmp_path: Path, statement: str) -> None:
    path = tmp_path / "audit.sqlite3"
    with AuditLog(path) as log:
        _append(log, 0)
    with sqlite3.connect(path) as database, pytest.raises(sqlite3.IntegrityError, match="append"):
        database.execute(statement)


def test_an_edit_around_the_triggers_breaks_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.sqlite3"
    with AuditLog(path) as log:
        for index in range(3):
            _append(log, index)
    with sqlite3.connect(path) as database:
        database.execute("DROP TRIGGER audit_log_no_update")
        database.execute("UPDATE audit_log SET actor = 'eve' WHERE sequence = 2")
    with AuditLog(path) as log, pytest.raises(AuditIntegrityError, match="entry 2"):
        log.verify()


def test_long_bodies_are_cut_and_say_their_length() -> None:
    assert summarize(b'{"a": 1}') == '{"a": 1}'
    long = b"x" * 600
    text = summarize(long, limit=10)
    assert text == "xxxxxxxxxx... (600 bytes)"
    assert summarize(b"\xff") == "\ufffd"
    assert summarize(b"abc", total_bytes=9000) == "abc... (9000 bytes)"
