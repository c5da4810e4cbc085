"""The live response service: answered off the caller's thread, kept, journaled, published."""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from pipesentinel.detection.gases import LelBasis
from pipesentinel.detection.incidents import Incident, IncidentStatus
from pipesentinel.hardware.testbed import MosquittoProcess
from pipesentinel.ingest.notifications import Notifier
from pipesentinel.ingest.response_service import ResponseService
from pipesentinel.ingest.storage.plan_decisions import SqlitePlanDecisionLog
from pipesentinel.ingest.storage.responses import ResponseStore
from pipesentinel.notification_settings import NotificationSettings
from pipesentinel.plans.cap import CapStatus, validate_cap
from pipesentinel.plans.response import ResponseContext
from pipesentinel.settings import BrokerSettings
from pipesentinel.site import Site
from pipesentinel.site_loader import load_site

SITE_DIR = Path(__file__).resolve().parents[2] / "sites" / "wanli"
WAIT_S = 60.0  # deadline of a wait (generous for slow CI machines), never asserted
T0_S = 1718157600.0  # 2024-06-12 10:00 Asia/Shanghai


@pytest.fixture(scope="module")
def site() -> Site:
    return load_site(SITE_DIR)


@pytest.fixture(scope="module")
def context(site: Site) -> ResponseContext:
    return ResponseContext.for_site(site, SITE_DIR, cap_status=CapStatus.EXERCISE)


def wait_until(condition: Callable[[], bool], timeout_s: float = WAIT_S) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def localisation(site: Site, *, chainage_m: float, wind_from_deg: float) -> dict[str, Any]:
    """A localisation as the engine attaches it (``LocalisationResult.to_json_dict`` keys)."""
    pipeline = site.pipeline("P1")
    segment = pipeline.segment_at_chainage(chainage_m).id
    return {
        "gas": "methane",
        "lel_basis": LelBasis.IEC_60079_20_1.value,
        "map_position_m": pipeline.point_at_chainage(chainage_m)[:2].tolist(),
        "map_pipeline_id": "P1",
        "map_chainage_m": chainage_m,
        "segments": [{"segment_id": segment, "pipeline_id": "P1", "probability": 0.95}],
        "credible_intervals": [
            {
                "pipeline_id": "P1",
                "start_chainage_m": chainage_m - 20.0,
                "end_chainage_m": chainage_m + 20.0,
                "probability": 0.9,
            }
        ],
        "rate": {
            "median_kg_per_s": 2.0,  # below the 3 kg/s of a major release (ResponsePolicy)
            "lower_kg_per_s": 1.0,
            "upper_kg_per_s": 4.0,
            "at_prior_bound": False,
        },
        "wind": {
            "speed_m_per_s": 1.5,
            "direction_from_rad": math.radians(wind_from_deg),
            "sigma_theta_rad": math.radians(5.0),
            "stability_class": "E",
        },
        "flags": [],
    }


def incident(version: int, located: dict[str, Any] | None, incident_id: str = "INC-R") -> Incident:
    return Incident(
        id=incident_id,
        site_id="wanli",
        opened_time_s=T0_S,
        updated_time_s=T0_S + 10.0 * version,
        version=version,
        status=IncidentStatus.OPEN,
        zones=("P1-S2",),
        gases=("methane",),
        evidence=(),
        vote_reasons={},
        localisation=located,
        active_zones=("P1-S2",),
    )


class Retained:
    """A subscriber collecting the latest payload per topic under a filter."""

    def __init__(self, broker: MosquittoProcess, topic_filter: str) -> None:
        self.messages: dict[str, bytes] = {}
        self._lock = threading.Lock()
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2)
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.subscribe(topic_filter, qos=1)
        self.client.loop_start()

    def _on_message(self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages[message.topic] = bytes(message.payload)

    def get(self, topic: str) -> bytes | None:
        with self._lock:
            return self.messages.get(topic)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.mark.services
def test_responses_are_kept_journaled_and_published(
    tmp_path: Path,
    site: Site,
    context: ResponseContext,
    mosquitto: MosquittoProcess,
    unique_site_id: str,
) -> None:
    toward_kindergarten = 158.0  # P1 at 690 m: the gas drifts to Xicheng Kindergarten (B20)
    settings = NotificationSettings(
        log_path=tmp_path / "notifications.sqlite3",
        mqtt_enabled=True,
        mqtt_client_id=f"notifier-{unique_site_id}",
    )
    broker = BrokerSettings(url=mosquitto.url, reconnect_min_delay_s=0.05)
    root = f"pipesentinel/v1/{unique_site_id}/incidents/INC-R"
    watcher = Retained(mosquitto, f"{root}/#")
    store = ResponseStore(tmp_path / "responses.sqlite3")
    decisions = SqlitePlanDecisionLog(tmp_path / "plan_decisions.sqlite3")
    try:
        with (
            Notifier(settings=settings, site_id=unique_site_id, broker=broker) as notifier,
            ResponseService(
                context=context, store=store, decisions=decisions, notifier=notifier
            ) as service,
        ):
            service.offer([incident(1, None)])  # not localised yet: nothing to answer
            assert service.wait_idle(WAIT_S)
            service.offer([incident(2, localisation(site, chainage_m=690.0, wind_from_deg=158.0))])
            assert service.wait_idle(WAIT_S)
            assert notifier.wait_idle(WAIT_S)
            assert wait_until(lambda: watcher.get(f"{root}/plan") is not None)
            assert wait_until(lambda: watcher.get(f"{root}/alert") is not None)
            # The kindergarten is downwind by day: its plan is selected, journaled and told.
            plan = json.loads(watcher.get(f"{root}/plan") or b"{}")
            assert plan["plan_id"] == "WL-02"
            assert plan["decision"] == "automatic"
            response = json.loads(watcher.get(f"{root}/response") or b"{}")
            assert response["plan"]["plan_id"] == "WL-02"
            assert response["incident_version"] == 2
            zones = json.loads(watcher.get(f"{root}/zones") or b"{}")
            assert zones["type"] == "FeatureCollection"
            first_alert = (watcher.get(f"{root}/alert") or b"").decode()
            validate_cap(first_alert)
            assert "<msgType>Alert</msgType>" in first_alert
            # The wind turns away from the kindergarten: a new version, an Update, a plan change.
            away = (toward_kindergarten + 180.0) % 360.0
            service.offer([incident(3, localisation(site, chainage_m=690.0, wind_from_deg=away))])
            assert service.wait_idle(WAIT_S)
            assert notifier.wait_idle(WAIT_S)
            assert wait_until(
                lambda: b"<msgType>Update</msgType>" in (watcher.get(f"{root}/alert") or b"")
            )
            assert wait_until(
                lambda: json.loads(watcher.get(f"{root}/plan") or b"{}").get("plan_id") != "WL-02"
            )
            stats = service.stats
            assert (stats.responded, stats.not_localised, stats.failed) == (2, 1, 0)
            assert stats.plan_changes == 2
        assert [r.incident_version for r in store.history("INC-R")] == [2, 3]
        journal = decisions.decisions("INC-R")
        assert journal[0].plan_id == "WL-02"
        assert len(journal) == 2
    finally:
        watcher.close()
        store.close()
        decisions.close()


def test_restart_answers_nothing_twice_and_continues_the_alert_chain(
    tmp_path: Path, site: Site, context: ResponseContext
) -> None:
    located = localisation(site, chainage_m=2236.0, wind_from_deg=80.0)
    paths = (tmp_path / "responses.sqlite3", tmp_path / "plan_decisions.sqlite3")
    with ResponseStore(paths[0]) as store, SqlitePlanDecisionLog(paths[1]) as decisions:
        service = ResponseService(context=context, store=store, decisions=decisions)
        first = service.answer(incident(5, located))
        assert first is not None
    with ResponseStore(paths[0]) as store, SqlitePlanDecisionLog(paths[1]) as decisions:
        service = ResponseService(context=context, store=store, decisions=decisions)
        assert service.answer(incident(5, located)) is None  # answered before the restart
        assert service.stats.already_answered == 1
        later = service.answer(incident(6, located))
        assert later is not None
        assert "<msgType>Update</msgType>" in later.cap_xml
        assert first.cap_identifier in later.cap_xml  # references the alert it updates
        assert len(decisions.decisions("INC-R")) == 1  # same plan: no second journal row


def test_a_failing_update_is_counted_kept_and_the_next_one_answered(
    tmp_path: Path, site: Site, context: ResponseContext
) -> None:
    broken = localisation(site, chainage_m=2236.0, wind_from_deg=80.0)
    broken["wind"] = {**broken["wind"], "stability_class": "Z"}
    with (
        ResponseStore(tmp_path / "responses.sqlite3") as store,
        SqlitePlanDecisionLog(tmp_path / "plan_decisions.sqlite3") as decisions,
        ResponseService(context=context, store=store, decisions=decisions) as service,
    ):
        service.offer([incident(1, broken, "INC-A")])
        service.offer(
            [incident(1, localisation(site, chainage_m=2236.0, wind_from_deg=80.0), "INC-B")]
        )
        assert service.wait_idle(WAIT_S)
        assert (service.stats.failed, service.stats.responded) == (1, 1)
        (failure,) = service.failures
        assert (failure.incident_id, failure.incident_version) == ("INC-A", 1)
        assert "Z" in failure.reason
        # A newer queued version of one incident supersedes an older one.
        service.offer([incident(2, None, "INC-C"), incident(1, None, "INC-C")])
        assert service.wait_idle(WAIT_S)
        assert service.stats.superseded >= 1
