"""The plan decision journal: automatic plan selections and the duty officer's decisions, in SQLite.

Append-only, one row per decision, in one file (:class:`SqlitePlanDecisionLog`). Four kinds:

``automatic``
    PipeSentinel selected a plan (:func:`pipesentinel.plans.selection.select_plan`) at an incident
    update; the explanation is the reason, the selection JSON the details.
``confirmation``
    The duty officer confirms the plan now in effect (only that one: to choose another, override).
``override``
    The duty officer puts another plan (or version) in effect. A reason is required.
``release``
    The duty officer ends the override (reason required); the latest automatic selection is in
    effect again, unconfirmed.

**Which plan is in effect** (:func:`effective_plan`, :meth:`SqlitePlanDecisionLog.current`) is a
fold over the incident's decisions in order:

* without an active override, the latest automatic selection is in effect; a confirmation holds
  while later automatic selections keep the same plan and version, and is cleared when one
  changes it (the officer must confirm the new plan);
* an override wins over every later automatic selection until it is released; those selections
  are still journaled and reported as ``automatic_plan_id`` (what the system would choose now),
  so the officer sees when the system disagrees. An override counts as confirmed by its author;
  a later override replaces it.

The database refuses what an append-only journal must not do, as the alarm journal does
(:mod:`pipesentinel.ingest.storage.journal`): ``UPDATE``/``DELETE`` abort, a sequence that is not
the last + 1 aborts, an incident's decision time may not go back, and each row carries
``entry_hash`` = SHA-256 of the previous row's hash and its own content, checked by
:meth:`SqlitePlanDecisionLog.verify`. Each decision is one ``BEGIN IMMEDIATE ... COMMIT``
(WAL, ``synchronous=FULL``): it survives a restart or a power cut once the call returns. The
checks of a decision (confirmation of the plan in effect, release of an active override) run
inside the same transaction, so two processes cannot interleave between check and write.

A plan change is notified like an alarm: every write returns a :class:`DecisionOutcome` whose
:meth:`~DecisionOutcome.change_event` is the JSON for the notifier/MQTT when the plan in effect
changed (None otherwise).
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

from pipesentinel.detection.alarms import JsonValue
from pipesentinel.ingest.storage.base import StorageError
from pipesentinel.ingest.storage.hash_chain import GENESIS_HASH, entry_hash, verify_chain
from pipesentinel.ingest.storage.sqlite_file import SqliteFile

__all__ = [
    "AUTOMATIC_ACTOR",
    "SCHEMA_VERSION",
    "DecisionKind",
    "DecisionOutcome",
    "EffectivePlan",
    "PlanDecision",
    "PlanDecisionError",
    "PlanDecisionIntegrityError",
    "SqlitePlanDecisionLog",
    "effective_plan",
]

SCHEMA_VERSION: Final = 1
BUSY_TIMEOUT_S: Final = 30.0  # how long a writer waits for another process's write lock [s]
AUTOMATIC_ACTOR: Final = "pipesentinel"  # the "who" of automatic selections

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS plan_decisions (
    sequence INTEGER PRIMARY KEY CHECK (sequence >= 1),
    time_s REAL NOT NULL,
    incident_id TEXT NOT NULL CHECK (length(incident_id) > 0),
    kind TEXT NOT NULL CHECK (kind IN ('automatic', 'confirmation', 'override', 'release')),
    plan_id TEXT,
    plan_version INTEGER,
    actor TEXT NOT NULL CHECK (length(actor) > 0),
    reason TEXT,
    details_json TEXT NOT NULL CHECK (json_valid(details_json)),
    entry_hash TEXT NOT NULL,
    CHECK ((kind = 'release') = (plan_id IS NULL)),
    CHECK ((plan_id IS NULL) = (plan_version IS NULL)),
    CHECK (kind NOT IN ('override', 'release') OR length(trim(coalesce(reason, ''))) > 0)
);
CREATE INDEX IF NOT EXISTS plan_decisions_by_incident ON plan_decisions (incident_id, sequence);
CREATE TRIGGER IF NOT EXISTS plan_decisions_no_update BEFORE UPDATE ON plan_decisions
BEGIN
    SELECT RAISE(ABORT, 'plan_decisions is append-only: UPDATE refused');
END;
CREATE TRIGGER IF NOT EXISTS plan_decisions_no_delete BEFORE DELETE ON plan_decisions
BEGIN
    SELECT RAISE(ABORT, 'plan_decisions is append-only: DELETE refused');
END;
CREATE TRIGGER IF NOT EXISTS plan_decisions_in_order BEFORE INSERT ON plan_decisions
WHEN NEW.sequence IS NOT (SELECT coalesce(max(sequence), 0) + 1 FROM plan_decisions)
    OR NEW.time_s < (SELECT max(time_s) FROM plan_decisions WHERE incident_id = NEW.incident_id)
BEGIN
    SELECT RAISE(ABORT, 'plan_decisions: sequence must be the last + 1, time must not go back');
END;
"""

_COLUMNS: Final = (
    "sequence, time_s, incident_id, kind, plan_id, plan_version, actor, reason, details_json,"
    " entry_hash"
)
# Both built from the fixed column list above; values are always bound parameters.
_INSERT: Final = f"INSERT INTO plan_decisions ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"  # noqa: S608
_SELECT: Final = f"SELECT {_COLUMNS} FROM plan_decisions"  # noqa: S608

Row = tuple[Any, ...]


class DecisionKind(StrEnum):
    """What a journal entry records."""

    AUTOMATIC = "automatic"
    CONFIRMATION = "confirmation"
    OVERRIDE = "override"
    RELEASE = "release"


class PlanDecisionError(StorageError):
    """A decision that is not allowed now (confirming a plan not in effect, nothing to release)."""


class PlanDecisionIntegrityError(StorageError):
    """The stored journal is not what was appended (hash chain broken, undecodable row)."""


@dataclass(frozen=True)
class PlanDecision:
    """One journal entry.

    Attributes
    ----------
    sequence
        Position in the journal, from 1 [-].
    time_s
        When the decision was made (the caller's clock: wall or simulated) [s].
    incident_id
        The incident [-].
    kind
        Automatic selection, confirmation, override or release [-].
    plan_id, plan_version
        The plan selected, confirmed or put in effect; None for a release [-].
    actor
        Who: the officer's user name, or :data:`AUTOMATIC_ACTOR` [-].
    reason
        Why: the selection's explanation, the officer's reason (required for override and
        release) [-].
    details
        JSON details (for automatic selections, the selection's ``to_json_dict()``) [-].
    """

    sequence: int
    time_s: float
    incident_id: str
    kind: DecisionKind
    plan_id: str | None
    plan_version: int | None
    actor: str
    reason: str | None
    details: dict[str, JsonValue] = field(default_factory=dict)

    def to_json_dict(self) -> dict[str, Any]:
        """Plain JSON types."""
        return {
            "sequence": self.sequence,
            "time_s": self.time_s,
            "incident_id": self.incident_id,
            "kind": self.kind.value,
            "plan_id": self.plan_id,
            "plan_version": self.plan_version,
            "actor": self.actor,
            "reason": self.reason,
            "details": self.details,
        }


@dataclass(frozen=True)
class EffectivePlan:
    """The plan in effect for an incident after a sequence of decisions.

    Attributes
    ----------
    incident_id
        The incident [-].
    plan_id, plan_version
        The plan in effect, or None when an override was released before any automatic
        selection [-].
    source
        ``"automatic"`` or ``"override"`` [-].
    since_sequence, since_time_s
        The decision that put this plan in effect [-], [s].
    confirmed_by, confirmed_time_s
        Who confirmed it and when (an override is confirmed by its author); None if not [-], [s].
    override_by, override_reason
        Author and reason of the active override; None without one [-].
    automatic_plan_id, automatic_plan_version
        The latest automatic selection (what the system would put in effect) [-].
    """

    incident_id: str
    plan_id: str | None
    plan_version: int | None
    source: str
    since_sequence: int
    since_time_s: float
    confirmed_by: str | None = None
    confirmed_time_s: float | None = None
    override_by: str | None = None
    override_reason: str | None = None
    automatic_plan_id: str | None = None
    automatic_plan_version: int | None = None

    @property
    def confirmed(self) -> bool:
        """Whether a person confirmed (or chose) the plan in effect."""
        return self.confirmed_by is not None

    @property
    def override_active(self) -> bool:
        """Whether an officer's override is in effect."""
        return self.source == DecisionKind.OVERRIDE.value

    @property
    def disagrees(self) -> bool:
        """Whether an override is active and the latest automatic selection differs from it."""
        return (
            self.override_active
            and (
                (self.automatic_plan_id, self.automatic_plan_version)
                != (self.plan_id, self.plan_version)
            )
            and self.automatic_plan_id is not None
        )

    def to_json_dict(self) -> dict[str, Any]:
        """Plain JSON types."""
        return {
            "incident_id": self.incident_id,
            "plan_id": self.plan_id,
            "plan_version": self.plan_version,
            "source": self.source,
            "since_sequence": self.since_sequence,
            "since_time_s": self.since_time_s,
            "confirmed": self.confirmed,
            "confirmed_by": self.confirmed_by,
            "confirmed_time_s": self.confirmed_time_s,
            "override_active": self.override_active,
            "override_by": self.override_by,
            "override_reason": self.override_reason,
            "automatic_plan_id": self.automatic_plan_id,
            "automatic_plan_version": self.automatic_plan_version,
            "automatic_disagrees": self.disagrees,
        }


def effective_plan(decisions: Iterable[PlanDecision]) -> EffectivePlan | None:
    """The plan in effect after ``decisions`` (one incident's, in sequence order); pure.

    None when there is no decision yet. The rules are in the module docstring.

    Raises
    ------
    PlanDecisionError
        When the decisions break the rules (a confirmation of a plan not in effect, a release
        without an override, decisions of several incidents).
    """
    current: EffectivePlan | None = None
    for decision in decisions:
        current = _apply(current, decision)
    return current


def _apply(current: EffectivePlan | None, decision: PlanDecision) -> EffectivePlan:
    """The plan in effect after one more decision."""
    if current is not None and current.incident_id != decision.incident_id:
        raise PlanDecisionError(
            f"decision {decision.sequence} is for incident {decision.incident_id!r}, "
            f"not {current.incident_id!r}"
        )
    kind = decision.kind
    if kind == DecisionKind.AUTOMATIC:
        if current is not None and current.override_active:
            return EffectivePlan(
                **{
                    **_fields(current),
                    "automatic_plan_id": decision.plan_id,
                    "automatic_plan_version": decision.plan_version,
                }
            )
        same = current is not None and (current.plan_id, current.plan_version) == (
            decision.plan_id,
            decision.plan_version,
        )
        if current is not None and same:
            return EffectivePlan(
                **{
                    **_fields(current),
                    "automatic_plan_id": decision.plan_id,
                    "automatic_plan_version": decision.plan_version,
                }
            )
        return EffectivePlan(
            incident_id=decision.incident_id,
            plan_id=decision.plan_id,
            plan_version=decision.plan_version,
            source=DecisionKind.AUTOMATIC.value,
            since_sequence=decision.sequence,
            since_time_s=decision.time_s,
            automatic_plan_id=decision.plan_id,
            automatic_plan_version=decision.plan_version,
        )
    if kind == DecisionKind.CONFIRMATION:
        if current is None or (current.plan_id, current.plan_version) != (
            decision.plan_id,
            decision.plan_version,
        ):
            in_effect = (
                "no plan" if current is None else f"{current.plan_id} v{current.plan_version}"
            )
            raise PlanDecisionError(
                f"incident {decision.incident_id!r}: cannot confirm {decision.plan_id} "
                f"v{decision.plan_version}: {in_effect} is in effect (override to change it)"
            )
        return EffectivePlan(
            **{
                **_fields(current),
                "confirmed_by": decision.actor,
                "confirmed_time_s": decision.time_s,
            }
        )
    if kind == DecisionKind.OVERRIDE:
        return EffectivePlan(
            incident_id=decision.incident_id,
            plan_id=decision.plan_id,
            plan_version=decision.plan_version,
            source=DecisionKind.OVERRIDE.value,
            since_sequence=decision.sequence,
            since_time_s=decision.time_s,
            confirmed_by=decision.actor,
            confirmed_time_s=decision.time_s,
            override_by=decision.actor,
            override_reason=decision.reason,
            automatic_plan_id=None if current is None else current.automatic_plan_id,
            automatic_plan_version=None if current is None else current.automatic_plan_version,
        )
    # release
    if current is None or not current.override_active:
        raise PlanDecisionError(
            f"incident {decision.incident_id!r}: no override is active, nothing to release"
        )
    return EffectivePlan(
        incident_id=decision.incident_id,
        plan_id=current.automatic_plan_id,
        plan_version=current.automatic_plan_version,
        source=DecisionKind.AUTOMATIC.value,
        since_sequence=decision.sequence,
        since_time_s=decision.time_s,
        automatic_plan_id=current.automatic_plan_id,
        automatic_plan_version=current.automatic_plan_version,
    )


def _fields(plan: EffectivePlan) -> dict[str, Any]:
    return {name: getattr(plan, name) for name in EffectivePlan.__dataclass_fields__}


@dataclass(frozen=True)
class DecisionOutcome:
    """A journaled decision with the plan in effect before and after it."""

    decision: PlanDecision
    previous: EffectivePlan | None
    current: EffectivePlan

    @property
    def plan_changed(self) -> bool:
        """Whether the plan in effect (id, version or source) changed."""
        before = (
            None
            if self.previous is None
            else (self.previous.plan_id, self.previous.plan_version, self.previous.source)
        )
        after = (self.current.plan_id, self.current.plan_version, self.current.source)
        return before != after

    def change_event(self, *, include_unchanged: bool = False) -> dict[str, Any] | None:
        """The notifier's JSON for a plan change; None when the plan in effect did not change.

        ``event_id`` is ``"<incident>:plan:<sequence>"`` (unique, stable across restarts, so a
        re-publication is recognised as a duplicate). With ``include_unchanged`` a confirmation
        or an automatic selection that keeps the plan also gives an event (``changed`` false).
        """
        if not (self.plan_changed or include_unchanged):
            return None
        decision = self.decision
        previous = self.previous
        return {
            "event_id": f"{decision.incident_id}:plan:{decision.sequence}",
            "event": "plan_changed" if self.plan_changed else f"plan_{decision.kind.value}",
            "changed": self.plan_changed,
            "time_s": decision.time_s,
            "incident_id": decision.incident_id,
            "decision": decision.kind.value,
            "actor": decision.actor,
            "reason": decision.reason,
            "plan_id": self.current.plan_id,
            "plan_version": self.current.plan_version,
            "previous_plan_id": None if previous is None else previous.plan_id,
            "previous_plan_version": None if previous is None else previous.plan_version,
            "effective": self.current.to_json_dict(),
        }


def _details_json(details: dict[str, JsonValue]) -> str:
    return json.dumps(details, sort_keys=True, separators=(",", ":"), allow_nan=False)


def _decision(row: Row) -> PlanDecision:
    """The decision stored in ``row``; :class:`PlanDecisionIntegrityError` if malformed."""
    try:
        details = json.loads(row[8])
        if not isinstance(details, dict):
            raise TypeError(f"details_json is a {type(details).__name__}, not an object")
        return PlanDecision(
            sequence=int(row[0]),
            time_s=float(row[1]),
            incident_id=str(row[2]),
            kind=DecisionKind(row[3]),
            plan_id=None if row[4] is None else str(row[4]),
            plan_version=None if row[5] is None else int(row[5]),
            actor=str(row[6]),
            reason=None if row[7] is None else str(row[7]),
            details=details,
        )
    except (TypeError, ValueError) as error:
        raise PlanDecisionIntegrityError(
            f"plan decision entry {row[0]}: cannot decode: {error}"
        ) from error


class SqlitePlanDecisionLog(SqliteFile):
    """The append-only plan decision journal in one SQLite file; thread-safe.

    Parameters
    ----------
    path
        The SQLite file; parent directories are created [-].

    Raises
    ------
    StorageError
        When the file cannot be opened or has a newer schema.
    """

    def __init__(self, path: Path | str) -> None:
        super().__init__(path, what="plan decision journal", busy_timeout_s=BUSY_TIMEOUT_S)
        self._apply_schema(_SCHEMA, version=SCHEMA_VERSION)

    # --- writing ---------------------------------------------------------------------------------

    def record_automatic(
        self,
        *,
        incident_id: str,
        plan_id: str,
        plan_version: int,
        time_s: float,
        reason: str,
        details: dict[str, JsonValue] | None = None,
        actor: str = AUTOMATIC_ACTOR,
    ) -> DecisionOutcome:
        """Journal an automatic selection (reason: the selection's explanation)."""
        return self._append(
            DecisionKind.AUTOMATIC,
            incident_id=incident_id,
            plan_id=plan_id,
            plan_version=plan_version,
            time_s=time_s,
            actor=actor,
            reason=reason,
            details=details,
        )

    def confirm(
        self,
        *,
        incident_id: str,
        plan_id: str,
        plan_version: int,
        actor: str,
        time_s: float,
        reason: str | None = None,
    ) -> DecisionOutcome:
        """Journal the officer's confirmation of the plan in effect.

        Raises
        ------
        PlanDecisionError
            When ``plan_id`` v``plan_version`` is not the plan in effect.
        """
        return self._append(
            DecisionKind.CONFIRMATION,
            incident_id=incident_id,
            plan_id=plan_id,
            plan_version=plan_version,
            time_s=time_s,
            actor=actor,
            reason=reason,
            details=None,
        )

    def override(
        self,
        *,
        incident_id: str,
        plan_id: str,
        plan_version: int,
        actor: str,
        reason: str,
        time_s: float,
    ) -> DecisionOutcome:
        """Journal the officer's override: this plan is in effect until released.

        Raises
        ------
        PlanDecisionError
            When ``reason`` is empty.
        """
        return self._append(
            DecisionKind.OVERRIDE,
            incident_id=incident_id,
            plan_id=plan_id,
            plan_version=plan_version,
            time_s=time_s,
            actor=actor,
            reason=reason,
            details=None,
        )

    def release(
        self, *, incident_id: str, actor: str, reason: str, time_s: float
    ) -> DecisionOutcome:
        """Journal the end of the active override; the latest automatic selection applies again.

        Raises
        ------
        PlanDecisionError
            When no override is active or ``reason`` is empty.
        """
        return self._append(
            DecisionKind.RELEASE,
            incident_id=incident_id,
            plan_id=None,
            plan_version=None,
            time_s=time_s,
            actor=actor,
            reason=reason,
            details=None,
        )

    def _append(
        self,
        kind: DecisionKind,
        *,
        incident_id: str,
        plan_id: str | None,
        plan_version: int | None,
        time_s: float,
        actor: str,
        reason: str | None,
        details: dict[str, JsonValue] | None,
    ) -> DecisionOutcome:
        if not incident_id:
            raise PlanDecisionError("incident_id is empty")
        if not actor or not actor.strip():
            raise PlanDecisionError(f"{kind.value}: who made the decision (actor) is required")
        if kind in (DecisionKind.OVERRIDE, DecisionKind.RELEASE) and not (
            reason and reason.strip()
        ):
            raise PlanDecisionError(
                f"{kind.value} of incident {incident_id!r}: a reason is required"
            )
        if kind != DecisionKind.RELEASE and (
            not plan_id or not isinstance(plan_version, int) or plan_version < 1
        ):
            raise PlanDecisionError(
                f"{kind.value}: plan_id and a plan_version >= 1 are required, got "
                f"{plan_id!r} v{plan_version!r}"
            )
        if not math.isfinite(time_s):
            raise PlanDecisionError(f"time_s={time_s!r} is not finite")
        details_text = _details_json(details or {})
        try:
            with self._transaction() as database:
                previous = effective_plan(self._incident_decisions(database, incident_id))
                last = database.execute(
                    "SELECT sequence, entry_hash FROM plan_decisions ORDER BY sequence DESC LIMIT 1"
                ).fetchone()
                sequence = 1 if last is None else int(last[0]) + 1
                previous_hash = GENESIS_HASH if last is None else str(last[1])
                row: Row = (
                    sequence,
                    float(time_s),
                    incident_id,
                    kind.value,
                    plan_id,
                    plan_version,
                    actor,
                    reason,
                    details_text,
                )
                decision = _decision(row)
                current = _apply(previous, decision)  # PlanDecisionError rolls back
                database.execute(_INSERT, (*row, entry_hash(previous_hash, row)))
        except sqlite3.Error as error:
            raise StorageError(
                f"plan decision journal {self.path}: {kind.value} of incident {incident_id!r} "
                f"not stored: {error}"
            ) from error
        return DecisionOutcome(decision=decision, previous=previous, current=current)

    # --- reading ---------------------------------------------------------------------------------

    @staticmethod
    def _incident_decisions(database: sqlite3.Connection, incident_id: str) -> list[PlanDecision]:
        rows = database.execute(
            f"{_SELECT} WHERE incident_id = ? ORDER BY sequence", (incident_id,)
        ).fetchall()
        return [_decision(row[:9]) for row in rows]

    def _read(self, where: str, arguments: Sequence[object]) -> list[Row]:
        with self._lock:
            try:
                return self._database().execute(f"{_SELECT} {where}", arguments).fetchall()
            except sqlite3.Error as error:
                raise StorageError(
                    f"plan decision journal {self.path}: cannot read: {error}"
                ) from error

    def decisions(self, incident_id: str | None = None) -> list[PlanDecision]:
        """The decisions of one incident (None: all), in sequence order."""
        if incident_id is None:
            rows = self._read("ORDER BY sequence", ())
        else:
            rows = self._read("WHERE incident_id = ? ORDER BY sequence", (incident_id,))
        return [_decision(row[:9]) for row in rows]

    def current(self, incident_id: str) -> EffectivePlan | None:
        """The plan in effect for the incident (None before its first decision)."""
        return effective_plan(self.decisions(incident_id))

    def incident_ids(self) -> list[str]:
        """Incidents with at least one decision, sorted."""
        with self._lock:
            try:
                rows = (
                    self._database()
                    .execute("SELECT DISTINCT incident_id FROM plan_decisions ORDER BY incident_id")
                    .fetchall()
                )
            except sqlite3.Error as error:
                raise StorageError(
                    f"plan decision journal {self.path}: cannot read: {error}"
                ) from error
        return [str(row[0]) for row in rows]

    def verify(self) -> int:
        """Check the hash chain and that every row decodes; returns the number of entries.

        Raises
        ------
        PlanDecisionIntegrityError
            Naming the first entry whose hash, sequence or content does not check.
        """
        return verify_chain(
            self._read("ORDER BY sequence", ()),
            width=9,
            decode=_decision,
            error=PlanDecisionIntegrityError,
            what=f"plan decision journal {self.path}",
        )
