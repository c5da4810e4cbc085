"""The plan decision journal: effective plan rules, append-only, durable across restarts."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipesentinel.ingest.storage.base import StorageError
from pipesentinel.ingest.storage.plan_decisions import (
    AUTOMATIC_ACTOR,
    SCHEMA_VERSION,
    DecisionKind,
    PlanDecision,
    PlanDecisionError,
    PlanDecisionIntegrityError,
    SqlitePlanDecisionLog,
    effective_plan,
)
from pipesentinel.plans.library import load_plan_library
from pipesentinel.plans.selection import PlanSituation, select_plan
from pipesentinel.site import Gas
from pipesentinel.site_loader import load_site

INCIDENT = "wanli:INC-0001"
SITE_DIR = Path(__file__).resolve().parents[2] / "sites" / "wanli"


@pytest.fixture
def log(tmp_path: Path) -> Iterator[SqlitePlanDecisionLog]:
    with SqlitePlanDecisionLog(tmp_path / "var" / "plan_decisions.sqlite3") as journal:
        yield journal


def automatic(log: SqlitePlanDecisionLog, plan_id: str, time_s: float, version: int = 1) -> None:
    log.record_automatic(
        incident_id=INCIDENT,
        plan_id=plan_id,
        plan_version=version,
        time_s=time_s,
        reason=f"{plan_id} chosen",
    )


def test_no_decision_no_plan(log: SqlitePlanDecisionLog) -> None:
    assert log.current(INCIDENT) is None
    assert log.decisions() == []
    assert log.verify() == 0


def test_automatic_selection_is_in_effect_until_changed(log: SqlitePlanDecisionLog) -> None:
    first = log.record_automatic(
        incident_id=INCIDENT, plan_id="WL-02", plan_version=1, time_s=10.0, reason="why"
    )
    assert first.previous is None
    assert first.current.plan_id == "WL-02"
    assert first.current.source == "automatic"
    assert not first.current.confirmed
    assert first.decision.actor == AUTOMATIC_ACTOR
    event = first.change_event()
    assert event is not None
    assert event["event"] == "plan_changed"
    assert event["event_id"] == f"{INCIDENT}:plan:1"
    assert (event["plan_id"], event["previous_plan_id"]) == ("WL-02", None)
    assert json.loads(json.dumps(event)) == event
    # The same plan again: nothing to notify.
    again = log.record_automatic(
        incident_id=INCIDENT, plan_id="WL-02", plan_version=1, time_s=20.0, reason="why"
    )
    assert not again.plan_changed
    assert again.change_event() is None
    assert again.change_event(include_unchanged=True) is not None
    assert again.current.since_sequence == 1


def test_confirmation_holds_until_the_automatic_plan_changes(
    log: SqlitePlanDecisionLog,
) -> None:
    automatic(log, "WL-02", 10.0)
    confirmed = log.confirm(
        incident_id=INCIDENT, plan_id="WL-02", plan_version=1, actor="li.wei", time_s=15.0
    )
    assert confirmed.change_event() is None
    assert confirmed.current.confirmed_by == "li.wei"
    assert confirmed.current.confirmed_time_s == 15.0
    automatic(log, "WL-02", 20.0)
    assert log.current(INCIDENT).confirmed_by == "li.wei"  # type: ignore[union-attr]
    automatic(log, "WL-07", 30.0)
    now = log.current(INCIDENT)
    assert now is not None
    assert (now.plan_id, now.confirmed) == ("WL-07", False)
    # A new version of the same plan needs a new confirmation too.
    log.confirm(incident_id=INCIDENT, plan_id="WL-07", plan_version=1, actor="li.wei", time_s=31)
    automatic(log, "WL-07", 40.0, version=2)
    assert log.current(INCIDENT) is not None
    assert not log.current(INCIDENT).confirmed  # type: ignore[union-attr]


def test_confirming_another_plan_than_the_one_in_effect_is_refused(
    log: SqlitePlanDecisionLog,
) -> None:
    with pytest.raises(PlanDecisionError, match="no plan is in effect"):
        log.confirm(
            incident_id=INCIDENT, plan_id="WL-02", plan_version=1, actor="li.wei", time_s=1.0
        )
    automatic(log, "WL-02", 10.0)
    with pytest.raises(PlanDecisionError, match="WL-02 v1 is in effect"):
        log.confirm(
            incident_id=INCIDENT, plan_id="WL-03", plan_version=1, actor="li.wei", time_s=11.0
        )
    assert len(log.decisions()) == 1  # the refused decisions were not stored


def test_override_wins_over_later_automatic_selections_until_released(
    log: SqlitePlanDecisionLog,
) -> None:
    automatic(log, "WL-02", 10.0)
    overridden = log.override(
        incident_id=INCIDENT,
        plan_id="WL-05",
        plan_version=1,
        actor="zhang.min",
        reason="caller reports heavy gas smell at the kindergarten basement",
        time_s=12.0,
    )
    event = overridden.change_event()
    assert event is not None
    assert (event["plan_id"], event["previous_plan_id"], event["decision"]) == (
        "WL-05",
        "WL-02",
        "override",
    )
    assert event["actor"] == "zhang.min"
    assert overridden.current.confirmed_by == "zhang.min"
    # Later automatic selections are journaled and reported, but the override stays in effect.
    during = log.record_automatic(
        incident_id=INCIDENT, plan_id="WL-03", plan_version=1, time_s=20.0, reason="night"
    )
    assert during.change_event() is None
    assert during.current.plan_id == "WL-05"
    assert during.current.override_active
    assert during.current.automatic_plan_id == "WL-03"
    assert during.current.disagrees
    released = log.release(
        incident_id=INCIDENT, actor="zhang.min", reason="basement checked: no gas", time_s=30.0
    )
    assert released.current.plan_id == "WL-03"  # the latest automatic selection
    assert released.current.source == "automatic"
    assert not released.current.confirmed
    event = released.change_event()
    assert event is not None
    assert (event["plan_id"], event["previous_plan_id"], event["decision"]) == (
        "WL-03",
        "WL-05",
        "release",
    )


def test_override_and_release_need_a_reason_and_release_an_override(
    log: SqlitePlanDecisionLog,
) -> None:
    automatic(log, "WL-02", 10.0)
    with pytest.raises(PlanDecisionError, match="a reason is required"):
        log.override(
            incident_id=INCIDENT,
            plan_id="WL-05",
            plan_version=1,
            actor="zhang.min",
            reason="  ",
            time_s=11.0,
        )
    with pytest.raises(PlanDecisionError, match="nothing to release"):
        log.release(incident_id=INCIDENT, actor="zhang.min", reason="done", time_s=12.0)
    with pytest.raises(PlanDecisionError, match="actor"):
        log.confirm(incident_id=INCIDENT, plan_id="WL-02", plan_version=1, actor="", time_s=13)
    assert [decision.kind for decision in log.decisions()] == [DecisionKind.AUTOMATIC]


def test_the_database_itself_requires_an_override_reason(log: SqlitePlanDecisionLog) -> None:
    with (
        contextlib.closing(sqlite3.connect(log.path)) as raw,
        pytest.raises(sqlite3.IntegrityError, match="CHECK"),
    ):
        raw.execute(
            "INSERT INTO plan_decisions VALUES (1, 0.0, 'I', 'override', 'WL-05', 1, 'x', NULL,"
            " '{}', 'h')"
        )


def test_decisions_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "plan_decisions.sqlite3"
    with SqlitePlanDecisionLog(path) as log:
        automatic(log, "WL-02", 10.0)
        log.override(
            incident_id=INCIDENT,
            plan_id="WL-07",
            plan_version=1,
            actor="zhang.min",
            reason="fire reported",
            time_s=11.0,
        )
        before = log.current(INCIDENT)
        stored = log.decisions()
    with SqlitePlanDecisionLog(path) as reopened:
        assert reopened.current(INCIDENT) == before
        assert reopened.decisions() == stored
        assert reopened.verify() == 2
        automatic(reopened, "WL-03", 12.0)
        assert reopened.current(INCIDENT).plan_id == "WL-07"  # type: ignore[union-attr]
        assert [decision.sequence for decision in reopened.decisions()] == [1, 2, 3]


def test_incidents_are_independent(log: SqlitePlanDecisionLog) -> None:
    automatic(log, "WL-02", 10.0)
    log.record_automatic(
        incident_id="wanli:INC-0002", plan_id="WL-04", plan_version=1, time_s=5.0, reason="r"
    )
    assert log.current(INCIDENT).plan_id == "WL-02"  # type: ignore[union-attr]
    assert log.current("wanli:INC-0002").plan_id == "WL-04"  # type: ignore[union-attr]
    assert log.incident_ids() == [INCIDENT, "wanli:INC-0002"]
    assert [decision.sequence for decision in log.decisions("wanli:INC-0002")] == [2]


def test_an_incident_time_may_not_go_back(log: SqlitePlanDecisionLog) -> None:
    automatic(log, "WL-02", 10.0)
    with pytest.raises(StorageError, match="time must not go back"):
        automatic(log, "WL-03", 9.0)
    with pytest.raises(PlanDecisionError, match="not finite"):
        automatic(log, "WL-03", float("nan"))
    assert len(log.decisions()) == 1


def test_update_and_delete_are_refused(log: SqlitePlanDecisionLog) -> None:
    automatic(log, "WL-02", 10.0)
    with contextlib.closing(sqlite3.connect(log.path)) as raw:
        with pytest.raises(sqlite3.IntegrityError, match="UPDATE refused"):
            raw.execute("UPDATE plan_decisions SET plan_id = 'WL-07'")
        with pytest.raises(sqlite3.IntegrityError, match="DELETE refused"):
            raw.execute("DELETE FROM plan_decisions")
    assert log.verify() == 1


def test_an_edit_around_the_triggers_is_detected(log: SqlitePlanDecisionLog) -> None:
    automatic(log, "WL-02", 10.0)
    automatic(log, "WL-03", 20.0)
    assert log.verify() == 2
    with contextlib.closing(sqlite3.connect(log.path)) as raw:
        raw.execute("DROP TRIGGER plan_decisions_no_update")
        raw.execute("UPDATE plan_decisions SET plan_id = 'WL-07' WHERE sequence = 1")
        raw.commit()
    with pytest.raises(PlanDecisionIntegrityError, match="entry 1: hash does not match"):
        log.verify()


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "plan_decisions.sqlite3"
    with contextlib.closing(sqlite3.connect(path)) as raw:
        raw.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    with pytest.raises(StorageError, match="newer"):
        SqlitePlanDecisionLog(path)


def test_effective_plan_is_a_pure_fold() -> None:
    def decision(sequence: int, kind: DecisionKind, plan_id: str | None) -> PlanDecision:
        return PlanDecision(
            sequence=sequence,
            time_s=float(sequence),
            incident_id=INCIDENT,
            kind=kind,
            plan_id=plan_id,
            plan_version=None if plan_id is None else 1,
            actor="officer",
            reason="because",
        )

    history = [
        decision(1, DecisionKind.AUTOMATIC, "WL-02"),
        decision(2, DecisionKind.OVERRIDE, "WL-05"),
        decision(3, DecisionKind.OVERRIDE, "WL-07"),
        decision(4, DecisionKind.AUTOMATIC, "WL-03"),
        decision(5, DecisionKind.RELEASE, None),
    ]
    assert effective_plan([]) is None
    assert effective_plan(history[:3]).plan_id == "WL-07"  # type: ignore[union-attr]
    final = effective_plan(history)
    assert final is not None
    assert (final.plan_id, final.source, final.since_sequence) == ("WL-03", "automatic", 5)
    other = PlanDecision(6, 6.0, "other", DecisionKind.AUTOMATIC, "WL-00", 1, "x", None)
    with pytest.raises(PlanDecisionError, match="is for incident 'other'"):
        effective_plan([*history, other])


def test_journal_takes_a_real_selection(log: SqlitePlanDecisionLog) -> None:
    site = load_site(SITE_DIR)
    library = load_plan_library(SITE_DIR / "plans", site)
    selection = select_plan(
        library,
        PlanSituation(
            incident_id=INCIDENT,
            gas=Gas.METHANE,
            severity="major",  # type: ignore[arg-type]
            pipeline_id="P1",
            segment_ids=("P1-S3",),
            segment_probabilities=(0.9,),
        ),
    )
    outcome = log.record_automatic(
        incident_id=selection.incident_id,
        plan_id=selection.plan_id,
        plan_version=selection.plan_version,
        time_s=100.0,
        reason=selection.explanation,
        details=selection.to_json_dict(),
    )
    stored = log.decisions(INCIDENT)[0]
    assert stored == outcome.decision
    assert stored.details == json.loads(json.dumps(selection.to_json_dict()))
    assert stored.plan_id == "WL-07"
