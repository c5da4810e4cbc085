"""The alarm lifecycle of one site (ISA-18.2 / IEC 62682) over an append-only journal.

An :class:`AlarmManager` holds every alarm of a site: its static :class:`AlarmDefinition` (kind,
priority, device, zone, latching, the alarms it depends on) and its dynamic :class:`AlarmRecord`
(condition active, acknowledged, latched, shelved, suppressed by design, out of service, first
out). Detection feeds condition updates (:meth:`AlarmManager.update`, :meth:`AlarmManager.apply`);
operators act (acknowledge, shelve, unshelve, reset, out of service, comment); time passes
(:meth:`AlarmManager.tick`). Every call returns the :class:`AlarmEvent` entries it produced, after
they were appended, in one batch, to the journal (:class:`AlarmJournal`): either the whole call is
journaled and applied, or nothing is (an illegal action raises :class:`IllegalActionError` and
leaves the manager unchanged).

Each journal entry of an alarm carries the alarm's full record *after* the entry, so a manager
built on an existing journal (restart) replays those records and comes back exactly as it was,
independent of the policy or code in force when the entries were written. Replay checks that the
sequence numbers are contiguous, the times non-decreasing and each entry's ``from_state`` equal to
the state the previous entries left, and refuses a journal that disagrees
(:class:`JournalReplayError`).

States (ISA-18.2-2016 fig. 7, "alarm state transition diagram"): ``NORMAL``, ``UNACK`` (active,
unacknowledged), ``ACKED`` (active, acknowledged), ``RTN_UNACK`` (returned to normal,
unacknowledged), ``LATCHED_UNACK`` / ``LATCHED_ACKED`` (a latching alarm whose condition cleared,
waiting for an operator reset), and the three inhibited states ``SHELVED``, ``SUPPRESSED_BY_DESIGN``
and ``OUT_OF_SERVICE`` (precedence in that order: out of service, shelved, suppressed). An
inhibited alarm is still tracked (its condition, value and times are kept and shown on demand) but
is not annunciated; when the last inhibition ends it is presented again: ``UNACK`` if its
condition is active, its latched state if it latched before, else ``NORMAL``.

This module is pure: no I/O, no clock. Times are given by the caller [s since the Unix epoch] and
must not decrease from one call to the next. The SQLite journal is
:class:`pipesentinel.ingest.storage.journal.SqliteAlarmJournal`; ``docs/alarm-lifecycle.md``
describes the rules and the journal.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Final, Protocol, TypeAlias, TypeVar

import numpy as np

from pipesentinel.detection._arrays import FloatArray

__all__ = [
    "CHATTER_COUNT",
    "CHATTER_WINDOW_S",
    "DEFAULT_MAX_SHELVE_S",
    "DELAY_LADDER_S",
    "FLOOD_END_BELOW_COUNT",
    "FLOOD_START_ABOVE_COUNT",
    "FLOOD_WINDOW_S",
    "RULE_OF_THUMB_DELAY_S",
    "STALE_AFTER_S",
    "STEADY_STATE_ACCEPTABLE_PER_10_MINUTES",
    "SYSTEM_USER",
    "AlarmDefinition",
    "AlarmError",
    "AlarmEvent",
    "AlarmJournal",
    "AlarmKind",
    "AlarmKpiReport",
    "AlarmManager",
    "AlarmPolicy",
    "AlarmRecord",
    "AlarmSnapshot",
    "AlarmState",
    "BadActor",
    "Condition",
    "EventType",
    "IllegalActionError",
    "JournalReplayError",
    "JsonValue",
    "ManagerSnapshot",
    "MemoryJournal",
    "Priority",
    "ShelveMode",
    "StaleAlarm",
    "SuppressionMode",
    "UnknownAlarmError",
    "alarm_kpis",
]

JsonValue: TypeAlias = "bool | int | float | str | list[JsonValue] | dict[str, JsonValue] | None"

# --- Cited alarm-management figures ------------------------------------------------------------

FLOOD_WINDOW_S: Final = 600.0
"""Window over which the flood rate is counted: 10 minutes [s]. ISA-18.2-2016 (IEC 62682:2014)
sec. 16.5 and Table 5 ("alarm flood: 10 or more alarms in 10 minutes per operator"); EEMUA 191
(3rd ed., 2013) uses the same 10-minute window for its flood and peak-rate figures."""

FLOOD_START_ABOVE_COUNT: Final = 10
"""A flood starts when MORE than this many alarms annunciate in :data:`FLOOD_WINDOW_S` [1]
(the brief: "more than 10 alarm annunciations in 10 minutes"; ISA-18.2-2016 Table 5 and EEMUA 191
put the flood threshold at about 10 alarms per 10 minutes per operator)."""

FLOOD_END_BELOW_COUNT: Final = 5
"""A flood ends when FEWER than this many annunciations remain in :data:`FLOOD_WINDOW_S` [1]: the
hysteresis of Hollifield & Habibi, *The Alarm Management Handbook* (2nd ed., PAS, 2010), "a flood
begins when the rate exceeds 10 alarms per 10 minutes and ends when it drops below 5", also used
in the flood analysis of ISA-TR18.2.5-2012. (Quoted from memory of those texts: check against the
documents before relying on the exact figure.)"""

STEADY_STATE_ACCEPTABLE_PER_10_MINUTES: Final = 1.0
"""Average alarm rate in steady operation rated "very likely to be acceptable" [per 10 min]:
EEMUA 191 (3rd ed., 2013) Table 35 (about 1 alarm per 10 minutes; 2 per 10 minutes "manageable",
more than 5 "very likely to be unacceptable"); ISA-18.2-2016 Table 5: ~6 per hour (~1 per 10 min)
acceptable, ~12 per hour maximum manageable."""

CHATTER_WINDOW_S: Final = 60.0
"""Window of the chattering test [s]: ISA-18.2-2016 sec. 16.6 / ISA-TR18.2.5-2012 count an alarm
as chattering when it annunciates :data:`CHATTER_COUNT` or more times in one minute."""

CHATTER_COUNT: Final = 3
"""Annunciations in :data:`CHATTER_WINDOW_S` that make an alarm chattering [1] (same source)."""

STALE_AFTER_S: Final = 24 * 3600.0
"""An alarm continuously active longer than this is stale [s]: ISA-18.2-2016 Table 5 note and
EEMUA 191 ("standing/stale alarm: in the alarm state for more than 24 hours")."""

RULE_OF_THUMB_DELAY_S: Final = {"flow": 15.0, "level": 60.0, "pressure": 15.0, "temperature": 60.0}
"""Recommended starting on-/off-delays by signal type [s]: ISA-TR18.2.3-2015 (Basic alarm design)
Table and EEMUA 191 (3rd ed.) Table A6.1 (deadbands 5 %, 5 %, 2 %, 1 % of range respectively).
Gas concentration is not in the table; PipeSentinel ladders its suggestions up to the largest
entry (60 s)."""

DELAY_LADDER_S: Final = (1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0)
"""The delays a suggestion is rounded up to [s]: round values up to the largest rule-of-thumb
delay of :data:`RULE_OF_THUMB_DELAY_S`. A chatter that needs more is a design problem, not a
delay setting."""

DEFAULT_MAX_SHELVE_S: Final = 8 * 3600.0
"""Longest timed shelve allowed by default [s]: one operator shift. ISA-18.2-2016 sec. 11.4 requires
the alarm philosophy to set a maximum shelving time; the value is the site's choice (pass
:class:`AlarmPolicy` from the settings)."""

DEFAULT_TOP_BAD_ACTORS: Final = 10  # EEMUA 191 and ISA-18.2 report the "top 10 most frequent"

SYSTEM_USER: Final = "system"
"""The user recorded for transitions made by the manager's own logic (flood, suppression,
expiry)."""

DETECTION_USER: Final = "detection"
"""The default user recorded for condition updates from the detection engine."""

SECONDS_PER_HOUR: Final = 3600.0

# --- Vocabulary --------------------------------------------------------------------------------


class AlarmKind(StrEnum):
    """What an alarm is about."""

    GAS = "gas"
    RATE_OF_RISE = "rate_of_rise"
    FAULT = "fault"
    SUSPECTED_LEAK = "suspected_leak"
    CONFIRMED_LEAK = "confirmed_leak"
    SYSTEM = "system"
    FIRE = "fire"  # a hot spot seen by a thermal camera
    INTRUSION = "intrusion"  # activity in a pipeline's right-of-way seen by a camera


ZONE_PARENT_KINDS: Final = frozenset({AlarmKind.SUSPECTED_LEAK, AlarmKind.CONFIRMED_LEAK})
ZONE_CHILD_KINDS: Final = frozenset({AlarmKind.GAS, AlarmKind.RATE_OF_RISE})


class Priority(StrEnum):
    """Alarm priority (ISA-18.2 sec. 6.5: three or four priorities)."""

    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


PRIORITY_RANK: Final = {Priority.LOW: 0, Priority.MEDIUM: 1, Priority.HIGH: 2, Priority.CRITICAL: 3}


class AlarmState(StrEnum):
    """ISA-18.2 alarm states, with the latched states of latching alarms."""

    NORMAL = "normal"
    UNACK = "unack"
    ACKED = "acked"
    RTN_UNACK = "rtn_unack"
    LATCHED_UNACK = "latched_unack"
    LATCHED_ACKED = "latched_acked"
    SHELVED = "shelved"
    SUPPRESSED_BY_DESIGN = "suppressed_by_design"
    OUT_OF_SERVICE = "out_of_service"


UNACKNOWLEDGED_STATES: Final = frozenset(
    {AlarmState.UNACK, AlarmState.RTN_UNACK, AlarmState.LATCHED_UNACK}
)
LATCHED_STATES: Final = frozenset({AlarmState.LATCHED_UNACK, AlarmState.LATCHED_ACKED})


class ShelveMode(StrEnum):
    """One-shot: until the alarm next returns to normal; timed: until the given time."""

    ONE_SHOT = "one_shot"
    TIMED = "timed"


class SuppressionMode(StrEnum):
    """When an alarm is suppressed by design while one of the alarms it depends on is active."""

    ALWAYS = "always"  # e.g. device faults behind a failed gateway
    FLOOD = "flood"  # only during an alarm flood (the default)


class EventType(StrEnum):
    """Kinds of journal entry."""

    REGISTERED = "registered"
    REDEFINED = "redefined"
    ACTIVATED = "activated"
    CLEARED = "cleared"
    ACKNOWLEDGED = "acknowledged"
    RESET = "reset"
    SHELVED = "shelved"
    UNSHELVED = "unshelved"
    SHELVE_EXPIRED = "shelve_expired"
    SHELVE_ENDED = "shelve_ended"  # one-shot shelve ended: the alarm returned to normal
    SUPPRESSED = "suppressed"
    UNSUPPRESSED = "unsuppressed"
    REMOVED_FROM_SERVICE = "removed_from_service"
    RETURNED_TO_SERVICE = "returned_to_service"
    COMMENT = "comment"
    FIRST_OUT_CLEARED = "first_out_cleared"
    FLOOD_STARTED = "flood_started"
    FLOOD_ENDED = "flood_ended"


SITE_EVENTS: Final = frozenset({EventType.FLOOD_STARTED, EventType.FLOOD_ENDED})

# --- Errors ------------------------------------------------------------------------------------


class AlarmError(ValueError):
    """Bad input to the alarm manager; the manager is unchanged and nothing was journaled."""


class UnknownAlarmError(AlarmError):
    """The alarm id is not registered."""


class IllegalActionError(AlarmError):
    """An operator action that the alarm's state does not allow."""

    def __init__(self, action: str, alarm_id: str, state: AlarmState, why: str) -> None:
        super().__init__(f"{action} {alarm_id!r}: refused in state {state.value}: {why}")
        self.action = action
        self.alarm_id = alarm_id
        self.state = state


class JournalReplayError(AlarmError):
    """The journal cannot be replayed: a gap, a time going back, or a state that disagrees."""


# --- Static and dynamic alarm data ---------------------------------------------------------------

_E = TypeVar("_E", bound=StrEnum)


def _as_enum(enum: type[_E], value: object, name: str) -> _E:
    try:
        if not isinstance(value, str):
            raise ValueError(value)  # one message for a wrong type and a wrong value
        return enum(value)
    except ValueError as error:
        allowed = ", ".join(member.value for member in enum)
        raise AlarmError(f"{name}: {value!r} is not one of {allowed}") from error


def _require_text(value: object, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise AlarmError(f"{name} is required (a non-blank string), got {value!r}")
    return value


def _require_number(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise AlarmError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def _require_time(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise AlarmError(f"{name} must be a finite number of seconds, got {value!r}")
    return float(value)


@dataclass(frozen=True, slots=True)
class AlarmDefinition:
    """The static attributes of one alarm.

    Parameters
    ----------
    alarm_id
        Stable id, e.g. ``"GD07.methane.low"``, ``"zone.P1-S3.suspected_leak"`` [-].
    kind
        What the alarm is about [-].
    priority
        Its priority [-].
    device_id
        The device it belongs to, if any [-].
    zone
        The voting zone it belongs to, if any (first-out and flood suppression work per zone) [-].
    latching
        True for alarms that stay until reset after their condition cleared (HIGH gas alarms,
        confirmed leaks) [-].
    dependent_of
        Ids of the alarms this one depends on: while one of them is active (and neither shelved
        nor out of service) this alarm is suppressed by design, always or during a flood as
        ``suppression`` says [-]. Gas and rate-of-rise alarms of a zone also depend, during a
        flood, on the zone's suspected/confirmed leak alarms of higher priority, without listing
        them.
    suppression
        When the dependency suppresses [-].
    description
        Free text for displays [-].
    """

    alarm_id: str
    kind: AlarmKind
    priority: Priority
    device_id: str | None = None
    zone: str | None = None
    latching: bool = False
    dependent_of: tuple[str, ...] = ()
    suppression: SuppressionMode = SuppressionMode.FLOOD
    description: str = ""

    def __post_init__(self) -> None:
        _require_text(self.alarm_id, "alarm_id")
        if self.alarm_id != self.alarm_id.strip():
            raise AlarmError(f"alarm_id {self.alarm_id!r} has leading or trailing blanks")
        object.__setattr__(self, "kind", _as_enum(AlarmKind, self.kind, f"{self.alarm_id}.kind"))
        object.__setattr__(
            self, "priority", _as_enum(Priority, self.priority, f"{self.alarm_id}.priority")
        )
        object.__setattr__(
            self,
            "suppression",
            _as_enum(SuppressionMode, self.suppression, f"{self.alarm_id}.suppression"),
        )
        object.__setattr__(self, "dependent_of", tuple(self.dependent_of))
        for parent in self.dependent_of:
            _require_text(parent, f"{self.alarm_id}.dependent_of")
        if self.alarm_id in self.dependent_of:
            raise AlarmError(f"alarm {self.alarm_id!r} cannot depend on itself")
        for name in ("device_id", "zone"):
            value = getattr(self, name)
            if value is not None:
                _require_text(value, f"{self.alarm_id}.{name}")

    def as_dict(self) -> dict[str, JsonValue]:
        """The definition as JSON-ready values."""
        return {
            "alarm_id": self.alarm_id,
            "kind": self.kind.value,
            "priority": self.priority.value,
            "device_id": self.device_id,
            "zone": self.zone,
            "latching": self.latching,
            "dependent_of": list(self.dependent_of),
            "suppression": self.suppression.value,
            "description": self.description,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, JsonValue]) -> AlarmDefinition:
        """The definition from :meth:`as_dict` values; :class:`AlarmError` if malformed."""
        expected = {item.name for item in dataclasses.fields(cls)}
        if set(data) != expected:
            raise AlarmError(
                f"alarm definition: keys {sorted(data)} differ from {sorted(expected)}"
            )
        parents = data["dependent_of"]
        if not isinstance(parents, list) or not all(isinstance(p, str) for p in parents):
            raise AlarmError(f"alarm definition: dependent_of must be a list of ids: {parents!r}")
        latching = data["latching"]
        if not isinstance(latching, bool):
            raise AlarmError(f"alarm definition: latching must be a boolean: {latching!r}")
        return cls(
            alarm_id=_require_text(data["alarm_id"], "alarm definition alarm_id"),
            kind=_as_enum(AlarmKind, data["kind"], "alarm definition kind"),
            priority=_as_enum(Priority, data["priority"], "alarm definition priority"),
            device_id=_optional_text(data["device_id"], "device_id"),
            zone=_optional_text(data["zone"], "zone"),
            latching=latching,
            dependent_of=tuple(str(p) for p in parents),
            suppression=_as_enum(SuppressionMode, data["suppression"], "suppression"),
            description=str(data["description"]),
        )


def _optional_text(value: JsonValue, name: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise AlarmError(f"{name}: expected a string or null, got {value!r}")


@dataclass(frozen=True, slots=True)
class AlarmRecord:
    """The dynamic state of one alarm; :attr:`state` is derived from these fields.

    ``value`` and ``detail`` are those reported with the last condition CHANGE (a condition update
    that changes nothing is not journaled and does not update them). Times are [s].
    """

    active: bool = False
    acknowledged: bool = True
    latched: bool = False
    first_out: bool = False
    active_since_s: float | None = None
    unacknowledged_since_s: float | None = None
    last_change_s: float | None = None
    value: float | None = None
    detail: str = ""
    shelve_mode: ShelveMode | None = None
    shelved_by: str | None = None
    shelve_reason: str | None = None
    shelved_since_s: float | None = None
    shelved_until_s: float | None = None
    suppressed_reason: str | None = None
    suppressed_since_s: float | None = None
    out_of_service_by: str | None = None
    out_of_service_reason: str | None = None
    out_of_service_since_s: float | None = None

    @property
    def shelved(self) -> bool:
        """Shelved by an operator."""
        return self.shelve_mode is not None

    @property
    def suppressed(self) -> bool:
        """Suppressed by design."""
        return self.suppressed_reason is not None

    @property
    def out_of_service(self) -> bool:
        """Removed from service by an operator."""
        return self.out_of_service_by is not None

    @property
    def inhibited(self) -> bool:
        """Shelved, suppressed or out of service: tracked but not annunciated."""
        return self.shelved or self.suppressed or self.out_of_service

    @property
    def base_state(self) -> AlarmState:
        """The state from the condition, acknowledgement and latch alone."""
        if self.active:
            return AlarmState.ACKED if self.acknowledged else AlarmState.UNACK
        if self.latched:
            return AlarmState.LATCHED_ACKED if self.acknowledged else AlarmState.LATCHED_UNACK
        return AlarmState.NORMAL if self.acknowledged else AlarmState.RTN_UNACK

    @property
    def state(self) -> AlarmState:
        """The ISA-18.2 state shown to the operator."""
        if self.out_of_service:
            return AlarmState.OUT_OF_SERVICE
        if self.shelved:
            return AlarmState.SHELVED
        if self.suppressed:
            return AlarmState.SUPPRESSED_BY_DESIGN
        return self.base_state

    def as_dict(self) -> dict[str, JsonValue]:
        """The record as JSON-ready values."""
        result: dict[str, JsonValue] = {}
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            result[item.name] = value.value if isinstance(value, StrEnum) else value
        return result

    @classmethod
    def from_dict(cls, data: Mapping[str, JsonValue]) -> AlarmRecord:
        """The record from :meth:`as_dict` values; :class:`AlarmError` if malformed."""
        fields = {item.name: item for item in dataclasses.fields(cls)}
        if set(data) != set(fields):
            raise AlarmError(f"alarm record: keys {sorted(data)} differ from {sorted(fields)}")
        values: dict[str, object] = {}
        for name, value in data.items():
            default = fields[name].default
            if name == "shelve_mode":
                values[name] = None if value is None else _as_enum(ShelveMode, value, name)
            elif isinstance(default, bool):
                if not isinstance(value, bool):
                    raise AlarmError(f"alarm record: {name} must be a boolean, got {value!r}")
                values[name] = value
            elif name.endswith("_s") or name == "value":
                values[name] = None if value is None else _require_number(value, name)
            else:
                values[name] = _optional_text(value, name) if default is None else str(value)
        return cls(**values)  # type: ignore[arg-type]  # each value checked against its field


@dataclass(frozen=True, slots=True)
class AlarmSnapshot:
    """One alarm as shown: its definition, its record and the derived state."""

    definition: AlarmDefinition
    record: AlarmRecord

    @property
    def alarm_id(self) -> str:
        """The alarm's id."""
        return self.definition.alarm_id

    @property
    def state(self) -> AlarmState:
        """The ISA-18.2 state."""
        return self.record.state

    @property
    def active(self) -> bool:
        """The condition is active."""
        return self.record.active

    @property
    def acknowledged(self) -> bool:
        """Acknowledged (or never needed to be)."""
        return self.record.acknowledged

    @property
    def shelved(self) -> bool:
        """Shelved by an operator."""
        return self.record.shelved

    @property
    def suppressed(self) -> bool:
        """Suppressed by design."""
        return self.record.suppressed

    @property
    def out_of_service(self) -> bool:
        """Out of service."""
        return self.record.out_of_service

    @property
    def first_out(self) -> bool:
        """The first alarm of its zone since the zone was last all normal."""
        return self.record.first_out

    @property
    def last_change_s(self) -> float | None:
        """Time of the last journaled change [s]."""
        return self.record.last_change_s

    @property
    def value(self) -> float | None:
        """The value reported with the last condition change (unit set by the alarm) [-]."""
        return self.record.value

    def as_dict(self) -> dict[str, JsonValue]:
        """Definition, record and state as JSON-ready values (for the API)."""
        return {
            "definition": self.definition.as_dict(),
            "record": self.record.as_dict(),
            "state": self.state.value,
        }


@dataclass(frozen=True, slots=True)
class ManagerSnapshot:
    """Everything the manager knows; two managers with equal snapshots behave identically."""

    time_s: float
    sequence: int
    flood_since_s: float | None
    recent_annunciations_s: tuple[float, ...]
    alarms: tuple[AlarmSnapshot, ...]

    @property
    def flood_active(self) -> bool:
        """An alarm flood is in progress."""
        return self.flood_since_s is not None

    def alarm(self, alarm_id: str) -> AlarmSnapshot:
        """One alarm's snapshot; :class:`UnknownAlarmError` if absent."""
        for snapshot in self.alarms:
            if snapshot.alarm_id == alarm_id:
                return snapshot
        raise UnknownAlarmError(f"alarm {alarm_id!r} is not registered")


@dataclass(frozen=True, slots=True)
class AlarmEvent:
    """One journal entry: a transition, an operator action or a site event (flood).

    ``details`` holds ``"record"`` (the alarm's :meth:`AlarmRecord.as_dict` after the entry; for
    alarm entries), ``"definition"`` (registration), ``"metadata"`` (from detection) and
    event-specific values; it is JSON-ready. Times are [s]. ``annunciation`` is True when the
    entry presented a NEW alarm occurrence to the operator (what flood rates and KPIs count).
    """

    sequence: int
    time_s: float
    event: EventType
    alarm_id: str | None
    from_state: AlarmState | None
    to_state: AlarmState | None
    user: str | None
    reason: str | None
    value: float | None
    detail: str
    annunciation: bool
    details: dict[str, JsonValue] = field(default_factory=dict)

    @property
    def record(self) -> AlarmRecord | None:
        """The alarm's record after this entry, if it is an alarm entry."""
        data = self.details.get("record")
        if not isinstance(data, dict):
            return None
        return AlarmRecord.from_dict(data)


@dataclass(frozen=True, slots=True)
class Condition:
    """One condition update from detection (see :meth:`AlarmManager.update`)."""

    alarm_id: str
    active: bool
    time_s: float
    value: float | None = None
    detail: str = ""
    metadata: Mapping[str, JsonValue] | None = None
    definition: AlarmDefinition | None = None
    source: str = DETECTION_USER


@dataclass(frozen=True, slots=True)
class AlarmPolicy:
    """The site's alarm philosophy: shelve limit and flood thresholds.

    Parameters
    ----------
    max_shelve_s
        Longest timed shelve [s].
    flood_window_s
        Window of the flood rate [s].
    flood_start_above_count
        A flood starts with more annunciations than this in the window [1].
    flood_end_below_count
        A flood ends with fewer annunciations than this in the window [1].
    """

    max_shelve_s: float = DEFAULT_MAX_SHELVE_S
    flood_window_s: float = FLOOD_WINDOW_S
    flood_start_above_count: int = FLOOD_START_ABOVE_COUNT
    flood_end_below_count: int = FLOOD_END_BELOW_COUNT

    def __post_init__(self) -> None:
        for name in ("max_shelve_s", "flood_window_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise AlarmError(f"AlarmPolicy.{name} must be a positive number, got {value!r}")
        if not 1 <= self.flood_end_below_count <= self.flood_start_above_count:
            raise AlarmError(
                "AlarmPolicy: need 1 <= flood_end_below_count <= flood_start_above_count, got "
                f"{self.flood_end_below_count} and {self.flood_start_above_count}"
            )


# --- The journal interface -----------------------------------------------------------------------


class AlarmJournal(Protocol):
    """Where the manager appends its entries, and reads them back on start."""

    def append(self, events: Sequence[AlarmEvent]) -> None:
        """Store ``events`` durably, all or none; raise if they cannot be stored."""

    def events(self) -> Iterable[AlarmEvent]:
        """Every stored entry in sequence order."""


class MemoryJournal:
    """A journal in a list (tests, what-if runs); enforces contiguous sequence numbers."""

    def __init__(self, events: Iterable[AlarmEvent] = ()) -> None:
        self._events: list[AlarmEvent] = []
        self.append(list(events))

    def append(self, events: Sequence[AlarmEvent]) -> None:
        """Append ``events``; :class:`AlarmError` on a sequence gap (nothing appended then)."""
        expected = len(self._events) + 1
        for offset, event in enumerate(events):
            if event.sequence != expected + offset:
                raise AlarmError(
                    f"journal: entry sequence {event.sequence} where {expected + offset} was due"
                )
        self._events.extend(events)

    def events(self) -> list[AlarmEvent]:
        """Every entry in sequence order."""
        return list(self._events)


# --- Helpers -------------------------------------------------------------------------------------


def _check_json(value: object, name: str) -> JsonValue:
    """``value`` if it is JSON-ready (finite numbers, str keys); :class:`AlarmError` otherwise."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise AlarmError(f"{name}: {value!r} is not a finite number")
        return value
    if isinstance(value, list | tuple):
        return [_check_json(item, f"{name}[{index}]") for index, item in enumerate(value)]
    if isinstance(value, Mapping):
        result: dict[str, JsonValue] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise AlarmError(f"{name}: key {key!r} is not a string")
            result[key] = _check_json(item, f"{name}.{key}")
        return result
    raise AlarmError(f"{name}: {type(value).__name__} value {value!r} is not JSON-ready")


def _window_peak(times_s: FloatArray, window_s: float) -> int:
    """Largest number of ``times_s`` (sorted) in any half-open window ``(t - window_s, t]``."""
    if times_s.size == 0:
        return 0
    first_inside = np.searchsorted(times_s, times_s - window_s, side="right")
    last_inside = np.searchsorted(times_s, times_s, side="right")
    return int(np.max(last_inside - first_inside))


# --- The manager ---------------------------------------------------------------------------------


@dataclass(slots=True)
class _State:
    """The mutable core of the manager (copied for all-or-nothing calls)."""

    definitions: dict[str, AlarmDefinition] = field(default_factory=dict)
    records: dict[str, AlarmRecord] = field(default_factory=dict)
    flood_since_s: float | None = None
    annunciations_s: deque[float] = field(default_factory=deque)
    time_s: float = -math.inf
    sequence: int = 0

    def copy(self) -> _State:
        return _State(
            definitions=dict(self.definitions),
            records=dict(self.records),
            flood_since_s=self.flood_since_s,
            annunciations_s=deque(self.annunciations_s),
            time_s=self.time_s,
            sequence=self.sequence,
        )


class AlarmManager:
    """The alarms of one site, rebuilt from ``journal`` and appending to it.

    Parameters
    ----------
    journal
        The append-only journal; its existing entries are replayed first (restart).
    policy
        Shelve limit and flood thresholds (the site's alarm philosophy).

    Raises
    ------
    JournalReplayError
        When the journal's entries do not replay (gap, time going back, state mismatch).
    """

    def __init__(self, journal: AlarmJournal, *, policy: AlarmPolicy | None = None) -> None:
        self._journal = journal
        self.policy = AlarmPolicy() if policy is None else policy
        self._state = _State()
        self._pending: list[AlarmEvent] = []
        self._children: dict[str, list[str]] = {}
        self._zones: dict[str, list[str]] = {}
        for event in journal.events():
            self._replay(event)
        self._reindex()

    # --- queries ---------------------------------------------------------------------------------

    @property
    def time_s(self) -> float:
        """Time of the last call or journal entry [s] (-inf before any)."""
        return self._state.time_s

    @property
    def sequence(self) -> int:
        """Sequence number of the last journal entry (0 before any)."""
        return self._state.sequence

    @property
    def flood_active(self) -> bool:
        """An alarm flood is in progress."""
        return self._state.flood_since_s is not None

    def definition(self, alarm_id: str) -> AlarmDefinition:
        """The static attributes of ``alarm_id``."""
        self._require_known(alarm_id)
        return self._state.definitions[alarm_id]

    def alarm(self, alarm_id: str) -> AlarmSnapshot:
        """One alarm as shown."""
        self._require_known(alarm_id)
        return AlarmSnapshot(self._state.definitions[alarm_id], self._state.records[alarm_id])

    def alarms(self) -> tuple[AlarmSnapshot, ...]:
        """Every alarm, sorted by id."""
        state = self._state
        return tuple(
            AlarmSnapshot(state.definitions[alarm_id], state.records[alarm_id])
            for alarm_id in sorted(state.definitions)
        )

    def snapshot(self) -> ManagerSnapshot:
        """Everything the manager knows (compare two to check a replay)."""
        state = self._state
        horizon_s = state.time_s - self.policy.flood_window_s
        return ManagerSnapshot(
            time_s=state.time_s,
            sequence=state.sequence,
            flood_since_s=state.flood_since_s,
            recent_annunciations_s=tuple(t for t in state.annunciations_s if t > horizon_s),
            alarms=self.alarms(),
        )

    def unacknowledged_since(self, alarm_id: str) -> float | None:
        """Since when ``alarm_id`` has waited for an acknowledgement [s]; None if it is not.

        Inhibited alarms (shelved, suppressed, out of service) wait for nothing: None.
        """
        record = self.alarm(alarm_id).record
        if record.inhibited or record.base_state not in UNACKNOWLEDGED_STATES:
            return None
        return record.unacknowledged_since_s

    # --- inputs from detection -------------------------------------------------------------------

    def register(self, definition: AlarmDefinition, *, time_s: float) -> list[AlarmEvent]:
        """Register ``definition`` at ``time_s`` [s], journaled.

        The same definition again is a no-op; a changed one is journaled as ``redefined``.
        """
        return self._call(time_s, lambda: self._register(definition, time_s))

    def update(
        self,
        alarm_id: str,
        *,
        active: bool,
        time_s: float,
        value: float | None = None,
        detail: str = "",
        metadata: Mapping[str, JsonValue] | None = None,
        definition: AlarmDefinition | None = None,
        source: str = DETECTION_USER,
    ) -> list[AlarmEvent]:
        """One condition update from detection.

        Parameters
        ----------
        alarm_id
            The alarm [-].
        active
            Whether its condition holds now [-].
        time_s
            When [s].
        value
            The measured value that (de)activated it, in the alarm's own unit, e.g. the fraction
            of the LEL [1] [-].
        detail
            Free text (e.g. "23 %LEL (IEC 60079-20-1) >= 20 %LEL") [-].
        metadata
            JSON-ready extra data, journaled with the change [-].
        definition
            Registers the alarm on first use (required then) [-].
        source
            Who reported the condition [-].

        Returns
        -------
        list of AlarmEvent
            The journaled entries; empty when nothing changed (same condition again).
        """
        condition = Condition(
            alarm_id=alarm_id,
            active=active,
            time_s=time_s,
            value=value,
            detail=detail,
            metadata=metadata,
            definition=definition,
            source=source,
        )
        return self.apply([condition])

    def apply(self, conditions: Sequence[Condition]) -> list[AlarmEvent]:
        """Several condition updates, in order, as one journal batch.

        All must have the same ``time_s`` or non-decreasing times; the batch is applied and
        journaled entirely or not at all.
        """
        if not conditions:
            return []
        times = [_require_time(c.time_s, f"{c.alarm_id}: time_s") for c in conditions]
        for earlier, later in itertools.pairwise(times):
            if later < earlier:
                raise AlarmError(f"apply: condition times go back from {earlier!r} to {later!r}")

        def body() -> None:
            for condition in conditions:
                self._advance(condition.time_s)
                self._condition(condition)
                self._settle(condition.time_s)

        return self._call(times[-1], body, start_s=times[0])

    def tick(self, now_s: float) -> list[AlarmEvent]:
        """Let time pass to ``now_s`` [s]: timed shelves expire, a flood may end."""
        return self._call(now_s, lambda: None)

    # --- operator actions ------------------------------------------------------------------------

    def acknowledge(
        self, alarm_id: str, *, user: str, time_s: float, comment: str = ""
    ) -> list[AlarmEvent]:
        """Acknowledge ``alarm_id`` at ``time_s`` [s].

        UNACK -> ACKED, RTN_UNACK -> NORMAL, LATCHED_UNACK -> LATCHED_ACKED.
        """

        def body() -> None:
            record = self._operable("acknowledge", alarm_id, user)
            if record.base_state not in UNACKNOWLEDGED_STATES:
                raise IllegalActionError(
                    "acknowledge", alarm_id, record.state, "there is nothing to acknowledge"
                )
            new = replace(record, acknowledged=True, unacknowledged_since_s=None)
            self._set(alarm_id, new, EventType.ACKNOWLEDGED, time_s, user=user, reason=comment)

        return self._call(time_s, body)

    def reset(
        self, alarm_id: str, *, user: str, time_s: float, comment: str = ""
    ) -> list[AlarmEvent]:
        """Reset a latched alarm whose condition has cleared, at ``time_s`` [s]; acknowledges."""

        def body() -> None:
            record = self._operable("reset", alarm_id, user)
            if not self._state.definitions[alarm_id].latching:
                raise IllegalActionError(
                    "reset", alarm_id, record.state, "the alarm is not latching"
                )
            if record.active:
                raise IllegalActionError(
                    "reset", alarm_id, record.state, "its condition is still active"
                )
            if not record.latched:
                raise IllegalActionError("reset", alarm_id, record.state, "it is not latched")
            new = replace(record, latched=False, acknowledged=True, unacknowledged_since_s=None)
            self._set(alarm_id, new, EventType.RESET, time_s, user=user, reason=comment)

        return self._call(time_s, body)

    def shelve(
        self,
        alarm_id: str,
        *,
        user: str,
        reason: str,
        time_s: float,
        mode: ShelveMode,
        duration_s: float | None = None,
    ) -> list[AlarmEvent]:
        """Shelve ``alarm_id`` at ``time_s`` [s]; a reason is required.

        ``ONE_SHOT``: until it next returns to normal (no duration). ``TIMED``: for
        ``duration_s`` [s], 0 < duration <= ``policy.max_shelve_s``.
        """

        def body() -> None:
            record = self._operable("shelve", alarm_id, user, allow_inhibited=True)
            _require_reason("shelve", alarm_id, record, reason, "a reason")
            shelve_mode = _as_enum(ShelveMode, mode, f"shelve {alarm_id!r}: mode")
            if record.out_of_service or record.shelved:
                raise IllegalActionError(
                    "shelve", alarm_id, record.state, "it is already shelved or out of service"
                )
            until_s = self._shelve_until(alarm_id, record, shelve_mode, duration_s, time_s)
            new = replace(
                record,
                shelve_mode=shelve_mode,
                shelved_by=user,
                shelve_reason=reason,
                shelved_since_s=time_s,
                shelved_until_s=until_s,
            )
            self._set(
                alarm_id,
                new,
                EventType.SHELVED,
                time_s,
                user=user,
                reason=reason,
                extra={"mode": shelve_mode.value, "until_s": until_s},
            )

        return self._call(time_s, body)

    def _shelve_until(
        self,
        alarm_id: str,
        record: AlarmRecord,
        mode: ShelveMode,
        duration_s: float | None,
        time_s: float,
    ) -> float | None:
        if mode is ShelveMode.ONE_SHOT:
            if duration_s is not None:
                raise IllegalActionError(
                    "shelve", alarm_id, record.state, "a one-shot shelve takes no duration"
                )
            return None
        if duration_s is None:
            raise IllegalActionError(
                "shelve", alarm_id, record.state, "a timed shelve needs duration_s"
            )
        duration = _require_time(duration_s, f"shelve {alarm_id!r}: duration_s")
        if not 0 < duration <= self.policy.max_shelve_s:
            raise IllegalActionError(
                "shelve",
                alarm_id,
                record.state,
                f"duration_s={duration!r} is outside (0, {self.policy.max_shelve_s!r}] s "
                "(the maximum shelve time of the alarm policy)",
            )
        return time_s + duration

    def unshelve(
        self, alarm_id: str, *, user: str, time_s: float, reason: str = ""
    ) -> list[AlarmEvent]:
        """End a shelve early. ``time_s`` [s]."""

        def body() -> None:
            record = self._operable("unshelve", alarm_id, user, allow_inhibited=True)
            if not record.shelved:
                raise IllegalActionError("unshelve", alarm_id, record.state, "it is not shelved")
            self._end_shelve(alarm_id, EventType.UNSHELVED, time_s, user=user, reason=reason)

        return self._call(time_s, body)

    def remove_from_service(
        self, alarm_id: str, *, user: str, reason: str, time_s: float
    ) -> list[AlarmEvent]:
        """Take ``alarm_id`` out of service at ``time_s`` [s] (reason required); ends a shelve."""

        def body() -> None:
            record = self._operable("remove_from_service", alarm_id, user, allow_inhibited=True)
            _require_reason("remove_from_service", alarm_id, record, reason, "a reason")
            if record.out_of_service:
                raise IllegalActionError(
                    "remove_from_service", alarm_id, record.state, "it is already out of service"
                )
            new = replace(
                _without_shelve(record),
                out_of_service_by=user,
                out_of_service_reason=reason,
                out_of_service_since_s=time_s,
            )
            self._set(
                alarm_id, new, EventType.REMOVED_FROM_SERVICE, time_s, user=user, reason=reason
            )

        return self._call(time_s, body)

    def return_to_service(
        self, alarm_id: str, *, user: str, time_s: float, reason: str = ""
    ) -> list[AlarmEvent]:
        """Return an out-of-service alarm to service. ``time_s`` [s]."""

        def body() -> None:
            record = self._operable("return_to_service", alarm_id, user, allow_inhibited=True)
            if not record.out_of_service:
                raise IllegalActionError(
                    "return_to_service", alarm_id, record.state, "it is not out of service"
                )
            new = replace(
                record,
                out_of_service_by=None,
                out_of_service_reason=None,
                out_of_service_since_s=None,
            )
            new = self._present_if_released(alarm_id, new, time_s)
            self._set(
                alarm_id, new, EventType.RETURNED_TO_SERVICE, time_s, user=user, reason=reason
            )

        return self._call(time_s, body)

    def comment(self, alarm_id: str, *, user: str, text: str, time_s: float) -> list[AlarmEvent]:
        """Journal an operator comment on ``alarm_id``. ``time_s`` [s]."""

        def body() -> None:
            record = self._operable("comment", alarm_id, user, allow_inhibited=True)
            _require_reason("comment", alarm_id, record, text, "a text")
            self._set(alarm_id, record, EventType.COMMENT, time_s, user=user, reason=text)

        return self._call(time_s, body)

    # --- the transaction -------------------------------------------------------------------------

    def _call(
        self, time_s: float, body: Callable[[], None], *, start_s: float | None = None
    ) -> list[AlarmEvent]:
        """Run ``body`` at ``time_s`` all-or-nothing: journal its entries or restore the state."""
        end_s = _require_time(time_s, "time_s")
        first_s = end_s if start_s is None else start_s
        if first_s < self._state.time_s:
            raise AlarmError(
                f"time_s={first_s!r} is before the last alarm time {self._state.time_s!r}: "
                "alarm inputs must come in time order"
            )
        saved = self._state.copy()
        try:
            self._advance(first_s)
            body()
            self._advance(end_s)
            self._settle(end_s)
            self._state.time_s = end_s
            events = self._pending
            if events:
                self._journal.append(events)
        except BaseException:
            self._state = saved
            self._reindex()
            raise
        finally:
            self._pending = []
        return events

    def _emit(
        self,
        event: EventType,
        time_s: float,
        *,
        alarm_id: str | None = None,
        from_state: AlarmState | None = None,
        to_state: AlarmState | None = None,
        user: str | None = SYSTEM_USER,
        reason: str | None = None,
        value: float | None = None,
        detail: str = "",
        annunciation: bool = False,
        details: dict[str, JsonValue] | None = None,
    ) -> None:
        self._state.sequence += 1
        self._state.time_s = max(self._state.time_s, time_s)
        self._pending.append(
            AlarmEvent(
                sequence=self._state.sequence,
                time_s=time_s,
                event=event,
                alarm_id=alarm_id,
                from_state=from_state,
                to_state=to_state,
                user=user,
                reason=reason or None,
                value=value,
                detail=detail,
                annunciation=annunciation,
                details={} if details is None else details,
            )
        )

    def _set(
        self,
        alarm_id: str,
        new: AlarmRecord,
        event: EventType,
        time_s: float,
        *,
        user: str = SYSTEM_USER,
        reason: str | None = None,
        annunciation: bool = False,
        extra: Mapping[str, JsonValue] | None = None,
    ) -> None:
        """Store ``new`` for ``alarm_id`` and journal the change from its previous record."""
        old = self._state.records[alarm_id]
        if event is not EventType.COMMENT:
            new = replace(new, last_change_s=time_s)
        self._state.records[alarm_id] = new
        details: dict[str, JsonValue] = {"record": new.as_dict()}
        if extra:
            details.update(extra)
        self._emit(
            event,
            time_s,
            alarm_id=alarm_id,
            from_state=old.state,
            to_state=new.state,
            user=user,
            reason=reason,
            value=new.value,
            detail=new.detail,
            annunciation=annunciation,
            details=details,
        )
        if annunciation:
            self._annunciated(time_s)

    # --- rules -----------------------------------------------------------------------------------

    def _require_known(self, alarm_id: str) -> None:
        if alarm_id not in self._state.definitions:
            raise UnknownAlarmError(f"alarm {alarm_id!r} is not registered")

    def _operable(
        self, action: str, alarm_id: str, user: str, *, allow_inhibited: bool = False
    ) -> AlarmRecord:
        self._require_known(alarm_id)
        record = self._state.records[alarm_id]
        _require_reason(action, alarm_id, record, user, "a user (who acts)")
        if record.inhibited and not allow_inhibited:
            raise IllegalActionError(
                action, alarm_id, record.state, "the alarm is shelved, suppressed or out of service"
            )
        return record

    def _register(self, definition: AlarmDefinition, time_s: float) -> None:
        if not isinstance(definition, AlarmDefinition):
            raise AlarmError(f"register: expected an AlarmDefinition, got {definition!r}")
        alarm_id = definition.alarm_id
        old = self._state.definitions.get(alarm_id)
        if old == definition:
            return
        self._state.definitions[alarm_id] = definition
        self._reindex()
        if old is None:
            record = AlarmRecord(last_change_s=time_s)
            self._state.records[alarm_id] = record
            self._emit(
                EventType.REGISTERED,
                time_s,
                alarm_id=alarm_id,
                to_state=record.state,
                details={"definition": definition.as_dict(), "record": record.as_dict()},
            )
            return
        record = self._state.records[alarm_id]
        self._emit(
            EventType.REDEFINED,
            time_s,
            alarm_id=alarm_id,
            from_state=record.state,
            to_state=record.state,
            details={
                "definition": definition.as_dict(),
                "previous_definition": old.as_dict(),
                "record": record.as_dict(),
            },
        )

    def _reindex(self) -> None:
        children: dict[str, list[str]] = {}
        zones: dict[str, list[str]] = {}
        for alarm_id, definition in self._state.definitions.items():
            for parent in definition.dependent_of:
                children.setdefault(parent, []).append(alarm_id)
            if definition.zone is not None:
                zones.setdefault(definition.zone, []).append(alarm_id)
        self._children = children
        self._zones = zones

    def _condition(self, condition: Condition) -> None:
        alarm_id = condition.alarm_id
        if condition.definition is not None:
            if condition.definition.alarm_id != alarm_id:
                raise AlarmError(
                    f"condition for {alarm_id!r} carries the definition of "
                    f"{condition.definition.alarm_id!r}"
                )
            self._register(condition.definition, condition.time_s)
        elif alarm_id not in self._state.definitions:
            raise UnknownAlarmError(
                f"alarm {alarm_id!r} is not registered: pass its definition with its first update"
            )
        _require_text(condition.source, f"{alarm_id}: source")
        if not isinstance(condition.active, bool):
            raise AlarmError(f"{alarm_id}: active must be a boolean, got {condition.active!r}")
        value = (
            None
            if condition.value is None
            else _require_number(condition.value, f"{alarm_id}: value")
        )
        metadata = (
            None
            if condition.metadata is None
            else _check_json(dict(condition.metadata), f"{alarm_id}: metadata")
        )
        # A newly active alarm that its parents suppress never annunciates.
        self._update_suppression(alarm_id, condition.time_s, release=False)
        record = self._state.records[alarm_id]
        if record.active == condition.active:
            return
        time_s = condition.time_s
        extra: dict[str, JsonValue] = {} if metadata is None else {"metadata": metadata}
        changed = replace(record, value=value, detail=condition.detail)
        if condition.active:
            self._activate(alarm_id, changed, time_s, condition.source, extra)
        else:
            self._clear(alarm_id, changed, time_s, condition.source, extra)

    def _activate(
        self,
        alarm_id: str,
        record: AlarmRecord,
        time_s: float,
        source: str,
        extra: dict[str, JsonValue],
    ) -> None:
        new = replace(record, active=True, active_since_s=time_s)
        annunciation = not record.inhibited
        if annunciation:
            new = self._presented(alarm_id, new, time_s)
        self._set(
            alarm_id,
            new,
            EventType.ACTIVATED,
            time_s,
            user=source,
            annunciation=annunciation,
            extra=extra,
        )

    def _clear(
        self,
        alarm_id: str,
        record: AlarmRecord,
        time_s: float,
        source: str,
        extra: dict[str, JsonValue],
    ) -> None:
        latches = self._state.definitions[alarm_id].latching and not record.inhibited
        new = replace(record, active=False, active_since_s=None, latched=record.latched or latches)
        self._set(alarm_id, new, EventType.CLEARED, time_s, user=source, extra=extra)
        if new.shelve_mode is ShelveMode.ONE_SHOT:
            self._end_shelve(alarm_id, EventType.SHELVE_ENDED, time_s)

    def _presented(
        self, alarm_id: str, record: AlarmRecord, time_s: float, *, released: bool = False
    ) -> AlarmRecord:
        """``record`` (active) shown to the operator: unacknowledged, maybe first out.

        A re-activation of an alarm still unacknowledged keeps its ``unacknowledged_since_s``; an
        alarm presented again after an inhibition waits from ``time_s`` [s].
        """
        keep = not (record.acknowledged or released)
        since_s = record.unacknowledged_since_s if keep else time_s
        new = replace(record, acknowledged=False, unacknowledged_since_s=since_s)
        zone = self._state.definitions[alarm_id].zone
        if zone is not None and not any(
            self._state.records[other].first_out for other in self._zones.get(zone, ())
        ):
            new = replace(new, first_out=True)
        return new

    def _present_if_released(
        self, alarm_id: str, record: AlarmRecord, time_s: float
    ) -> AlarmRecord:
        """``record`` after an inhibition ended: presented again if no other one remains."""
        if record.inhibited:
            return record
        if record.active:
            return self._presented(alarm_id, record, time_s, released=True)
        if record.latched:
            return record
        return replace(record, acknowledged=True, unacknowledged_since_s=None)

    def _end_shelve(
        self,
        alarm_id: str,
        event: EventType,
        time_s: float,
        *,
        user: str = SYSTEM_USER,
        reason: str | None = None,
    ) -> None:
        record = self._state.records[alarm_id]
        new = self._present_if_released(alarm_id, _without_shelve(record), time_s)
        self._set(alarm_id, new, event, time_s, user=user, reason=reason)

    def _suppression_reason(self, alarm_id: str) -> str | None:
        """Why ``alarm_id`` should be suppressed by design now, or None."""
        state = self._state
        definition = state.definitions[alarm_id]
        flood = state.flood_since_s is not None
        for parent in definition.dependent_of:
            if self._parent_holds(parent):
                if definition.suppression is SuppressionMode.ALWAYS:
                    return f"{parent} is active"
                if flood:
                    return f"{parent} is active during an alarm flood"
        if flood and definition.kind in ZONE_CHILD_KINDS and definition.zone is not None:
            rank = PRIORITY_RANK[definition.priority]
            for parent in self._zones.get(definition.zone, ()):
                parent_definition = state.definitions[parent]
                if (
                    parent_definition.kind in ZONE_PARENT_KINDS
                    and PRIORITY_RANK[parent_definition.priority] > rank
                    and self._parent_holds(parent)
                ):
                    return f"{parent} is active during an alarm flood"
        return None

    def _parent_holds(self, parent: str) -> bool:
        record = self._state.records.get(parent)
        return (
            record is not None and record.active and not (record.shelved or record.out_of_service)
        )

    def _update_suppression(self, alarm_id: str, time_s: float, *, release: bool) -> None:
        record = self._state.records[alarm_id]
        reason = self._suppression_reason(alarm_id)
        if reason is not None and not record.suppressed:
            new = replace(record, suppressed_reason=reason, suppressed_since_s=time_s)
            self._set(alarm_id, new, EventType.SUPPRESSED, time_s, reason=reason)
        elif reason is None and record.suppressed and release:
            new = replace(record, suppressed_reason=None, suppressed_since_s=None)
            new = self._present_if_released(alarm_id, new, time_s)
            self._set(alarm_id, new, EventType.UNSUPPRESSED, time_s)

    def _settle(self, time_s: float) -> None:
        """Apply suppression by design and clear the first-out marks of all-normal zones."""
        for alarm_id in self._state.definitions:
            self._update_suppression(alarm_id, time_s, release=True)
        for members in self._zones.values():
            marked = [m for m in members if self._state.records[m].first_out]
            if marked and all(self._zone_member_normal(m) for m in members):
                for alarm_id in marked:
                    new = replace(self._state.records[alarm_id], first_out=False)
                    self._set(alarm_id, new, EventType.FIRST_OUT_CLEARED, time_s)

    def _zone_member_normal(self, alarm_id: str) -> bool:
        record = self._state.records[alarm_id]
        if record.out_of_service:
            return True
        if record.active:
            return False
        return record.inhibited or record.base_state is AlarmState.NORMAL

    def _annunciated(self, time_s: float) -> None:
        """Count an annunciation at ``time_s`` [s]; start a flood above the threshold."""
        state = self._state
        window = state.annunciations_s
        window.append(time_s)
        while window and window[0] <= time_s - self.policy.flood_window_s:
            window.popleft()
        if state.flood_since_s is None and len(window) > self.policy.flood_start_above_count:
            state.flood_since_s = time_s
            self._emit(
                EventType.FLOOD_STARTED,
                time_s,
                detail=(
                    f"{len(window)} annunciations in {self.policy.flood_window_s:g} s "
                    f"(more than {self.policy.flood_start_above_count})"
                ),
                details={"annunciations_in_window": len(window)},
            )

    def _flood_end_time(self) -> float | None:
        state = self._state
        if state.flood_since_s is None:
            return None
        window = state.annunciations_s
        below = self.policy.flood_end_below_count
        if len(window) < below:
            return state.time_s
        # The count in (t - W, t] falls below `below` once the below-th most recent ages out.
        return max(window[-below] + self.policy.flood_window_s, state.time_s)

    def _advance(self, now_s: float) -> None:
        """Process, in time order, the shelve expiries and the flood end due by ``now_s`` [s]."""
        state = self._state
        while True:
            expiries: list[tuple[float, str]] = []
            for alarm_id, record in state.records.items():
                if record.shelve_mode is ShelveMode.TIMED and record.shelved_until_s is not None:
                    expiries.append((record.shelved_until_s, alarm_id))
            next_expiry = min(expiries, default=None)
            flood_end_s = self._flood_end_time()
            candidates = [] if next_expiry is None else [next_expiry[0]]
            if flood_end_s is not None:
                candidates.append(flood_end_s)
            if not candidates or min(candidates) > now_s:
                return
            due_s = min(candidates)
            if next_expiry is not None and next_expiry[0] == due_s:
                self._end_shelve(next_expiry[1], EventType.SHELVE_EXPIRED, due_s)
            else:
                state.flood_since_s = None
                self._emit(
                    EventType.FLOOD_ENDED,
                    due_s,
                    detail=(
                        f"fewer than {self.policy.flood_end_below_count} annunciations in "
                        f"{self.policy.flood_window_s:g} s"
                    ),
                )
            self._settle(due_s)

    # --- replay ----------------------------------------------------------------------------------

    def _replay(self, event: AlarmEvent) -> None:
        state = self._state
        where = f"journal entry {event.sequence} ({event.event.value}, {event.alarm_id})"
        if event.sequence != state.sequence + 1:
            raise JournalReplayError(f"{where}: expected sequence {state.sequence + 1}")
        if event.time_s < state.time_s:
            raise JournalReplayError(f"{where}: time {event.time_s!r} < {state.time_s!r}")
        if event.event in SITE_EVENTS:
            if event.event is EventType.FLOOD_STARTED:
                state.flood_since_s = event.time_s
            else:
                state.flood_since_s = None
        else:
            self._replay_alarm(event, where)
        if event.annunciation:
            state.annunciations_s.append(event.time_s)
            while state.annunciations_s[0] <= event.time_s - self.policy.flood_window_s:
                state.annunciations_s.popleft()
        state.sequence = event.sequence
        state.time_s = event.time_s

    def _replay_alarm(self, event: AlarmEvent, where: str) -> None:
        state = self._state
        alarm_id = event.alarm_id
        if alarm_id is None:
            raise JournalReplayError(f"{where}: an alarm entry without an alarm id")
        try:
            if event.event in {EventType.REGISTERED, EventType.REDEFINED}:
                definition_data = event.details.get("definition")
                if not isinstance(definition_data, dict):
                    raise JournalReplayError(f"{where}: no definition in details")
                if (event.event is EventType.REGISTERED) == (alarm_id in state.definitions):
                    raise JournalReplayError(f"{where}: registration does not fit the journal")
                state.definitions[alarm_id] = AlarmDefinition.from_dict(definition_data)
                self._reindex()
            record_data = event.details.get("record")
            if not isinstance(record_data, dict):
                raise JournalReplayError(f"{where}: no record in details")
            record = AlarmRecord.from_dict(record_data)
        except JournalReplayError:
            raise
        except AlarmError as error:
            raise JournalReplayError(f"{where}: {error}") from error
        if alarm_id not in state.definitions:
            raise JournalReplayError(f"{where}: alarm {alarm_id!r} was never registered")
        old = state.records.get(alarm_id)
        if old is not None and old.state != event.from_state:
            raise JournalReplayError(
                f"{where}: from_state {event.from_state} but the journal left {old.state}"
            )
        if record.state != event.to_state:
            raise JournalReplayError(
                f"{where}: to_state {event.to_state} but the record says {record.state}"
            )
        state.records[alarm_id] = record


def _require_reason(
    action: str, alarm_id: str, record: AlarmRecord, value: object, what: str
) -> None:
    if not isinstance(value, str) or not value.strip():
        raise IllegalActionError(
            action, alarm_id, record.state, f"{what} is required (non-blank text), got {value!r}"
        )


def _without_shelve(record: AlarmRecord) -> AlarmRecord:
    return replace(
        record,
        shelve_mode=None,
        shelved_by=None,
        shelve_reason=None,
        shelved_since_s=None,
        shelved_until_s=None,
    )


# --- KPIs ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BadActor:
    """One of the most frequent alarms of a KPI window, with delay suggestions from its history.

    ``suggested_off_delay_s`` is the smallest :data:`DELAY_LADDER_S` value longer than every
    clear-to-reactivation gap shorter than :data:`CHATTER_WINDOW_S` (an off-delay keeps the alarm
    in alarm that long after its condition clears, so those repeats would have merged);
    ``suggested_on_delay_s`` likewise over its activations that lasted less than
    :data:`CHATTER_WINDOW_S` (an on-delay needs the condition to persist that long). Both are None
    when there is nothing to merge or filter. Times [s].
    """

    alarm_id: str
    annunciations: int
    peak_per_chatter_window: int
    chattering: bool
    suggested_off_delay_s: float | None
    annunciations_merged_by_off_delay: int
    suggested_on_delay_s: float | None
    annunciations_removed_by_on_delay: int


@dataclass(frozen=True, slots=True)
class StaleAlarm:
    """An alarm active for longer than :data:`STALE_AFTER_S` at the end of the window [s]."""

    alarm_id: str
    active_since_s: float
    active_for_s: float


@dataclass(frozen=True, slots=True)
class AlarmKpiReport:
    """Alarm-system performance over ``[start_s, end_s)`` (ISA-18.2 sec. 16 / EEMUA 191).

    Rates are annunciations (new alarm occurrences presented to the operator); fractions are [1];
    times [s].
    """

    start_s: float
    end_s: float
    annunciations: int
    alarms_per_hour: float
    alarms_per_10_minutes: float
    acceptable_per_10_minutes: float
    peak_10_minute_count: int
    floods: int
    flood_time_fraction: float
    chattering_alarms: int
    bad_actors: tuple[BadActor, ...]
    stale_alarms: tuple[StaleAlarm, ...]
    shelved_at_end: tuple[str, ...]
    shelve_actions: int
    acknowledgements: int

    def as_json_dict(self) -> dict[str, JsonValue]:
        """The report as JSON-ready values (same names, nested lists of objects)."""
        result: dict[str, JsonValue] = {}
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            if item.name in {"bad_actors", "stale_alarms"}:
                result[item.name] = [
                    {f.name: getattr(entry, f.name) for f in dataclasses.fields(entry)}
                    for entry in value
                ]
            elif item.name == "shelved_at_end":
                result[item.name] = list(value)
            else:
                result[item.name] = value
        return result


def _ladder_above(duration_s: float) -> float:
    for delay_s in DELAY_LADDER_S:
        if delay_s > duration_s:
            return delay_s
    return DELAY_LADDER_S[-1]


def _delay_suggestion(durations_s: Sequence[float]) -> tuple[float | None, int]:
    short = np.asarray([d for d in durations_s if d < CHATTER_WINDOW_S], dtype=np.float64)
    if short.size == 0:
        return None, 0
    delay_s = _ladder_above(float(short.max()))
    return delay_s, int(np.count_nonzero(short < delay_s))


@dataclass(slots=True)
class _History:
    annunciations_s: list[float] = field(default_factory=list)
    gaps_s: list[float] = field(default_factory=list)  # clear -> next annunciated activation
    on_durations_s: list[float] = field(default_factory=list)  # annunciated activation -> clear
    last_clear_s: float | None = None
    last_annunciation_s: float | None = None
    last_event: AlarmEvent | None = None

    @property
    def record(self) -> AlarmRecord | None:
        return None if self.last_event is None else self.last_event.record


def _flood_time(events: Sequence[AlarmEvent], start_s: float, end_s: float) -> tuple[int, float]:
    floods = 0
    in_flood_s = 0.0
    since_s: float | None = None

    def close(until_s: float) -> None:
        nonlocal floods, in_flood_s
        if since_s is None:
            return
        low, high = max(since_s, start_s), min(until_s, end_s)
        if high > low or (since_s >= start_s and since_s < end_s):
            floods += 1
            in_flood_s += max(high - low, 0.0)

    for event in events:
        if event.time_s >= end_s:
            break
        if event.event is EventType.FLOOD_STARTED:
            since_s = event.time_s
        elif event.event is EventType.FLOOD_ENDED:
            close(event.time_s)
            since_s = None
    close(end_s)
    return floods, in_flood_s


def alarm_kpis(
    events: Iterable[AlarmEvent],
    *,
    start_s: float,
    end_s: float,
    top: int = DEFAULT_TOP_BAD_ACTORS,
    window_s: float = FLOOD_WINDOW_S,
) -> AlarmKpiReport:
    """Alarm-system KPIs over ``[start_s, end_s)`` from journal entries (pure).

    Parameters
    ----------
    events
        Journal entries in sequence order; entries before ``start_s`` are used for the state at
        the start (floods, active alarms) [-].
    start_s, end_s
        The window [s].
    top
        How many bad actors to list [1].
    window_s
        The rate window of the peak count [s].

    Returns
    -------
    AlarmKpiReport
        The report.
    """
    start = _require_time(start_s, "start_s")
    end = _require_time(end_s, "end_s")
    if not end > start:
        raise AlarmError(f"alarm_kpis: end_s={end!r} must be after start_s={start!r}")
    if top < 0:
        raise AlarmError(f"alarm_kpis: top must be >= 0, got {top}")
    ordered = list(events)
    histories: dict[str, _History] = {}
    shelve_actions = acknowledgements = 0
    for event in ordered:
        if event.time_s >= end or event.alarm_id is None:
            continue
        history = histories.setdefault(event.alarm_id, _History())
        history.last_event = event
        if event.time_s < start:
            continue
        if event.event is EventType.SHELVED:
            shelve_actions += 1
        elif event.event is EventType.ACKNOWLEDGED:
            acknowledgements += 1
        elif event.event is EventType.CLEARED:
            if history.last_annunciation_s is not None:
                history.on_durations_s.append(event.time_s - history.last_annunciation_s)
            history.last_clear_s, history.last_annunciation_s = event.time_s, None
        if event.annunciation:
            history.annunciations_s.append(event.time_s)
            if history.last_clear_s is not None:
                history.gaps_s.append(event.time_s - history.last_clear_s)
            history.last_annunciation_s, history.last_clear_s = event.time_s, None
    all_times = np.sort(
        np.asarray([t for h in histories.values() for t in h.annunciations_s], dtype=np.float64)
    )
    floods, in_flood_s = _flood_time(ordered, start, end)
    actors = [_bad_actor(alarm_id, history) for alarm_id, history in histories.items()]
    actors = [actor for actor in actors if actor.annunciations > 0]
    actors.sort(key=lambda actor: (-actor.annunciations, actor.alarm_id))
    duration_s = end - start
    return AlarmKpiReport(
        start_s=start,
        end_s=end,
        annunciations=int(all_times.size),
        alarms_per_hour=all_times.size * SECONDS_PER_HOUR / duration_s,
        alarms_per_10_minutes=all_times.size * FLOOD_WINDOW_S / duration_s,
        acceptable_per_10_minutes=STEADY_STATE_ACCEPTABLE_PER_10_MINUTES,
        peak_10_minute_count=_window_peak(all_times, window_s),
        floods=floods,
        flood_time_fraction=in_flood_s / duration_s,
        chattering_alarms=sum(actor.chattering for actor in actors),
        bad_actors=tuple(actors[:top]),
        stale_alarms=_stale(histories, end),
        shelved_at_end=tuple(
            sorted(a for a, h in histories.items() if h.record is not None and h.record.shelved)
        ),
        shelve_actions=shelve_actions,
        acknowledgements=acknowledgements,
    )


def _bad_actor(alarm_id: str, history: _History) -> BadActor:
    times = np.asarray(history.annunciations_s, dtype=np.float64)
    peak = _window_peak(times, CHATTER_WINDOW_S)
    off_delay_s, merged = _delay_suggestion(history.gaps_s)
    on_delay_s, removed = _delay_suggestion(history.on_durations_s)
    return BadActor(
        alarm_id=alarm_id,
        annunciations=int(times.size),
        peak_per_chatter_window=peak,
        chattering=peak >= CHATTER_COUNT,
        suggested_off_delay_s=off_delay_s,
        annunciations_merged_by_off_delay=merged,
        suggested_on_delay_s=on_delay_s,
        annunciations_removed_by_on_delay=removed,
    )


def _stale(histories: Mapping[str, _History], end_s: float) -> tuple[StaleAlarm, ...]:
    stale = []
    for alarm_id, history in sorted(histories.items()):
        record = history.record
        if record is None or not record.active or record.active_since_s is None:
            continue
        active_for_s = end_s - record.active_since_s
        if active_for_s > STALE_AFTER_S:
            stale.append(StaleAlarm(alarm_id, record.active_since_s, active_for_s))
    return tuple(stale)
