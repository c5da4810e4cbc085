"""The fleet of simulated devices on MQTT: one client per device, as real devices connect.

Every device is its own paho client with its own credentials (username = device id, password
derived from the site secret, :func:`pipesentinel.credentials.device_password`), a retained
``online`` status on connect and a last will ``offline`` on ``pipesentinel/v1/{site}/status/{id}``
(``docs/mqtt.md``). A device whose scenario fault is OFFLINE drops its connection: under MQTT 5 by
a DISCONNECT with reason 0x04 (*disconnect with will message*), so the broker publishes its will
exactly as after a cable cut; under MQTT 3.1.1 (the embedded broker), which cannot ask for the
will, by publishing ``offline`` itself first.

:class:`ScenarioClock` maps scenario time to the timestamps devices put in their messages, in real
time, accelerated, or as fast as possible; :func:`run_scenario` drives a
:class:`~pipesentinel.hardware.world.SiteSimulation` and the fleet on it.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from pipesentinel.credentials import device_password
from pipesentinel.hardware.scenario import FaultKind, Scenario
from pipesentinel.hardware.world import DeviceOutput, SiteSimulation
from pipesentinel.ingest.contract import (
    STATUS_OFFLINE,
    STATUS_ONLINE,
    ImageFormat,
    encode_frame_envelope,
)
from pipesentinel.ingest.service import BrokerAddress, MqttProtocol
from pipesentinel.ingest.topics import MessageKind, device_topic
from pipesentinel.site import Site
from pipesentinel.units import MILLISECOND

logger = logging.getLogger(__name__)

QOS_AT_LEAST_ONCE: Final = 1
KEEPALIVE_S: Final = 30
RECONNECT_MIN_DELAY_S: Final = 1
RECONNECT_MAX_DELAY_S: Final = 30
CONNECT_TIMEOUT_S: Final = 15.0
# MQTT 5 DISCONNECT reason code 0x04: "Disconnect with Will Message" (OASIS MQTT 5.0, 3.14.2.1).
DISCONNECT_WITH_WILL: Final = 4
# A device keeps at most this many QoS 1 messages in flight (paho's default is 20).
MAX_INFLIGHT_MESSAGES: Final = 100
_IMAGE_FORMAT: Final = {MessageKind.VISIBLE: ImageFormat.JPEG, MessageKind.THERMAL: ImageFormat.PNG}


def encode_output(output: DeviceOutput, *, ts_ms: int, seq: int) -> bytes:
    """The contract payload of one device output (``docs/mqtt.md``).

    Parameters
    ----------
    output
        What the device says.
    ts_ms
        Capture time, milliseconds since the Unix epoch, UTC [ms].
    seq
        The device's counter on this topic [-].
    """
    image_format = _IMAGE_FORMAT.get(output.kind)
    if image_format is not None:
        if output.image is None:
            raise ValueError(f"{output.kind.value} output of {output.device_id} has no image")
        return encode_frame_envelope(
            ts_ms=ts_ms,
            seq=seq,
            width_px=output.width_px,
            height_px=output.height_px,
            image_format=image_format,
            image=output.image,
        )
    body: dict[str, Any] = {"ts": ts_ms, "seq": seq, **output.values}
    return json.dumps(body, separators=(",", ":"), allow_nan=False).encode("utf-8")


class ScenarioClock:
    """Epoch time of the simulated devices.

    Parameters
    ----------
    origin_epoch_s
        Epoch time of scenario time 0 [s].
    speed
        Scenario seconds per wall-clock second [1]; ``math.inf`` runs as fast as possible, the
        clock then reads the scenario time reached so far (:meth:`advance`).
    """

    def __init__(self, *, origin_epoch_s: float, speed: float = 1.0) -> None:
        if not speed > 0.0:
            raise ValueError(f"clock speed must be > 0, got {speed!r}")
        self.origin_epoch_s = origin_epoch_s
        self.speed = speed
        self._wall_start_s = time.monotonic()
        self._scenario_time_s = 0.0
        self._lock = threading.Lock()

    @property
    def as_fast_as_possible(self) -> bool:
        """Whether the clock follows the simulation instead of the wall clock."""
        return math.isinf(self.speed)

    def scenario_time_s(self) -> float:
        """Scenario time now [s]."""
        if self.as_fast_as_possible:
            with self._lock:
                return self._scenario_time_s
        return (time.monotonic() - self._wall_start_s) * self.speed

    def advance(self, scenario_time_s: float) -> None:
        """The simulation has reached ``scenario_time_s`` (drives an as-fast-as-possible clock)."""
        with self._lock:
            self._scenario_time_s = max(self._scenario_time_s, scenario_time_s)

    def now(self) -> float:
        """Epoch time now on this clock [s]; pass it as the ingest service's clock."""
        return self.origin_epoch_s + self.scenario_time_s()

    def wait_until(self, scenario_time_s: float, stop: threading.Event) -> bool:
        """Sleep until the clock reaches ``scenario_time_s``; False if ``stop`` was set first."""
        if self.as_fast_as_possible:
            return not stop.is_set()
        remaining_s = (scenario_time_s - self.scenario_time_s()) / self.speed
        return not stop.wait(max(remaining_s, 0.0))


class DeviceClient:
    """One simulated device's MQTT connection."""

    def __init__(
        self,
        *,
        site_id: str,
        device_id: str,
        password: str,
        address: BrokerAddress,
        protocol: MqttProtocol,
        ca_file: str | None = None,
    ) -> None:
        self.site_id = site_id
        self.device_id = device_id
        self.address = address
        self.v5 = protocol is not MqttProtocol.V311
        self.status_topic = device_topic(site_id, MessageKind.STATUS, device_id)
        self.connected = threading.Event()
        self.online = False
        self._seq: Counter[MessageKind] = Counter()
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"{site_id}.{device_id}",
            protocol=MQTTProtocolVersion.MQTTv5 if self.v5 else MQTTProtocolVersion.MQTTv311,
        )
        self.client.username_pw_set(device_id, password)
        self.client.will_set(self.status_topic, STATUS_OFFLINE, qos=QOS_AT_LEAST_ONCE, retain=True)
        self.client.reconnect_delay_set(RECONNECT_MIN_DELAY_S, RECONNECT_MAX_DELAY_S)
        self.client.max_inflight_messages_set(MAX_INFLIGHT_MESSAGES)
        if address.tls:
            self.client.tls_set(ca_certs=ca_file)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,  # noqa: ARG002 - paho's callback signature
        flags: mqtt.ConnectFlags,  # noqa: ARG002 - paho's callback signature
        reason_code: ReasonCode,
        properties: Properties | None,  # noqa: ARG002 - paho's callback signature
    ) -> None:
        if reason_code.is_failure:
            logger.warning(
                "device %s: broker refused the connection: %s", self.device_id, reason_code
            )
            return
        client.publish(self.status_topic, STATUS_ONLINE, qos=QOS_AT_LEAST_ONCE, retain=True)
        self.connected.set()

    def _on_disconnect(
        self,
        client: mqtt.Client,  # noqa: ARG002 - paho's callback signature
        userdata: Any,  # noqa: ARG002 - paho's callback signature
        flags: mqtt.DisconnectFlags,  # noqa: ARG002 - paho's callback signature
        reason_code: ReasonCode,  # noqa: ARG002 - paho's callback signature
        properties: Properties | None,  # noqa: ARG002 - paho's callback signature
    ) -> None:
        self.connected.clear()

    def go_online(self) -> None:
        """Connect (in the background; paho reconnects with backoff until stopped)."""
        if self.online:
            return
        self.online = True
        self.client.connect_async(self.address.host, self.address.port, keepalive=KEEPALIVE_S)
        self.client.loop_start()

    def go_offline(self, *, with_will: bool) -> None:
        """Drop the connection; ``with_will`` makes the broker publish the last will (a failure)."""
        if not self.online:
            return
        self.online = False
        if with_will and self.v5:
            self.client.disconnect(
                reasoncode=ReasonCode(PacketTypes.DISCONNECT, identifier=DISCONNECT_WITH_WILL)
            )
        else:
            if self.connected.is_set():
                info = self.client.publish(
                    self.status_topic, STATUS_OFFLINE, qos=QOS_AT_LEAST_ONCE, retain=True
                )
                info.wait_for_publish(CONNECT_TIMEOUT_S)
            self.client.disconnect()
        self.client.loop_stop()
        self.connected.clear()

    def publish(self, output: DeviceOutput, *, ts_ms: int) -> mqtt.MQTTMessageInfo:
        """Number, encode and publish ``output`` with QoS 1."""
        self._seq[output.kind] += 1
        payload = encode_output(output, ts_ms=ts_ms, seq=self._seq[output.kind])
        topic = device_topic(self.site_id, output.kind, self.device_id)
        return self.client.publish(topic, payload, qos=QOS_AT_LEAST_ONCE)


@dataclass(frozen=True)
class FleetStats:
    """What the fleet has done."""

    devices: int
    connected: int
    published_by_kind: dict[str, int]
    publish_errors: int
    offline_devices: tuple[str, ...]


class DeviceFleet:
    """All devices of a site as MQTT clients.

    Parameters
    ----------
    site
        The site whose devices to simulate.
    broker_url
        ``mqtt://host:port`` or ``mqtts://host:port``.
    device_secret
        The site secret from which device passwords derive.
    protocol
        MQTT 5 (Mosquitto) or 3.1.1 (the embedded broker). ``auto`` means 5.
    ca_file
        CA certificate for ``mqtts://``.
    """

    def __init__(
        self,
        site: Site,
        *,
        broker_url: str,
        device_secret: str,
        protocol: MqttProtocol = MqttProtocol.V5,
        ca_file: str | None = None,
    ) -> None:
        address = BrokerAddress.parse(broker_url)
        self.site = site
        self.clients = {
            device.id: DeviceClient(
                site_id=site.id,
                device_id=device.id,
                password=device_password(
                    secret=device_secret, site_id=site.id, device_id=device.id
                ),
                address=address,
                protocol=protocol,
                ca_file=ca_file,
            )
            for device in site.devices
        }
        self._published: Counter[str] = Counter()
        self._publish_errors = 0

    def start(self, *, timeout_s: float = CONNECT_TIMEOUT_S) -> DeviceFleet:
        """Connect every device; ``TimeoutError`` naming those that did not connect in time."""
        for client in self.clients.values():
            client.go_online()
        deadline = time.monotonic() + timeout_s
        for client in self.clients.values():
            client.connected.wait(max(deadline - time.monotonic(), 0.0))
        missing = [device_id for device_id, c in self.clients.items() if not c.connected.is_set()]
        if missing:
            self.stop()
            raise TimeoutError(
                f"{len(missing)} device(s) did not connect to the broker within {timeout_s} s: "
                f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}"
            )
        return self

    def sync_offline(self, offline_device_ids: Iterable[str]) -> None:
        """Make exactly ``offline_device_ids`` disconnected (with their will), the rest online."""
        offline = set(offline_device_ids)
        for device_id, client in self.clients.items():
            if device_id in offline:
                client.go_offline(with_will=True)
            else:
                client.go_online()

    def publish(self, outputs: Sequence[DeviceOutput], *, epoch_origin_s: float) -> None:
        """Publish each output at ``epoch_origin_s + output.time_s``."""
        for output in outputs:
            client = self.clients.get(output.device_id)
            if client is None or not client.online:
                continue
            ts_ms = round(MILLISECOND.from_si(epoch_origin_s + output.time_s))
            info = client.publish(output, ts_ms=ts_ms)
            if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
                self._publish_errors += 1
            else:
                # Not connected: paho queues it and sends it on reconnect (QoS 1).
                self._published[output.kind.value] += 1

    def stats(self) -> FleetStats:
        """Counts so far."""
        return FleetStats(
            devices=len(self.clients),
            connected=sum(client.connected.is_set() for client in self.clients.values()),
            published_by_kind=dict(self._published),
            publish_errors=self._publish_errors,
            offline_devices=tuple(i for i, c in self.clients.items() if not c.online),
        )

    def stop(self) -> None:
        """Say ``offline`` and disconnect every device cleanly."""
        for client in self.clients.values():
            client.go_offline(with_will=False)

    def __enter__(self) -> DeviceFleet:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def offline_devices(scenario: Scenario, time_s: float) -> set[str]:
    """Devices whose scenario fault at ``time_s`` is OFFLINE."""
    return {
        device_id
        for device_id, fault in scenario.active_faults(time_s).items()
        if fault.kind is FaultKind.OFFLINE
    }


def run_scenario(
    simulation: SiteSimulation,
    fleet: DeviceFleet,
    clock: ScenarioClock,
    *,
    stop: threading.Event,
    until_s: float | None = None,
    on_step: Callable[[SiteSimulation], None] | None = None,
) -> float:
    """Play ``simulation`` on ``clock`` through ``fleet`` until ``until_s``, its end, or ``stop``.

    Returns the scenario time reached [s].
    """
    end_s = simulation.duration_s if until_s is None else min(until_s, simulation.duration_s)
    while simulation.time_s < end_s and not simulation.finished:
        next_s = simulation.time_s + simulation.scenario.time_step_s
        if not clock.wait_until(next_s, stop):
            break
        outputs = simulation.step()
        clock.advance(simulation.time_s)
        fleet.sync_offline(offline_devices(simulation.scenario, simulation.time_s))
        fleet.publish(outputs, epoch_origin_s=clock.origin_epoch_s)
        if on_step is not None:
            on_step(simulation)
    return simulation.time_s
