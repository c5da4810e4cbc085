"""Notifications: alarm and incident state on MQTT (retained), webhooks with retry, escalation.

The edge that tells people and other systems what detection decided. It is generic over what is
notified: detection hands over plain JSON-ready mappings with a stable subject id, a unique
``event_id`` and a time ``time_s``::

    {"alarm_id": "GD07.methane.high", "event_id": "...", "time_s": 1.8e9,
     "state": "unack", "priority": "high", ...}
    {"incident_id": "INC-...", "event_id": "...", "time_s": 1.8e9, ...}

Data flow (threads named ``pipesentinel-notify-*``; the caller never waits on I/O)::

    notify(event) ── validate, JSON-encode ──┬──▶ MQTT pending (latest state per topic wins,
    (detection)                              │      bounded) ──▶ [mqtt] PUBLISH QoS 1 retain
                                             │      ──▶ PUBACK: delivered
                                             └──▶ one bounded queue per webhook URL
                                                    ──▶ [webhook-N] POST, retry with backoff
    tick(now_s) ── escalations_due(...) ── escalation events, same two ways
    every attempt ──▶ [recorder] ──▶ NotificationLog (SQLite, WAL)

* **MQTT.** Each alarm's current state is published retained with QoS 1 on
  ``{root}/{site}/alarms/{alarm_id}``, each incident's on ``{root}/{site}/incidents/{incident_id}``,
  so a console that connects later gets the current state at once. While the broker is away the
  states wait in a bounded map keyed by topic (the newest state of a topic replaces an older
  one, which is recorded as ``superseded``); they are published on reconnect. Reconnects use
  jittered exponential backoff (:func:`pipesentinel.ingest.service.backoff_delay_s`); MQTT 5
  falls back to 3.1.1 like the ingest service. The notifier's own retained ``online`` /
  ``offline`` (last will) is on ``pipesentinel/service/{client_id}/status``.
* **Webhooks.** Each event is POSTed as JSON to every configured URL by a worker thread of that
  URL, so a slow or dead gateway delays only itself. Each attempt has a timeout; failures
  (network errors, 408, 429, 5xx) are retried with jittered exponential backoff, at least as
  late as a ``Retry-After`` asks, up to a maximum number of attempts and a maximum age. Other
  4xx and 3xx are not retried. With a shared secret, the body is signed with HMAC-SHA256.
* **Idempotency.** Every attempt is recorded (:mod:`pipesentinel.ingest.storage.notification_log`).
  An event delivered once on a channel is not delivered again on it: the deliveries of the last
  ``idempotency_window_s`` are read back at start-up.
* **Escalation.** An alarm that stays unacknowledged past its priority's ``first_after_s`` is
  escalated (level 1), then again every ``repeat_after_s`` up to ``max_level``
  (:func:`escalations_due`, called by :meth:`Notifier.tick`). An escalation is an event of its
  own (deterministic id, so a restart does not resend it) sent to the escalation webhooks, and
  the alarm's retained MQTT state is republished with its ``escalation_level``. Acknowledging
  the alarm stops it.

The notifier is a context manager owned by the application's lifespan::

    with Notifier(settings=settings.notifications, site_id=site.id,
                  broker=settings.broker) as notifier:
        notifier.notify(alarm_event)        # returns at once
        notifier.tick()                     # e.g. once a second: escalations
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import itertools
import json
import logging
import math
import queue
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from numbers import Real
from types import TracebackType
from typing import Any, Final, Self

import numpy as np
import paho.mqtt.client as mqtt
import urllib3
from numpy.typing import ArrayLike, NDArray
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from pipesentinel.ingest.service import BrokerAddress, MqttProtocol, backoff_delay_s
from pipesentinel.ingest.storage.base import StorageError
from pipesentinel.ingest.storage.notification_log import (
    Attempt,
    Channel,
    NotificationLog,
    Outcome,
)
from pipesentinel.ingest.topics import TOPIC_ROOT, TOPIC_SEPARATOR, service_status_topic
from pipesentinel.notification_settings import (
    EscalationPolicy,
    NotificationSettings,
    webhook_channel,
)
from pipesentinel.settings import BrokerSettings

logger = logging.getLogger(__name__)

# --- the event contract ---------------------------------------------------------------------------

EVENT_ID_KEY: Final = "event_id"
TIME_KEY: Final = "time_s"
ALARM_ID_KEY: Final = "alarm_id"
INCIDENT_ID_KEY: Final = "incident_id"
STATE_KEY: Final = "state"
PRIORITY_KEY: Final = "priority"
ESCALATION_LEVEL_KEY: Final = "escalation_level"
# Optional in an alarm event: when the alarm became unacknowledged, if detection knows better
# than the notifier (e.g. after a restart); otherwise the time of the first unacknowledged event.
UNACKNOWLEDGED_SINCE_KEY: Final = "unacknowledged_since_s"

ALARMS_SEGMENT: Final = "alarms"
INCIDENTS_SEGMENT: Final = "incidents"
KIND_ALARM: Final = "alarm"
KIND_INCIDENT: Final = "incident"
KIND_RESPONSE: Final = "response"
KIND_PLAN: Final = "plan"
RESPONSE_SEGMENT: Final = "response"  # .../incidents/{id}/response: the emergency response JSON
ALERT_SEGMENT: Final = "alert"  # .../incidents/{id}/alert: the CAP 1.2 alert (XML)
ZONES_SEGMENT: Final = "zones"  # .../incidents/{id}/zones: the threat zones (GeoJSON)
PLAN_SEGMENT: Final = "plan"  # .../incidents/{id}/plan: the plan in effect (JSON)
KIND_ESCALATION: Final = "escalation"

# Characters an id may not contain: '/' would add topic levels, '+' and '#' are MQTT wildcards
# (MQTT 5.0 section 4.7.1), U+0000 is forbidden in topic names (section 4.7.3).
FORBIDDEN_ID_CHARACTERS: Final = frozenset("/+#\x00")
MAX_TOPIC_BYTES: Final = 65_535  # MQTT 5.0 section 1.5.4: UTF-8 strings are at most 65535 bytes
MAX_EVENT_ID_CHARS: Final = 256  # design choice: ids are keys in the log, not documents

# --- MQTT -----------------------------------------------------------------------------------------

QOS_AT_LEAST_ONCE: Final = 1
NOTIFIER_ONLINE: Final = b"online"
NOTIFIER_OFFLINE: Final = b"offline"
UNSUPPORTED_PROTOCOL_REASON: Final = "Unsupported protocol version"  # CONNACK 0x84 / rc 1
# The longest a state waits in the pending map before the network thread publishes it while
# connected (the network loop's select timeout); design choice, a wake-up costs ~10 us.
MQTT_LOOP_TIMEOUT_S: Final = 0.01
CONNACK_TIMEOUT_S: Final = 5.0  # as the ingest service: also how "auto" detects an MQTT 3 broker
DISCONNECT_TIMEOUT_S: Final = 2.0
THREAD_JOIN_TIMEOUT_S: Final = 10.0
DEFAULT_STOP_TIMEOUT_S: Final = 10.0
IDLE_POLL_S: Final = 0.01

# --- webhooks -------------------------------------------------------------------------------------

HTTP_SUCCESS_MIN: Final = 200
HTTP_SUCCESS_MAX: Final = 299
HTTP_SERVER_ERROR_MIN: Final = 500
HTTP_STATUS_MAX: Final = 599
# 4xx that are worth retrying: 408 Request Timeout (RFC 9110 section 15.5.9) and 429 Too Many
# Requests (RFC 6585 section 4).
RETRYABLE_CLIENT_STATUSES: Final = frozenset({408, 429})
SIGNATURE_PREFIX: Final = "sha256="
# RFC 2104 section 3: keys shorter than the hash output (32 bytes for SHA-256) are "strongly
# discouraged".
USER_AGENT: Final = "PipeSentinel-notifier/1"
ERROR_BODY_CHARS: Final = 200  # how much of a refusing gateway's body goes into the log

# --- bounded queues ------------------------------------------------------------------------------

RECORDER_QUEUE_CAPACITY: Final = 100_000  # attempts waiting to be written (design choice)
RECORDER_BATCH_MAX: Final = 500
RECORDER_WAIT_S: Final = 0.05
RECORDER_RETRY_MIN_DELAY_S: Final = 0.1
RECORDER_RETRY_MAX_DELAY_S: Final = 5.0


class NotificationError(ValueError):
    """An event that cannot be notified; the message names the event and what is wrong."""


# --- settings -------------------------------------------------------------------------------------


def check_topic_level(what: str, value: object) -> str:
    """``value`` if it can be one MQTT topic level; :class:`NotificationError` naming it if not."""
    if not isinstance(value, str):
        raise NotificationError(f"{what} must be a string, got {type(value).__name__}")
    if not value:
        raise NotificationError(f"{what} is empty")
    bad = FORBIDDEN_ID_CHARACTERS & set(value)
    if bad:
        shown = ", ".join(repr(character) for character in sorted(bad))
        raise NotificationError(f"{what} {value!r} contains {shown} (not allowed in a topic level)")
    if len(value.encode()) > MAX_TOPIC_BYTES:
        raise NotificationError(f"{what} is longer than {MAX_TOPIC_BYTES} bytes")
    return value


def alarm_topic(site_id: str, alarm_id: str, *, topic_root: str = TOPIC_ROOT) -> str:
    """``{root}/{site}/alarms/{alarm_id}``: the retained current state of one alarm."""
    return TOPIC_SEPARATOR.join(
        (
            topic_root,
            check_topic_level("site id", site_id),
            ALARMS_SEGMENT,
            check_topic_level("alarm_id", alarm_id),
        )
    )


def incident_topic(site_id: str, incident_id: str, *, topic_root: str = TOPIC_ROOT) -> str:
    """``{root}/{site}/incidents/{incident_id}``: the retained current state of one incident."""
    return TOPIC_SEPARATOR.join(
        (
            topic_root,
            check_topic_level("site id", site_id),
            INCIDENTS_SEGMENT,
            check_topic_level("incident_id", incident_id),
        )
    )


def incident_subtopic(
    site_id: str, incident_id: str, segment: str, *, topic_root: str = TOPIC_ROOT
) -> str:
    """``{root}/{site}/incidents/{incident_id}/{segment}``: a retained part of an incident."""
    return TOPIC_SEPARATOR.join(
        (
            incident_topic(site_id, incident_id, topic_root=topic_root),
            check_topic_level("segment", segment),
        )
    )


def sign_body(body: bytes, secret: str) -> str:
    """The signature header value of ``body``: ``sha256=`` and the hex HMAC-SHA256 (RFC 2104)."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return f"{SIGNATURE_PREFIX}{digest}"


def verify_signature(body: bytes, signature: str | None, secret: str) -> bool:
    """Whether ``signature`` is the signature of ``body`` (constant-time comparison)."""
    if signature is None:
        return False
    return hmac.compare_digest(sign_body(body, secret), signature)


def parse_retry_after_s(value: str | None, *, now_s: float) -> float | None:
    """The delay a ``Retry-After`` header asks for [s]; ``None`` if absent or unparseable.

    RFC 9110 section 10.2.3: either ``delay-seconds`` (digits) or an HTTP-date.

    Parameters
    ----------
    value
        The header value [-].
    now_s
        Now, Unix epoch, to turn an HTTP-date into a delay [s].
    """
    if value is None:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():
        return float(int(text))
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - now_s)


def is_retryable_status(status: int) -> bool:
    """Whether an HTTP status is worth another attempt: 408, 429 and 5xx."""
    return status in RETRYABLE_CLIENT_STATUSES or HTTP_SERVER_ERROR_MIN <= status <= HTTP_STATUS_MAX


# --- escalation: the pure decision ---------------------------------------------------------------


def escalation_levels(
    unacknowledged_for_s: ArrayLike,
    *,
    first_after_s: ArrayLike,
    repeat_after_s: ArrayLike,
    max_level: ArrayLike,
) -> NDArray[np.int64]:
    """The escalation level an alarm should have reached (broadcasting over alarms).

    0 before ``first_after_s``; then ``1 + floor((t - first_after_s) / repeat_after_s)``,
    capped at ``max_level``. NaN (unknown) gives 0.

    Parameters
    ----------
    unacknowledged_for_s
        How long each alarm has been unacknowledged [s].
    first_after_s
        Time to the first escalation [s].
    repeat_after_s
        Time between further escalations, > 0 [s].
    max_level
        Highest level [-].
    """
    elapsed = np.asarray(unacknowledged_for_s, dtype=np.float64)
    first = np.asarray(first_after_s, dtype=np.float64)
    repeat = np.asarray(repeat_after_s, dtype=np.float64)
    cap = np.asarray(max_level, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        reached = np.minimum(np.floor((elapsed - first) / repeat) + 1.0, cap)
        levels = np.where(elapsed >= first, reached, 0.0)
    return levels.astype(np.int64)


@dataclass(frozen=True, slots=True)
class EscalationDue:
    """An alarm to escalate now to ``level``."""

    alarm_id: str
    priority: str
    level: int
    unacknowledged_since_s: float
    due_time_s: float

    @property
    def event_id(self) -> str:
        """Deterministic id of this escalation: the same alarm episode and level, the same id."""
        since_ms = round(self.unacknowledged_since_s * 1000.0)
        return f"escalation:{self.alarm_id}:{since_ms}:{self.level}"


def escalations_due(
    *,
    unacknowledged_since_s: Mapping[str, float],
    priorities: Mapping[str, str],
    escalated_levels: Mapping[str, int],
    now_s: float,
    policies: Mapping[str, EscalationPolicy],
) -> list[EscalationDue]:
    """The escalations due at ``now_s``: alarms whose level should exceed what was sent.

    One entry per alarm, at the level it should have now (a gap, e.g. the notifier was down,
    skips the levels in between rather than sending them all at once). Alarms whose priority
    has no policy are never escalated. Sorted by due time, then alarm id.

    Parameters
    ----------
    unacknowledged_since_s
        Since when each unacknowledged alarm has been unacknowledged, Unix epoch [s].
    priorities
        Priority of each of those alarms [-].
    escalated_levels
        Level already sent for each alarm; missing means 0 [-].
    now_s
        Now, Unix epoch [s].
    policies
        Escalation policy by priority.
    """
    alarm_ids: list[str] = []
    since: list[float] = []
    first: list[float] = []
    repeat: list[float] = []
    cap: list[int] = []
    for alarm_id, since_s in unacknowledged_since_s.items():
        if alarm_id not in priorities:
            raise ValueError(f"alarm {alarm_id!r} is unacknowledged but has no priority")
        policy = policies.get(priorities[alarm_id])
        if policy is None:
            continue
        alarm_ids.append(alarm_id)
        since.append(since_s)
        first.append(policy.first_after_s)
        repeat.append(policy.repeat_after_s)
        cap.append(policy.max_level)
    if not alarm_ids:
        return []
    since_array = np.asarray(since, dtype=np.float64)
    first_array = np.asarray(first, dtype=np.float64)
    repeat_array = np.asarray(repeat, dtype=np.float64)
    levels = escalation_levels(
        now_s - since_array, first_after_s=first_array, repeat_after_s=repeat_array, max_level=cap
    )
    sent = np.asarray([escalated_levels.get(alarm_id, 0) for alarm_id in alarm_ids])
    due_times = since_array + first_array + (levels - 1) * repeat_array
    due = [
        EscalationDue(
            alarm_id=alarm_ids[index],
            priority=priorities[alarm_ids[index]],
            level=int(levels[index]),
            unacknowledged_since_s=float(since_array[index]),
            due_time_s=float(due_times[index]),
        )
        for index in np.flatnonzero(levels > sent)
    ]
    return sorted(due, key=lambda item: (item.due_time_s, item.alarm_id))


# --- internals: counters, delivered set, recorder ------------------------------------------------


@dataclass(frozen=True)
class NotifierStats:
    """A snapshot of the notifier (:meth:`Notifier.stats`)."""

    mqtt_enabled: bool
    mqtt_connected: bool
    mqtt_protocol: str
    mqtt_connections: int
    mqtt_pending: int
    mqtt_in_flight: int
    mqtt_delivered: int
    mqtt_superseded: int
    mqtt_dropped: int
    mqtt_failed: int
    webhook_queued: int
    webhook_delivered: int
    webhook_retries: int
    webhook_failed: int
    webhook_dropped: int
    duplicates_skipped: int
    escalations: int
    abandoned: int
    records_lost: int
    last_error: str | None


class _Counters:
    """Named counters behind a lock, and the last error text."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}
        self.last_error: str | None = None

    def add(self, name: str, count: int = 1) -> None:
        with self._lock:
            self._counts[name] = self._counts.get(name, 0) + count

    def error(self, text: str) -> None:
        with self._lock:
            self.last_error = text

    def get(self, name: str) -> int:
        with self._lock:
            return self._counts.get(name, 0)


class _DeliveredSet:
    """``(event_id, channel)`` already delivered, shared by every thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._keys: set[tuple[str, str]] = set()

    def load(self, keys: Iterable[tuple[str, str]]) -> None:
        with self._lock:
            self._keys.update(keys)

    def add(self, event_id: str, channel: str) -> None:
        with self._lock:
            self._keys.add((event_id, channel))

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._keys


class _Recorder:
    """Writes attempts to the log on its own thread, in batches, retrying a failing store."""

    def __init__(self, log: NotificationLog, counters: _Counters) -> None:
        self._log = log
        self._counters = counters
        self._queue: queue.Queue[Attempt] = queue.Queue(maxsize=RECORDER_QUEUE_CAPACITY)
        self._stop = threading.Event()
        self._random = random.Random()  # noqa: S311 - jitter, not cryptography
        self._thread = threading.Thread(
            target=self._main, name="pipesentinel-notify-recorder", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def put(self, attempt: Attempt) -> None:
        try:
            self._queue.put_nowait(attempt)
        except queue.Full:
            self._counters.add("records_lost")
            logger.error("notification log queue full: attempt not recorded: %s", attempt)

    def idle(self) -> bool:
        return self._queue.unfinished_tasks == 0

    def _main(self) -> None:
        while True:
            try:
                batch = [self._queue.get(timeout=RECORDER_WAIT_S)]
            except queue.Empty:
                if self._stop.is_set():
                    return
                continue
            while len(batch) < RECORDER_BATCH_MAX:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            self._write(batch)
            for _ in batch:
                self._queue.task_done()

    def _write(self, batch: list[Attempt]) -> None:
        failures = 0
        while True:
            try:
                self._log.record(batch)
            except StorageError as error:
                failures += 1
                self._counters.error(str(error))
                if self._stop.is_set():
                    self._counters.add("records_lost", len(batch))
                    logger.error("notifier stopping: %d attempt(s) not recorded", len(batch))
                    return
                if failures & (failures - 1) == 0:
                    logger.warning(
                        "notification log write failed (attempt %d): %s", failures, error
                    )
                delay_s = backoff_delay_s(
                    failures,
                    min_delay_s=RECORDER_RETRY_MIN_DELAY_S,
                    max_delay_s=RECORDER_RETRY_MAX_DELAY_S,
                    random_fraction=self._random.random(),
                )
                self._stop.wait(delay_s)
                continue
            return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(THREAD_JOIN_TIMEOUT_S)
        if self._thread.is_alive():
            logger.error("notifier: thread %s did not stop", self._thread.name)


# --- MQTT ----------------------------------------------------------------------------------------


@dataclass(slots=True)
class _MqttMessage:
    """One state on its way to the broker."""

    topic: str
    payload: bytes
    event_id: str
    kind: str
    subject_id: str
    attempts: int = 0
    published_time_s: float = 0.0
    published_monotonic: float = 0.0


class _MqttPublisher:
    """The notifier's MQTT connection: pending states (latest per topic), publish, PUBACK."""

    def __init__(
        self,
        *,
        broker: BrokerSettings,
        client_id: str,
        capacity: int,
        protocol: MqttProtocol,
        recorder: _Recorder,
        delivered: _DeliveredSet,
        counters: _Counters,
        clock: Callable[[], float],
    ) -> None:
        self._address = BrokerAddress.parse(broker.url)
        if broker.reconnect_min_delay_s > broker.reconnect_max_delay_s:
            raise ValueError(
                f"broker.reconnect_min_delay_s ({broker.reconnect_min_delay_s}) exceeds "
                f"broker.reconnect_max_delay_s ({broker.reconnect_max_delay_s})"
            )
        if broker.password is not None and broker.username is None:
            raise ValueError("broker.password is set without broker.username")
        if broker.ca_file is not None and not self._address.tls:
            raise ValueError("broker.ca_file is set but broker.url is not mqtts://")
        self._broker = broker
        self.client_id = client_id
        self.status_topic = service_status_topic(client_id)
        self._capacity = capacity
        self._protocol = protocol
        self.active_protocol = (
            MqttProtocol.V311 if protocol is MqttProtocol.V311 else MqttProtocol.V5
        )
        self._recorder = recorder
        self._delivered = delivered
        self._counters = counters
        self._clock = clock
        self._random = random.Random()  # noqa: S311 - jitter, not cryptography
        self._lock = threading.Lock()
        self._pending: OrderedDict[str, _MqttMessage] = OrderedDict()
        self._in_flight: dict[int, _MqttMessage] = {}  # network thread only
        self._in_flight_count = 0
        self._publishing = 0  # taken from pending, not yet in flight (network thread)
        self.connected = threading.Event()
        self._stop = threading.Event()
        self._connack_received = False
        self._connack_missing = False
        self._refused_protocol = False
        self._last_error: str | None = None
        self.connections = 0
        self._thread = threading.Thread(
            target=self._main, name="pipesentinel-notify-mqtt", daemon=True
        )

    # caller side

    def offer(self, message: _MqttMessage) -> None:
        """Queue ``message``; an older pending state of its topic is superseded."""
        with self._lock:
            old = self._pending.pop(message.topic, None)
            dropped = None
            if old is None and len(self._pending) >= self._capacity:
                _, dropped = self._pending.popitem(last=False)
            self._pending[message.topic] = message
        if old is not None:
            self._superseded(old)
        if dropped is not None:
            self._counters.add("mqtt_dropped")
            logger.warning(
                "MQTT: %d states wait for the broker (the limit): the oldest, %s of %r, is dropped",
                self._capacity,
                dropped.event_id,
                dropped.topic,
            )
            self._record(dropped, Outcome.DROPPED, error="pending limit reached while disconnected")

    def pending_count(self) -> int:
        with self._lock:
            return len(self._pending)

    def in_flight_count(self) -> int:
        return self._in_flight_count

    def idle(self) -> bool:
        return self.pending_count() == 0 and self._in_flight_count == 0 and self._publishing == 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(THREAD_JOIN_TIMEOUT_S)
        if self._thread.is_alive():
            logger.error("notifier: thread %s did not stop", self._thread.name)
        with self._lock:
            left = [*self._in_flight.values(), *self._pending.values()]
            self._in_flight.clear()
            self._in_flight_count = 0
            self._pending.clear()
        for message in left:
            self._counters.add("abandoned")
            self._record(message, Outcome.ABANDONED, error="notifier stopped before PUBACK")
        if left:
            logger.error(
                "notifier stopped with %d MQTT state(s) not acknowledged by the broker", len(left)
            )

    # recording

    def _record(
        self,
        message: _MqttMessage,
        outcome: Outcome,
        *,
        error: str | None = None,
        latency_s: float | None = None,
    ) -> None:
        self._recorder.put(
            Attempt(
                event_id=message.event_id,
                channel=Channel.MQTT.value,
                kind=message.kind,
                subject_id=message.subject_id,
                attempt=message.attempts,
                time_s=message.published_time_s if message.attempts else self._clock(),
                outcome=outcome,
                error=error,
                latency_s=latency_s,
            )
        )

    def _superseded(self, message: _MqttMessage) -> None:
        self._counters.add("mqtt_superseded")
        self._record(message, Outcome.SUPERSEDED, error="a newer state of the topic replaced it")

    # network thread

    def _new_client(self) -> mqtt.Client:
        v5 = self.active_protocol is MqttProtocol.V5
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            clean_session=None if v5 else True,
            protocol=MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311,
            reconnect_on_failure=False,
        )
        client.enable_logger(logging.getLogger(f"{__name__}.paho"))
        if self._broker.username is not None:
            password = (
                None if self._broker.password is None else self._broker.password.get_secret_value()
            )
            client.username_pw_set(self._broker.username, password)
        if self._address.tls:
            ca_file = self._broker.ca_file
            client.tls_set(ca_certs=None if ca_file is None else str(ca_file))
        client.will_set(self.status_topic, NOTIFIER_OFFLINE, qos=QOS_AT_LEAST_ONCE, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        return client

    def _connection_failed(self, text: str) -> None:
        self._counters.error(f"MQTT: {text}")
        if text != self._last_error:
            logger.warning("notifier %r: %s", self.client_id, text)
            self._last_error = text

    def _main(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            self._refused_protocol = False
            self._connack_received = False
            self._connack_missing = False
            client = self._new_client()
            connected_before = self.connections
            try:
                if self.active_protocol is MqttProtocol.V5:
                    client.connect(
                        self._address.host,
                        self._address.port,
                        keepalive=self._broker.keepalive_s,
                        clean_start=True,
                    )
                else:
                    client.connect(
                        self._address.host, self._address.port, keepalive=self._broker.keepalive_s
                    )
                self._run_connection(client)
            except (OSError, ValueError) as error:
                self._connection_failed(f"cannot connect to the broker: {error}")
            except Exception as error:
                logger.exception("notifier: MQTT network loop failed; reconnecting")
                self._connection_failed(f"network loop failed: {type(error).__name__}: {error}")
            self.connected.clear()
            self._requeue_in_flight()
            if self._stop.is_set():
                return
            if (
                (self._refused_protocol or self._connack_missing)
                and self._protocol is MqttProtocol.AUTO
                and self.active_protocol is MqttProtocol.V5
                and self.connections == 0
            ):
                logger.warning("notifier: the broker does not take MQTT 5; using MQTT 3.1.1")
                self.active_protocol = MqttProtocol.V311
                continue
            attempt = 1 if self.connections != connected_before else attempt + 1
            delay_s = backoff_delay_s(
                attempt,
                min_delay_s=self._broker.reconnect_min_delay_s,
                max_delay_s=self._broker.reconnect_max_delay_s,
                random_fraction=self._random.random(),
            )
            self._stop.wait(delay_s)

    def _run_connection(self, client: mqtt.Client) -> None:
        connack_deadline = time.monotonic() + CONNACK_TIMEOUT_S
        while True:
            code = client.loop(timeout=MQTT_LOOP_TIMEOUT_S)
            if code is not MQTTErrorCode.MQTT_ERR_SUCCESS:
                if not self._stop.is_set():
                    self._connection_failed(f"connection lost: {mqtt.error_string(code)}")
                return
            if self._stop.is_set():
                self._disconnect(client)
                return
            if self.connected.is_set():
                self._publish_pending(client)
            elif not self._connack_received and time.monotonic() > connack_deadline:
                self._connack_missing = True
                self._connection_failed(f"no CONNACK from the broker within {CONNACK_TIMEOUT_S} s")
                client.disconnect()
                return

    def _publish_pending(self, client: mqtt.Client) -> None:
        with self._lock:
            if not self._pending:
                return
            messages = list(self._pending.values())
            self._pending.clear()
            # Taken from pending but not yet in flight: idle() must not see them as gone.
            self._publishing = len(messages)
        for message in messages:
            message.attempts += 1
            message.published_time_s = self._clock()
            message.published_monotonic = time.monotonic()
            info = client.publish(
                message.topic, message.payload, qos=QOS_AT_LEAST_ONCE, retain=True
            )
            if info.rc is not MQTTErrorCode.MQTT_ERR_SUCCESS:
                # Not sent (connection just dropped): back to pending unless a newer state waits.
                message.attempts -= 1
                self._put_back(message)
                continue
            self._in_flight[info.mid] = message
            self._in_flight_count = len(self._in_flight)
        self._publishing = 0

    def _put_back(self, message: _MqttMessage) -> None:
        with self._lock:
            newer = message.topic in self._pending
            if not newer:
                self._pending[message.topic] = message
                self._pending.move_to_end(message.topic, last=False)
        if newer:
            self._superseded(message)

    def _requeue_in_flight(self) -> None:
        messages = list(self._in_flight.values())
        self._in_flight.clear()
        self._in_flight_count = 0
        for message in messages:
            self._record(message, Outcome.RETRY, error="connection lost before PUBACK")
            self._put_back(message)

    def _disconnect(self, client: mqtt.Client) -> None:
        if self.connected.is_set():
            client.publish(self.status_topic, NOTIFIER_OFFLINE, qos=QOS_AT_LEAST_ONCE, retain=True)
        if client.disconnect() is not MQTTErrorCode.MQTT_ERR_SUCCESS:
            return
        deadline = time.monotonic() + DISCONNECT_TIMEOUT_S
        while self.connected.is_set() and time.monotonic() < deadline:
            if client.loop(timeout=MQTT_LOOP_TIMEOUT_S) is not MQTTErrorCode.MQTT_ERR_SUCCESS:
                break

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,  # noqa: ARG002 - paho's callback signature
        flags: mqtt.ConnectFlags,  # noqa: ARG002 - paho's callback signature
        reason_code: ReasonCode,
        properties: Properties | None,  # noqa: ARG002 - paho's callback signature
    ) -> None:
        self._connack_received = True
        if reason_code.is_failure:
            self._refused_protocol = reason_code.getName() == UNSUPPORTED_PROTOCOL_REASON
            self._connection_failed(f"broker refused the connection: {reason_code.getName()}")
            return
        self.connections += 1
        self._last_error = None
        logger.info(
            "notifier %r connected (MQTT %s); %d state(s) waiting",
            self.client_id,
            self.active_protocol.value,
            self.pending_count(),
        )
        client.publish(self.status_topic, NOTIFIER_ONLINE, qos=QOS_AT_LEAST_ONCE, retain=True)
        self.connected.set()

    def _on_disconnect(
        self,
        client: mqtt.Client,  # noqa: ARG002 - paho's callback signature
        userdata: Any,  # noqa: ARG002 - paho's callback signature
        flags: mqtt.DisconnectFlags,  # noqa: ARG002 - paho's callback signature
        reason_code: ReasonCode,
        properties: Properties | None,  # noqa: ARG002 - paho's callback signature
    ) -> None:
        was_connected = self.connected.is_set()
        self.connected.clear()
        if was_connected and not self._stop.is_set():
            self._connection_failed(f"disconnected: {reason_code.getName()}")

    def _on_publish(
        self,
        client: mqtt.Client,  # noqa: ARG002 - paho's callback signature
        userdata: Any,  # noqa: ARG002 - paho's callback signature
        mid: int,
        reason_code: ReasonCode,
        properties: Properties | None,  # noqa: ARG002 - paho's callback signature
    ) -> None:
        message = self._in_flight.pop(mid, None)
        self._in_flight_count = len(self._in_flight)
        if message is None:  # the notifier's own status
            return
        latency_s = time.monotonic() - message.published_monotonic
        if reason_code.is_failure:
            text = f"broker refused the PUBLISH: {reason_code.getName()}"
            self._counters.add("mqtt_failed")
            self._counters.error(f"MQTT {message.topic}: {text}")
            logger.error("notifier: %s on %r (ACL?)", text, message.topic)
            self._record(message, Outcome.FAILED, error=text, latency_s=latency_s)
            return
        self._delivered.add(message.event_id, Channel.MQTT.value)
        self._counters.add("mqtt_delivered")
        self._record(message, Outcome.DELIVERED, latency_s=latency_s)


# --- webhooks ------------------------------------------------------------------------------------


@dataclass(slots=True)
class _WebhookJob:
    """One event on its way to one webhook URL."""

    event_id: str
    kind: str
    subject_id: str
    body: bytes
    queued_monotonic: float
    attempts: int = 0


@dataclass(frozen=True, slots=True)
class _Response:
    status: int | None
    error: str | None
    retry_after_s: float | None


class _WebhookWorker:
    """One URL: a bounded queue ordered by next attempt time, and a thread that POSTs."""

    def __init__(
        self,
        *,
        url: str,
        index: int,
        settings: NotificationSettings,
        recorder: _Recorder,
        delivered: _DeliveredSet,
        counters: _Counters,
        clock: Callable[[], float],
    ) -> None:
        self.url = url
        self.channel = webhook_channel(url)
        self._settings = settings
        self._recorder = recorder
        self._delivered = delivered
        self._counters = counters
        self._clock = clock
        self._random = random.Random()  # noqa: S311 - jitter, not cryptography
        self._secret = (
            None if settings.webhook_secret is None else settings.webhook_secret.get_secret_value()
        )
        self._http = urllib3.PoolManager(retries=False)
        self._condition = threading.Condition()
        self._heap: list[tuple[float, int, _WebhookJob]] = []
        self._sequence = itertools.count()
        self._busy = False
        self._stop = False
        self._thread = threading.Thread(
            target=self._main, name=f"pipesentinel-notify-webhook-{index}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def offer(self, job: _WebhookJob) -> bool:
        """Queue ``job`` for now; ``False`` if the queue is full."""
        with self._condition:
            if len(self._heap) >= self._settings.webhook_queue_capacity:
                return False
            heapq.heappush(self._heap, (job.queued_monotonic, next(self._sequence), job))
            self._condition.notify()
        return True

    def queued(self) -> int:
        with self._condition:
            return len(self._heap) + int(self._busy)

    def idle(self) -> bool:
        return self.queued() == 0

    def stop(self) -> None:
        with self._condition:
            self._stop = True
            self._condition.notify_all()
        self._thread.join(self._settings.webhook_timeout_s + THREAD_JOIN_TIMEOUT_S)
        if self._thread.is_alive():
            logger.error("notifier: thread %s did not stop", self._thread.name)
        with self._condition:
            left = [job for _, _, job in self._heap]
            self._heap.clear()
        for job in left:
            self._counters.add("abandoned")
            self._record(job, Outcome.ABANDONED, time_s=self._clock(), error="notifier stopped")
        if left:
            logger.error(
                "notifier stopped with %d event(s) not delivered to %s", len(left), self.channel
            )
        self._http.clear()

    def _next_job(self) -> _WebhookJob | None:
        with self._condition:
            self._busy = False
            while not self._stop:
                if self._heap:
                    wait_s = self._heap[0][0] - time.monotonic()
                    if wait_s <= 0:
                        _, _, job = heapq.heappop(self._heap)
                        self._busy = True
                        return job
                    self._condition.wait(wait_s)
                else:
                    self._condition.wait()
            return None

    def _main(self) -> None:
        while (job := self._next_job()) is not None:
            try:
                self._attempt(job)
            except Exception as error:  # a bug here must not kill the worker
                logger.exception("webhook worker %s failed on event %s", self.channel, job.event_id)
                self._counters.error(f"webhook {self.channel}: {type(error).__name__}: {error}")
                self._counters.add("webhook_failed")
                self._record(
                    job, Outcome.FAILED, time_s=self._clock(), error=f"internal error: {error}"
                )

    def _record(
        self,
        job: _WebhookJob,
        outcome: Outcome,
        *,
        time_s: float,
        status: int | None = None,
        error: str | None = None,
        latency_s: float | None = None,
    ) -> None:
        self._recorder.put(
            Attempt(
                event_id=job.event_id,
                channel=self.channel,
                kind=job.kind,
                subject_id=job.subject_id,
                attempt=job.attempts,
                time_s=time_s,
                outcome=outcome,
                http_status=status,
                error=error,
                latency_s=latency_s,
            )
        )

    def _post(self, body: bytes, event_id: str) -> _Response:
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "Idempotency-Key": event_id,
        }
        if self._secret is not None:
            headers[self._settings.webhook_signature_header] = sign_body(body, self._secret)
        try:
            response = self._http.request(
                "POST",
                self.url,
                body=body,
                headers=headers,
                timeout=urllib3.Timeout(total=self._settings.webhook_timeout_s),
                retries=False,
                redirect=False,
            )
        except (urllib3.exceptions.HTTPError, OSError) as error:
            return _Response(
                status=None, error=f"{type(error).__name__}: {error}", retry_after_s=None
            )
        status = response.status
        if HTTP_SUCCESS_MIN <= status <= HTTP_SUCCESS_MAX:
            return _Response(status=status, error=None, retry_after_s=None)
        text = response.data[:ERROR_BODY_CHARS].decode("utf-8", "replace")
        return _Response(
            status=status,
            error=f"HTTP {status} {response.reason or ''}: {text}".strip(),
            retry_after_s=parse_retry_after_s(
                response.headers.get("Retry-After"), now_s=self._clock()
            ),
        )

    def _attempt(self, job: _WebhookJob) -> None:
        if (job.event_id, self.channel) in self._delivered:
            self._counters.add("duplicates_skipped")
            return
        job.attempts += 1
        time_s = self._clock()
        started = time.monotonic()
        response = self._post(job.body, job.event_id)
        latency_s = time.monotonic() - started
        if response.error is None:
            self._delivered.add(job.event_id, self.channel)
            self._counters.add("webhook_delivered")
            self._record(
                job, Outcome.DELIVERED, time_s=time_s, status=response.status, latency_s=latency_s
            )
            return
        retryable = response.status is None or is_retryable_status(response.status)
        give_up: Outcome | None = None
        note = ""
        delay_s = 0.0
        if not retryable:
            give_up = Outcome.FAILED
            note = " (not retried)"
        elif job.attempts >= self._settings.webhook_max_attempts:
            give_up = Outcome.FAILED
            note = f" (gave up after {job.attempts} attempts)"
        else:
            delay_s = backoff_delay_s(
                job.attempts,
                min_delay_s=self._settings.webhook_retry_min_delay_s,
                max_delay_s=self._settings.webhook_retry_max_delay_s,
                random_fraction=self._random.random(),
            )
            if response.retry_after_s is not None:
                delay_s = max(delay_s, response.retry_after_s)
            age_at_retry_s = time.monotonic() + delay_s - job.queued_monotonic
            if age_at_retry_s > self._settings.webhook_max_age_s:
                give_up = Outcome.EXPIRED
                note = f" (next attempt in {delay_s:.3g} s would pass webhook_max_age_s)"
        error = f"{response.error}{note}"
        self._record(
            job,
            Outcome.RETRY if give_up is None else give_up,
            time_s=time_s,
            status=response.status,
            error=error,
            latency_s=latency_s,
        )
        if give_up is None:
            self._counters.add("webhook_retries")
            with self._condition:
                ready = time.monotonic() + delay_s
                heapq.heappush(self._heap, (ready, next(self._sequence), job))
            if job.attempts & (job.attempts - 1) == 0:
                logger.warning(
                    "webhook %s: event %s attempt %d failed, retry in %.3g s: %s",
                    self.channel,
                    job.event_id,
                    job.attempts,
                    delay_s,
                    response.error,
                )
            return
        self._counters.add("webhook_failed")
        self._counters.error(f"webhook {self.channel}: {error}")
        logger.error("webhook %s: event %s not delivered: %s", self.channel, job.event_id, error)


# --- the notifier --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Event:
    """A validated event: what it is about and its JSON-ready data."""

    kind: str
    subject_id: str
    event_id: str
    time_s: float
    data: dict[str, Any]


@dataclass(slots=True)
class _AlarmTrack:
    """What the notifier knows of one alarm, for escalation."""

    data: dict[str, Any]
    priority: str
    unacknowledged_since_s: float | None
    escalation_level: int


def _is_number(value: object) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def _checked_event(event: object, *, kind: str, id_key: str) -> _Event:
    """Validate ``event``; :class:`NotificationError` naming the event and the problem."""
    if not isinstance(event, Mapping):
        raise NotificationError(f"{kind} event must be a mapping, got {type(event).__name__}")
    event_id = event.get(EVENT_ID_KEY)
    if not isinstance(event_id, str) or not event_id or len(event_id) > MAX_EVENT_ID_CHARS:
        raise NotificationError(
            f"{kind} event: {EVENT_ID_KEY} must be a non-empty string of at most "
            f"{MAX_EVENT_ID_CHARS} characters, got {event_id!r}"
        )
    name = f"{kind} event {event_id!r}"
    if id_key not in event:
        raise NotificationError(f"{name}: no {id_key}")
    subject_id = check_topic_level(f"{name}: {id_key}", event[id_key])
    time_s = event.get(TIME_KEY)
    if not _is_number(time_s) or not math.isfinite(float(time_s)):  # type: ignore[arg-type]
        raise NotificationError(f"{name}: {TIME_KEY} must be a finite number [s], got {time_s!r}")
    data = dict(event)
    try:
        json.dumps(data, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise NotificationError(f"{name} is not JSON-ready: {error}") from None
    return _Event(
        kind=kind,
        subject_id=subject_id,
        event_id=event_id,
        time_s=float(time_s),  # type: ignore[arg-type]
        data=data,
    )


def _json_bytes(value: Mapping[str, Any]) -> bytes:
    return json.dumps(value, allow_nan=False, separators=(",", ":"), ensure_ascii=False).encode()


class Notifier:
    """Tells people and systems about alarms and incidents; see the module docstring.

    Parameters
    ----------
    settings
        ``settings.notifications``: webhooks, retry policy, escalation, log path, capacities.
    site_id
        The site whose topics the states go to.
    broker
        ``settings.broker`` (URL, credentials, TLS, reconnect delays); ``None`` or
        ``settings.mqtt_enabled`` false: no MQTT.
    log
        The attempts log; ``None``: one at ``settings.log_path``, opened by :meth:`start`
        and closed by :meth:`stop`.
    topic_root
        Topic prefix (tests on a shared broker use the default and a site id of their own).
    protocol
        MQTT protocol; ``auto`` tries 5 and falls back to 3.1.1.
    clock
        Wall clock, Unix epoch [s]: attempt times in the log, and ``now`` of :meth:`tick`.
    """

    def __init__(
        self,
        *,
        settings: NotificationSettings,
        site_id: str,
        broker: BrokerSettings | None,
        log: NotificationLog | None = None,
        topic_root: str = TOPIC_ROOT,
        protocol: MqttProtocol | str = MqttProtocol.AUTO,
        clock: Callable[[], float] = time.time,
    ) -> None:
        check_topic_level("site id", site_id)
        self._settings = settings
        self.site_id = site_id
        self._topic_root = topic_root
        self._clock = clock
        self._log = log
        self._owns_log = log is None
        self._counters = _Counters()
        self._delivered = _DeliveredSet()
        self._recorder: _Recorder | None = None
        self._mqtt_broker = broker if settings.mqtt_enabled else None
        self._protocol = MqttProtocol(protocol)
        if self._mqtt_broker is not None:  # fail fast on a bad broker URL, before start()
            BrokerAddress.parse(self._mqtt_broker.url)
        self._publisher: _MqttPublisher | None = None
        self._webhooks: dict[str, _WebhookWorker] = {}
        self._alarms: dict[str, _AlarmTrack] = {}
        self._alarms_lock = threading.Lock()
        self._unacknowledged_states = frozenset(settings.unacknowledged_states)
        self._alarm_priorities = (
            None
            if settings.webhook_alarm_priorities is None
            else frozenset(settings.webhook_alarm_priorities)
        )
        self._started = False
        self._stopped = False

    # --- life cycle ------------------------------------------------------------------------------

    @property
    def log(self) -> NotificationLog:
        """The attempts log (after :meth:`start`)."""
        if self._log is None:
            raise RuntimeError("the notification log is opened by start()")
        return self._log

    def start(self) -> Self:
        """Open the log, read back what was delivered, start the threads; returns at once."""
        if self._started:
            raise RuntimeError("a Notifier starts once; create a new one to restart")
        self._started = True
        if self._log is None:
            self._log = NotificationLog(self._settings.log_path)
        now_s = self._clock()
        self._log.prune(before_time_s=now_s - self._settings.log_retention_s)
        self._delivered.load(
            self._log.delivered_keys(since_time_s=now_s - self._settings.idempotency_window_s)
        )
        self._recorder = _Recorder(self._log, self._counters)
        self._recorder.start()
        urls = dict.fromkeys(
            (*self._settings.webhook_urls, *self._settings.escalation_webhook_urls)
        )
        for index, url in enumerate(urls):
            worker = _WebhookWorker(
                url=url,
                index=index,
                settings=self._settings,
                recorder=self._recorder,
                delivered=self._delivered,
                counters=self._counters,
                clock=self._clock,
            )
            self._webhooks[url] = worker
            worker.start()
        if self._mqtt_broker is not None:
            self._publisher = _MqttPublisher(
                broker=self._mqtt_broker,
                client_id=self._settings.mqtt_client_id,
                capacity=self._settings.mqtt_pending_capacity,
                protocol=self._protocol,
                recorder=self._recorder,
                delivered=self._delivered,
                counters=self._counters,
                clock=self._clock,
            )
            self._publisher.start()
        logger.info(
            "notifier for site %r started: MQTT %s, %d webhook URL(s)",
            self.site_id,
            "on" if self._publisher is not None else "off",
            len(self._webhooks),
        )
        return self

    def wait_connected(self, timeout_s: float) -> bool:
        """Wait until connected to the broker [s]; ``False`` on timeout or without MQTT."""
        return self._publisher is not None and self._publisher.connected.wait(timeout_s)

    def idle(self) -> bool:
        """Whether nothing waits: no MQTT state, no webhook event, no unrecorded attempt."""
        return (
            (self._publisher is None or self._publisher.idle())
            and all(worker.idle() for worker in self._webhooks.values())
            and (self._recorder is None or self._recorder.idle())
        )

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until :meth:`idle` [s]; ``False`` on timeout."""
        deadline = time.monotonic() + timeout_s
        while not self.idle():
            if time.monotonic() >= deadline:
                return False
            time.sleep(IDLE_POLL_S)
        return True

    def stop(self, *, timeout_s: float = DEFAULT_STOP_TIMEOUT_S) -> None:
        """Deliver what can be delivered within ``timeout_s`` [s], then stop; idempotent.

        What is still undelivered then (broker away, a webhook retrying) is recorded as
        ``abandoned``; the caller re-notifies current states after a restart.
        """
        if not self._started or self._stopped:
            self._stopped = True
            return
        self._stopped = True
        if not self.wait_idle(timeout_s):
            logger.warning("notifier: not everything was delivered within %g s", timeout_s)
        if self._publisher is not None:
            self._publisher.stop()
        for worker in self._webhooks.values():
            worker.stop()
        if self._recorder is not None:
            if not self._wait_recorded(timeout_s):
                logger.error("notifier: attempts still unrecorded after %g s", timeout_s)
            self._recorder.stop()
        if self._owns_log and self._log is not None:
            self._log.close()
        stats = self.stats()
        logger.info(
            "notifier stopped: MQTT %d delivered, webhooks %d delivered / %d failed, "
            "%d escalation(s), %d abandoned",
            stats.mqtt_delivered,
            stats.webhook_delivered,
            stats.webhook_failed,
            stats.escalations,
            stats.abandoned,
        )

    def _wait_recorded(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while self._recorder is not None and not self._recorder.idle():
            if time.monotonic() >= deadline:
                return False
            time.sleep(IDLE_POLL_S)
        return True

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # --- notifying -------------------------------------------------------------------------------

    def _check_running(self) -> None:
        if not self._started or self._stopped:
            raise RuntimeError("the notifier is not running (start() it; it cannot restart)")

    def notify(self, event: Mapping[str, Any]) -> None:
        """Notify an alarm event (has ``alarm_id``) or an incident update (``incident_id``).

        Returns at once: delivery happens on the notifier's threads.

        Raises
        ------
        NotificationError
            The event is not a valid alarm or incident event (the message says what is wrong).
        """
        if isinstance(event, Mapping) and ALARM_ID_KEY in event:
            self.notify_alarm(event)
        elif isinstance(event, Mapping) and INCIDENT_ID_KEY in event:
            self.notify_incident(event)
        elif isinstance(event, Mapping):
            raise NotificationError(
                f"event {event.get(EVENT_ID_KEY)!r} has neither {ALARM_ID_KEY} nor "
                f"{INCIDENT_ID_KEY}"
            )
        else:
            raise NotificationError(f"an event must be a mapping, got {type(event).__name__}")

    def notify_alarm(self, alarm: Mapping[str, Any]) -> None:
        """Publish an alarm's current state and send it to the webhooks; returns at once.

        Needs ``alarm_id``, ``event_id``, ``time_s`` [s], ``state`` and ``priority``; may carry
        ``unacknowledged_since_s`` [s]. The published state gets ``escalation_level``.
        """
        self._check_running()
        event = _checked_event(alarm, kind=KIND_ALARM, id_key=ALARM_ID_KEY)
        name = f"alarm event {event.event_id!r}"
        state = event.data.get(STATE_KEY)
        priority = event.data.get(PRIORITY_KEY)
        for key, value in ((STATE_KEY, state), (PRIORITY_KEY, priority)):
            if not isinstance(value, str) or not value:
                raise NotificationError(f"{name}: {key} must be a non-empty string, got {value!r}")
        assert isinstance(state, str)  # noqa: S101 - checked above
        assert isinstance(priority, str)  # noqa: S101 - checked above
        explicit_since = event.data.get(UNACKNOWLEDGED_SINCE_KEY)
        if explicit_since is not None and (
            not _is_number(explicit_since) or not math.isfinite(float(explicit_since))
        ):
            raise NotificationError(
                f"{name}: {UNACKNOWLEDGED_SINCE_KEY} must be a finite number [s], "
                f"got {explicit_since!r}"
            )
        topic = alarm_topic(self.site_id, event.subject_id, topic_root=self._topic_root)
        unacknowledged = state.lower() in self._unacknowledged_states
        with self._alarms_lock:
            track = self._alarms.get(event.subject_id)
            since: float | None = None
            level = 0
            if unacknowledged:
                if explicit_since is not None:
                    since = float(explicit_since)
                elif track is not None and track.unacknowledged_since_s is not None:
                    since = track.unacknowledged_since_s
                else:
                    since = event.time_s
                if track is not None and track.unacknowledged_since_s == since:
                    level = track.escalation_level
            data = {**event.data, ESCALATION_LEVEL_KEY: level}
            self._alarms[event.subject_id] = _AlarmTrack(
                data=data, priority=priority, unacknowledged_since_s=since, escalation_level=level
            )
        self._publish(event, topic, data)
        if self._alarm_priorities is None or priority in self._alarm_priorities:
            self._send(event, self._settings.webhook_urls, data)

    def notify_incident(self, incident: Mapping[str, Any]) -> None:
        """Publish an incident's current state and send it to the webhooks; returns at once.

        Needs ``incident_id``, ``event_id`` and ``time_s`` [s].
        """
        self._check_running()
        event = _checked_event(incident, kind=KIND_INCIDENT, id_key=INCIDENT_ID_KEY)
        topic = incident_topic(self.site_id, event.subject_id, topic_root=self._topic_root)
        self._publish(event, topic, event.data)
        self._send(event, self._settings.webhook_urls, event.data)

    def notify_response(
        self,
        *,
        incident_id: str,
        incident_version: int,
        time_s: float,
        response: Mapping[str, Any],
        cap_xml: str,
        geojson: Mapping[str, Any],
    ) -> None:
        """Publish an incident's emergency response, retained, on three topics; returns at once.

        ``.../incidents/{id}/response`` (the response JSON), ``.../alert`` (the CAP 1.2 XML as
        is) and ``.../zones`` (GeoJSON). Webhooks get the plan changes (:meth:`notify_plan`) and
        the incident, not these (they are large and change every localisation).
        """
        self._check_running()
        parts: tuple[tuple[str, bytes | None, Mapping[str, Any]], ...] = (
            (RESPONSE_SEGMENT, None, response),
            (ALERT_SEGMENT, cap_xml.encode("utf-8"), {}),
            (ZONES_SEGMENT, None, geojson),
        )
        for segment, raw, body in parts:
            event = _checked_event(
                {
                    EVENT_ID_KEY: f"{incident_id}:{segment}:{incident_version}",
                    INCIDENT_ID_KEY: incident_id,
                    TIME_KEY: time_s,
                },
                kind=KIND_RESPONSE,
                id_key=INCIDENT_ID_KEY,
            )
            topic = incident_subtopic(
                self.site_id, event.subject_id, segment, topic_root=self._topic_root
            )
            try:
                payload = _json_bytes(body) if raw is None else raw
            except (TypeError, ValueError) as error:
                raise NotificationError(
                    f"response {event.event_id!r} is not JSON-ready: {error}"
                ) from None
            self._publish_bytes(event, topic, payload)

    def notify_plan(self, event: Mapping[str, Any]) -> None:
        """Publish the plan in effect for an incident (retained) and send it to the webhooks.

        ``event`` is ``DecisionOutcome.change_event()`` of the plan-decision log: needs
        ``incident_id``, ``event_id`` and ``time_s`` [s]. A plan change is told like an alarm.
        """
        self._check_running()
        checked = _checked_event(event, kind=KIND_PLAN, id_key=INCIDENT_ID_KEY)
        topic = incident_subtopic(
            self.site_id, checked.subject_id, PLAN_SEGMENT, topic_root=self._topic_root
        )
        self._publish(checked, topic, checked.data)
        self._send(checked, self._settings.webhook_urls, checked.data)

    def tick(self, now_s: float | None = None) -> list[EscalationDue]:
        """Send the escalations due at ``now_s`` (default: the clock) [s]; returns them.

        Call it regularly (e.g. every second). Each escalation goes to the escalation webhooks
        (``webhook_urls`` if none is set) and republishes the alarm's retained state with its
        new ``escalation_level``.
        """
        self._check_running()
        now_s = self._clock() if now_s is None else now_s
        sends: list[tuple[_Event, str, dict[str, Any], dict[str, Any]]] = []
        with self._alarms_lock:
            unacknowledged = {
                alarm_id: track.unacknowledged_since_s
                for alarm_id, track in self._alarms.items()
                if track.unacknowledged_since_s is not None
            }
            due = escalations_due(
                unacknowledged_since_s=unacknowledged,
                priorities={
                    alarm_id: self._alarms[alarm_id].priority for alarm_id in unacknowledged
                },
                escalated_levels={
                    alarm_id: self._alarms[alarm_id].escalation_level for alarm_id in unacknowledged
                },
                now_s=now_s,
                policies=self._settings.escalation,
            )
            for escalation in due:
                track = self._alarms[escalation.alarm_id]
                track.escalation_level = escalation.level
                track.data = {**track.data, ESCALATION_LEVEL_KEY: escalation.level}
                body = {
                    ALARM_ID_KEY: escalation.alarm_id,
                    PRIORITY_KEY: escalation.priority,
                    ESCALATION_LEVEL_KEY: escalation.level,
                    "role": self._role(escalation.level),
                    UNACKNOWLEDGED_SINCE_KEY: escalation.unacknowledged_since_s,
                    "unacknowledged_for_s": now_s - escalation.unacknowledged_since_s,
                    "due_time_s": escalation.due_time_s,
                    TIME_KEY: now_s,
                    EVENT_ID_KEY: escalation.event_id,
                    "alarm": track.data,
                }
                event = _Event(
                    kind=KIND_ESCALATION,
                    subject_id=escalation.alarm_id,
                    event_id=escalation.event_id,
                    time_s=now_s,
                    data=body,
                )
                topic = alarm_topic(self.site_id, escalation.alarm_id, topic_root=self._topic_root)
                sends.append((event, topic, track.data, body))
        for event, topic, state, body in sends:
            self._counters.add("escalations")
            logger.warning(
                "alarm %s unacknowledged for %.0f s: escalation level %s",
                event.subject_id,
                body["unacknowledged_for_s"],
                body[ESCALATION_LEVEL_KEY],
            )
            self._publish(event, topic, state)
            urls = self._settings.escalation_webhook_urls or self._settings.webhook_urls
            self._send(event, urls, body)
        return due

    def _role(self, level: int) -> str | None:
        roles = self._settings.escalation_roles
        return roles[min(level, len(roles)) - 1] if roles else None

    def _publish(self, event: _Event, topic: str, state: Mapping[str, Any]) -> None:
        self._publish_bytes(event, topic, _json_bytes(state))

    def _publish_bytes(self, event: _Event, topic: str, payload: bytes) -> None:
        if self._publisher is None:
            return
        if (event.event_id, Channel.MQTT.value) in self._delivered:
            self._counters.add("duplicates_skipped")
            return
        self._publisher.offer(
            _MqttMessage(
                topic=topic,
                payload=payload,
                event_id=event.event_id,
                kind=event.kind,
                subject_id=event.subject_id,
            )
        )

    def _send(self, event: _Event, urls: Sequence[str], data: Mapping[str, Any]) -> None:
        if not urls:
            return
        body = _json_bytes(
            {
                "type": event.kind,
                "site_id": self.site_id,
                EVENT_ID_KEY: event.event_id,
                TIME_KEY: event.time_s,
                "data": data,
            }
        )
        now = time.monotonic()
        for url in urls:
            worker = self._webhooks[url]
            if (event.event_id, worker.channel) in self._delivered:
                self._counters.add("duplicates_skipped")
                continue
            job = _WebhookJob(
                event_id=event.event_id,
                kind=event.kind,
                subject_id=event.subject_id,
                body=body,
                queued_monotonic=now,
            )
            if not worker.offer(job):
                self._counters.add("webhook_dropped")
                self._counters.error(f"webhook {worker.channel}: queue full")
                logger.error(
                    "webhook %s: queue full (%d events): event %s dropped",
                    worker.channel,
                    self._settings.webhook_queue_capacity,
                    event.event_id,
                )
                assert self._recorder is not None  # noqa: S101 - started
                self._recorder.put(
                    Attempt(
                        event_id=event.event_id,
                        channel=worker.channel,
                        kind=event.kind,
                        subject_id=event.subject_id,
                        attempt=0,
                        time_s=self._clock(),
                        outcome=Outcome.DROPPED,
                        error=f"queue full ({self._settings.webhook_queue_capacity} events)",
                    )
                )

    # --- state -----------------------------------------------------------------------------------

    def escalation_level(self, alarm_id: str) -> int:
        """The escalation level last sent for ``alarm_id`` (0: none, or acknowledged)."""
        with self._alarms_lock:
            track = self._alarms.get(alarm_id)
            return 0 if track is None else track.escalation_level

    def stats(self) -> NotifierStats:
        """Counters, queue depths and connection state at this moment."""
        counters = self._counters
        publisher = self._publisher
        return NotifierStats(
            mqtt_enabled=self._mqtt_broker is not None,
            mqtt_connected=publisher is not None and publisher.connected.is_set(),
            mqtt_protocol="" if publisher is None else publisher.active_protocol.value,
            mqtt_connections=0 if publisher is None else publisher.connections,
            mqtt_pending=0 if publisher is None else publisher.pending_count(),
            mqtt_in_flight=0 if publisher is None else publisher.in_flight_count(),
            mqtt_delivered=counters.get("mqtt_delivered"),
            mqtt_superseded=counters.get("mqtt_superseded"),
            mqtt_dropped=counters.get("mqtt_dropped"),
            mqtt_failed=counters.get("mqtt_failed"),
            webhook_queued=sum(worker.queued() for worker in self._webhooks.values()),
            webhook_delivered=counters.get("webhook_delivered"),
            webhook_retries=counters.get("webhook_retries"),
            webhook_failed=counters.get("webhook_failed"),
            webhook_dropped=counters.get("webhook_dropped"),
            duplicates_skipped=counters.get("duplicates_skipped"),
            escalations=counters.get("escalations"),
            abandoned=counters.get("abandoned"),
            records_lost=counters.get("records_lost"),
            last_error=counters.last_error,
        )
