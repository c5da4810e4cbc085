"""Mosquitto password/ACL/config generation, proved against the real mosquitto 2.0 broker."""

from __future__ import annotations

import base64
import os
import pwd
import queue
import re
import shutil
import stat
import subprocess
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from pipesentinel.credentials import device_password
from pipesentinel.hardware.testbed import MosquittoProcess
from pipesentinel.ingest.mosquitto_auth import (
    BrokerConfig,
    MqttUser,
    acl_file_text,
    device_users,
    device_write_topics,
    hash_password,
    password_file_text,
    verify_password,
    write_auth_files,
    write_mosquitto_conf,
)
from pipesentinel.site import (
    Camera,
    DetectorPlacement,
    Gas,
    GasDetector,
    GeoOrigin,
    Site,
    WindStation,
)

SECRET = "test-secret-for-the-broker"
SERVICE = MqttUser("pipesentinel-service", "service-password-1")
WAIT_S = 10.0  # generous bound on broker round trips; a test fails rather than hangs
MosquittoFactory = Callable[..., MosquittoProcess]

# mosquitto_passwd 2.0: $7$, 101 iterations, 12-byte salt (16 base64 characters), 64-byte hash.
HASH_PATTERN = re.compile(r"^\$7\$101\$[A-Za-z0-9+/]{16}\$[A-Za-z0-9+/]{86}==$")


def small_site(site_id: str) -> Site:
    detector = {
        "placement": DetectorPlacement.PIPELINE,
        "position_m": np.zeros(3),
        "gases": (Gas.METHANE, Gas.PROPANE),
        "full_scale_ppm": 10_000.0,
        "t90_s": 30.0,
        "sample_period_s": 1.0,
    }
    return Site(
        id=site_id,
        name="test site",
        origin=GeoOrigin(latitude_deg=30.0, longitude_deg=120.0, altitude_m=10.0),
        pipelines=(),
        municipal_pipes=(),
        manholes=(),
        utility_tunnels=(),
        buildings=(),
        road_nodes=(),
        roads=(),
        assembly_points=(),
        gas_detectors=(
            GasDetector(id="GD-01", **detector),  # type: ignore[arg-type]
            GasDetector(id="GD-02", **detector),  # type: ignore[arg-type]
        ),
        wind_stations=(
            WindStation(
                id="WS-01",
                position_m=np.zeros(2),
                mast_height_m=10.0,
                sample_period_s=1.0,
                averaging_period_s=60.0,
            ),
        ),
        cameras=(
            Camera(
                id="CAM-01",
                position_m=np.zeros(2),
                mounting_height_m=8.0,
                heading_deg=0.0,
                tilt_deg=10.0,
                horizontal_fov_deg=50.0,
                vertical_fov_deg=40.0,
                laser_range_m=100.0,
                frame_period_s=1.0,
                resolution_px=(640, 480),
            ),
        ),
    )


# -- offline -----------------------------------------------------------------------------------


def test_hash_has_mosquitto_format_and_verifies() -> None:
    encoded = hash_password("s3cret")
    assert HASH_PATTERN.match(encoded), encoded
    assert verify_password("s3cret", encoded)
    assert not verify_password("s3cret ", encoded)
    assert hash_password("s3cret") != encoded  # a fresh salt each time


def test_hash_with_given_salt_and_iterations_is_reproducible() -> None:
    salt = bytes(range(12))
    encoded = hash_password("pw", iterations=1000, salt=salt)
    assert encoded.startswith(f"$7$1000${base64.b64encode(salt).decode()}$")
    assert encoded == hash_password("pw", iterations=1000, salt=salt)
    assert verify_password("pw", encoded)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"password": ""}, "empty"),
        ({"password": "x", "iterations": 0}, "iterations"),
        ({"password": "x", "salt": b"short"}, "12 bytes"),
    ],
)
def test_hash_refuses_bad_arguments(arguments: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        hash_password(**arguments)


def test_verify_refuses_other_formats() -> None:
    with pytest.raises(ValueError, match=r"\$7\$"):
        verify_password("x", "$6$abc$def")
    with pytest.raises(ValueError, match="malformed"):
        verify_password("x", "$7$101$!!!$???")


@pytest.mark.services
def test_hash_equals_what_mosquitto_passwd_writes(tmp_path: Path) -> None:
    tool = shutil.which("mosquitto_passwd")
    if tool is None:
        pytest.skip("mosquitto_passwd is not installed")
    password_file = tmp_path / "passwd"
    subprocess.run([tool, "-b", "-c", str(password_file), "alice", "pä$$ wörd"], check=True)
    username, encoded = password_file.read_text().strip().split(":", 1)
    assert username == "alice"
    salt = base64.b64decode(encoded.split("$")[3])
    # mosquitto_passwd's own output, recomputed from its salt: the formats are identical.
    assert hash_password("pä$$ wörd", salt=salt) == encoded
    assert verify_password("pä$$ wörd", encoded)


def test_device_users_use_the_derived_passwords() -> None:
    site = small_site("s1")
    users = device_users(site, device_secret=SECRET)
    assert [user.username for user in users] == ["GD-01", "GD-02", "WS-01", "CAM-01"]
    for user in users:
        assert user.password == device_password(
            secret=SECRET, site_id="s1", device_id=user.username
        )
    assert "password" not in repr(users[0]).replace("password=", "")


def test_password_file_has_one_hashed_line_per_user() -> None:
    users = [*device_users(small_site("s1"), device_secret=SECRET), SERVICE]
    lines = password_file_text(users).splitlines()
    assert len(lines) == 5
    for user, line in zip(users, lines, strict=True):
        username, encoded = line.split(":", 1)
        assert username == user.username
        assert HASH_PATTERN.match(encoded)
        assert verify_password(user.password, encoded)
    with pytest.raises(ValueError, match="appears twice"):
        password_file_text([SERVICE, SERVICE])


def test_each_device_may_write_only_its_own_topics() -> None:
    site = small_site("s1")
    topics = {device.id: device_write_topics("s1", device) for device in site.devices}
    root = "pipesentinel/v1/s1"
    assert topics["GD-01"] == (f"{root}/gas/GD-01", f"{root}/status/GD-01")
    assert topics["WS-01"] == (f"{root}/wind/WS-01", f"{root}/status/WS-01")
    assert topics["CAM-01"] == (
        f"{root}/camera/CAM-01/visible",
        f"{root}/camera/CAM-01/thermal",
        f"{root}/camera/CAM-01/laser",
        f"{root}/status/CAM-01",
    )


def test_acl_file_text() -> None:
    text = acl_file_text(small_site("s1"), service_username=SERVICE.username)
    blocks = [block for block in text.split("\n\n") if block.startswith("user ")]
    assert blocks[0].splitlines() == [
        "user pipesentinel-service",
        "topic read pipesentinel/v1/#",
        "topic write pipesentinel/v1/s1/alarms/#",
        "topic write pipesentinel/v1/s1/incidents/#",
        "topic readwrite pipesentinel/service/#",
    ]
    assert blocks[3].splitlines() == [
        "user WS-01",
        "topic write pipesentinel/v1/s1/wind/WS-01",
        "topic write pipesentinel/v1/s1/status/WS-01",
    ]
    assert len(blocks) == 5
    assert "topic read" not in "".join(blocks[1:])  # devices read nothing


@pytest.mark.parametrize("bad", ["a+b", "a#", "a/b", "a:b", "a b", "", "tab\there"])
def test_usernames_that_would_break_the_files_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="username"):
        password_file_text([MqttUser(bad, "x")])
    with pytest.raises(ValueError, match="username"):
        acl_file_text(small_site("s1"), service_username=bad)


def test_service_username_must_not_be_a_device() -> None:
    with pytest.raises(ValueError, match="also a device"):
        acl_file_text(small_site("s1"), service_username="GD-01")


def test_auth_files_are_written_private(tmp_path: Path) -> None:
    password_file, acl_file = tmp_path / "etc" / "passwd", tmp_path / "etc" / "acl"
    write_auth_files(
        small_site("s1"),
        device_secret=SECRET,
        service_user=SERVICE,
        password_file=password_file,
        acl_file=acl_file,
    )
    for path in (password_file, acl_file):
        assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert len(password_file.read_text().splitlines()) == 5
    assert list(tmp_path.glob("etc/.*")) == []  # no temporary file left behind


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "nobody could connect"),
        ({"allow_anonymous": True, "acl_file": Path("acl")}, "needs a password_file"),
        ({"allow_anonymous": True, "port": 0}, "port"),
        ({"allow_anonymous": True, "certfile": Path("c.pem")}, "go together"),
        ({"allow_anonymous": True, "max_queued_messages": -1}, "max_queued_messages"),
        ({"allow_anonymous": True, "persistence_dir": Path("a\nb")}, "line break"),
    ],
)
def test_broker_config_refuses_nonsense(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BrokerConfig(**options)


def test_production_config_text(tmp_path: Path) -> None:
    config = BrokerConfig(
        port=8883,
        password_file=Path("/etc/mosquitto/pipesentinel.passwd"),
        acl_file=Path("/etc/mosquitto/pipesentinel.acl"),
        persistence_dir=Path("/var/lib/mosquitto"),
        certfile=Path("/etc/mosquitto/server.pem"),
        keyfile=Path("/etc/mosquitto/server.key"),
    )
    lines = config.text().splitlines()
    for expected in (
        "allow_anonymous false",
        "password_file /etc/mosquitto/pipesentinel.passwd",
        "acl_file /etc/mosquitto/pipesentinel.acl",
        "persistence true",
        "persistence_location /var/lib/mosquitto/",
        "listener 8883",
        "certfile /etc/mosquitto/server.pem",
        "tls_version tlsv1.2",
    ):
        assert expected in lines
    path = tmp_path / "mosquitto.conf"
    write_mosquitto_conf(path, config)
    assert path.read_text() == config.text()


# -- against the real broker -------------------------------------------------------------------


class Client:
    """A blocking test client over paho (MQTT 5), each step bounded by WAIT_S."""

    def __init__(
        self,
        broker: MosquittoProcess,
        username: str | None,
        password: str | None,
        *,
        ca_file: Path | None = None,
    ):
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self._connected: queue.Queue[ReasonCode] = queue.Queue()
        self._acks: queue.Queue[Any] = queue.Queue()
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"test-{uuid.uuid4().hex[:10]}",
            protocol=mqtt.MQTTv5,
        )
        if username is not None:
            self._client.username_pw_set(username, password)
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_ack
        self._client.on_publish = self._on_publish
        if ca_file is not None:
            self._client.tls_set(ca_certs=str(ca_file))
        self._client.connect(broker.host, broker.port)
        self._client.loop_start()
        self.connect_result = self._connected.get(timeout=WAIT_S)

    def _on_connect(
        self, _client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any
    ) -> None:
        self._connected.put(reason)

    def _on_message(self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        self.messages.put((message.topic, bytes(message.payload)))

    def _on_ack(
        self, _client: mqtt.Client, _userdata: Any, _mid: int, reasons: Any, _props: Any
    ) -> None:
        self._acks.put(reasons)

    def _on_publish(
        self, _client: mqtt.Client, _userdata: Any, _mid: int, reason: Any, _props: Any
    ) -> None:
        self._acks.put(reason)

    def subscribe(self, topic_filter: str) -> None:
        self._client.subscribe(topic_filter, qos=1)
        self._acks.get(timeout=WAIT_S)

    def publish(self, topic: str, payload: bytes) -> ReasonCode:
        self._client.publish(topic, payload, qos=1)
        reason: ReasonCode = self._acks.get(timeout=WAIT_S)
        return reason

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


@pytest.fixture
def secured(
    tmp_path: Path, mosquitto_factory: MosquittoFactory, unique_site_id: str
) -> tuple[MosquittoProcess, Site]:
    site = small_site(unique_site_id)
    password_file, acl_file = tmp_path / "passwd", tmp_path / "acl"
    write_auth_files(
        site,
        device_secret=SECRET,
        service_user=SERVICE,
        password_file=password_file,
        acl_file=acl_file,
    )
    return mosquitto_factory(password_file=password_file, acl_file=acl_file), site


def login(broker: MosquittoProcess, site: Site, device_id: str) -> Client:
    password = device_password(secret=SECRET, site_id=site.id, device_id=device_id)
    client = Client(broker, device_id, password)
    assert not client.connect_result.is_failure, client.connect_result
    return client


@pytest.mark.services
def test_right_password_connects_wrong_ones_are_refused(
    secured: tuple[MosquittoProcess, Site],
) -> None:
    broker, site = secured
    login(broker, site, "GD-01").close()
    other_site_password = device_password(secret=SECRET, site_id="elsewhere", device_id="GD-01")
    for username, password in (
        ("GD-01", "wrong"),
        ("GD-01", other_site_password),
        ("GD-02", device_password(secret=SECRET, site_id=site.id, device_id="GD-01")),
        ("nobody", "x"),
        (None, None),  # anonymous
    ):
        client = Client(broker, username, password)
        try:
            assert client.connect_result.is_failure, (username, password)
            assert client.connect_result.value == 135  # MQTT 5 "Not authorized" from mosquitto
        finally:
            client.close()


@pytest.mark.services
def test_devices_publish_only_on_their_own_topics(
    secured: tuple[MosquittoProcess, Site], topic_prefix: str
) -> None:
    broker, site = secured
    assert topic_prefix == f"pipesentinel/v1/{site.id}"
    service = Client(broker, SERVICE.username, SERVICE.password)
    gas_detector = login(broker, site, "GD-01")
    camera = login(broker, site, "CAM-01")
    try:
        service.subscribe("pipesentinel/v1/#")
        own = f"{topic_prefix}/gas/GD-01"
        denied = [
            f"{topic_prefix}/gas/GD-02",  # another detector
            f"{topic_prefix}/status/GD-02",  # another device's status
            f"{topic_prefix}/wind/GD-01",  # its own id under another kind
            f"{topic_prefix}/alarms",  # the service's topics
            "pipesentinel/v1/elsewhere/gas/GD-01",  # another site
        ]
        for topic in denied:
            reason = gas_detector.publish(topic, b"spoofed")
            assert reason.value == 135, topic  # PUBACK "Not authorized": dropped by the broker
        assert camera.publish(f"{topic_prefix}/gas/GD-01", b"spoofed").value == 135
        assert not gas_detector.publish(own, b"genuine").is_failure
        for channel in ("visible", "thermal", "laser"):
            topic = f"{topic_prefix}/camera/CAM-01/{channel}"
            assert not camera.publish(topic, channel.encode()).is_failure
        assert not camera.publish(f"{topic_prefix}/status/CAM-01", b"online").is_failure
        # The denied messages were published first; had any gone through, the service would
        # receive it before these (one publisher, QoS 1, in-order delivery).
        received = [service.messages.get(timeout=WAIT_S)]
        received += [service.messages.get(timeout=WAIT_S) for _ in range(4)]
        assert received[0] == (own, b"genuine")
        assert [topic for topic, _ in received[1:]] == [
            f"{topic_prefix}/camera/CAM-01/visible",
            f"{topic_prefix}/camera/CAM-01/thermal",
            f"{topic_prefix}/camera/CAM-01/laser",
            f"{topic_prefix}/status/CAM-01",
        ]
    finally:
        for client in (service, gas_detector, camera):
            client.close()


@pytest.mark.services
def test_devices_read_nothing_the_service_writes_alarms(
    secured: tuple[MosquittoProcess, Site], topic_prefix: str
) -> None:
    broker, site = secured
    service = Client(broker, SERVICE.username, SERVICE.password)
    listener = Client(broker, SERVICE.username, SERVICE.password)
    snooping = login(broker, site, "GD-01")
    try:
        snooping.subscribe("#")  # mosquitto grants the subscription but delivers nothing
        listener.subscribe(f"{topic_prefix}/alarms/#")
        assert not service.publish(f"{topic_prefix}/alarms", b"alarm 1").is_failure
        assert not service.publish(f"{topic_prefix}/incidents/7", b"incident").is_failure
        assert service.publish(f"{topic_prefix}/gas/GD-01", b"spoofed").value == 135
        assert listener.messages.get(timeout=WAIT_S) == (f"{topic_prefix}/alarms", b"alarm 1")
        assert not snooping.publish(f"{topic_prefix}/gas/GD-01", b"own reading").is_failure
        # Everything above went through the broker before the device's own publish returned;
        # the device's own message is the only thing it could have read, and it may not.
        assert snooping.messages.empty()
    finally:
        for client in (service, listener, snooping):
            client.close()


@pytest.mark.services
def test_the_production_config_runs_in_mosquitto(tmp_path: Path, unique_site_id: str) -> None:
    # The generated mosquitto.conf itself (not the test bench's) starts the real broker.
    site = small_site(unique_site_id)
    password_file, acl_file = tmp_path / "passwd", tmp_path / "acl"
    write_auth_files(
        site,
        device_secret=SECRET,
        service_user=SERVICE,
        password_file=password_file,
        acl_file=acl_file,
    )
    with MosquittoProcess(password_file=password_file, acl_file=acl_file) as bench:
        port, executable = bench.port, bench.executable
    persistence = tmp_path / "persistence"
    persistence.mkdir()
    config = tmp_path / "mosquitto.conf"
    write_mosquitto_conf(
        config,
        BrokerConfig(
            port=port,
            bind_address="127.0.0.1",
            password_file=password_file,
            acl_file=acl_file,
            persistence_dir=persistence,
            user=pwd.getpwuid(os.geteuid()).pw_name,  # see MosquittoProcess
        ),
    )
    broker = subprocess.Popen([str(executable), "-c", str(config)], stderr=subprocess.PIPE)
    try:
        started = threading.Event()
        assert broker.stderr is not None
        lines: list[bytes] = []

        def watch() -> None:
            assert broker.stderr is not None
            for line in broker.stderr:
                lines.append(line)
                if b"running" in line:
                    started.set()

        threading.Thread(target=watch, daemon=True).start()
        assert started.wait(WAIT_S), b"".join(lines).decode()
        client = Client(
            bench, "GD-01", device_password(secret=SECRET, site_id=site.id, device_id="GD-01")
        )
        try:
            assert not client.connect_result.is_failure
        finally:
            client.close()
    finally:
        broker.terminate()
        broker.wait(timeout=WAIT_S)
    assert (persistence / "mosquitto.db").is_file()  # persistence saved on shutdown


@pytest.mark.services
def test_device_logs_in_over_tls(
    tmp_path: Path, mosquitto_factory: MosquittoFactory, unique_site_id: str
) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    certfile, keyfile = tmp_path / "server.pem", tmp_path / "server.key"
    subprocess.run(
        [
            openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-keyout", str(keyfile), "-out", str(certfile),
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    site = small_site(unique_site_id)
    password_file, acl_file = tmp_path / "passwd", tmp_path / "acl"
    write_auth_files(
        site,
        device_secret=SECRET,
        service_user=SERVICE,
        password_file=password_file,
        acl_file=acl_file,
    )
    broker = mosquitto_factory(
        password_file=password_file, acl_file=acl_file, certfile=certfile, keyfile=keyfile
    )
    assert broker.url.startswith("mqtts://")
    password = device_password(secret=SECRET, site_id=site.id, device_id="GD-01")
    client = Client(broker, "GD-01", password, ca_file=certfile)
    try:
        assert not client.connect_result.is_failure
        assert not client.publish(f"pipesentinel/v1/{site.id}/gas/GD-01", b"x").is_failure
    finally:
        client.close()
