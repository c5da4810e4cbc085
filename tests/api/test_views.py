"""The API's domain functions without HTTP: alarm order, journal replay, paging, what-if checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipesentinel.api.errors import BadRequestError, ConflictError
from pipesentinel.api.views import AlarmReader, alarm_list, paginate, plan_decision, what_if
from pipesentinel.detection.alarms import AlarmDefinition, AlarmKind, AlarmManager, Priority
from pipesentinel.detection.gases import LelBasis
from pipesentinel.detection.stability import StabilityClass
from pipesentinel.ingest.storage.journal import SqliteAlarmJournal
from pipesentinel.ingest.storage.plan_decisions import SqlitePlanDecisionLog
from pipesentinel.plans.cap import CapStatus
from pipesentinel.plans.library import Severity
from pipesentinel.plans.response import ResponseContext
from pipesentinel.site import Gas
from pipesentinel.site_loader import load_site

SITE_DIR = Path(__file__).resolve().parents[2] / "sites" / "wanli"
T0_S = 1.7e9


def _manager(journal: SqliteAlarmJournal) -> AlarmManager:
    manager = AlarmManager(journal)
    for alarm_id, priority in (("a.low", Priority.LOW), ("b.high", Priority.HIGH)):
        manager.register(
            AlarmDefinition(alarm_id=alarm_id, kind=AlarmKind.GAS, priority=priority),
            time_s=T0_S,
        )
    manager.register(
        AlarmDefinition(alarm_id="c.high", kind=AlarmKind.GAS, priority=Priority.HIGH),
        time_s=T0_S,
    )
    manager.update("a.low", active=True, time_s=T0_S + 1)
    manager.update("c.high", active=True, time_s=T0_S + 2)
    manager.update("b.high", active=True, time_s=T0_S + 3)
    manager.acknowledge("b.high", user="alice", time_s=T0_S + 4)
    return manager


def test_alarms_are_ordered_by_priority_then_unacknowledged_then_newest(tmp_path: Path) -> None:
    with SqliteAlarmJournal(tmp_path / "journal.sqlite3") as journal:
        manager = _manager(journal)
        listed = alarm_list(manager.alarms())
        # c and b are both high; c waits for acknowledgement, so it comes first.
        assert [a["alarm_id"] for a in listed] == ["c.high", "b.high", "a.low"]
        assert [a["alarm_id"] for a in alarm_list(manager.alarms(), priorities=[Priority.LOW])] == [
            "a.low"
        ]
        acked = alarm_list(manager.alarms(), states=[manager.alarm("b.high").state])
        assert [a["alarm_id"] for a in acked] == ["b.high"]


def test_the_journal_replay_gives_the_live_states_and_follows_new_entries(tmp_path: Path) -> None:
    with SqliteAlarmJournal(tmp_path / "journal.sqlite3") as journal:
        manager = _manager(journal)
        reader = AlarmReader(journal)
        assert reader.snapshots() == manager.alarms()
        manager.acknowledge("c.high", user="bob", time_s=T0_S + 5)
        assert reader.snapshots() == manager.alarms()
        assert journal.last_sequence() == manager.sequence


def test_paginate_says_the_total() -> None:
    assert paginate(list(range(5)), limit=2, offset=3) == {
        "total": 5,
        "limit": 2,
        "offset": 3,
        "items": [3, 4],
    }


@pytest.fixture(scope="module")
def context() -> ResponseContext:
    return ResponseContext.for_site(load_site(SITE_DIR), SITE_DIR, cap_status=CapStatus.EXERCISE)


def test_what_if_refuses_what_does_not_fit_the_site(context: ResponseContext) -> None:
    leak = {
        "gas": Gas.METHANE,
        "rate_kg_per_s": 1.0,
        "wind_speed_m_per_s": 2.0,
        "wind_from_deg": 90.0,
        "stability_class": StabilityClass.D,
        "severity": Severity.CONFIRMED,
        "time_s": T0_S,
        "lel_basis": LelBasis.IEC_60079_20_1,
    }
    with pytest.raises(BadRequestError, match="pipeline_id with chainage_m, or position_m"):
        what_if(context, **leak)  # type: ignore[arg-type]
    with pytest.raises(BadRequestError, match="not underground zones"):
        what_if(context, position_m=(0.0, 0.0), underground_zone_ids=["NOPE"], **leak)  # type: ignore[arg-type]


def test_plan_decisions_that_the_state_does_not_allow_are_conflicts(
    tmp_path: Path, context: ResponseContext
) -> None:
    with SqlitePlanDecisionLog(tmp_path / "decisions.sqlite3") as decisions:
        common = {
            "decisions": decisions,
            "library": context.library,
            "incident_id": "INC-1",
            "actor": "alice",
            "now_s": T0_S,
            "plan_id": None,
        }
        with pytest.raises(ConflictError, match="no plan in effect to confirm"):
            plan_decision(action="confirm", reason=None, **common)  # type: ignore[arg-type]
        with pytest.raises(ConflictError):
            plan_decision(action="release", reason="done", **common)  # type: ignore[arg-type]
        with pytest.raises(BadRequestError, match="a reason is required"):
            plan_decision(action="release", reason=" ", **common)  # type: ignore[arg-type]
        assert decisions.decisions("INC-1") == []
