"""``pipesentinel serve``: storage child, detection chain and the API over a real Mosquitto."""

from __future__ import annotations

import dataclasses
import json
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from pipesentinel.api.auth import Role as ApiRole
from pipesentinel.api.auth import mint_token
from pipesentinel.hardware.testbed import MosquittoProcess
from pipesentinel.ingest.topics import TOPIC_ROOT
from pipesentinel.serve import run_in_thread, serving, uvicorn_server
from pipesentinel.settings import Settings
from pipesentinel.site import Site
from pipesentinel.site_loader import load_site

SITE_DIR = Path(__file__).resolve().parents[1] / "sites" / "wanli"
WAIT_S = 60.0  # deadline of a wait (a child process starts a fresh interpreter), never asserted
POLL_S = 0.1
METHANE_PPM = 15_000.0  # 34 %LEL on the IEC 60079-20-1 basis (LEL 4.4 %vol): above LOW (20 %)
ZONE_ALARM = "zone.P1-S3.suspected_leak"  # GD07 votes in zone P1-S3


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _wait_for(client: httpx.Client, url: str, headers: dict[str, str], found: Any) -> Any:
    deadline = time.monotonic() + WAIT_S
    last: Any = None
    while time.monotonic() < deadline:
        answer = client.get(url, headers=headers)
        if answer.status_code == httpx.codes.OK:
            last = answer.json()
            if found(last):
                return last
        time.sleep(POLL_S)
    pytest.fail(f"{url}: never found; last answer {last}")


def test_serve_raises_an_alarm_the_duty_officer_acknowledges_over_http(
    mosquitto: MosquittoProcess, live_settings: Settings, unique_site_id: str
) -> None:
    site: Site = dataclasses.replace(load_site(SITE_DIR), id=unique_site_id)
    settings = live_settings
    officer = {
        "Authorization": "Bearer "
        + mint_token(settings.api.tokens_path, name="duty1", role=ApiRole.DUTY_OFFICER)
    }
    viewer = {
        "Authorization": "Bearer "
        + mint_token(settings.api.tokens_path, name="crew1", role=ApiRole.VIEWER)
    }
    port = _free_port()
    device = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5
    )
    device.connect(mosquitto.host, mosquitto.port)
    device.loop_start()
    try:
        with serving(settings, site) as running:
            server = uvicorn_server(running.app, host="127.0.0.1", port=port)
            thread = run_in_thread(server)
            base = f"http://127.0.0.1:{port}"
            with httpx.Client(base_url=base, timeout=WAIT_S) as http:
                _wait_for(http, "/healthz", {}, lambda body: body is not None)
                for seq in range(1, 6):
                    body = {
                        "ts": round(time.time() * 1000),
                        "seq": seq,
                        "ch4_ppm": METHANE_PPM,
                        "c3h8_ppm": 0.0,
                        "status": "ok",
                    }
                    device.publish(
                        f"{TOPIC_ROOT}/{site.id}/gas/GD07", json.dumps(body).encode(), qos=1
                    ).wait_for_publish(WAIT_S)
                    time.sleep(1.1)  # the 1 s on-delay needs two readings at least 1 s apart
                alarms = _wait_for(
                    http,
                    "/api/v1/alarms",
                    viewer,
                    lambda body: any(a["alarm_id"] == ZONE_ALARM for a in body["items"]),
                )
                zone = next(a for a in alarms["items"] if a["alarm_id"] == ZONE_ALARM)
                assert zone["state"] == "unack"
                refused = http.post(
                    f"/api/v1/alarms/{ZONE_ALARM}/acknowledge", headers=viewer, json={}
                )
                assert refused.status_code == httpx.codes.FORBIDDEN
                done = http.post(
                    f"/api/v1/alarms/{ZONE_ALARM}/acknowledge",
                    headers=officer,
                    json={"comment": "crew sent"},
                )
                assert done.status_code == httpx.codes.OK, done.text
                _wait_for(
                    http,
                    "/api/v1/alarms",
                    viewer,
                    lambda body: any(
                        a["alarm_id"] == ZONE_ALARM and a["state"] == "acked" for a in body["items"]
                    ),
                )
                # The storage child stored what the broker delivered (QoS 1).
                latest = _wait_for(
                    http,
                    "/api/v1/readings/latest",
                    viewer,
                    lambda body: "GD07" in json.dumps(body),
                )
                assert latest is not None
            server.should_exit = True
            thread.join(WAIT_S)
            assert not thread.is_alive()
            assert running.chain.detection.stats().errors == 0
    finally:
        device.disconnect()
        device.loop_stop()
