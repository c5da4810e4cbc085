"""The live stream's in-process broadcaster: readings, alarm events, incident versions.

Producers run on other threads: the detection thread calls
:meth:`StreamBroadcaster.on_engine_output` (a ``DetectionService`` listener), the ingest writer
calls :meth:`StreamBroadcaster.on_records` (an ingest subscriber). Publishing never blocks and
never waits for a client: each client has a bounded queue; a client whose queue is full is
dropped (its WebSocket closed with the reason) and counted by reason, so a slow client can never
hold up detection. Messages are JSON-ready dicts with a ``type``: ``readings``, ``alarm_event``,
``incident``.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from pipesentinel.detection.alarms import AlarmEvent
from pipesentinel.detection.engine import EngineOutput
from pipesentinel.detection.incidents import Incident
from pipesentinel.ingest.records import (
    CameraFrame,
    DeviceStatusChange,
    GasReading,
    LaserReading,
    Record,
    WindReading,
)

__all__ = [
    "DROP_SLOW",
    "StreamBroadcaster",
    "StreamClient",
    "StreamStats",
    "alarm_event_message",
    "incident_message",
    "record_json",
]

DROP_SLOW: Final = "queue_full"
"""The reason a client is dropped when it does not keep up."""

_READING_FIELDS: Final[dict[type, tuple[str, ...]]] = {
    GasReading: ("time_s", "seq", "methane_mole_fraction", "propane_mole_fraction"),
    WindReading: (
        "time_s",
        "seq",
        "speed_m_per_s",
        "direction_from_rad",
        "sigma_theta_rad",
        "temperature_k",
        "pressure_pa",
    ),
    LaserReading: ("time_s", "seq", "path_integral_mole_fraction_m"),
    CameraFrame: ("time_s", "seq", "width_px", "height_px"),  # the image is not streamed
    DeviceStatusChange: ("online",),
}
_KIND: Final[dict[type, str]] = {
    GasReading: "gas",
    WindReading: "wind",
    LaserReading: "laser",
    CameraFrame: "camera_frame",
    DeviceStatusChange: "device_status",
}


def record_json(record: Record) -> dict[str, Any]:
    """A record as JSON (SI values, names as in the records; camera images left out)."""
    result: dict[str, Any] = {
        "kind": _KIND[type(record)],
        "device_id": record.device_id,
        "received_time_s": record.received_time_s,
    }
    for name in _READING_FIELDS[type(record)]:
        result[name] = getattr(record, name)
    if isinstance(record, GasReading | LaserReading):
        result["status"] = record.status.value
    if isinstance(record, CameraFrame):
        result["channel"] = record.channel.value
    return result


def alarm_event_message(event: AlarmEvent) -> dict[str, Any]:
    """The stream message of one alarm journal entry."""
    return {
        "type": "alarm_event",
        "sequence": event.sequence,
        "time_s": event.time_s,
        "event": event.event.value,
        "alarm_id": event.alarm_id,
        "from_state": None if event.from_state is None else event.from_state.value,
        "to_state": None if event.to_state is None else event.to_state.value,
        "user": event.user,
        "reason": event.reason,
        "value": event.value,
        "detail": event.detail,
        "annunciation": event.annunciation,
    }


def incident_message(incident: Incident) -> dict[str, Any]:
    """The stream message of one incident version."""
    return {"type": "incident", "incident": incident.to_json()}


@dataclass(frozen=True)
class StreamStats:
    """Counters of the broadcaster."""

    clients: int
    connected_total: int
    messages_published: int
    dropped_clients: dict[str, int]


class StreamClient:
    """One subscriber's bounded queue, drained by its WebSocket task on the event loop."""

    def __init__(self, client_id: int, capacity: int, loop: asyncio.AbstractEventLoop) -> None:
        self.client_id = client_id
        self.capacity = capacity
        self._loop = loop
        self._messages: deque[dict[str, Any]] = deque()
        self._lock = threading.Lock()
        self._ready = asyncio.Event()
        self.dropped_reason: str | None = None

    def _wake(self) -> None:
        self._ready.set()

    def offer(self, message: dict[str, Any]) -> bool:
        """Queue ``message``; ``False`` (and the client marked dropped) when the queue is full."""
        with self._lock:
            if self.dropped_reason is not None:
                return False
            if len(self._messages) >= self.capacity:
                self.dropped_reason = DROP_SLOW
                self._messages.clear()
                accepted = False
            else:
                self._messages.append(message)
                accepted = True
        try:
            self._loop.call_soon_threadsafe(self._wake)
        except RuntimeError:  # the loop is closed: the client is gone anyway
            return False
        return accepted

    async def next_batch(self) -> list[dict[str, Any]]:
        """Wait for messages and take all queued; empty once the client was dropped."""
        while True:
            with self._lock:
                if self.dropped_reason is not None:
                    return []
                if self._messages:
                    batch = list(self._messages)
                    self._messages.clear()
                    return batch
                self._ready.clear()
            await self._ready.wait()


class StreamBroadcaster:
    """Fan-out of live messages to WebSocket clients with bounded per-client queues.

    Parameters
    ----------
    queue_messages
        Messages a client may have waiting before it is dropped [1].
    """

    def __init__(self, *, queue_messages: int) -> None:
        if queue_messages < 1:
            raise ValueError(f"queue_messages must be >= 1, got {queue_messages}")
        self.queue_messages = queue_messages
        self._clients: dict[int, StreamClient] = {}
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._connected_total = 0
        self._published = 0
        self._dropped: Counter[str] = Counter()

    def connect(self, loop: asyncio.AbstractEventLoop) -> StreamClient:
        """A new client whose wake-ups run on ``loop``."""
        client = StreamClient(next(self._ids), self.queue_messages, loop)
        with self._lock:
            self._clients[client.client_id] = client
            self._connected_total += 1
        return client

    def disconnect(self, client: StreamClient) -> None:
        """Forget ``client`` (idempotent)."""
        with self._lock:
            self._clients.pop(client.client_id, None)

    def publish(self, message: dict[str, Any]) -> None:
        """Offer ``message`` to every client; never blocks; drops the clients that are full."""
        with self._lock:
            clients = list(self._clients.values())
            self._published += 1
        for client in clients:
            if not client.offer(message) and client.dropped_reason is not None:
                with self._lock:
                    if self._clients.pop(client.client_id, None) is not None:
                        self._dropped[client.dropped_reason] += 1

    def on_engine_output(self, output: EngineOutput) -> None:
        """A DetectionService listener: alarm events and incident versions."""
        for event in output.alarm_events:
            self.publish(alarm_event_message(event))
        for incident in output.incidents:
            self.publish(incident_message(incident))

    def on_records(self, records: Sequence[Record]) -> None:
        """An ingest subscriber: one ``readings`` message per batch."""
        if records:
            self.publish({"type": "readings", "records": [record_json(r) for r in records]})

    def stats(self) -> StreamStats:
        """Counters at this moment."""
        with self._lock:
            return StreamStats(
                clients=len(self._clients),
                connected_total=self._connected_total,
                messages_published=self._published,
                dropped_clients=dict(self._dropped),
            )
