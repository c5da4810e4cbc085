"""A scenario's MQTT messages without a broker: what the fleet would publish, step by step.

For tests, validation runs and replays that need the device stream but not the network: the
messages are exactly those :class:`~pipesentinel.hardware.fleet.DeviceFleet` publishes (same
encoding, same per-topic ``seq``, the retained ``online``/``offline`` status on connection changes,
nothing from a device while it is offline), each stamped with the epoch time it is sent.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

from pipesentinel.hardware.fleet import encode_output, offline_devices
from pipesentinel.hardware.world import SiteSimulation, StepTruth
from pipesentinel.ingest.contract import STATUS_OFFLINE, STATUS_ONLINE, Decoder
from pipesentinel.ingest.records import Record, Rejection
from pipesentinel.ingest.topics import TOPIC_ROOT, MessageKind, device_topic
from pipesentinel.settings import IngestSettings
from pipesentinel.units import MILLISECOND


@dataclass(frozen=True, slots=True)
class Message:
    """One MQTT message as a device sends it."""

    topic: str
    payload: bytes
    time_s: float  # epoch time it is sent (and, here, received) [s]


@dataclass(frozen=True, slots=True)
class Step:
    """The messages of one simulation step and what really happened in it."""

    time_s: float  # epoch time at the end of the step [s]
    messages: list[Message]
    truth: StepTruth


def scenario_messages(
    simulation: SiteSimulation,
    *,
    origin_epoch_s: float,
    until_s: float | None = None,
    topic_root: str = TOPIC_ROOT,
) -> Iterator[Step]:
    """Play ``simulation`` and yield each step's messages, as the fleet would publish them.

    Parameters
    ----------
    simulation
        A fresh simulation (it is advanced).
    origin_epoch_s
        Epoch time of scenario time 0 [s].
    until_s
        Stop at this scenario time [s]; ``None``: the scenario's end.
    topic_root
        Device topic prefix.
    """
    site_id = simulation.site.id
    sequence: Counter[tuple[str, MessageKind]] = Counter()
    online: dict[str, bool] = {}
    end_s = simulation.duration_s if until_s is None else min(until_s, simulation.duration_s)
    device_ids = [device.id for device in simulation.site.devices]
    while simulation.time_s < end_s and not simulation.finished:
        outputs = simulation.step()
        now_s = origin_epoch_s + simulation.time_s
        messages: list[Message] = []
        offline = offline_devices(simulation.scenario, simulation.time_s)
        for device_id in device_ids:
            is_online = device_id not in offline
            if online.get(device_id) != is_online:
                online[device_id] = is_online
                topic = device_topic(site_id, MessageKind.STATUS, device_id, topic_root=topic_root)
                payload = STATUS_ONLINE if is_online else STATUS_OFFLINE
                messages.append(Message(topic, payload, now_s))
        for output in outputs:
            if not online.get(output.device_id, False):
                continue
            key = (output.device_id, output.kind)
            sequence[key] += 1
            sent_s = origin_epoch_s + output.time_s
            ts_ms = round(MILLISECOND.from_si(sent_s))
            payload = encode_output(output, ts_ms=ts_ms, seq=sequence[key])
            topic = device_topic(site_id, output.kind, output.device_id, topic_root=topic_root)
            messages.append(Message(topic, payload, sent_s))
        truth = simulation.truth
        if truth is None:  # pragma: no cover - step() always sets it
            raise RuntimeError("SiteSimulation.step() left no truth")
        yield Step(time_s=now_s, messages=messages, truth=truth)


def scenario_records(
    simulation: SiteSimulation,
    *,
    origin_epoch_s: float,
    limits: IngestSettings | None = None,
    until_s: float | None = None,
) -> Iterator[tuple[Step, list[Record]]]:
    """Like :func:`scenario_messages`, with each step's messages decoded by the ingest contract.

    One :class:`~pipesentinel.ingest.contract.Decoder` decodes the whole stream (its topic cache
    makes this faster than :func:`~pipesentinel.ingest.contract.decode` per message; the records
    are identical). Raises ``ValueError`` if the contract rejects a simulated message (a simulator
    bug).
    """
    decoder = Decoder(sites=simulation.site, limits=limits or IngestSettings())
    for step in scenario_messages(simulation, origin_epoch_s=origin_epoch_s, until_s=until_s):
        records: list[Record] = []
        for message in step.messages:
            result = decoder(message.topic, message.payload, message.time_s)
            if isinstance(result, Rejection):
                raise ValueError(
                    f"the contract rejected a simulated message on {message.topic}: "
                    f"{result.reason.value}: {result.detail}"
                )
            records.append(result)
        yield step, records
