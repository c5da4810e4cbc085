"""The ingest service: MQTT in, validated SI records durably stored, then acknowledged.

Data flow (two named threads, one bounded queue)::

    broker ──PUBLISH──▶ [pipesentinel-ingest-mqtt]  decode + validate + SequenceTracker
                           │  put_nowait (bounded, settings.ingest.queue_capacity_messages)
                           ▼
                        [pipesentinel-ingest-writer]  batches (size / wait from settings)
                           │  FrameStore.put, TelemetryStore.write, DeadLetterStore.add
                           ▼  all durable
                        PUBACK (in the order the messages arrived) ──▶ broker;  subscribers

* **Batches with a linger.** The writer takes a batch as soon as a message is queued, waiting at
  most ``settings.ingest.batch_linger_s`` (5 ms) for more: low latency for a lone reading, and
  full batches under load, since messages pile up while the previous batch commits.
* **Recording** (``settings.ingest.record_path``): every message received, valid or not, is
  appended raw to a JSON-lines file by the network thread before decoding
  (:mod:`pipesentinel.ingest.recording`), flushed before each batch is acknowledged.

* **At-least-once, nothing lost.** The paho client runs with ``manual_ack=True``: a QoS 1 message
  is acknowledged only after its record is stored or its rejection is dead-lettered. If storage
  fails, the batch is kept and retried with jittered exponential backoff, unacknowledged; if the
  process dies, the broker redelivers everything unacknowledged to the persistent session.
  Redelivered copies of stored readings are harmless: within a run the :class:`SequenceTracker`
  rejects them as ``duplicate``; across runs the stores are idempotent (same identity replaces).
* **Persistent session.** A fixed client id (``settings.broker.client_id``), MQTT 5 with
  ``clean_start=False`` and a session expiry of ``settings.ingest.max_age_s`` (older readings
  would be refused anyway), so readings published while the service is down are delivered when
  it comes back. Brokers without MQTT 5 (the embedded amqtt broker) get MQTT 3.1.1 with
  ``clean_session=False``.
* **Flow control.** The MQTT 5 Receive Maximum is the queue capacity, so the broker never has
  more unacknowledged messages out to the service than the queue can hold. An overflow (QoS 0
  messages, MQTT 3.1.1, or copies redelivered after a reconnect while old ones are still queued) is
  counted, logged and dead-lettered as ``queue_overflow`` with its raw bytes, never dropped.
* **Reconnects** with jittered exponential backoff between ``settings.broker.reconnect_min_delay_s``
  and ``reconnect_max_delay_s``; the service's own retained status, ``online`` / ``offline`` on
  ``pipesentinel/service/{client_id}/status``, with ``offline`` as its last will.

* **Feeds.** With ``store=None`` the same service is the detection process's own subscription
  (:mod:`pipesentinel.ingest.workers`): Mosquitto fans every message out to the storing service
  and to the feed, so detection never waits for storage and the two run on their own cores.

The service is a context manager owned by the application's lifespan::

    with IngestService(settings=settings, sites=site, store=store, frame_store=frames) as ingest:
        ingest.subscribe(detector.on_batch)
        ...
"""

from __future__ import annotations

import contextlib
import logging
import math
import queue
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Generic, Self, TypeVar
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from pipesentinel.ingest.contract import Decoder, SequenceTracker, message_kind
from pipesentinel.ingest.counters import IngestCounters, RejectionLog
from pipesentinel.ingest.dead_letter import DeadLetterStore
from pipesentinel.ingest.recording import RecordingWriter
from pipesentinel.ingest.records import CameraFrame, Record, Rejection, RejectReason
from pipesentinel.ingest.storage.base import FrameStore, StorageError, TelemetryStore
from pipesentinel.ingest.topics import (
    TOPIC_ROOT,
    MessageKind,
    is_service_output,
    service_status_topic,
    subscription_filter,
)
from pipesentinel.settings import BrokerSettings, Settings
from pipesentinel.site import Site

logger = logging.getLogger(__name__)

BatchSubscriber = Callable[[Sequence[Record]], None]
"""Called from the writer thread with each batch of records once it is durably stored."""

MQTT_PORT: Final = 1883  # IANA registry, RFC 6335
MQTTS_PORT: Final = 8883
QOS_AT_MOST_ONCE: Final = 0
QOS_AT_LEAST_ONCE: Final = 1
SERVICE_ONLINE: Final = b"online"
SERVICE_OFFLINE: Final = b"offline"
# MQTT 5 Session Expiry Interval is a four-byte integer; 0xFFFFFFFF means "never expires".
SESSION_EXPIRY_MAX_S: Final = 0xFFFFFFFE
# MQTT 5 Subscription Options (section 3.8.3.1): retain handling 1 = send retained messages only
# when the subscription does not exist yet (not again on every reconnect).
RETAIN_SEND_IF_NEW_SUBSCRIPTION: Final = 1
# CONNACK reason 0x84 (MQTT 5) / return code 1 (3.1.1): the broker does not speak this protocol.
UNSUPPORTED_PROTOCOL_REASON: Final = "Unsupported protocol version"

NETWORK_LOOP_TIMEOUT_S: Final = 0.05  # also the longest an acknowledgement waits to be sent
# Packets read per network-loop round at most. paho's ``loop()`` reads one packet per select();
# the network thread then reads on (``loop_read``) while messages keep coming, so a select, a
# write check and the housekeeping are paid once per burst instead of once per message
# (measured, 20 000 queued QoS 1 messages drained by bare paho 2.2, MQTT 5: 148 -> 73 us of
# CPU per message). Bounded so that acknowledgements and the recording flush still go out
# every few milliseconds under load (design choice) [-].
READ_BURST_PACKETS: Final = 256
# How long the network thread waits for room in a full queue before it dead-letters the message as
# a queue overflow. With a healthy store the writer makes room within a batch wait; a full queue
# can happen despite the Receive Maximum: Mosquitto 2.0.11 (Debian 11/12) sends a few messages
# more than the client's Receive Maximum after acknowledgements (measured; fixed in 2.0.13,
# "various fixes around inflight quota management", eclipse/mosquitto#2306).
QUEUE_FULL_WAIT_S: Final = 1.0
DEFAULT_STOP_TIMEOUT_S: Final = 10.0
DISCONNECT_TIMEOUT_S: Final = 2.0
# A broker that accepts the TCP connection but does not answer CONNECT within this time is
# treated as a failed attempt; amqtt 0.12 (the embedded broker) never answers an MQTT 5 CONNECT
# that carries a will, so this is also how ``auto`` finds out to fall back to MQTT 3.1.1.
CONNACK_TIMEOUT_S: Final = 5.0
THREAD_JOIN_TIMEOUT_S: Final = 10.0
# Storage retries (design choice; candidates for settings.ingest): quick first retries for a
# transient lock, capped so that a long outage is probed every few seconds.
STORAGE_RETRY_MIN_DELAY_S: Final = 0.1
STORAGE_RETRY_MAX_DELAY_S: Final = 5.0
BACKOFF_EXPONENT_CAP: Final = 62  # 2**62 times any sane delay exceeds every cap
# Longest a received message waits in the recording's buffer when no batch completes (QoS 0
# traffic, or a storage outage) before the buffer is flushed anyway (design choice) [s].
RECORDING_FLUSH_INTERVAL_S: Final = 1.0


class MqttProtocol(StrEnum):
    """MQTT protocol choice: MQTT 5, 3.1.1, or 5 falling back to 3.1.1 if the broker refuses."""

    AUTO = "auto"
    V5 = "5"
    V311 = "3.1.1"


def backoff_delay_s(
    attempt: int, *, min_delay_s: float, max_delay_s: float, random_fraction: float
) -> float:
    """Delay before retry number ``attempt`` (1, 2, ...): exponential with "equal jitter".

    The ceiling doubles from ``min_delay_s`` up to ``max_delay_s``; the delay is drawn in
    ``[ceiling / 2, ceiling]`` so that clients that failed together do not retry together
    (M. Brooker, "Exponential Backoff And Jitter", AWS Architecture Blog, 2015).

    Parameters
    ----------
    attempt
        1 for the first retry [-].
    min_delay_s, max_delay_s
        Ceiling of the first retry and cap of every retry [s].
    random_fraction
        A uniform draw in [0, 1] [-].
    """
    exponent = min(max(attempt - 1, 0), BACKOFF_EXPONENT_CAP)
    ceiling = min(max_delay_s, min_delay_s * 2.0**exponent)
    return ceiling * (0.5 + 0.5 * random_fraction)


@dataclass(frozen=True)
class BrokerAddress:
    """Where the broker is: host, port and whether to use TLS."""

    host: str
    port: int
    tls: bool

    @classmethod
    def parse(cls, url: str | None) -> BrokerAddress:
        """Parse ``mqtt://host[:port]`` or ``mqtts://host[:port]``; ``ValueError`` naming it."""
        if url is None:
            raise ValueError(
                "broker.url is not set: start the embedded broker "
                "(pipesentinel.ingest.embedded_broker) or point it at Mosquitto"
            )
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts"):
            raise ValueError(f"broker.url {url!r}: the scheme must be mqtt:// or mqtts://")
        try:
            port = parts.port
        except ValueError as error:
            raise ValueError(f"broker.url {url!r}: {error}") from None
        if not parts.hostname:
            raise ValueError(f"broker.url {url!r} names no host")
        tls = parts.scheme == "mqtts"
        return cls(host=parts.hostname, port=port or (MQTTS_PORT if tls else MQTT_PORT), tls=tls)


@dataclass(frozen=True)
class IngestStats:
    """A snapshot of the ingest service (:meth:`IngestService.stats`)."""

    connected: bool
    protocol: str
    connections: int
    accepted_by_kind: Mapping[MessageKind, int]
    rejected_by_reason: Mapping[RejectReason, int]
    queue_depth: int
    queue_capacity: int
    unacknowledged: int
    batches_written: int
    records_written: int
    rejections_dead_lettered: int
    storage_retries: int
    queue_overflows: int
    device_reboots: int
    subscriber_errors: int
    left_for_redelivery: int
    service_messages_passed: int
    last_error: str | None
    messages_recorded: int = 0  # written to settings.ingest.record_path
    messages_not_recorded: int = 0  # received after the recording failed (logged)

    @property
    def accepted(self) -> int:
        """All accepted messages."""
        return sum(self.accepted_by_kind.values())

    @property
    def rejected(self) -> int:
        """All rejected messages."""
        return sum(self.rejected_by_reason.values())


@dataclass(slots=True, kw_only=True)
class _Pending:
    """An MQTT message waiting for its acknowledgement (QoS 0: none is sent)."""

    generation: int
    mid: int
    qos: int
    done: bool = False


@dataclass(slots=True, kw_only=True)
class _Item(_Pending):
    """One decoded message on its way to storage; also its own acknowledgement entry."""

    result: Record | Rejection
    topic: str
    payload: bytes


ItemT = TypeVar("ItemT")


class _BatchHandoff(Generic[ItemT]):
    """Bounded FIFO between the network thread and the writer, handing over whole batches.

    Unlike ``queue.Queue``, whose every ``put`` wakes the waiting consumer, the writer is woken
    once per batch: when the first item arrives after an empty wait, then when the batch is full
    (or at the end of its linger). Measured on the ingest benchmark: 3.3 -> 0.06 thread switches
    per message.
    """

    def __init__(self, maxsize: int) -> None:
        self._items: deque[ItemT] = deque()
        self._maxsize = maxsize
        self._lock = threading.Lock()
        self._not_empty = threading.Condition(self._lock)
        self._not_full = threading.Condition(self._lock)
        self._wake_at = 0  # queue length that wakes the waiting writer; 0: nobody waits

    def put(self, item: ItemT, timeout: float | None = None) -> None:
        """Append ``item``; ``queue.Full`` if there is no room within ``timeout`` [s]."""
        with self._lock:
            if len(self._items) >= self._maxsize and not self._not_full.wait_for(
                lambda: len(self._items) < self._maxsize, timeout
            ):
                raise queue.Full
            self._items.append(item)
            if self._wake_at and len(self._items) >= self._wake_at:
                self._wake_at = 0
                self._not_empty.notify()

    def get_batch(self, max_items: int, max_wait_s: float, linger_s: float) -> list[ItemT]:
        """Up to ``max_items`` items; ``[]`` if none arrived within ``max_wait_s`` [s].

        Once there is an item, waits at most ``linger_s`` [s] more for the batch to fill up
        (Kafka's ``linger.ms``): items that arrived while the caller was busy are taken at once.
        """
        with self._lock:
            if not self._items:
                self._wake_at = 1
                self._not_empty.wait(max_wait_s)
                self._wake_at = 0
                if not self._items:
                    return []
            deadline = time.monotonic() + linger_s
            while len(self._items) < max_items:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._wake_at = max_items
                self._not_empty.wait(remaining)
                self._wake_at = 0
            batch = [self._items.popleft() for _ in range(min(max_items, len(self._items)))]
            self._not_full.notify_all()
            return batch

    def qsize(self) -> int:
        """Items waiting now."""
        return len(self._items)


class _AckLedger:
    """Acknowledgements released in the order the messages arrived (MQTT 5 section 4.6).

    Owned by the network thread. A reconnect starts a new generation: acknowledgements of
    messages from an earlier connection are not sent (the broker redelivers those messages and
    the sequence tracker turns the copies into ``duplicate`` rejections, acknowledged in turn).
    """

    def __init__(self) -> None:
        self.generation = 0
        self._entries: deque[_Pending] = deque()

    def new_connection(self) -> int:
        """Start a new generation; returns how many acknowledgements were still waiting."""
        self.generation += 1
        waiting = len(self._entries)
        self._entries.clear()
        return waiting

    def register(self, mid: int, qos: int) -> _Pending | None:
        """A message arrived; ``None`` for QoS 0 (nothing to acknowledge)."""
        if qos == 0:
            return None
        entry = _Pending(generation=self.generation, mid=mid, qos=qos)
        self._entries.append(entry)
        return entry

    def track(self, entry: _Pending) -> None:
        """A message arrived as ``entry`` (built with this :attr:`generation`); QoS 0 is ignored."""
        if entry.qos:
            self._entries.append(entry)

    def releasable(self) -> list[_Pending]:
        """Completed entries at the head, in arrival order, of the current generation."""
        released = []
        while self._entries and self._entries[0].done:
            entry = self._entries.popleft()
            if entry.generation == self.generation:
                released.append(entry)
        return released

    def __len__(self) -> int:
        return len(self._entries)


@dataclass
class _Batch:
    """A batch in the writer, with its progress so that a retry redoes only what failed."""

    items: list[_Item]
    frames_left: list[_Item] = field(default_factory=list)
    records: list[_Item] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    records_done: bool = False
    rejections_done: bool = False


def _records(items: Sequence[_Item]) -> list[Record]:
    """The records (not rejections) of ``items``."""
    return [item.result for item in items if not isinstance(item.result, Rejection)]


def _refusal(item: _Item, error: Exception, what: str) -> Rejection:
    return Rejection(
        reason=RejectReason.STORE_REFUSED,
        detail=f"the {what} refused the validated record: {type(error).__name__}: {error}",
        topic=item.topic,
        payload=item.payload,
        received_time_s=item.result.received_time_s,
    )


def _checked_filters(
    topic_filters: Sequence[str] | None,
    store: TelemetryStore | None,
    frame_store: FrameStore | None,
    dead_letters: DeadLetterStore | None,
) -> tuple[str, ...] | None:
    """The topic filters as a tuple; ``ValueError`` for an empty one or a feed given stores."""
    filters = tuple(topic_filters) if topic_filters is not None else None
    if filters is not None and (not filters or not all(filters)):
        raise ValueError(f"topic_filters must be non-empty topic filters, got {filters!r}")
    if store is None and (frame_store is not None or dead_letters is not None):
        raise ValueError("a feed (store=None) stores nothing: no frame_store or dead_letters")
    return filters


def _checked_subscription_qos(qos: int, store: TelemetryStore | None) -> int:
    """``qos`` if it is 1, or 0 for a feed; ``ValueError`` otherwise."""
    if qos not in (QOS_AT_MOST_ONCE, QOS_AT_LEAST_ONCE):
        raise ValueError(f"subscription_qos must be 0 or 1, got {qos!r}")
    if qos == QOS_AT_MOST_ONCE and store is not None:
        raise ValueError("a storing service subscribes with QoS 1: QoS 0 would lose readings")
    return qos


def _checked_broker_address(broker: BrokerSettings) -> BrokerAddress:
    """The broker address, after checking the broker settings make sense together."""
    address = BrokerAddress.parse(broker.url)
    if broker.reconnect_min_delay_s > broker.reconnect_max_delay_s:
        raise ValueError(
            f"broker.reconnect_min_delay_s ({broker.reconnect_min_delay_s}) exceeds "
            f"broker.reconnect_max_delay_s ({broker.reconnect_max_delay_s})"
        )
    if broker.ca_file is not None and not broker.ca_file.is_file():
        raise ValueError(f"broker.ca_file {str(broker.ca_file)!r} is not a file")
    if broker.ca_file is not None and not address.tls:
        raise ValueError("broker.ca_file is set but broker.url is not mqtts://")
    if broker.password is not None and broker.username is None:
        raise ValueError("broker.password is set without broker.username")
    return address


class _Recorder:
    """The optional recording of received messages (``settings.ingest.record_path``).

    Used by the network thread only (opened by :meth:`IngestService.start`, closed by
    :meth:`IngestService.stop` after that thread ended). A write failure (disk full) stops the
    recording: logged at ERROR, kept as the service's ``last_error``, and every message received
    after it counted as not recorded; ingestion goes on.
    """

    def __init__(self, path: Path | None, counters: IngestCounters) -> None:
        # recorded: messages handed to the writer (lines still buffered when the file fails are
        # lost with it; the failure is logged); not_recorded: messages after a failure.
        self.path = path
        self._counters = counters
        self._writer: RecordingWriter | None = None
        self.recorded = 0
        self.not_recorded = 0
        self._flushed_at_s = 0.0

    @property
    def active(self) -> bool:
        """Whether messages are to be recorded (configured, even if the recording failed)."""
        return self.path is not None

    @property
    def unflushed(self) -> bool:
        """Whether recorded lines wait in the buffer."""
        return self._writer is not None and self._writer.unflushed

    def open(self) -> None:
        """Open the recording if one is configured; ``OSError`` if it cannot be."""
        if self.path is not None:
            self._writer = RecordingWriter(self.path)
            logger.info("ingest service: recording every message received to %s", self.path)

    def record(self, topic: str, payload: bytes, received_time_s: float) -> None:
        """Append one message [s]."""
        writer = self._writer
        if writer is not None:
            try:
                writer.write(topic, payload, received_time_s)
            except (OSError, ValueError) as error:
                self._fail(error)
            else:
                self.recorded += 1
                return
        self.not_recorded += 1

    def flush(self, *, due_only: bool) -> None:
        """Flush (with ``due_only``: only if the last flush is RECORDING_FLUSH_INTERVAL_S old)."""
        writer = self._writer
        if writer is None or not writer.unflushed:
            return
        now_s = time.monotonic()
        if due_only and now_s - self._flushed_at_s < RECORDING_FLUSH_INTERVAL_S:
            return
        self._flushed_at_s = now_s
        try:
            writer.flush()
        except OSError as error:
            self._fail(error)

    def _fail(self, error: Exception) -> None:
        writer, self._writer = self._writer, None
        text = f"recording to {self.path} failed and is stopped: {type(error).__name__}: {error}"
        logger.error("ingest service: %s", text)
        self._counters.error(text)
        if writer is not None:
            with contextlib.suppress(OSError):
                writer.close()

    def close(self) -> None:
        """Flush and close the recording."""
        writer, self._writer = self._writer, None
        if writer is None:
            return
        try:
            writer.close()
        except OSError as error:
            self._fail(error)
        logger.info("ingest service: %d message(s) recorded to %s", self.recorded, self.path)


class IngestService:
    """Subscribes to the device topics and stores validated records; see the module docstring.

    Parameters
    ----------
    settings
        The one settings object: ``broker`` (URL, credentials, CA file, client id, keepalive,
        reconnect delays) and ``ingest`` (limits, queue, batching, dead-letter path).
    sites
        The configured site, or sites keyed by id.
    store
        Where readings go; the caller owns it (the service does not close it). ``None``: a
        *feed* (the detection process's subscription, :mod:`pipesentinel.ingest.workers`):
        records are not stored but handed to the subscribers at once, rejections and overflows
        are counted and logged but not dead-lettered (the storing ingest service, on its own
        subscription, keeps them), and nothing is recorded; a message is acknowledged once the
        subscribers have taken its batch.
    frame_store
        Where camera images go; ``None``: only their metadata is stored (in ``store``).
    dead_letters
        Where rejections go; ``None``: a :class:`DeadLetterStore` at
        ``settings.ingest.dead_letter_path``, opened by :meth:`start` and closed by :meth:`stop`.
    topic_filters
        MQTT subscriptions; default ``pipesentinel/v1/#`` (every site, so that devices publishing
        for an unconfigured site are seen and rejected). Tests on a shared broker pass their own.
    topic_root
        Device topic prefix (see :func:`pipesentinel.ingest.contract.decode`).
    protocol
        MQTT protocol; ``auto`` tries 5 and falls back to 3.1.1.
    clock
        Wall clock, seconds since the Unix epoch [s]: the receive time of each message.
    queue_full_wait_s
        How long a message waits for room in a full queue before it is dead-lettered as a queue
        overflow [s].
    subscription_qos
        QoS of the subscriptions: 1 (the default) with a persistent session and manual
        acknowledgement, nothing lost; 0 (a feed only, ``store=None``) with a clean session, no
        acknowledgements and no Receive Maximum: messages published while the service is
        disconnected are not delivered to it (see :mod:`pipesentinel.ingest.workers`).
    """

    def __init__(
        self,
        *,
        settings: Settings,
        sites: Site | Mapping[str, Site],
        store: TelemetryStore | None,
        frame_store: FrameStore | None = None,
        dead_letters: DeadLetterStore | None = None,
        topic_filters: Sequence[str] | None = None,
        topic_root: str = TOPIC_ROOT,
        protocol: MqttProtocol | str = MqttProtocol.AUTO,
        clock: Callable[[], float] = time.time,
        queue_full_wait_s: float = QUEUE_FULL_WAIT_S,
        subscription_qos: int = QOS_AT_LEAST_ONCE,
    ) -> None:
        self._address = _checked_broker_address(settings.broker)
        filters = _checked_filters(topic_filters, store, frame_store, dead_letters)
        self._settings = settings
        self._sites = sites
        self._store = store
        self._frame_store = frame_store
        self._dead_letters = dead_letters
        self._owns_dead_letters = dead_letters is None
        self._topic_root = topic_root
        self._topic_filters = filters or (subscription_filter(topic_root=topic_root),)
        self._protocol = MqttProtocol(protocol)
        self._clock = clock
        if not queue_full_wait_s >= 0:
            raise ValueError(f"queue_full_wait_s must be >= 0, got {queue_full_wait_s}")
        self._queue_full_wait_s = queue_full_wait_s
        self._subscription_qos = _checked_subscription_qos(subscription_qos, store)
        self._random = random.Random()  # noqa: S311 - jitter, not cryptography
        self._capacity = settings.ingest.queue_capacity_messages
        self._queue: _BatchHandoff[_Item] = _BatchHandoff(self._capacity)
        self._decoder = Decoder(sites=sites, limits=settings.ingest, topic_root=topic_root)
        self._counters = IngestCounters()
        # Accepted messages by kind: written by the network thread only, every key present from
        # the start so that stats() can copy the dict while it is being updated.
        self._accepted_by_kind: dict[MessageKind, int] = dict.fromkeys(MessageKind, 0)
        self._rejection_log = RejectionLog(
            logger, every_nth=settings.ingest.log_every_nth_rejection
        )
        self._tracker = SequenceTracker()
        self._ledger = _AckLedger()
        self._completed: deque[_Pending] = deque()
        self._subscribers: list[BatchSubscriber] = []
        self._subscribers_lock = threading.Lock()
        # Messages taken but not yet stored or dead-lettered: _taken - _overflowed - _finished.
        # The first two are written by the network thread only, _finished by the writer only
        # (under _outstanding_changed), so the network thread takes no lock per message.
        self._taken = self._overflowed = self._finished = 0
        self._messages_received = 0  # every PUBLISH paho handed over (network thread only)
        self._outstanding_changed = threading.Condition()
        self._recorder = _Recorder(
            settings.ingest.record_path if store is not None else None, self._counters
        )
        self._connected = threading.Event()
        self._socket_closed = threading.Event()
        self._closing = threading.Event()  # no new messages are taken
        self._stop_network = threading.Event()
        self._stop_writer = threading.Event()
        self._abort_writer = threading.Event()
        self._connections = 0
        self._active_protocol = (
            MqttProtocol.V311 if self._protocol is MqttProtocol.V311 else MqttProtocol.V5
        )
        self._last_connect_error: str | None = None
        self._refused_protocol = False
        self._connected_once_since_failure = False
        self._subscribe_mid: int | None = None
        self._connack_received = False
        self._connack_missing = False
        self._started = False
        self._stopped = False
        self._network_thread = threading.Thread(
            target=self._network_main, name="pipesentinel-ingest-mqtt", daemon=True
        )
        self._writer_thread = threading.Thread(
            target=self._writer_main, name="pipesentinel-ingest-writer", daemon=True
        )

    # --- public API ------------------------------------------------------------------------------

    @property
    def client_id(self) -> str:
        """The MQTT client id (fixed: it names the persistent session)."""
        return self._settings.broker.client_id

    @property
    def status_topic(self) -> str:
        """The service's retained online/offline topic."""
        return service_status_topic(self.client_id)

    @property
    def _persistent(self) -> bool:
        """Whether the session persists: with QoS 1 (what arrives while away comes later).

        A QoS 0 feed would get nothing queued anyway: it starts clean and leaves no session.
        """
        return self._subscription_qos > QOS_AT_MOST_ONCE

    @property
    def stores(self) -> bool:
        """Whether this service stores what it receives (``False``: a feed, ``store=None``)."""
        return self._store is not None

    @property
    def dead_letters(self) -> DeadLetterStore:
        """The dead-letter store (after :meth:`start`)."""
        if self._dead_letters is None:
            raise RuntimeError("the dead-letter store is opened by start()")
        return self._dead_letters

    def start(self) -> Self:
        """Open the dead-letter store if needed and start the writer and network threads.

        Returns at once; the connection is made (and retried) in the background. Use
        :meth:`wait_connected` to wait for it.
        """
        if self._started:
            raise RuntimeError("an IngestService starts once; create a new one to restart")
        self._started = True
        if self._dead_letters is None and self._store is not None:
            self._dead_letters = DeadLetterStore(self._settings.ingest.dead_letter_path)
        try:
            self._recorder.open()
        except OSError:
            if self._owns_dead_letters and self._dead_letters is not None:
                self._dead_letters.close()
            raise
        self._writer_thread.start()
        self._network_thread.start()
        logger.info(
            "ingest service %r starting: broker %s:%d, subscriptions %s",
            self.client_id,
            self._address.host,
            self._address.port,
            ", ".join(self._topic_filters),
        )
        return self

    def wait_connected(self, timeout_s: float) -> bool:
        """Wait until connected and the broker has granted the subscriptions [s].

        ``False`` on timeout (``stats().last_error`` says why, e.g. a refused login or ACL).
        """
        return self._connected.wait(timeout_s)

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until every message taken so far is stored and acknowledged [s]."""
        deadline = time.monotonic() + timeout_s
        with self._outstanding_changed:
            while self._outstanding() or (self._completed and self._connected.is_set()):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._outstanding_changed.wait(min(remaining, NETWORK_LOOP_TIMEOUT_S))
        return True

    def stop(self, *, timeout_s: float = DEFAULT_STOP_TIMEOUT_S, drain: bool = True) -> None:
        """Stop taking messages, store what was taken, acknowledge it and disconnect.

        With ``drain`` (the default) the queued messages are stored and acknowledged first, for
        up to ``timeout_s`` [s]; whatever is not durable by then (storage down) is left
        unacknowledged, and the broker redelivers it to the next session. Without ``drain``
        nothing more is stored or acknowledged. Messages arriving during the stop are not taken:
        they also wait in the broker for the next session. Idempotent.
        """
        if not self._started or self._stopped:
            self._stopped = True
            return
        self._stopped = True
        self._closing.set()
        if drain and not self.wait_idle(timeout_s):
            logger.error(
                "ingest service %r: %d message(s) not stored within %g s; they stay "
                "unacknowledged and the broker will redeliver them to the next session",
                self.client_id,
                self._outstanding(),
                timeout_s,
            )
        self._abort_writer.set()
        self._stop_writer.set()
        self._writer_thread.join(THREAD_JOIN_TIMEOUT_S)
        self._stop_network.set()
        self._network_thread.join(THREAD_JOIN_TIMEOUT_S)
        for thread in (self._writer_thread, self._network_thread):
            if thread.is_alive():
                logger.error("ingest service: thread %s did not stop", thread.name)
        self._rejection_log.flush(force=True)
        self._recorder.close()
        if self._owns_dead_letters and self._dead_letters is not None:
            self._dead_letters.close()
        stats = self.stats()
        logger.info(
            "ingest service %r stopped: %d accepted, %d rejected, %d batches written, "
            "%d left for redelivery",
            self.client_id,
            stats.accepted,
            stats.rejected,
            stats.batches_written,
            stats.left_for_redelivery,
        )

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def subscribe(self, callback: BatchSubscriber) -> Callable[[], None]:
        """Call ``callback`` with every durably stored batch of records; returns an unsubscriber.

        Callbacks run on the writer thread, after storage and before the next batch: keep them
        short (hand the batch over to your own thread or queue). An exception is logged and
        counted (``subscriber_errors``) and does not affect storage or acknowledgement.
        """
        with self._subscribers_lock:
            self._subscribers.append(callback)

        def unsubscribe() -> None:
            with self._subscribers_lock, contextlib.suppress(ValueError):
                self._subscribers.remove(callback)

        return unsubscribe

    def stats(self) -> IngestStats:
        """Counters, queue depth and connection state at this moment."""
        counts = self._counters.snapshot()
        return IngestStats(
            connected=self._connected.is_set(),
            protocol=self._active_protocol.value,
            connections=self._connections,
            accepted_by_kind={
                kind: count for kind, count in dict(self._accepted_by_kind).items() if count
            },
            rejected_by_reason=counts.rejected_by_reason,
            queue_depth=self._queue.qsize(),
            queue_capacity=self._capacity,
            unacknowledged=self._outstanding(),
            batches_written=counts.batches_written,
            records_written=counts.records_written,
            rejections_dead_lettered=counts.rejections_dead_lettered,
            storage_retries=counts.storage_retries,
            queue_overflows=counts.queue_overflows,
            device_reboots=self._tracker.reboots,
            subscriber_errors=counts.subscriber_errors,
            left_for_redelivery=counts.left_for_redelivery,
            service_messages_passed=counts.service_messages_passed,
            last_error=counts.last_error,
            messages_recorded=self._recorder.recorded,
            messages_not_recorded=self._recorder.not_recorded,
        )

    def _outstanding(self) -> int:
        """Messages taken but not yet durable (never less than the true number)."""
        finished = self._finished  # read before the counts that only grow after it
        overflowed = self._overflowed
        return self._taken - overflowed - finished

    # --- the network thread ----------------------------------------------------------------------

    def _new_client(self) -> mqtt.Client:
        broker = self._settings.broker
        v5 = self._active_protocol is MqttProtocol.V5
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=broker.client_id,
            clean_session=None if v5 else not self._persistent,
            protocol=MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311,
            reconnect_on_failure=False,
            manual_ack=True,
        )
        client.enable_logger(logging.getLogger(f"{__name__}.paho"))
        if broker.username is not None:
            password = None if broker.password is None else broker.password.get_secret_value()
            client.username_pw_set(broker.username, password)
        if self._address.tls:
            client.tls_set(ca_certs=None if broker.ca_file is None else str(broker.ca_file))
        client.will_set(self.status_topic, SERVICE_OFFLINE, qos=QOS_AT_LEAST_ONCE, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        return client

    def _connect_properties(self) -> Properties:
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]  # paho 2.2 leaves it untyped
        properties.SessionExpiryInterval = (
            min(math.ceil(self._settings.ingest.max_age_s), SESSION_EXPIRY_MAX_S)
            if self._persistent
            else 0
        )
        properties.ReceiveMaximum = self._capacity
        return properties

    def _open_connection(self, client: mqtt.Client, *, first: bool) -> None:
        if not first:
            client.reconnect()
        elif self._active_protocol is MqttProtocol.V5:
            client.connect(
                self._address.host,
                self._address.port,
                keepalive=self._settings.broker.keepalive_s,
                clean_start=not self._persistent,
                properties=self._connect_properties(),
            )
        else:
            client.connect(
                self._address.host, self._address.port, keepalive=self._settings.broker.keepalive_s
            )

    def _network_main(self) -> None:
        client = self._new_client()
        first = True
        attempt = 0
        while not self._stop_network.is_set():
            self._refused_protocol = False
            self._connack_missing = False
            try:
                self._open_connection(client, first=first)
                first = False
                self._run_connection(client)
            except (OSError, ValueError) as error:
                self._connection_failed(f"cannot connect to the broker: {error}")
            except Exception as error:
                logger.exception("ingest service: network loop failed; reconnecting")
                self._connection_failed(f"network loop failed: {type(error).__name__}: {error}")
            self._connected.clear()
            if self._stop_network.is_set():
                break
            v5_failed = self._refused_protocol or self._connack_missing
            if (
                v5_failed
                and self._active_protocol is MqttProtocol.V5
                and (self._protocol is MqttProtocol.AUTO)
            ):
                logger.warning(
                    "broker %s MQTT 5; using MQTT 3.1.1 (no Receive Maximum flow control: "
                    "a queue overflow is possible and would be dead-lettered)",
                    "refused" if self._refused_protocol else "did not answer",
                )
                self._active_protocol = MqttProtocol.V311
                client = self._new_client()
                first = True
                continue
            if self._connected_once_since_failure:
                attempt = 0
            attempt += 1
            delay_s = backoff_delay_s(
                attempt,
                min_delay_s=self._settings.broker.reconnect_min_delay_s,
                max_delay_s=self._settings.broker.reconnect_max_delay_s,
                random_fraction=self._random.random(),
            )
            logger.debug("reconnecting in %.2f s (attempt %d)", delay_s, attempt)
            self._stop_network.wait(delay_s)

    def _run_connection(self, client: mqtt.Client) -> None:
        """Run the network loop of one connection until it drops or the service stops."""
        self._connected_once_since_failure = False
        self._connack_received = False
        connack_deadline = time.monotonic() + CONNACK_TIMEOUT_S
        while True:
            code = client.loop(timeout=NETWORK_LOOP_TIMEOUT_S)
            if code is MQTTErrorCode.MQTT_ERR_SUCCESS:
                code = self._read_burst(client)
            self._send_acknowledgements(client)
            if self._recorder.unflushed:
                self._recorder.flush(due_only=True)
            if code is not MQTTErrorCode.MQTT_ERR_SUCCESS:
                if not self._stop_network.is_set():
                    self._connection_failed(f"connection lost: {mqtt.error_string(code)}")
                return
            if self._stop_network.is_set():
                self._disconnect(client)
                return
            if not self._connack_received and time.monotonic() > connack_deadline:
                self._connack_missing = True
                self._connection_failed(f"no CONNACK from the broker within {CONNACK_TIMEOUT_S} s")
                self._disconnect(client)
                return

    def _read_burst(self, client: mqtt.Client) -> MQTTErrorCode:
        """Read the messages already waiting, up to :data:`READ_BURST_PACKETS`.

        Stops at the first read that brings no message (nothing waiting, or another packet
        type: the next ``loop()`` handles what is left).
        """
        for _ in range(READ_BURST_PACKETS):
            before = self._messages_received
            code = client.loop_read()
            if code is not MQTTErrorCode.MQTT_ERR_SUCCESS or self._messages_received == before:
                return code
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def _disconnect(self, client: mqtt.Client) -> None:
        """Send the last acknowledgements, announce ``offline`` and disconnect cleanly."""
        self._send_acknowledgements(client)
        if self._connected.is_set():
            client.publish(self.status_topic, SERVICE_OFFLINE, qos=QOS_AT_LEAST_ONCE, retain=True)
        self._socket_closed.clear()
        if client.disconnect() is not MQTTErrorCode.MQTT_ERR_SUCCESS:
            return
        deadline = time.monotonic() + DISCONNECT_TIMEOUT_S
        while not self._socket_closed.is_set() and time.monotonic() < deadline:
            if client.loop(timeout=NETWORK_LOOP_TIMEOUT_S) is not MQTTErrorCode.MQTT_ERR_SUCCESS:
                break

    def _connection_failed(self, text: str) -> None:
        self._counters.error(text)
        if text != self._last_connect_error:
            logger.warning("ingest service %r: %s", self.client_id, text)
            self._last_connect_error = text
        else:
            logger.debug("ingest service %r: %s", self.client_id, text)

    def _send_acknowledgements(self, client: mqtt.Client) -> None:
        if not self._completed:
            return
        # Once per stored batch, before the entries leave _completed (what wait_idle watches):
        # every message is in the recording before it is acknowledged.
        self._recorder.flush(due_only=False)
        while self._completed:
            self._completed.popleft().done = True
        for entry in self._ledger.releasable():
            client.ack(entry.mid, entry.qos)
        with self._outstanding_changed:
            self._outstanding_changed.notify_all()

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,  # noqa: ARG002 - paho's callback signature
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,  # noqa: ARG002 - paho's callback signature
    ) -> None:
        self._connack_received = True
        if reason_code.is_failure:
            self._refused_protocol = reason_code.getName() == UNSUPPORTED_PROTOCOL_REASON
            self._connection_failed(f"broker refused the connection: {reason_code.getName()}")
            return
        dropped = self._ledger.new_connection()
        self._connections += 1
        self._connected_once_since_failure = True
        self._last_connect_error = None
        if dropped:
            logger.info(
                "%d acknowledgement(s) of the previous connection were not sent; the broker "
                "redelivers those messages",
                dropped,
            )
        if not flags.session_present and self._persistent:
            log = logger.warning if self._connections > 1 else logger.info
            log(
                "ingest service %r: the broker holds no session for this client id (new or "
                "expired); messages published before now while disconnected are not delivered",
                self.client_id,
            )
        logger.info(
            "ingest service %r connected (MQTT %s, session %s)",
            self.client_id,
            self._active_protocol.value,
            "resumed" if flags.session_present else "new",
        )
        client.publish(self.status_topic, SERVICE_ONLINE, qos=QOS_AT_LEAST_ONCE, retain=True)
        if self._active_protocol is MqttProtocol.V5:
            options = SubscribeOptions(
                qos=self._subscription_qos,
                noLocal=True,
                retainHandling=RETAIN_SEND_IF_NEW_SUBSCRIPTION,
            )
            _, self._subscribe_mid = client.subscribe(
                [(topic_filter, options) for topic_filter in self._topic_filters]
            )
        elif not flags.session_present:
            _, self._subscribe_mid = client.subscribe(
                [(topic_filter, self._subscription_qos) for topic_filter in self._topic_filters]
            )
        else:  # MQTT 3.1.1 with a resumed session: the subscriptions are part of it
            self._connected.set()

    def _on_subscribe(
        self,
        client: mqtt.Client,  # noqa: ARG002 - paho's callback signature
        userdata: Any,  # noqa: ARG002 - paho's callback signature
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,  # noqa: ARG002 - paho's callback signature
    ) -> None:
        if mid != self._subscribe_mid:
            return
        refused = [
            f"{topic_filter}: {code.getName()}"
            for topic_filter, code in zip(self._topic_filters, reason_codes, strict=False)
            if code.is_failure
        ]
        if refused:
            text = f"broker refused the subscription(s) {'; '.join(refused)} (ACL?)"
            self._counters.error(text)
            logger.error("ingest service %r: %s", self.client_id, text)
            return
        self._connected.set()

    def _on_disconnect(
        self,
        client: mqtt.Client,  # noqa: ARG002 - paho's callback signature
        userdata: Any,  # noqa: ARG002 - paho's callback signature
        flags: mqtt.DisconnectFlags,  # noqa: ARG002 - paho's callback signature
        reason_code: ReasonCode,
        properties: Properties | None,  # noqa: ARG002 - paho's callback signature
    ) -> None:
        was_connected = self._connected.is_set()
        self._connected.clear()
        self._socket_closed.set()
        if was_connected and not self._stop_network.is_set():
            self._connection_failed(f"disconnected: {reason_code.getName()}")

    def _on_message(
        self,
        client: mqtt.Client,  # noqa: ARG002 - paho's callback signature
        userdata: Any,  # noqa: ARG002 - paho's callback signature
        message: mqtt.MQTTMessage,
    ) -> None:
        self._messages_received += 1
        if self._closing.is_set():
            # Not taken: left unacknowledged, so the broker redelivers it to the next session
            # (and it is recorded then).
            self._counters.left_for_redelivery(1)
            return
        received_time_s = self._clock()
        try:
            topic = message.topic
        except UnicodeDecodeError:
            # Brokers check topics are UTF-8; paho offers no public raw topic, hence _topic.
            topic = bytes(message._topic).decode("utf-8", "replace")
        payload = bytes(message.payload)
        decoder = self._decoder
        if not decoder.is_device_topic(topic) and is_service_output(
            topic, topic_root=self._topic_root
        ):
            # PipeSentinel's own alarms/incidents: not device data, acknowledged and counted.
            self._counters.service_message_passed()
            pending = self._ledger.register(message.mid, message.qos)
            if pending is not None:
                self._completed.append(pending)
            return
        if self._recorder.active:
            self._recorder.record(topic, payload, received_time_s)
        result: Record | Rejection
        try:
            result = decoder(topic, payload, received_time_s)
            if not isinstance(result, Rejection):
                tracker = self._tracker
                reboots = tracker.reboots
                rejection = tracker.admit(result, topic=topic, payload=payload)
                if rejection is not None:
                    result = rejection
                elif tracker.reboots != reboots and tracker.last_reboot is not None:
                    reboot = tracker.last_reboot
                    logger.info(
                        "device %s/%s restarted: %s seq went from %d to %d",
                        reboot.site_id,
                        reboot.device_id,
                        reboot.kind.value,
                        reboot.previous_seq,
                        reboot.seq,
                    )
        except Exception as error:
            logger.exception("the decoder raised on a message on %r", topic)
            result = Rejection(
                reason=RejectReason.DECODER_ERROR,
                detail=f"the decoder raised {type(error).__name__}: {error}",
                topic=topic,
                payload=payload,
                received_time_s=received_time_s,
            )
        item = _Item(
            generation=self._ledger.generation,
            mid=message.mid,
            qos=message.qos,
            result=result,
            topic=topic,
            payload=payload,
        )
        self._ledger.track(item)
        self._take(item)

    def _take(self, item: _Item) -> None:
        self._taken += 1
        try:
            self._queue.put(item, timeout=self._queue_full_wait_s)
        except queue.Full:
            self._overflowed += 1
            self._overflow(item)
            return
        result = item.result
        if isinstance(result, Rejection):
            self._counters.rejected(result.reason)
            self._rejection_log.record(result)
        else:
            self._accepted_by_kind[message_kind(result)] += 1

    def _overflow(self, item: _Item) -> None:
        """The queue is full: dead-letter the message at once (raw bytes kept), then ack it."""
        verdict = (
            f"rejected as {item.result.reason.value}"
            if isinstance(item.result, Rejection)
            else f"a valid {message_kind(item.result).value} message"
        )
        overflow = Rejection(
            reason=RejectReason.QUEUE_OVERFLOW,
            detail=f"ingest queue full ({self._capacity} messages); the message was {verdict}",
            topic=item.topic,
            payload=item.payload,
            received_time_s=item.result.received_time_s,
        )
        self._counters.queue_overflow()
        self._counters.rejected(RejectReason.QUEUE_OVERFLOW)
        self._rejection_log.record(overflow)
        if self._dead_letters is None:
            # A feed: the storing ingest service keeps the message; counted and logged here.
            logger.warning("feed %r: %s (topic %r)", self.client_id, overflow.detail, item.topic)
            if item.qos:
                self._completed.append(item)
            return
        try:
            self.dead_letters.add([overflow])
        except StorageError as error:
            logger.error(
                "queue overflow on %r and the dead-letter store failed (%s): the message stays "
                "unacknowledged until the next connection",
                item.topic,
                error,
            )
            self._counters.error(str(error))
            if item.qos:  # let later acknowledgements through
                item.done = True
                item.generation = -1
            return
        if item.qos:
            self._completed.append(item)

    # --- the writer thread -----------------------------------------------------------------------

    def _next_batch(self) -> list[_Item]:
        ingest = self._settings.ingest
        return self._queue.get_batch(
            ingest.batch_max_messages, ingest.batch_max_wait_s, ingest.batch_linger_s
        )

    def _writer_main(self) -> None:
        while True:
            items = self._next_batch()
            if not items:
                self._rejection_log.flush()
                if self._stop_writer.is_set():
                    return
                continue
            batch = self._prepare(items)
            if self._abort_writer.is_set() or not self._commit(batch):
                self._counters.left_for_redelivery(len(items))
                with self._outstanding_changed:
                    self._finished += len(items)
                    self._outstanding_changed.notify_all()
                continue
            self._counters.written(records=len(batch.records), rejections=len(batch.rejections))
            if self._store is None:  # a feed: acknowledged once the subscribers have the batch
                self._notify(_records(batch.records))
            self._completed.extend(item for item in items if item.qos)
            with self._outstanding_changed:
                self._finished += len(items)
                self._outstanding_changed.notify_all()
            if self._store is not None:
                self._notify(_records(batch.records))

    def _prepare(self, items: list[_Item]) -> _Batch:
        batch = _Batch(items=items)
        for item in items:
            if isinstance(item.result, Rejection):
                batch.rejections.append(item.result)
            else:
                batch.records.append(item)
                if isinstance(item.result, CameraFrame) and self._frame_store is not None:
                    batch.frames_left.append(item)
        batch.records_done = not batch.records
        batch.rejections_done = not batch.rejections
        return batch

    def _commit(self, batch: _Batch) -> bool:
        """Make the batch durable, retrying with backoff; ``False`` if aborted by :meth:`stop`."""
        attempt = 0
        while True:
            try:
                self._commit_once(batch)
            except Exception as error:
                attempt += 1
                text = f"{type(error).__name__}: {error}"
                self._counters.storage_retry(text)
                if attempt & (attempt - 1) == 0:  # attempts 1, 2, 4, 8, ...: fewer lines
                    logger.warning(
                        "storing a batch of %d message(s) failed (attempt %d), kept and retried; "
                        "not acknowledged meanwhile: %s",
                        len(batch.items),
                        attempt,
                        text,
                        exc_info=not isinstance(error, StorageError | OSError),
                    )
                delay_s = backoff_delay_s(
                    attempt,
                    min_delay_s=STORAGE_RETRY_MIN_DELAY_S,
                    max_delay_s=STORAGE_RETRY_MAX_DELAY_S,
                    random_fraction=self._random.random(),
                )
                if self._abort_writer.wait(delay_s):
                    return False
                continue
            if attempt:
                logger.info("batch stored after %d failed attempt(s)", attempt)
            return True

    def _commit_once(self, batch: _Batch) -> None:
        """One attempt; raises what failed. Progress is kept in ``batch`` for the next attempt."""
        while batch.frames_left:
            item = batch.frames_left[0]
            assert isinstance(item.result, CameraFrame)  # noqa: S101 - by construction
            assert self._frame_store is not None  # noqa: S101 - frames_left is empty otherwise
            try:
                self._frame_store.put(item.result)
            except (ValueError, TypeError) as error:
                self._refuse(batch, item, error, "frame store")
            batch.frames_left.pop(0)
        if self._store is None:  # a feed: nothing to store
            return
        if not batch.records_done:
            try:
                self._store.write(_records(batch.records))
            except (ValueError, TypeError):
                self._write_one_by_one(batch)
            batch.records_done = True
        if not batch.rejections_done:
            self.dead_letters.add(batch.rejections)
            batch.rejections_done = True

    def _write_one_by_one(self, batch: _Batch) -> None:
        """Find the records the store refuses (a validation gap) and dead-letter them."""
        assert self._store is not None  # noqa: S101 - only called when storing
        for item in list(batch.records):
            try:
                self._store.write(_records([item]))
            except (ValueError, TypeError) as error:
                self._refuse(batch, item, error, "telemetry store")

    def _refuse(self, batch: _Batch, item: _Item, error: Exception, what: str) -> None:
        refusal = _refusal(item, error, what)
        logger.error("%s (topic %r)", refusal.detail, item.topic)
        with contextlib.suppress(ValueError):
            batch.records.remove(item)
        batch.rejections.append(refusal)
        batch.rejections_done = False
        self._counters.rejected(RejectReason.STORE_REFUSED)

    def _notify(self, records: list[Record]) -> None:
        if not records:
            return
        with self._subscribers_lock:
            subscribers = list(self._subscribers)
        for subscriber in subscribers:
            try:
                subscriber(records)
            except Exception as error:
                logger.exception("batch subscriber %r failed", subscriber)
                self._counters.subscriber_error(f"subscriber {subscriber!r}: {error}")
