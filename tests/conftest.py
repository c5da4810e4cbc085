"""Shared fixtures: real mosquitto and influxd processes, unique site ids and topic prefixes.

Service fixtures skip the test when the binary is not installed, unless the environment says
``PIPESENTINEL_REQUIRE_SERVICES=1`` (CI), in which case they fail. Any test that uses them is
marked ``services`` automatically.

- ``mosquitto``: one anonymous broker for the session; give each test its own ``topic_prefix``.
  Do not stop it: tests that restart a broker use ``mosquitto_factory``.
- ``mosquitto_factory(password_file=..., acl_file=..., ...)``: a broker of the test's own,
  stopped at the end of the test (restartable, killable, freezable).
- ``influxd``: one InfluxDB 1.x for the session; use ``influx_storage_settings`` (a database of
  the test's own). ``influxd_factory(...)``: a server of the test's own.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from pipesentinel.hardware.testbed import (
    InfluxdProcess,
    MosquittoProcess,
    ServiceNotInstalledError,
)
from pipesentinel.ingest.topics import TOPIC_ROOT
from pipesentinel.settings import Settings, StorageSettings

REQUIRE_SERVICES_VARIABLE = "PIPESENTINEL_REQUIRE_SERVICES"
SERVICE_FIXTURES = frozenset(
    {"mosquitto", "mosquitto_factory", "influxd", "influxd_factory", "influx_storage_settings"}
)

MosquittoFactory = Callable[..., MosquittoProcess]
InfluxdFactory = Callable[..., InfluxdProcess]


def services_required() -> bool:
    """Whether missing services fail the tests instead of skipping them."""
    return os.environ.get(REQUIRE_SERVICES_VARIABLE, "") == "1"


def _missing(error: ServiceNotInstalledError) -> NoReturn:
    reason = f"{error} (set {REQUIRE_SERVICES_VARIABLE}=1 to make this a failure)"
    if services_required():
        pytest.fail(f"{error}; {REQUIRE_SERVICES_VARIABLE}=1 requires the real services")
    pytest.skip(reason)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses a real-service fixture with ``services``."""
    for item in items:
        if SERVICE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.services)


def _mosquitto(**options: Any) -> MosquittoProcess:
    try:
        broker = MosquittoProcess(**options)
    except ServiceNotInstalledError as error:
        _missing(error)
    return broker


def _influxd(**options: Any) -> InfluxdProcess:
    try:
        server = InfluxdProcess(**options)
    except ServiceNotInstalledError as error:
        _missing(error)
    return server


@pytest.fixture(scope="session")
def mosquitto() -> Iterator[MosquittoProcess]:
    """One anonymous-allowed Mosquitto for the whole session (do not stop it)."""
    with _mosquitto() as broker:
        yield broker


@pytest.fixture
def mosquitto_factory() -> Iterator[MosquittoFactory]:
    """Start brokers of the test's own (``MosquittoProcess`` options); all closed afterwards."""
    started: list[MosquittoProcess] = []

    def start(**options: Any) -> MosquittoProcess:
        broker = _mosquitto(**options)
        started.append(broker)
        broker.start()
        return broker

    yield start
    for broker in started:
        broker.close()


@pytest.fixture(scope="session")
def influxd() -> Iterator[InfluxdProcess]:
    """One InfluxDB 1.x server for the whole session (do not stop it)."""
    with _influxd() as server:
        yield server


@pytest.fixture
def influxd_factory() -> Iterator[InfluxdFactory]:
    """Start InfluxDB servers of the test's own (``InfluxdProcess`` options); closed afterwards."""
    started: list[InfluxdProcess] = []

    def start(**options: Any) -> InfluxdProcess:
        server = _influxd(**options)
        started.append(server)
        server.start()
        return server

    yield start
    for server in started:
        server.close()


@pytest.fixture
def unique_site_id() -> str:
    """A site id no other test uses (letters and digits)."""
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
def topic_prefix(unique_site_id: str) -> str:
    """``pipesentinel/v1/{unique_site_id}``: the test's own part of the topic tree."""
    return f"{TOPIC_ROOT}/{unique_site_id}"


@pytest.fixture
def influx_storage_settings(influxd: InfluxdProcess, unique_site_id: str) -> StorageSettings:
    """Storage settings for the session's influxd with a database of the test's own."""
    return StorageSettings(
        backend="influxdb",
        influx_url=influxd.url,
        influx_database=f"db_{unique_site_id}",
        influx_timeout_s=10.0,
    )


SITE_DIR = Path(__file__).resolve().parents[1] / "sites" / "wanli"


@pytest.fixture
def live_settings(mosquitto: MosquittoProcess, tmp_path: Path, unique_site_id: str) -> Settings:
    """Settings of a live chain on the session's Mosquitto: every store in ``tmp_path``, MQTT
    client ids of the test's own site (``unique_site_id``), camera analytics off, 0.2 s ticks."""
    site_id = unique_site_id
    return Settings(
        site_dir=SITE_DIR,
        broker={"url": mosquitto.url, "client_id": f"ingest-{site_id}"},
        storage={"sqlite_path": tmp_path / "telemetry.sqlite3", "frames_dir": tmp_path / "f"},
        ingest={"dead_letter_path": tmp_path / "dead_letter.sqlite3"},
        alarms={
            "journal_path": tmp_path / "journal.sqlite3",
            "incidents_path": tmp_path / "incidents.sqlite3",
        },
        detection={
            "tick_period_s": 0.2,
            "camera_analytics": False,
            "mqtt_client_id": f"detection-{site_id}",
        },
        notifications={
            "mqtt_client_id": f"notifier-{site_id}",
            "log_path": tmp_path / "notifications.sqlite3",
        },
        response={
            "responses_path": tmp_path / "responses.sqlite3",
            "plan_decisions_path": tmp_path / "plan_decisions.sqlite3",
        },
        api={"tokens_path": tmp_path / "tokens.json", "audit_path": tmp_path / "audit.sqlite3"},
    )


ALARM_WAIT_S = 60.0  # deadline of a wait for an alarm state, never asserted as a duration


class AlarmWatcher:
    """Subscribes to alarm topics (a filter) and keeps the latest payload per topic."""

    def __init__(self, broker: MosquittoProcess, filter_: str) -> None:
        self.latest: dict[str, dict[str, Any]] = {}
        self.changed = threading.Condition()
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv5
        )
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.subscribe(filter_, qos=1)
        self.client.loop_start()
        self._closed = False

    def _on_message(
        self,
        client: mqtt.Client,  # noqa: ARG002 - paho's callback signature
        userdata: Any,  # noqa: ARG002 - paho's callback signature
        message: mqtt.MQTTMessage,
    ) -> None:
        with self.changed:
            self.latest[message.topic] = json.loads(message.payload)
            self.changed.notify_all()

    def wait(self, topic: str, state: str) -> dict[str, Any]:
        """The payload of ``topic`` once its ``state`` is ``state`` (the test fails otherwise)."""
        with self.changed:
            if not self.changed.wait_for(
                lambda: self.latest.get(topic, {}).get("state") == state, ALARM_WAIT_S
            ):
                pytest.fail(f"{topic} never reached {state!r}; last {self.latest.get(topic)}")
            return self.latest[topic]

    def close(self) -> None:
        """Disconnect (again: nothing)."""
        if not self._closed:
            self._closed = True
            self.client.disconnect()
            self.client.loop_stop()


@pytest.fixture
def alarm_watcher(mosquitto: MosquittoProcess) -> Iterator[Callable[[str], AlarmWatcher]]:
    """Make watchers of alarm topics on the session's Mosquitto; all closed at the end."""
    made: list[AlarmWatcher] = []

    def make(filter_: str) -> AlarmWatcher:
        made.append(AlarmWatcher(mosquitto, filter_))
        return made[-1]

    yield make
    for watcher in made:
        watcher.close()
