"""The HTTP API end to end: TestClient against real stores and a real DetectionService."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.generation import GenerationMode
from starlette.websockets import WebSocketDisconnect

from pipesentinel.alarm_config import AlarmConfig
from pipesentinel.api.app import GLB_MEDIA_TYPE, create_app
from pipesentinel.api.audit import AuditLog
from pipesentinel.api.auth import Role, TokenRegistry, mint_token
from pipesentinel.api.context import ApiContext, open_api_context
from pipesentinel.detection.gases import LelBasis
from pipesentinel.detection.incidents import Incident, IncidentStatus
from pipesentinel.ingest.detection_service import DetectionService
from pipesentinel.ingest.records import DeviceStatus, GasReading
from pipesentinel.ingest.response_service import ResponseService
from pipesentinel.ingest.service import IngestStats
from pipesentinel.ingest.storage.frames import FileFrameStore
from pipesentinel.ingest.storage.incidents import IncidentStore
from pipesentinel.ingest.storage.journal import SqliteAlarmJournal
from pipesentinel.ingest.storage.plan_decisions import SqlitePlanDecisionLog
from pipesentinel.ingest.storage.responses import ResponseStore
from pipesentinel.ingest.storage.sqlite import SQLiteStore
from pipesentinel.ingest.topics import MessageKind
from pipesentinel.plans.cap import CapStatus
from pipesentinel.plans.response import ResponseContext
from pipesentinel.settings import Settings
from pipesentinel.simulation.gltf import read_glb
from pipesentinel.site import Site
from pipesentinel.site_loader import load_site

SITE_DIR = Path(__file__).resolve().parents[2] / "sites" / "wanli"
WAIT_S = 30.0  # deadline of a wait, never asserted as a duration
# 15 000 ppm methane = 34 %LEL on the IEC 60079-20-1 basis (LEL 4.4 %vol): above LOW (20 %LEL).
METHANE_MOLE_FRACTION = 15_000e-6


@pytest.fixture(scope="session")
def site() -> Site:
    return load_site(SITE_DIR)


@pytest.fixture(scope="session")
def response_context(site: Site) -> ResponseContext:
    return ResponseContext.for_site(site, SITE_DIR, cap_status=CapStatus.EXERCISE)


def api_settings(directory: Path) -> Settings:
    return Settings(
        site_dir=SITE_DIR,
        storage={
            "sqlite_path": directory / "telemetry.sqlite3",
            "frames_dir": directory / "frames",
        },
        alarms={
            "journal_path": directory / "journal.sqlite3",
            "incidents_path": directory / "incidents.sqlite3",
        },
        detection={"tick_period_s": 3600.0, "camera_analytics": False},
        response={
            "responses_path": directory / "responses.sqlite3",
            "plan_decisions_path": directory / "plan_decisions.sqlite3",
        },
        api={
            "tokens_path": directory / "tokens.json",
            "audit_path": directory / "audit.sqlite3",
            "stream_queue_messages": 64,
        },
    )


@dataclass
class Api:
    """A running app over real stores, with one token per role."""

    client: TestClient
    context: ApiContext
    tokens: dict[Role, str]

    def headers(self, role: Role) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}


def wait_until(condition: Callable[[], bool], timeout_s: float = WAIT_S) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def gas_readings(
    site: Site, device_id: str, times_s: list[float], mole_fraction: float
) -> list[GasReading]:
    return [
        GasReading(
            site_id=site.id,
            device_id=device_id,
            time_s=t,
            seq=index + 1,
            methane_mole_fraction=mole_fraction,
            propane_mole_fraction=0.0,
            status=DeviceStatus.OK,
            fault_code=None,
            received_time_s=t,
        )
        for index, t in enumerate(times_s)
    ]


@pytest.fixture
def make_api(
    tmp_path: Path, site: Site, response_context: ResponseContext
) -> Iterator[Callable[..., Api]]:
    """Build an app: ``live=True`` with a real DetectionService and ResponseService."""
    opened: list[Callable[[], None]] = []

    def build(*, live: bool = True, clock: Callable[[], float] = time.time) -> Api:
        settings = api_settings(tmp_path)
        telemetry = SQLiteStore(settings.storage.sqlite_path)
        journal = SqliteAlarmJournal(settings.alarms.journal_path)
        incidents = IncidentStore(settings.alarms.incidents_path)
        responses = ResponseStore(settings.response.responses_path)
        decisions = SqlitePlanDecisionLog(settings.response.plan_decisions_path)
        audit = AuditLog(settings.api.audit_path)
        opened.extend(
            item.close for item in (telemetry, journal, incidents, responses, decisions, audit)
        )
        detection = None
        response = None
        if live:
            detection = DetectionService(
                settings=settings,
                site=site,
                journal=journal,
                incident_store=incidents,
                alarm_config=AlarmConfig.defaults_for(site),
                clock=clock,
            ).start()
            opened.insert(0, detection.stop)
            response = ResponseService(
                context=response_context, store=responses, decisions=decisions
            )
        tokens = {
            role: mint_token(settings.api.tokens_path, name=f"{role.value}-user", role=role)
            for role in Role
        }
        context = ApiContext(
            settings=settings,
            site=site,
            telemetry=telemetry,
            journal=journal,
            incidents=incidents,
            responses=responses,
            plan_decisions=decisions,
            tokens=TokenRegistry(settings.api.tokens_path),
            audit=audit,
            frames=FileFrameStore(settings.storage.frames_dir, kept_per_channel=2),
            detection=detection,
            response=response,
            response_context=response_context,
            clock=clock,
        )
        client = TestClient(create_app(context))
        opened.insert(0, client.close)
        return Api(client=client, context=context, tokens=tokens)

    yield build
    for close in opened:
        close()


ZONE_ALARM = "zone.P1-S3.suspected_leak"  # GD07 is in zone P1-S3 (sites/wanli/site.toml)
GAS_ALARM = "GD07.methane.low"


def raise_gas_alarm(api: Api, site: Site) -> None:
    """GD07 reads 34 %LEL three times 1.1 s apart (the on-delay is 1 s): LOW and a suspect."""
    detection = api.context.detection
    assert detection is not None
    start_s = time.time() - 10.0
    detection.submit(
        gas_readings(site, "GD07", [start_s, start_s + 1.1, start_s + 2.2], METHANE_MOLE_FRACTION)
    )

    def raised() -> bool:
        states = {s.alarm_id: s for s in detection.alarm_snapshots()}
        return ZONE_ALARM in states and states[ZONE_ALARM].active

    assert wait_until(raised), "the suspected-leak alarm was not raised"


# --- authentication and roles ----------------------------------------------------------------


def test_healthz_and_openapi_need_no_token(make_api: Callable[..., Api]) -> None:
    api = make_api(live=False)
    health = api.client.get("/healthz")
    assert health.status_code == 200
    assert health.json()["status"] == "ok"
    spec = api.client.get("/openapi.json").json()
    assert "/api/v1/alarms/{alarm_id}/acknowledge" in spec["paths"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/alarms"),
        ("GET", "/metrics"),
        ("POST", f"/api/v1/alarms/{ZONE_ALARM}/acknowledge"),
    ],
)
@pytest.mark.parametrize("authorization", [None, "Bearer ps_not-a-token", "Basic dXNlcjpwdw=="])
def test_no_token_or_a_bad_token_is_401(
    make_api: Callable[..., Api], method: str, path: str, authorization: str | None
) -> None:
    api = make_api(live=False)
    headers = {} if authorization is None else {"Authorization": authorization}
    answer = api.client.request(method, path, headers=headers, json={})
    assert answer.status_code == 401
    assert "token" in answer.json()["detail"]
    assert answer.headers["www-authenticate"].startswith("Bearer")


def test_a_viewer_reads_but_may_not_act_and_the_refusal_is_audited(
    make_api: Callable[..., Api], site: Site
) -> None:
    api = make_api()
    raise_gas_alarm(api, site)
    assert api.client.get("/api/v1/alarms", headers=api.headers(Role.VIEWER)).status_code == 200
    refused = api.client.post(
        f"/api/v1/alarms/{ZONE_ALARM}/acknowledge", headers=api.headers(Role.VIEWER), json={}
    )
    assert refused.status_code == 403
    assert "needs duty_officer" in refused.json()["detail"]
    entry = api.context.audit.entries(limit=1)[0]
    assert (entry.actor, entry.role, entry.status_code) == ("viewer-user", "viewer", 403)
    assert entry.route == "/api/v1/alarms/{alarm_id}/acknowledge"
    # The audit log is for admins only.
    assert api.client.get("/api/v1/audit", headers=api.headers(Role.DUTY_OFFICER)).status_code == (
        403
    )
    listed = api.client.get("/api/v1/audit", headers=api.headers(Role.ADMIN)).json()
    assert listed[0]["status_code"] == 403
    assert api.context.audit.verify() == len(listed)


def test_me_names_the_token_holder(make_api: Callable[..., Api]) -> None:
    api = make_api(live=False)
    answer = api.client.get("/api/v1/me", headers=api.headers(Role.DUTY_OFFICER))
    assert answer.json() == {"name": "duty_officer-user", "role": "duty_officer"}


# --- alarms -------------------------------------------------------------------------------------


def test_an_officer_acknowledges_a_live_alarm_once(
    make_api: Callable[..., Api], site: Site
) -> None:
    api = make_api()
    raise_gas_alarm(api, site)
    officer = api.headers(Role.DUTY_OFFICER)
    listed = api.client.get("/api/v1/alarms", params={"active": "true"}, headers=officer).json()
    ids = [item["alarm_id"] for item in listed["items"]]
    assert ZONE_ALARM in ids
    assert GAS_ALARM in ids
    priorities = [item["definition"]["priority"] for item in listed["items"]]
    ranks = {"critical": 3, "high": 2, "medium": 1, "low": 0}
    assert [ranks[p] for p in priorities] == sorted((ranks[p] for p in priorities), reverse=True)
    assert listed["total"] == len(ids)
    high = api.client.get(
        "/api/v1/alarms", params={"priority": "high", "state": "unack"}, headers=officer
    ).json()
    assert all(item["definition"]["priority"] == "high" for item in high["items"])
    assert ZONE_ALARM in [item["alarm_id"] for item in high["items"]]

    acked = api.client.post(
        f"/api/v1/alarms/{ZONE_ALARM}/acknowledge", headers=officer, json={"comment": "seen"}
    )
    assert acked.status_code == 200, acked.text
    assert acked.json()["state"] == "acked"
    last = acked.json()["events"][-1]
    assert (last["event"], last["user"]) == ("acknowledged", "duty_officer-user")

    again = api.client.post(f"/api/v1/alarms/{ZONE_ALARM}/acknowledge", headers=officer, json={})
    assert again.status_code == 409
    assert "refused in state acked" in again.json()["detail"]
    statuses = [entry.status_code for entry in api.context.audit.entries(limit=10)]
    assert statuses == [409, 200]

    # The officer confirms the suspected zone by hand: an incident opens for it.
    unknown = api.client.post("/api/v1/zones/P9-S9/confirm", headers=officer, json={"reason": "x"})
    assert unknown.status_code == 404
    confirmed = api.client.post(
        "/api/v1/zones/P1-S3/confirm", headers=officer, json={"reason": "smell reported"}
    )
    assert confirmed.status_code == 200, confirmed.text
    incident = confirmed.json()
    assert "P1-S3" in incident["zones"]
    listed = api.client.get("/api/v1/incidents", headers=officer).json()["items"]
    assert [item["incident_id"] for item in listed] == [incident["incident_id"]]
    quiet = api.client.post(
        "/api/v1/zones/P1-S1/confirm", headers=officer, json={"reason": "smell reported"}
    )
    assert quiet.status_code == 409
    assert "not suspected" in quiet.json()["detail"]


def test_alarm_errors_name_what_was_wrong(make_api: Callable[..., Api], site: Site) -> None:
    api = make_api()
    raise_gas_alarm(api, site)
    officer = api.headers(Role.DUTY_OFFICER)
    unknown = api.client.post(
        "/api/v1/alarms/GD99.methane.low/acknowledge", headers=officer, json={}
    )
    assert unknown.status_code == 404
    assert "GD99.methane.low" in unknown.json()["detail"]
    no_reason = api.client.post(f"/api/v1/alarms/{GAS_ALARM}/shelve", headers=officer, json={})
    assert no_reason.status_code == 422
    assert "reason" in str(no_reason.json()["detail"])
    blank = api.client.post(
        f"/api/v1/alarms/{GAS_ALARM}/shelve", headers=officer, json={"reason": "   "}
    )
    assert blank.status_code == 422
    too_long = api.client.post(
        f"/api/v1/alarms/{GAS_ALARM}/shelve",
        headers=officer,
        json={"reason": "calibration", "mode": "timed", "duration_s": 9 * 3600.0},
    )
    assert too_long.status_code == 422  # longer than alarms.max_shelve_s (8 h)
    assert "alarms.max_shelve_s" in too_long.json()["detail"]
    untimed = api.client.post(
        f"/api/v1/alarms/{GAS_ALARM}/shelve",
        headers=officer,
        json={"reason": "calibration", "mode": "timed"},
    )
    assert untimed.status_code == 422
    assert "needs duration_s" in str(untimed.json()["detail"])
    assert "GD07.methane.low" in api.client.get(f"/api/v1/alarms/{GAS_ALARM}", headers=officer).text
    shelved = api.client.post(
        f"/api/v1/alarms/{GAS_ALARM}/shelve",
        headers=officer,
        json={"reason": "calibration", "mode": "timed", "duration_s": 600.0},
    )
    assert shelved.status_code == 200, shelved.text
    assert shelved.json()["state"] == "shelved"
    assert shelved.json()["record"]["shelve_reason"] == "calibration"
    not_latched = api.client.post(f"/api/v1/alarms/{ZONE_ALARM}/reset", headers=officer, json={})
    assert not_latched.status_code == 409
    assert api.client.get("/api/v1/alarms/nope", headers=officer).status_code == 404
    paged = api.client.get("/api/v1/alarms", params={"limit": 100_000}, headers=officer)
    assert paged.status_code == 422
    assert "maximum" in paged.json()["detail"]
    huge = api.client.post(
        f"/api/v1/alarms/{GAS_ALARM}/comment", headers=officer, json={"text": "x" * 10_000}
    )
    assert huge.status_code == 422  # longer than 2000 characters
    entry = api.context.audit.entries(limit=1)[0]
    assert entry.body_summary.endswith("... (10011 bytes)")  # '{"text":"' + 10 000 x + '"}'
    assert entry.status_code == 422
    assert "text" in entry.result


def test_comment_is_journaled(make_api: Callable[..., Api], site: Site) -> None:
    api = make_api()
    raise_gas_alarm(api, site)
    answer = api.client.post(
        f"/api/v1/alarms/{ZONE_ALARM}/comment",
        headers=api.headers(Role.DUTY_OFFICER),
        json={"text": "crew on the way"},
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["events"][-1]["event"] == "comment"


def test_without_services_alarms_come_from_the_journal_and_writes_are_503(
    make_api: Callable[..., Api], site: Site
) -> None:
    live = make_api()
    raise_gas_alarm(live, site)
    officer = live.headers(Role.DUTY_OFFICER)
    live.client.post(f"/api/v1/alarms/{ZONE_ALARM}/acknowledge", headers=officer, json={})
    expected = live.client.get("/api/v1/alarms", headers=officer).json()
    assert live.context.detection is not None
    live.context.detection.stop()

    reader = make_api(live=False)
    officer = reader.headers(Role.DUTY_OFFICER)
    assert reader.client.get("/api/v1/alarms", headers=officer).json() == expected
    refused = reader.client.post(
        f"/api/v1/alarms/{GAS_ALARM}/acknowledge", headers=officer, json={}
    )
    assert refused.status_code == 503
    assert "read-only" in refused.json()["detail"]


# --- readings and devices -------------------------------------------------------------------


def test_history_is_downsampled_into_buckets_of_mean_min_max(
    make_api: Callable[..., Api], site: Site
) -> None:
    api = make_api(live=False)
    start_s = 1_700_000_000.0
    # GD03 reads 0, 1, ..., 9 ppm once a second; 5 buckets of 2 s: (0,1), (2,3), ... by hand.
    readings = [
        reading
        for index in range(10)
        for reading in gas_readings(site, "GD03", [start_s + index], index * 1e-6)
    ]
    api.context.telemetry.write(readings)
    viewer = api.headers(Role.VIEWER)
    answer = api.client.get(
        "/api/v1/readings/history",
        params={
            "device_id": "GD03",
            "field": "methane_mole_fraction",
            "start_s": start_s,
            "end_s": start_s + 10.0,
            "max_points": 5,
        },
        headers=viewer,
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["bucket_s"] == 2.0
    assert body["display_unit"] == "ppm"
    points = body["points"]
    assert [p["time_s"] - start_s for p in points] == [0.0, 2.0, 4.0, 6.0, 8.0]
    assert [round(p["mean"] * 1e6, 9) for p in points] == [0.5, 2.5, 4.5, 6.5, 8.5]
    assert [round(p["min"] * 1e6, 9) for p in points] == [0.0, 2.0, 4.0, 6.0, 8.0]
    assert [round(p["max"] * 1e6, 9) for p in points] == [1.0, 3.0, 5.0, 7.0, 9.0]
    assert [p["count"] for p in points] == [2] * 5

    latest = api.client.get(
        "/api/v1/readings/latest", params={"device_id": "GD03"}, headers=viewer
    ).json()
    value = latest[0]["values"]["methane_mole_fraction"]
    assert value["time_s"] == start_s + 9.0
    assert math.isclose(value["display"]["value"], 9.0)  # 9e-6 mole fraction = 9 ppm
    assert value["display"]["unit"] == "ppm"

    devices = api.client.get("/api/v1/devices", headers=viewer).json()
    gd03 = next(d for d in devices if d["id"] == "GD03")
    assert gd03["health"]["last_reading_time_s"] == start_s + 9.0
    assert gd03["health"]["status"] == "ok"
    assert len(devices) == len(site.devices)


@pytest.mark.parametrize(
    ("params", "status", "says"),
    [
        ({"end_s": 1_700_000_000.0 - 1.0}, 422, "bad time range"),
        ({"end_s": 1_700_000_000.0 + 86400 * 400}, 422, "longer than the limit"),
        ({"field": "speed_m_per_s"}, 422, "its fields are methane_mole_fraction"),
        ({"device_id": "GD99"}, 404, "GD99"),
        ({"max_points": 10**6}, 422, "max_points"),
        ({"start_s": "nan"}, 422, "start_s"),
    ],
)
def test_bad_history_requests_say_what_was_wrong(
    make_api: Callable[..., Api], params: dict[str, Any], status: int, says: str
) -> None:
    api = make_api(live=False)
    query = {
        "device_id": "GD03",
        "field": "methane_mole_fraction",
        "start_s": 1_700_000_000.0,
        "end_s": 1_700_000_010.0,
        **params,
    }
    answer = api.client.get(
        "/api/v1/readings/history", params=query, headers=api.headers(Role.VIEWER)
    )
    assert answer.status_code == status
    assert says in str(answer.json()["detail"])


def test_site_and_unknown_ids(make_api: Callable[..., Api], site: Site) -> None:
    api = make_api(live=False)
    viewer = api.headers(Role.VIEWER)
    sites = api.client.get("/api/v1/sites", headers=viewer).json()
    assert [s["id"] for s in sites] == [site.id]
    assert {p["id"] for p in sites[0]["pipelines"]} == {p.id for p in site.pipelines}
    for path in ("/api/v1/sites/nowhere", "/api/v1/devices/GD99", "/api/v1/incidents/INC-0"):
        answer = api.client.get(path, headers=viewer)
        assert answer.status_code == 404, path
        assert path.rsplit("/", 1)[1] in answer.json()["detail"]
    frame = api.client.get("/api/v1/devices/CAM01/frames/visible/latest", headers=viewer)
    assert frame.status_code == 404


# --- incidents, plans, what-if --------------------------------------------------------------


def located_incident(site: Site, *, chainage_m: float = 690.0) -> Incident:
    """An incident on P1 localised with wind, as the engine keeps it."""
    pipeline = site.pipeline("P1")
    segment = pipeline.segment_at_chainage(chainage_m).id
    now_s = time.time()
    return Incident(
        id="INC-API",
        site_id=site.id,
        opened_time_s=now_s - 60.0,
        updated_time_s=now_s,
        version=1,
        status=IncidentStatus.OPEN,
        zones=("P1-S2",),
        gases=("methane",),
        evidence=(),
        vote_reasons={},
        localisation={
            "gas": "methane",
            "lel_basis": LelBasis.IEC_60079_20_1.value,
            "map_position_m": pipeline.point_at_chainage(chainage_m)[:2].tolist(),
            "map_pipeline_id": "P1",
            "map_chainage_m": chainage_m,
            "segments": [{"segment_id": segment, "pipeline_id": "P1", "probability": 0.95}],
            "credible_intervals": [],
            "rate": {
                "median_kg_per_s": 2.0,
                "lower_kg_per_s": 1.0,
                "upper_kg_per_s": 4.0,
                "at_prior_bound": False,
            },
            "wind": {
                "speed_m_per_s": 1.5,
                "direction_from_rad": math.radians(158.0),
                "sigma_theta_rad": math.radians(5.0),
                "stability_class": "E",
            },
            "flags": [],
        },
        active_zones=("P1-S2",),
    )


def test_an_incident_comes_with_its_response_and_plan_decisions(
    make_api: Callable[..., Api], site: Site
) -> None:
    api = make_api()
    incident = located_incident(site)
    api.context.incidents.append([incident])
    assert api.context.response is not None
    answered = api.context.response.answer(incident)
    assert answered is not None
    viewer, officer = api.headers(Role.VIEWER), api.headers(Role.DUTY_OFFICER)

    listed = api.client.get("/api/v1/incidents", params={"status": "open"}, headers=viewer).json()
    assert [item["incident_id"] for item in listed["items"]] == ["INC-API"]
    view = api.client.get("/api/v1/incidents/INC-API", headers=viewer).json()
    assert view["localisation"]["map_pipeline_id"] == "P1"
    assert view["response"]["plan"]["plan_id"] == answered.selection.plan_id
    assert view["response"]["plan"]["checklist"]
    assert view["response"]["valves"] == answered.isolation.to_json_dict()
    assert view["zones_geojson"]["type"] == "FeatureCollection"
    assert view["plan_in_effect"]["source"] == "automatic"
    zones = api.client.get("/api/v1/incidents/INC-API/zones", headers=viewer)
    assert zones.headers["content-type"].startswith("application/geo+json")
    assert zones.json() == view["zones_geojson"]
    versions = api.client.get("/api/v1/incidents/INC-API/versions", headers=viewer).json()
    assert [v["version"] for v in versions] == [1]

    base = "/api/v1/incidents/INC-API/plan-decisions"
    assert api.client.post(f"{base}/confirm", headers=viewer, json={}).status_code == 403
    confirmed = api.client.post(f"{base}/confirm", headers=officer, json={"reason": "ok"})
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json()["in_effect"]["confirmed_by"] == "duty_officer-user"
    unknown = api.client.post(
        f"{base}/override", headers=officer, json={"plan_id": "NOPE", "reason": "x"}
    )
    assert unknown.status_code == 422
    assert "NOPE" in unknown.json()["detail"]
    other = next(
        plan["id"]
        for plan in api.client.get("/api/v1/plans", headers=viewer).json()
        if plan["id"] != answered.selection.plan_id
    )
    overridden = api.client.post(
        f"{base}/override", headers=officer, json={"plan_id": other, "reason": "wind shift"}
    )
    assert overridden.status_code == 200, overridden.text
    assert overridden.json()["in_effect"]["plan_id"] == other
    assert overridden.json()["in_effect"]["override_active"] is True
    released = api.client.post(f"{base}/release", headers=officer, json={"reason": "over"})
    assert released.json()["in_effect"]["plan_id"] == answered.selection.plan_id
    again = api.client.post(f"{base}/release", headers=officer, json={"reason": "over"})
    assert again.status_code == 409
    kinds = [d["kind"] for d in api.client.get(base, headers=viewer).json()["decisions"]]
    assert kinds == ["automatic", "confirmation", "override", "release"]
    # Not one the live tracker holds (it came straight into the store): 409 with the reason.
    closed = api.client.post(
        "/api/v1/incidents/INC-API/close", headers=officer, json={"reason": "test"}
    )
    assert closed.status_code == 409
    assert "INC-API" in closed.json()["detail"]


def test_plans_are_listed_and_unknown_ones_are_404(make_api: Callable[..., Api]) -> None:
    api = make_api(live=False)
    viewer = api.headers(Role.VIEWER)
    plans = api.client.get("/api/v1/plans", headers=viewer).json()
    assert plans
    assert all("id" in plan for plan in plans)
    one = api.client.get(f"/api/v1/plans/{plans[0]['id']}", headers=viewer).json()
    assert one == plans[0]
    assert api.client.get("/api/v1/plans/NOPE", headers=viewer).status_code == 404


def test_what_if_answers_without_changing_anything(make_api: Callable[..., Api]) -> None:
    api = make_api(live=False)
    viewer = api.headers(Role.VIEWER)
    leak = {
        "rate_kg_per_s": 2.0,
        "wind_speed_m_per_s": 1.5,
        "wind_from_deg": 158.0,
        "stability_class": "E",
        "pipeline_id": "P1",
        "chainage_m": 690.0,
        "time_s": 1718157600.0,
    }
    answer = api.client.post("/api/v1/what-if", headers=viewer, json=leak)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["leak"]["origin"] == "what_if"
    assert body["plan"]["plan_id"]
    assert body["isolation"]
    assert body["zones_geojson"]["type"] == "FeatureCollection"
    assert api.context.responses.latest("WHATIF") is None
    assert api.context.plan_decisions.decisions("WHATIF") == []
    off_line = api.client.post("/api/v1/what-if", headers=viewer, json={**leak, "chainage_m": 1e7})
    assert off_line.status_code == 422
    assert "chainage_m" in off_line.json()["detail"]
    unknown = api.client.post("/api/v1/what-if", headers=viewer, json={**leak, "pipeline_id": "P9"})
    assert unknown.status_code == 422
    assert "P9" in unknown.json()["detail"]
    both = api.client.post(
        "/api/v1/what-if", headers=viewer, json={**leak, "position_m": [0.0, 0.0]}
    )
    assert both.status_code == 422
    calm = api.client.post(
        "/api/v1/what-if", headers=viewer, json={**leak, "wind_speed_m_per_s": 0.0}
    )
    assert calm.status_code == 422


# --- metrics and stream ---------------------------------------------------------------------


def test_metrics_count_requests_by_route_and_show_the_services(
    make_api: Callable[..., Api], site: Site
) -> None:
    api = make_api()
    raise_gas_alarm(api, site)
    viewer = api.headers(Role.VIEWER)
    for _ in range(3):
        api.client.get("/api/v1/alarms", headers=viewer)
    api.client.get("/api/v1/devices/GD99", headers=viewer)
    text = api.client.get("/metrics", headers=viewer)
    assert text.headers["content-type"].startswith("text/plain; version=0.0.4")
    lines = text.text.splitlines()
    assert (
        'pipesentinel_http_requests_total{method="GET",route="/api/v1/alarms",status="200"} 3'
        in (lines)
    )
    assert (
        'pipesentinel_http_requests_total{method="GET",route="/api/v1/devices/{device_id}",'
        'status="404"} 1'
    ) in lines
    assert any(line.startswith("pipesentinel_detection_records_total 3") for line in lines)
    assert "# TYPE pipesentinel_http_request_duration_seconds histogram" in lines


def test_the_stream_refuses_a_bad_token(make_api: Callable[..., Api]) -> None:
    api = make_api(live=False)
    for url in ("/api/v1/stream", "/api/v1/stream?token=ps_wrong"):
        with pytest.raises(WebSocketDisconnect) as refused, api.client.websocket_connect(url):
            pass
        assert refused.value.code == 1008


def test_the_stream_pushes_alarm_events_and_readings(
    make_api: Callable[..., Api], site: Site
) -> None:
    api = make_api()
    client: TestClient = api.client
    token = api.tokens[Role.VIEWER]
    with client.websocket_connect(f"/api/v1/stream?token={token}") as socket:
        hello = socket.receive_json()
        assert hello == {
            "type": "hello",
            "user": "viewer-user",
            "role": "viewer",
            "queue_messages": 64,
        }
        raise_gas_alarm(api, site)
        seen: set[str] = set()
        while ZONE_ALARM not in seen:
            message = socket.receive_json()
            if message["type"] == "alarm_event" and message["event"] == "activated":
                seen.add(message["alarm_id"])
        broadcaster = client.app.state.api.broadcaster  # type: ignore[attr-defined]
        broadcaster.on_records(gas_readings(site, "GD05", [time.time()], 2e-6))
        while (message := socket.receive_json())["type"] != "readings":
            pass
        assert message["records"][0]["device_id"] == "GD05"
        assert message["records"][0]["methane_mole_fraction"] == 2e-6
    assert wait_until(lambda: broadcaster.stats().clients == 0)


# --- fuzzing the OpenAPI spec ---------------------------------------------------------------

# Per operation, valid and invalid requests mixed: keeps the run well under a minute (2 shared
# cores).
FUZZ_EXAMPLES = 16


@pytest.fixture
def fuzzed_api(make_api: Callable[..., Api], site: Site) -> Api:
    api = make_api()
    raise_gas_alarm(api, site)
    return api


@pytest.mark.timeout(120)
def test_no_generated_request_gets_a_5xx(fuzzed_api: Api) -> None:
    """Schemathesis over the OpenAPI spec with a duty officer's token: never a server error.

    Each operation is driven by its hypothesis strategy (schemathesis' lazy pytest loader does
    not work with this pytest); the number of examples is bounded to keep the run short.
    """
    schema = schemathesis.openapi.from_asgi("/openapi.json", fuzzed_api.client.app)
    headers = fuzzed_api.headers(Role.DUTY_OFFICER)
    operations = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), f"the spec has an invalid operation: {result}"
        operations.append(result.ok())
    assert len(operations) >= 20

    for operation in operations:

        @given(
            case=st.one_of(
                operation.as_strategy(GenerationMode.POSITIVE),
                operation.as_strategy(GenerationMode.NEGATIVE),
            )
        )
        @settings(
            max_examples=FUZZ_EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def no_server_error(case: schemathesis.Case[Any]) -> None:
            case.call_and_validate(headers=headers, checks=[not_a_server_error])

        no_server_error()


def test_the_context_opens_the_stores_named_by_the_settings(tmp_path: Path, site: Site) -> None:
    settings = api_settings(tmp_path)
    token = mint_token(settings.api.tokens_path, name="ops", role=Role.VIEWER)
    stats = IngestStats(
        connected=True,
        protocol="MQTTv5",
        connections=1,
        accepted_by_kind={MessageKind.GAS: 7},
        rejected_by_reason={},
        queue_depth=2,
        queue_capacity=2000,
        unacknowledged=0,
        batches_written=3,
        records_written=7,
        rejections_dead_lettered=0,
        storage_retries=0,
        queue_overflows=0,
        device_reboots=0,
        subscriber_errors=0,
        left_for_redelivery=0,
        service_messages_passed=0,
        last_error=None,
    )
    with (
        open_api_context(settings, site, ingest_stats=lambda: stats) as context,
        TestClient(create_app(context)) as client,
    ):
        headers = {"Authorization": f"Bearer {token}"}
        assert client.get("/api/v1/sites", headers=headers).json()[0]["id"] == site.id
        lines = client.get("/metrics", headers=headers).text.splitlines()
    assert 'pipesentinel_ingest_accepted_by_kind_total{key="gas"} 7' in lines
    assert "pipesentinel_ingest_queue_depth 2" in lines
    assert "pipesentinel_ingest_connected 1" in lines
    assert settings.api.audit_path.exists()
    assert settings.alarms.journal_path.exists()


# --- 3D model ----------------------------------------------------------------------------------


def test_scene_glb_names_every_pipeline_segment_and_needs_a_token(
    make_api: Callable[..., Api], site: Site
) -> None:
    api = make_api(live=False)
    assert api.client.get("/api/v1/scene.glb").status_code == 401
    answer = api.client.get("/api/v1/scene.glb", headers=api.headers(Role.VIEWER))
    assert answer.status_code == 200
    assert answer.headers["content-type"] == GLB_MEDIA_TYPE
    document, _ = read_glb(answer.content)
    names = {node.get("name") for node in document["nodes"]}
    segments = {segment.id for pipeline in site.pipelines for segment in pipeline.segments}
    assert segments
    assert segments <= names
    # Built once: the second answer is the same bytes.
    again = api.client.get("/api/v1/scene.glb", headers=api.headers(Role.VIEWER))
    assert again.content == answer.content
