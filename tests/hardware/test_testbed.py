"""The test bench: real mosquitto and influxd processes that start, restart, crash and hang."""

from __future__ import annotations

import dataclasses
import queue
import socket
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from pipesentinel.hardware.testbed import (
    InfluxdProcess,
    MosquittoProcess,
    ServiceError,
    ServiceNotInstalledError,
    free_loopback_port,
)
from pipesentinel.ingest.records import DeviceStatus, GasReading
from pipesentinel.ingest.storage.influxdb import InfluxDBStore

WAIT_S = 10.0
MosquittoFactory = Callable[..., MosquittoProcess]
InfluxdFactory = Callable[..., InfluxdProcess]


def ping(server: InfluxdProcess, timeout_s: float = WAIT_S) -> int:
    with urllib.request.urlopen(f"{server.url}/ping", timeout=timeout_s) as response:
        return int(response.status)


def retained(broker: MosquittoProcess, topic: str) -> bytes:
    """The retained message on ``topic`` (waits for it)."""
    received: queue.Queue[bytes] = queue.Queue()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"r-{uuid.uuid4().hex[:8]}")
    client.on_message = lambda _client, _userdata, message: received.put(bytes(message.payload))
    client.on_connect = lambda c, _u, _f, _r, _p: c.subscribe(topic, qos=1)
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        return received.get(timeout=WAIT_S)
    finally:
        client.disconnect()
        client.loop_stop()


def publish_retained(broker: MosquittoProcess, topic: str, payload: bytes) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"p-{uuid.uuid4().hex[:8]}")
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        client.publish(topic, payload, qos=1, retain=True).wait_for_publish(timeout=WAIT_S)
    finally:
        client.disconnect()
        client.loop_stop()


def test_free_ports_are_distinct_loopback_ports() -> None:
    ports = {free_loopback_port() for _ in range(5)}
    assert all(1024 <= port < 65536 for port in ports)
    assert len(ports) > 1


def test_a_missing_binary_is_reported_as_not_installed(tmp_path: Path) -> None:
    with pytest.raises(ServiceNotInstalledError, match="not an executable"):
        MosquittoProcess(executable=tmp_path / "no-such-mosquitto")
    with pytest.raises(ServiceNotInstalledError, match="not an executable"):
        InfluxdProcess(executable=tmp_path / "no-such-influxd")


def test_an_acl_needs_a_password_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="password_file"):
        MosquittoProcess(acl_file=tmp_path / "acl")


@pytest.mark.services
def test_the_session_broker_accepts_mqtt_clients(
    mosquitto: MosquittoProcess, topic_prefix: str
) -> None:
    assert mosquitto.running
    assert mosquitto.url == f"mqtt://127.0.0.1:{mosquitto.port}"
    topic = f"{topic_prefix}/status/D1"
    publish_retained(mosquitto, topic, b"online")
    assert retained(mosquitto, topic) == b"online"


@pytest.mark.services
def test_broker_restarts_on_the_same_port_with_its_retained_messages(
    mosquitto_factory: MosquittoFactory, topic_prefix: str
) -> None:
    broker = mosquitto_factory()
    port, topic = broker.port, f"{topic_prefix}/status/D1"
    publish_retained(broker, topic, b"online")
    broker.restart()  # clean stop: mosquitto saves its persistence file
    assert broker.port == port
    assert retained(broker, topic) == b"online"
    broker.kill()
    assert not broker.running
    with pytest.raises(ConnectionRefusedError):  # nothing listens while it is down
        socket.create_connection((broker.host, port), timeout=WAIT_S).close()
    broker.start()
    assert broker.pid is not None
    assert retained(broker, topic) == b"online"  # saved at the clean stop before the crash
    assert "mosquitto version 2" in broker.log_text()


@pytest.mark.services
def test_a_broker_that_cannot_start_shows_its_log(
    mosquitto_factory: MosquittoFactory, tmp_path: Path
) -> None:
    missing = tmp_path / "missing-passwd"
    with pytest.raises(ServiceError, match=r"(?s)exited with code .*missing-passwd"):
        mosquitto_factory(password_file=missing)


@pytest.mark.services
def test_the_session_influxd_answers(influxd: InfluxdProcess) -> None:
    assert influxd.running
    assert ping(influxd) == 204
    assert influxd.rpc_port != influxd.port
    assert influxd.url == f"http://127.0.0.1:{influxd.port}"
    config = influxd.config_path.read_text()
    assert "reporting-enabled = false" in config
    assert f'bind-address = "127.0.0.1:{influxd.rpc_port}"' in config


@pytest.mark.services
def test_influxd_keeps_its_data_across_restart_and_crash(influxd_factory: InfluxdFactory) -> None:
    server = influxd_factory()
    reading = GasReading("s", "G1", 1_700_000_000.0, 1, 1e-6, 0.0, DeviceStatus.OK, None, 0.0)
    with InfluxDBStore(url=server.url, database="bench") as store:
        store.write([reading])
        server.restart()
        assert store.count(site_id="s") == 1
        store.write([dataclasses.replace(reading, time_s=1_700_000_001.0)])
        server.kill()  # SIGKILL right after an acknowledged write: the fsynced WAL has it
        server.start()
        assert store.count(site_id="s") == 2


@pytest.mark.services
def test_a_frozen_influxd_answers_nothing_until_thawed(influxd_factory: InfluxdFactory) -> None:
    server = influxd_factory()
    server.freeze()
    try:
        with pytest.raises((TimeoutError, urllib.error.URLError)):
            ping(server, timeout_s=0.5)
    finally:
        server.thaw()
    assert ping(server) == 204


@pytest.mark.services
def test_closing_removes_the_temporary_directory(influxd_factory: InfluxdFactory) -> None:
    server = influxd_factory()
    directory = server.directory
    assert (directory / "influxdb.conf").is_file()
    server.close()
    assert not server.running
    assert not directory.exists()
