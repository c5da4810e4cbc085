"""The alarm lifecycle: ISA-18.2 states, operator actions, flood, first-out, replay and KPIs.

Expected values are hand-worked from the rules in detection/alarms.py and docs/alarm-lifecycle.md
(flood: more than 10 annunciations in 600 s starts it, fewer than 5 ends it; chattering: 3 or
more in 60 s), stated beside each test.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipesentinel.detection.alarms import (
    DEFAULT_MAX_SHELVE_S,
    AlarmDefinition,
    AlarmError,
    AlarmEvent,
    AlarmKind,
    AlarmManager,
    AlarmPolicy,
    AlarmState,
    Condition,
    EventType,
    IllegalActionError,
    JournalReplayError,
    MemoryJournal,
    Priority,
    ShelveMode,
    SuppressionMode,
    UnknownAlarmError,
    alarm_kpis,
)

ZONE = "P1-S3"
LOW = AlarmDefinition("GD07.methane.low", AlarmKind.GAS, Priority.MEDIUM, "GD07", ZONE)
HIGH = AlarmDefinition(
    "GD07.methane.high", AlarmKind.GAS, Priority.HIGH, "GD07", ZONE, latching=True
)
LOW8 = AlarmDefinition("GD08.methane.low", AlarmKind.GAS, Priority.MEDIUM, "GD08", ZONE)
SUSPECTED = AlarmDefinition(
    f"zone.{ZONE}.suspected_leak", AlarmKind.SUSPECTED_LEAK, Priority.HIGH, zone=ZONE
)
CONFIRMED = AlarmDefinition(
    f"zone.{ZONE}.confirmed_leak",
    AlarmKind.CONFIRMED_LEAK,
    Priority.CRITICAL,
    zone=ZONE,
    latching=True,
)
GATEWAY = AlarmDefinition("GW1.offline", AlarmKind.SYSTEM, Priority.HIGH, "GW1")
FAULT = AlarmDefinition(
    "GD07.fault.offline",
    AlarmKind.FAULT,
    Priority.LOW,
    "GD07",
    dependent_of=("GW1.offline",),
    suppression=SuppressionMode.ALWAYS,
)
OTHER_ZONE = AlarmDefinition("GD11.methane.low", AlarmKind.GAS, Priority.MEDIUM, "GD11", "P2-S1")
ALL = (LOW, HIGH, LOW8, SUSPECTED, CONFIRMED, GATEWAY, FAULT, OTHER_ZONE)
USER = "operator.chen"


def manager(policy: AlarmPolicy | None = None) -> tuple[AlarmManager, MemoryJournal]:
    journal = MemoryJournal()
    alarms = AlarmManager(journal, policy=policy)
    for definition in ALL:
        alarms.register(definition, time_s=0.0)
    return alarms, journal


def kinds(events: list[AlarmEvent]) -> list[EventType]:
    return [event.event for event in events]


def flood_filler(count: int) -> list[AlarmDefinition]:
    return [
        AlarmDefinition(f"X{index:02d}.system", AlarmKind.SYSTEM, Priority.LOW)
        for index in range(count)
    ]


# --- basic ISA-18.2 transitions -----------------------------------------------------------------


def test_non_latching_cycle_ack_then_clear() -> None:
    alarms, _ = manager()
    events = alarms.update(LOW.alarm_id, active=True, time_s=10.0, value=0.21, detail="21 %LEL")
    assert [(e.event, e.from_state, e.to_state) for e in events] == [
        (EventType.ACTIVATED, AlarmState.NORMAL, AlarmState.UNACK)
    ]
    assert events[0].annunciation
    assert events[0].value == 0.21
    assert events[0].user == "detection"
    assert alarms.unacknowledged_since(LOW.alarm_id) == 10.0
    events = alarms.acknowledge(LOW.alarm_id, user=USER, time_s=15.0, comment="seen")
    assert (events[0].to_state, events[0].user, events[0].reason) == (
        AlarmState.ACKED,
        USER,
        "seen",
    )
    assert alarms.unacknowledged_since(LOW.alarm_id) is None
    events = alarms.update(LOW.alarm_id, active=False, time_s=20.0)
    assert events[0].to_state is AlarmState.NORMAL


def test_non_latching_cycle_clear_then_ack() -> None:
    alarms, _ = manager()
    alarms.update(LOW.alarm_id, active=True, time_s=10.0)
    assert alarms.update(LOW.alarm_id, active=False, time_s=12.0)[0].to_state is (
        AlarmState.RTN_UNACK
    )
    # still waiting for an acknowledgement since the activation
    assert alarms.unacknowledged_since(LOW.alarm_id) == 10.0
    # a repeat before the acknowledgement re-annunciates but keeps the waiting time
    events = alarms.update(LOW.alarm_id, active=True, time_s=13.0)
    assert events[0].annunciation
    assert alarms.unacknowledged_since(LOW.alarm_id) == 10.0
    alarms.update(LOW.alarm_id, active=False, time_s=14.0)
    assert alarms.acknowledge(LOW.alarm_id, user=USER, time_s=16.0)[0].to_state is (
        AlarmState.NORMAL
    )


def test_same_condition_again_changes_nothing() -> None:
    alarms, journal = manager()
    alarms.update(LOW.alarm_id, active=True, time_s=10.0, value=0.21)
    before = len(journal.events())
    assert alarms.update(LOW.alarm_id, active=True, time_s=11.0, value=0.3) == []
    assert len(journal.events()) == before
    assert alarms.alarm(LOW.alarm_id).value == 0.21  # the value of the last change


def test_latching_alarm_needs_reset_after_clearing() -> None:
    alarms, _ = manager()
    alarms.update(HIGH.alarm_id, active=True, time_s=10.0, value=0.45)
    with pytest.raises(IllegalActionError, match=r"reset 'GD07.methane.high'.*unack.*active"):
        alarms.reset(HIGH.alarm_id, user=USER, time_s=11.0)
    alarms.acknowledge(HIGH.alarm_id, user=USER, time_s=12.0)
    events = alarms.update(HIGH.alarm_id, active=False, time_s=20.0)
    assert events[0].to_state is AlarmState.LATCHED_ACKED
    with pytest.raises(IllegalActionError, match="nothing to acknowledge"):
        alarms.acknowledge(HIGH.alarm_id, user=USER, time_s=21.0)
    events = alarms.reset(HIGH.alarm_id, user=USER, time_s=22.0, comment="area checked")
    assert (events[0].event, events[0].from_state, events[0].to_state) == (
        EventType.RESET,
        AlarmState.LATCHED_ACKED,
        AlarmState.NORMAL,
    )
    assert events[0].reason == "area checked"


def test_latched_unacknowledged_alarm_reset_acknowledges_it() -> None:
    alarms, _ = manager()
    alarms.update(HIGH.alarm_id, active=True, time_s=10.0)
    assert alarms.update(HIGH.alarm_id, active=False, time_s=11.0)[0].to_state is (
        AlarmState.LATCHED_UNACK
    )
    assert alarms.unacknowledged_since(HIGH.alarm_id) == 10.0
    assert alarms.reset(HIGH.alarm_id, user=USER, time_s=12.0)[0].to_state is AlarmState.NORMAL
    assert alarms.unacknowledged_since(HIGH.alarm_id) is None


@pytest.mark.parametrize(
    ("action", "match"),
    [
        (lambda a: a.acknowledge(LOW.alarm_id, user=USER, time_s=5.0), "state normal"),
        (lambda a: a.reset(LOW.alarm_id, user=USER, time_s=5.0), "not latching"),
        (lambda a: a.reset(HIGH.alarm_id, user=USER, time_s=5.0), "not latched"),
        (lambda a: a.unshelve(LOW.alarm_id, user=USER, time_s=5.0), "not shelved"),
        (lambda a: a.return_to_service(LOW.alarm_id, user=USER, time_s=5.0), "not out of"),
        (
            lambda a: a.shelve(
                LOW.alarm_id, user=USER, reason=" ", time_s=5.0, mode=ShelveMode.ONE_SHOT
            ),
            "a reason is required",
        ),
        (
            lambda a: a.shelve(
                LOW.alarm_id,
                user=USER,
                reason="work permit 17",
                time_s=5.0,
                mode=ShelveMode.TIMED,
                duration_s=DEFAULT_MAX_SHELVE_S + 1.0,
            ),
            "maximum shelve time",
        ),
        (
            lambda a: a.shelve(
                LOW.alarm_id, user=USER, reason="r", time_s=5.0, mode=ShelveMode.TIMED
            ),
            "needs duration_s",
        ),
        (
            lambda a: a.shelve(
                LOW.alarm_id,
                user=USER,
                reason="r",
                time_s=5.0,
                mode=ShelveMode.ONE_SHOT,
                duration_s=10.0,
            ),
            "takes no duration",
        ),
        (
            lambda a: a.remove_from_service(LOW.alarm_id, user=USER, reason="", time_s=5.0),
            "a reason is required",
        ),
        (lambda a: a.acknowledge(LOW.alarm_id, user="", time_s=5.0), "a user"),
        (lambda a: a.comment(LOW.alarm_id, user=USER, text="", time_s=5.0), "a text"),
    ],
)
def test_illegal_actions_raise_naming_alarm_and_state_and_change_nothing(
    action: Callable[[AlarmManager], object], match: str
) -> None:
    alarms, journal = manager()
    before, entries = alarms.snapshot(), len(journal.events())
    with pytest.raises(IllegalActionError, match=match) as raised:
        action(alarms)
    assert raised.value.alarm_id in str(raised.value)
    assert raised.value.state.value in str(raised.value)
    assert alarms.snapshot() == before
    assert len(journal.events()) == entries


def test_bad_inputs_raise_clear_errors() -> None:
    alarms, _ = manager()
    with pytest.raises(UnknownAlarmError, match="'nope' is not registered"):
        alarms.update("nope", active=True, time_s=1.0)
    alarms.update(LOW.alarm_id, active=True, time_s=10.0)
    with pytest.raises(AlarmError, match=r"time_s=5.0 is before the last alarm time 10.0"):
        alarms.update(LOW.alarm_id, active=False, time_s=5.0)
    with pytest.raises(AlarmError, match="finite"):
        alarms.update(LOW.alarm_id, active=False, time_s=float("nan"))
    with pytest.raises(AlarmError, match=r"metadata.*not JSON-ready"):
        alarms.update(LOW.alarm_id, active=False, time_s=11.0, metadata={"x": object()})  # type: ignore[dict-item]
    with pytest.raises(AlarmError, match="kind"):
        AlarmDefinition("A", "smell", Priority.LOW)  # type: ignore[arg-type]
    with pytest.raises(AlarmError, match="cannot depend on itself"):
        AlarmDefinition("A", AlarmKind.GAS, Priority.LOW, dependent_of=("A",))
    with pytest.raises(AlarmError, match="flood_end_below_count"):
        AlarmPolicy(flood_end_below_count=20)


def test_registration_is_journaled_once_and_redefinition_recorded() -> None:
    alarms, _ = manager()
    assert alarms.register(LOW, time_s=1.0) == []
    changed = dataclasses.replace(LOW, priority=Priority.HIGH)
    events = alarms.register(changed, time_s=2.0)
    assert kinds(events) == [EventType.REDEFINED]
    assert events[0].details["previous_definition"] == LOW.as_dict()
    assert alarms.definition(LOW.alarm_id) == changed


def test_first_update_can_register() -> None:
    alarms = AlarmManager(MemoryJournal())
    events = alarms.update(LOW.alarm_id, active=True, time_s=1.0, definition=LOW)
    assert kinds(events) == [EventType.REGISTERED, EventType.ACTIVATED]


# --- shelving, out of service, suppression ------------------------------------------------------


def test_one_shot_shelve_ends_when_the_alarm_returns_to_normal() -> None:
    alarms, _ = manager()
    alarms.update(LOW.alarm_id, active=True, time_s=10.0)
    events = alarms.shelve(
        LOW.alarm_id,
        user=USER,
        reason="known calibration drift",
        time_s=11.0,
        mode=ShelveMode.ONE_SHOT,
    )
    assert (events[0].to_state, events[0].reason) == (AlarmState.SHELVED, "known calibration drift")
    assert alarms.unacknowledged_since(LOW.alarm_id) is None
    events = alarms.update(LOW.alarm_id, active=False, time_s=30.0)
    # the zone is all normal again, so the first-out mark goes too
    assert kinds(events) == [
        EventType.CLEARED,
        EventType.SHELVE_ENDED,
        EventType.FIRST_OUT_CLEARED,
    ]
    assert events[1].to_state is AlarmState.NORMAL
    # the next occurrence annunciates again
    assert alarms.update(LOW.alarm_id, active=True, time_s=40.0)[0].annunciation


def test_timed_shelve_expires_at_its_time() -> None:
    alarms, _ = manager()
    alarms.update(LOW.alarm_id, active=True, time_s=10.0)
    alarms.shelve(
        LOW.alarm_id,
        user=USER,
        reason="work permit 17",
        time_s=20.0,
        mode=ShelveMode.TIMED,
        duration_s=60.0,
    )
    # repeats while shelved are tracked, never annunciated
    alarms.update(LOW.alarm_id, active=False, time_s=30.0)
    activated = alarms.update(LOW.alarm_id, active=True, time_s=40.0)
    assert not activated[0].annunciation
    assert activated[0].to_state is AlarmState.SHELVED
    assert alarms.tick(79.9) == []
    events = alarms.tick(500.0)
    assert [(e.event, e.time_s, e.to_state) for e in events] == [
        (EventType.SHELVE_EXPIRED, 80.0, AlarmState.UNACK)  # 20 s + 60 s, hand-worked
    ]
    assert events[0].user == "system"
    assert alarms.unacknowledged_since(LOW.alarm_id) == 80.0


def test_out_of_service_tracks_without_annunciating() -> None:
    alarms, _ = manager()
    alarms.shelve(
        LOW.alarm_id, user=USER, reason="r", time_s=5.0, mode=ShelveMode.TIMED, duration_s=100.0
    )
    alarms.remove_from_service(LOW.alarm_id, user=USER, reason="detector replaced", time_s=6.0)
    assert not alarms.alarm(LOW.alarm_id).shelved  # out of service ends the shelve
    events = alarms.update(LOW.alarm_id, active=True, time_s=10.0)
    assert not events[0].annunciation
    assert events[0].to_state is AlarmState.OUT_OF_SERVICE
    with pytest.raises(IllegalActionError, match="out_of_service"):
        alarms.acknowledge(LOW.alarm_id, user=USER, time_s=11.0)
    events = alarms.return_to_service(LOW.alarm_id, user=USER, time_s=12.0)
    assert events[0].to_state is AlarmState.UNACK
    assert alarms.unacknowledged_since(LOW.alarm_id) == 12.0


def test_dependent_alarm_suppressed_while_parent_active() -> None:
    alarms, _ = manager()
    events = alarms.update(GATEWAY.alarm_id, active=True, time_s=10.0)
    # the dependent alarm is suppressed as soon as its parent is active, before it activates
    assert kinds(events) == [EventType.ACTIVATED, EventType.SUPPRESSED]
    assert (events[1].alarm_id, events[1].reason) == (FAULT.alarm_id, "GW1.offline is active")
    events = alarms.update(FAULT.alarm_id, active=True, time_s=11.0)
    assert kinds(events) == [EventType.ACTIVATED]
    assert not events[0].annunciation
    assert events[0].to_state is AlarmState.SUPPRESSED_BY_DESIGN
    events = alarms.update(GATEWAY.alarm_id, active=False, time_s=20.0)
    assert kinds(events) == [EventType.CLEARED, EventType.UNSUPPRESSED]
    assert events[-1].to_state is AlarmState.UNACK  # the fault is still there: presented now


# --- first out ----------------------------------------------------------------------------------


def test_first_out_per_zone_until_the_zone_is_normal() -> None:
    alarms, _ = manager()
    alarms.update(LOW8.alarm_id, active=True, time_s=10.0)
    alarms.update(LOW.alarm_id, active=True, time_s=11.0)
    alarms.update(OTHER_ZONE.alarm_id, active=True, time_s=12.0)
    assert alarms.alarm(LOW8.alarm_id).first_out
    assert not alarms.alarm(LOW.alarm_id).first_out
    assert alarms.alarm(OTHER_ZONE.alarm_id).first_out  # its own zone
    for alarm_id in (LOW8.alarm_id, LOW.alarm_id):
        alarms.update(alarm_id, active=False, time_s=20.0)
    events = alarms.acknowledge(LOW8.alarm_id, user=USER, time_s=21.0)
    assert EventType.FIRST_OUT_CLEARED not in kinds(events)  # GD07 low still unacknowledged
    events = alarms.acknowledge(LOW.alarm_id, user=USER, time_s=22.0)
    assert kinds(events) == [EventType.ACKNOWLEDGED, EventType.FIRST_OUT_CLEARED]
    assert events[-1].alarm_id == LOW8.alarm_id
    alarms.update(LOW.alarm_id, active=True, time_s=30.0)
    assert alarms.alarm(LOW.alarm_id).first_out


# --- flood --------------------------------------------------------------------------------------


def test_flood_starts_above_10_in_10_minutes_and_ends_below_5() -> None:
    alarms, journal = manager()
    fillers = flood_filler(11)
    for definition in fillers:
        alarms.register(definition, time_s=0.0)
    for index, definition in enumerate(fillers[:10]):
        assert EventType.FLOOD_STARTED not in kinds(
            alarms.update(definition.alarm_id, active=True, time_s=float(index))
        )
    # hand-worked: the 11th annunciation in (t - 600 s, t] starts the flood at t = 10 s
    events = alarms.update(fillers[10].alarm_id, active=True, time_s=10.0)
    assert kinds(events) == [EventType.ACTIVATED, EventType.FLOOD_STARTED]
    assert events[-1].time_s == 10.0
    assert alarms.flood_active
    # annunciations at 0..10 s: fewer than 5 remain once the one at 6 s ages out: 606 s
    assert alarms.tick(605.9) == []
    events = alarms.tick(1000.0)
    assert [(e.event, e.time_s) for e in events] == [(EventType.FLOOD_ENDED, 606.0)]
    assert not alarms.snapshot().flood_active
    report = alarm_kpis(journal.events(), start_s=0.0, end_s=1200.0)
    assert report.floods == 1
    assert report.flood_time_fraction == pytest.approx((606.0 - 10.0) / 1200.0)
    assert report.peak_10_minute_count == 11


def test_flood_suppresses_dependent_lower_priority_alarms_and_releases_them() -> None:
    alarms, _ = manager()
    fillers = flood_filler(10)
    for definition in fillers:
        alarms.register(definition, time_s=0.0)
    alarms.update(SUSPECTED.alarm_id, active=True, time_s=1.0)
    alarms.update(LOW.alarm_id, active=True, time_s=2.0)
    for definition in fillers[:9]:
        alarms.update(definition.alarm_id, active=True, time_s=3.0)
    # 11 annunciations so far: flood; GD07 low (medium) depends on the zone's suspected leak (high)
    assert alarms.flood_active
    assert alarms.alarm(LOW.alarm_id).suppressed
    # a new low alarm in the zone during the flood is suppressed before it annunciates
    assert alarms.alarm(LOW8.alarm_id).suppressed  # suppressed while still inactive
    events = alarms.update(LOW8.alarm_id, active=True, time_s=4.0)
    assert kinds(events) == [EventType.ACTIVATED]
    assert not events[0].annunciation
    # the high alarm (same priority as the parent) is never suppressed
    assert alarms.update(HIGH.alarm_id, active=True, time_s=5.0)[0].annunciation
    assert not alarms.alarm(HIGH.alarm_id).suppressed
    # shown on demand while suppressed
    suppressed = [a.alarm_id for a in alarms.snapshot().alarms if a.suppressed]
    assert suppressed == [LOW.alarm_id, LOW8.alarm_id]  # sorted by id
    events = alarms.tick(2000.0)
    assert kinds(events)[0] is EventType.FLOOD_ENDED
    released = {e.alarm_id: e.to_state for e in events if e.event is EventType.UNSUPPRESSED}
    assert released == {LOW.alarm_id: AlarmState.UNACK, LOW8.alarm_id: AlarmState.UNACK}
    releases = [e for e in events if e.event is EventType.UNSUPPRESSED]
    assert not any(e.annunciation for e in releases)  # not new occurrences: no re-flood


# --- replay -------------------------------------------------------------------------------------


def test_replay_rebuilds_the_same_manager_and_refuses_a_damaged_journal() -> None:
    alarms, journal = manager()
    alarms.update(HIGH.alarm_id, active=True, time_s=10.0)
    alarms.update(HIGH.alarm_id, active=False, time_s=11.0)
    alarms.shelve(
        LOW.alarm_id, user=USER, reason="r", time_s=12.0, mode=ShelveMode.TIMED, duration_s=50.0
    )
    restored = AlarmManager(MemoryJournal(journal.events()))
    assert restored.snapshot() == alarms.snapshot()
    events = journal.events()
    with pytest.raises(JournalReplayError, match="expected sequence"):
        AlarmManager(MemoryJournal_unchecked(events[:3] + events[4:]))
    wrong = dataclasses.replace(events[-1], from_state=AlarmState.ACKED)
    with pytest.raises(JournalReplayError, match="from_state"):
        AlarmManager(MemoryJournal([*events[:-1], wrong]))


class MemoryJournal_unchecked:  # noqa: N801 - reads like the class it stands in for
    """A journal that hands back whatever it was given (to feed replay a gap)."""

    def __init__(self, events: list[AlarmEvent]) -> None:
        self._events = events

    def append(self, events: Sequence[AlarmEvent]) -> None:
        raise AssertionError(f"not used: {events!r}")

    def events(self) -> list[AlarmEvent]:
        return self._events


# --- property: random operation sequences ---------------------------------------------------------

ALARM_IDS = [d.alarm_id for d in ALL]
OPERATIONS = st.tuples(
    st.sampled_from(
        ["on"] * 8
        + ["off"] * 8
        + ["ack"] * 3
        + ["reset"] * 2
        + ["rts"] * 3
        + ["unshelve"] * 2
        + ["shelve", "oos", "comment", "tick"]
    ),
    st.sampled_from(ALARM_IDS),
    st.sampled_from([0.0, 0.0, 0.5, 1.0, 1.0, 7.0, 30.0, 700.0]),  # time step [s]
    st.sampled_from([None, 10.0, 60.0, 1e6]),  # shelve duration [s]; 1e6 is above the maximum
)


def run_operation(
    alarms: AlarmManager, operation: tuple[str, str, float, float | None], time_s: float
) -> list[AlarmEvent]:
    kind, alarm_id, _, duration_s = operation
    mode = ShelveMode.ONE_SHOT if duration_s is None else ShelveMode.TIMED
    actions: dict[str, Callable[[], list[AlarmEvent]]] = {
        "on": lambda: alarms.update(alarm_id, active=True, time_s=time_s, value=time_s),
        "off": lambda: alarms.update(alarm_id, active=False, time_s=time_s, value=time_s),
        "ack": lambda: alarms.acknowledge(alarm_id, user=USER, time_s=time_s),
        "shelve": lambda: alarms.shelve(
            alarm_id, user=USER, reason="test", time_s=time_s, mode=mode, duration_s=duration_s
        ),
        "unshelve": lambda: alarms.unshelve(alarm_id, user=USER, time_s=time_s),
        "reset": lambda: alarms.reset(alarm_id, user=USER, time_s=time_s),
        "oos": lambda: alarms.remove_from_service(
            alarm_id, user=USER, reason="test", time_s=time_s
        ),
        "rts": lambda: alarms.return_to_service(alarm_id, user=USER, time_s=time_s),
        "comment": lambda: alarms.comment(alarm_id, user=USER, text="note", time_s=time_s),
        "tick": lambda: alarms.tick(time_s),
    }
    return actions[kind]()


# A small flood threshold, so that random sequences reach floods.
SMALL_FLOODS = AlarmPolicy(flood_start_above_count=4, flood_end_below_count=2)


def annunciations_in_window(events: list[AlarmEvent], time_s: float) -> int:
    return sum(1 for e in events if e.annunciation and time_s - 600.0 < e.time_s <= time_s)


def check_invariants(alarms: AlarmManager, events: list[AlarmEvent]) -> None:
    policy = alarms.policy
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    times = np.asarray([e.time_s for e in events])
    assert np.all(np.diff(times) >= 0)
    snapshot = alarms.snapshot()
    zones: dict[str, int] = {}
    for alarm in snapshot.alarms:
        record = alarm.record
        if alarm.first_out and alarm.definition.zone is not None:
            zones[alarm.definition.zone] = zones.get(alarm.definition.zone, 0) + 1
        if record.latched:
            assert alarm.definition.latching
        if alarm.state in {AlarmState.UNACK, AlarmState.ACKED}:
            assert record.active
        since = alarms.unacknowledged_since(alarm.alarm_id)
        assert (since is not None) == (
            alarm.state in {AlarmState.UNACK, AlarmState.RTN_UNACK, AlarmState.LATCHED_UNACK}
        )
    assert all(count == 1 for count in zones.values())  # at most one first-out per zone
    for event in events:
        if event.event is EventType.FLOOD_STARTED:
            count = annunciations_in_window(events, event.time_s)
            assert count > policy.flood_start_above_count
        elif event.event is EventType.FLOOD_ENDED:
            assert annunciations_in_window(events, event.time_s) < policy.flood_end_below_count
        if event.alarm_id is not None and event.event is not EventType.REGISTERED:
            after = event.record
            assert after is not None
            assert after.state is event.to_state


@settings(max_examples=150, deadline=None)
@given(st.lists(OPERATIONS, min_size=1, max_size=80))
def test_random_sequences_replay_exactly(
    operations: list[tuple[str, str, float, float | None]],
) -> None:
    alarms, journal = manager(SMALL_FLOODS)
    time_s = 0.0
    for operation in operations:
        time_s += operation[2]
        before, entries = alarms.snapshot(), len(journal.events())
        try:
            events = run_operation(alarms, operation, time_s)
        except IllegalActionError:
            assert alarms.snapshot() == before  # a refused action changes nothing
            assert len(journal.events()) == entries
            continue
        assert journal.events()[entries:] == events
    check_invariants(alarms, journal.events())
    restored = AlarmManager(MemoryJournal(journal.events()), policy=SMALL_FLOODS)
    assert restored.tick(alarms.time_s) == []  # nothing was pending
    assert restored.snapshot() == alarms.snapshot()


def test_batched_conditions_are_one_all_or_nothing_call() -> None:
    alarms, journal = manager()
    entries = len(journal.events())
    with pytest.raises(UnknownAlarmError):
        alarms.apply(
            [
                Condition(LOW.alarm_id, True, 10.0),
                Condition("unregistered", True, 10.0),
            ]
        )
    assert len(journal.events()) == entries
    assert not alarms.alarm(LOW.alarm_id).active
    events = alarms.apply(
        [Condition(LOW.alarm_id, True, 10.0), Condition(LOW8.alarm_id, True, 10.0)]
    )
    assert [e.alarm_id for e in events] == [LOW.alarm_id, LOW8.alarm_id]


# --- KPIs ---------------------------------------------------------------------------------------


def test_kpis_hand_worked_chattering_alarm() -> None:
    alarms, journal = manager()
    # GD07 low chatters: on at 0, 20, 40 s (3 in one minute), each on for 10 s, gaps of 10 s.
    for start in (100.0, 120.0, 140.0):
        alarms.update(LOW.alarm_id, active=True, time_s=start)
        alarms.update(LOW.alarm_id, active=False, time_s=start + 10.0)
    # GD08 low: once, still active after more than 24 h at the end of the window
    alarms.update(LOW8.alarm_id, active=True, time_s=200.0)
    alarms.shelve(
        OTHER_ZONE.alarm_id, user=USER, reason="r", time_s=300.0, mode=ShelveMode.ONE_SHOT
    )
    alarms.acknowledge(LOW.alarm_id, user=USER, time_s=400.0)
    end_s = 200.0 + 25 * 3600.0
    report = alarm_kpis(journal.events(), start_s=0.0, end_s=end_s, top=5)
    assert report.annunciations == 4
    assert report.alarms_per_hour == pytest.approx(4 * 3600.0 / end_s)
    assert report.alarms_per_10_minutes == pytest.approx(4 * 600.0 / end_s)
    assert report.acceptable_per_10_minutes == 1.0
    assert report.peak_10_minute_count == 4  # 100, 120, 140, 200 s all within 600 s
    assert report.floods == 0
    assert report.flood_time_fraction == 0.0
    assert report.chattering_alarms == 1
    top = report.bad_actors[0]
    assert (top.alarm_id, top.annunciations, top.peak_per_chatter_window, top.chattering) == (
        LOW.alarm_id,
        3,
        3,
        True,
    )
    # gaps of 10 s: the next ladder value above 10 s is 15 s; it merges both repeats
    assert (top.suggested_off_delay_s, top.annunciations_merged_by_off_delay) == (15.0, 2)
    # activations of 10 s: an on-delay of 15 s would have removed all three
    assert (top.suggested_on_delay_s, top.annunciations_removed_by_on_delay) == (15.0, 3)
    assert [(s.alarm_id, s.active_since_s) for s in report.stale_alarms] == [(LOW8.alarm_id, 200.0)]
    assert report.shelved_at_end == (OTHER_ZONE.alarm_id,)
    assert report.shelve_actions == 1
    assert report.acknowledgements == 1
    data = report.as_json_dict()
    assert data["bad_actors"][0]["alarm_id"] == LOW.alarm_id  # type: ignore[index,call-overload]
    assert data["shelved_at_end"] == [OTHER_ZONE.alarm_id]
    # the window matters: the same history before 24 h has no stale alarm
    assert alarm_kpis(journal.events(), start_s=0.0, end_s=1000.0).stale_alarms == ()


def test_kpis_refuse_an_empty_window() -> None:
    with pytest.raises(AlarmError, match="end_s"):
        alarm_kpis([], start_s=10.0, end_s=10.0)
