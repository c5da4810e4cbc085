"""The SQLite alarm journal: append-only, durable settings, exact round trip, restart replay."""

from __future__ import annotations

import contextlib
import dataclasses
import sqlite3
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipesentinel.detection.alarms import (
    AlarmDefinition,
    AlarmKind,
    AlarmManager,
    AlarmPolicy,
    EventType,
    IllegalActionError,
    MemoryJournal,
    Priority,
    ShelveMode,
    SuppressionMode,
)
from pipesentinel.ingest.storage.base import StorageError
from pipesentinel.ingest.storage.journal import JournalIntegrityError, SqliteAlarmJournal

ZONE = "P1-S3"
DEFINITIONS = (
    AlarmDefinition("GD07.methane.low", AlarmKind.GAS, Priority.MEDIUM, "GD07", ZONE),
    AlarmDefinition("GD07.methane.high", AlarmKind.GAS, Priority.HIGH, "GD07", ZONE, latching=True),
    AlarmDefinition("GD08.methane.low", AlarmKind.GAS, Priority.MEDIUM, "GD08", ZONE),
    AlarmDefinition(
        f"zone.{ZONE}.suspected_leak", AlarmKind.SUSPECTED_LEAK, Priority.HIGH, zone=ZONE
    ),
    AlarmDefinition("GW1.offline", AlarmKind.SYSTEM, Priority.HIGH, "GW1"),
    AlarmDefinition(
        "GD08.fault.offline",
        AlarmKind.FAULT,
        Priority.LOW,
        "GD08",
        dependent_of=("GW1.offline",),
        suppression=SuppressionMode.ALWAYS,
    ),
)
IDS = [d.alarm_id for d in DEFINITIONS]
USER = "operator.chen"
POLICY = AlarmPolicy(flood_start_above_count=3, flood_end_below_count=2)  # floods reachable


def register_all(alarms: AlarmManager) -> None:
    for definition in DEFINITIONS:
        alarms.register(definition, time_s=0.0)


def sample_history(alarms: AlarmManager) -> None:
    register_all(alarms)
    alarms.update(
        IDS[1], active=True, time_s=10.0, value=0.43, detail="43 %LEL", metadata={"gas": "CH4"}
    )
    alarms.update(IDS[1], active=False, time_s=20.0)
    alarms.acknowledge(IDS[1], user=USER, time_s=21.0, comment="crew sent")
    alarms.shelve(
        IDS[0],
        user=USER,
        reason="work permit 17",
        time_s=22.0,
        mode=ShelveMode.TIMED,
        duration_s=30.0,
    )
    alarms.tick(100.0)


@pytest.fixture
def journal_path(tmp_path: Path) -> Path:
    return tmp_path / "alarms" / "journal.sqlite3"


def test_round_trip_is_exact_and_restart_restores(journal_path: Path) -> None:
    with SqliteAlarmJournal(journal_path) as journal:
        alarms = AlarmManager(journal)
        sample_history(alarms)
        stored = list(journal.events())
        assert stored[-1].event is EventType.SHELVE_EXPIRED
        assert stored[-1].time_s == 52.0  # 22 s + 30 s
        assert journal.last_sequence() == len(stored) == alarms.sequence
        assert journal.verify() == len(stored)
    memory = MemoryJournal()
    sample_history(AlarmManager(memory))
    assert stored == memory.events()  # every field survives SQLite and JSON exactly
    with SqliteAlarmJournal(journal_path) as reopened:
        restored = AlarmManager(reopened)
        assert restored.tick(alarms.time_s) == []
        assert restored.snapshot() == alarms.snapshot()
        # and it goes on appending where it stopped
        events = restored.update(IDS[2], active=True, time_s=200.0)
        assert events[0].sequence == len(stored) + 1
        assert reopened.verify() == len(stored) + len(events)


def test_update_delete_and_overwrite_are_refused(journal_path: Path) -> None:
    with SqliteAlarmJournal(journal_path) as journal:
        sample_history(AlarmManager(journal))
        count = journal.last_sequence()
    raw = sqlite3.connect(journal_path, isolation_level=None)
    try:
        for statement in (
            "UPDATE alarm_journal SET user = 'mallory' WHERE sequence = 3",
            "DELETE FROM alarm_journal WHERE sequence = 3",
            "DELETE FROM alarm_journal",
            "INSERT OR REPLACE INTO alarm_journal SELECT * FROM alarm_journal WHERE sequence = 3",
            "INSERT INTO alarm_journal SELECT sequence + 100, time_s, alarm_id, event, from_state,"
            " to_state, user, reason, value, detail, annunciation, details_json, entry_hash"
            " FROM alarm_journal WHERE sequence = 3",
        ):
            with pytest.raises(sqlite3.DatabaseError, match="alarm_journal"):
                raw.execute(statement)
        assert raw.execute("SELECT count(*) FROM alarm_journal").fetchone() == (count,)
        assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        raw.close()


def test_connection_is_durable(journal_path: Path) -> None:
    with SqliteAlarmJournal(journal_path) as journal:
        # synchronous is per connection: FULL = 2 (SQLite "PRAGMA synchronous")
        assert journal._database().execute("PRAGMA synchronous").fetchone() == (2,)


def test_append_is_all_or_nothing_and_checks_order(journal_path: Path) -> None:
    memory = MemoryJournal()
    sample_history(AlarmManager(memory))
    events = memory.events()
    with SqliteAlarmJournal(journal_path) as journal:
        journal.append(events[:3])
        with pytest.raises(StorageError, match=r"entries 5\.\.6 not stored"):
            journal.append(events[4:6])  # a gap: 4 is missing
        bad = [events[3], dataclasses.replace(events[4], value=float("nan"))]
        with pytest.raises(StorageError, match="not finite"):
            journal.append(bad)
        assert journal.last_sequence() == 3
        early = dataclasses.replace(events[3], time_s=-1.0)
        with pytest.raises(StorageError, match="time must not go back"):
            journal.append([early])
        journal.append(events[3:])
        assert list(journal.events()) == events


def test_read_filters_by_alarm_and_time(journal_path: Path) -> None:
    with SqliteAlarmJournal(journal_path) as journal:
        sample_history(AlarmManager(journal))
        high = journal.read(alarm_id=IDS[1])
        assert [e.event for e in high] == [
            EventType.REGISTERED,
            EventType.ACTIVATED,
            EventType.CLEARED,
            EventType.ACKNOWLEDGED,
        ]
        window = journal.read(start_s=20.0, end_s=22.0)
        assert [e.time_s for e in window] == [20.0, 21.0]
        assert len(journal.read(limit=2)) == 2
        last = journal.last_sequence()
        assert [e.sequence for e in journal.events(after_sequence=last - 1)] == [last]


def test_verify_detects_an_edit_made_around_the_triggers(journal_path: Path) -> None:
    with SqliteAlarmJournal(journal_path) as journal:
        sample_history(AlarmManager(journal))
    raw = sqlite3.connect(journal_path, isolation_level=None)
    try:
        raw.execute("DROP TRIGGER alarm_journal_no_update")
        raw.execute("UPDATE alarm_journal SET user = 'mallory' WHERE sequence = 9")
    finally:
        raw.close()
    with (
        SqliteAlarmJournal(journal_path) as journal,
        pytest.raises(JournalIntegrityError, match="entry 9: hash does not match"),
    ):
        journal.verify()


def test_closed_journal_and_newer_schema_are_refused(journal_path: Path) -> None:
    journal = SqliteAlarmJournal(journal_path)
    journal.close()
    with pytest.raises(StorageError, match="closed"):
        journal.last_sequence()
    raw = sqlite3.connect(journal_path)
    raw.execute("PRAGMA user_version = 99")
    raw.close()
    with pytest.raises(StorageError, match="schema version 99 is newer"):
        SqliteAlarmJournal(journal_path)


# --- property: restart from the SQLite journal ---------------------------------------------

OPERATION = st.tuples(
    st.sampled_from(["on"] * 6 + ["off"] * 6 + ["ack", "ack", "reset", "shelve", "oos", "rts"]),
    st.sampled_from(IDS),
    st.sampled_from([0.0, 0.5, 2.0, 30.0, 700.0]),  # time step [s]
)


def operate(alarms: AlarmManager, kind: str, alarm_id: str, time_s: float) -> None:
    actions: dict[str, Callable[[], object]] = {
        "on": lambda: alarms.update(alarm_id, active=True, time_s=time_s, value=time_s),
        "off": lambda: alarms.update(alarm_id, active=False, time_s=time_s),
        "ack": lambda: alarms.acknowledge(alarm_id, user=USER, time_s=time_s),
        "reset": lambda: alarms.reset(alarm_id, user=USER, time_s=time_s),
        "shelve": lambda: alarms.shelve(
            alarm_id, user=USER, reason="r", time_s=time_s, mode=ShelveMode.TIMED, duration_s=45.0
        ),
        "oos": lambda: alarms.remove_from_service(alarm_id, user=USER, reason="r", time_s=time_s),
        "rts": lambda: alarms.return_to_service(alarm_id, user=USER, time_s=time_s),
    }
    # refused actions are part of the sequence; they must leave no trace
    with contextlib.suppress(IllegalActionError):
        actions[kind]()


@settings(max_examples=40, deadline=None)
@given(st.lists(OPERATION, min_size=1, max_size=60), st.integers(min_value=0, max_value=60))
def test_restart_from_sqlite_restores_exactly(
    operations: list[tuple[str, str, float]], restart_at: int
) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "journal.sqlite3"
        journal = SqliteAlarmJournal(path)
        alarms = AlarmManager(journal, policy=POLICY)
        register_all(alarms)
        time_s = 0.0
        for index, (kind, alarm_id, step_s) in enumerate(operations):
            if index == restart_at:  # restart mid-way and carry on with the restored manager
                journal.close()
                journal = SqliteAlarmJournal(path)
                restored = AlarmManager(journal, policy=POLICY)
                assert restored.tick(alarms.time_s) == []
                assert restored.snapshot() == alarms.snapshot()
                alarms = restored
            time_s += step_s
            operate(alarms, kind, alarm_id, time_s)
        journal.close()
        with SqliteAlarmJournal(path) as reopened:
            assert reopened.verify() == alarms.sequence
            final = AlarmManager(reopened, policy=POLICY)
            assert final.tick(alarms.time_s) == []
            assert final.snapshot() == alarms.snapshot()
