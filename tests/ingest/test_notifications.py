"""Notifications against real things: Mosquitto (tests/conftest.py), local HTTP servers, SQLite.

The webhook gateways are real ``http.server`` servers on free loopback ports, answering from a
script (e.g. 503 three times, then 200). Escalation time comes from an injected clock and
``tick(now_s)``; no test sleeps through minutes, and no test asserts how long anything took
(a few check that a retry came no EARLIER than its backoff allows, a lower bound).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from hypothesis import given
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion
from pydantic import SecretStr, ValidationError

from pipesentinel.hardware.testbed import MosquittoProcess
from pipesentinel.ingest.notifications import (
    NotificationError,
    Notifier,
    alarm_topic,
    escalation_levels,
    escalations_due,
    incident_topic,
    is_retryable_status,
    parse_retry_after_s,
    sign_body,
    verify_signature,
)
from pipesentinel.ingest.storage.notification_log import (
    Attempt,
    NotificationLog,
    Outcome,
)
from pipesentinel.ingest.topics import TOPIC_ROOT
from pipesentinel.notification_settings import (
    EscalationPolicy,
    NotificationSettings,
    webhook_channel,
)
from pipesentinel.settings import BrokerSettings

WAIT_S = 30.0  # deadline of a wait for a state (generous for slow CI machines), never asserted
POLL_S = 0.01
SETTLE_S = 0.5  # how long to watch for something that must NOT happen
SECRET = "a-shared-secret-of-at-least-32-bytes!!"  # test value, >= 32 bytes (RFC 2104 section 3)
T0_S = 1.8e9  # an epoch time in 2027, the simulations' origin

MosquittoFactory = Callable[..., MosquittoProcess]


# --- helpers --------------------------------------------------------------------------------------


def wait_until(condition: Callable[[], bool], timeout_s: float = WAIT_S) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(POLL_S)
    return True


@dataclass
class Request:
    headers: dict[str, str]
    body: bytes
    received_monotonic: float

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Gateway:
    """A real HTTP server in a thread: answers POSTs from ``script``, then 200."""

    script: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    gate: threading.Event | None = None  # while set is pending, requests wait (up to 5 s)
    gate_timeout_s: float = 5.0
    requests: list[Request] = field(default_factory=list)
    in_handler: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                with gateway._lock:
                    gateway.requests.append(
                        Request(dict(self.headers.items()), body, time.monotonic())
                    )
                    gateway.in_handler += 1
                try:
                    if gateway.gate is not None:
                        gateway.gate.wait(gateway.gate_timeout_s)
                    with gateway._lock:
                        status, headers = gateway.script.pop(0) if gateway.script else (200, {})
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:
                    pass  # the client gave up (timeout) and closed the connection
                finally:
                    with gateway._lock:
                        gateway.in_handler -= 1

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def count(self) -> int:
        with self._lock:
            return len(self.requests)

    def bodies(self) -> list[Any]:
        with self._lock:
            return [request.json() for request in self.requests]

    def close(self) -> None:
        if self.gate is not None:
            self.gate.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def gateways() -> Iterator[Callable[..., Gateway]]:
    started: list[Gateway] = []

    def start(**options: Any) -> Gateway:
        gateway = Gateway(**options)
        started.append(gateway)
        return gateway

    yield start
    for gateway in started:
        gateway.close()


class Clock:
    """An injected wall clock [s]."""

    def __init__(self, now_s: float = T0_S) -> None:
        self.now_s = now_s

    def __call__(self) -> float:
        return self.now_s


def fast_settings(tmp_path: Path, **overrides: Any) -> NotificationSettings:
    options: dict[str, Any] = {
        "log_path": tmp_path / "notifications.sqlite3",
        "webhook_timeout_s": 2.0,
        "webhook_retry_min_delay_s": 0.05,
        "webhook_retry_max_delay_s": 0.4,
        "webhook_max_attempts": 6,
        "mqtt_enabled": False,
    }
    options.update(overrides)
    return NotificationSettings(**options)


def broker_settings(broker: MosquittoProcess) -> BrokerSettings:
    return BrokerSettings(url=broker.url, reconnect_min_delay_s=0.05, reconnect_max_delay_s=0.5)


_counter = iter(range(10**9))


def alarm(
    alarm_id: str = "GD07.methane.high",
    *,
    state: str = "unack",
    priority: str = "high",
    time_s: float = T0_S,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "alarm_id": alarm_id,
        "event_id": f"evt-{next(_counter)}",
        "time_s": time_s,
        "state": state,
        "priority": priority,
        **extra,
    }


def incident(incident_id: str = "INC-0001", **extra: Any) -> dict[str, Any]:
    return {
        "incident_id": incident_id,
        "event_id": f"evt-{next(_counter)}",
        "time_s": T0_S,
        "status": "open",
        **extra,
    }


def retained_states(broker: MosquittoProcess, topic_filter: str, expected: int) -> dict[str, Any]:
    """Connect a new subscriber and collect the retained messages under ``topic_filter``."""
    received: dict[str, Any] = {}
    retained: dict[str, bool] = {}
    lock = threading.Lock()

    def on_message(client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with lock:
            received[message.topic] = json.loads(message.payload)
            retained[message.topic] = bool(message.retain)

    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2)
    client.on_message = on_message
    client.connect(broker.host, broker.port)
    client.subscribe(topic_filter, qos=1)
    client.loop_start()
    try:
        wait_until(lambda: len(received) >= expected)
        time.sleep(0.2)  # anything more would show up now
    finally:
        client.loop_stop()
        client.disconnect()
    assert all(retained.values()), retained
    return received


# --- pure parts -----------------------------------------------------------------------------------


def test_escalation_levels_hand_worked() -> None:
    # Hand-worked: first 60 s, then every 60 s, at most 3.
    elapsed_s = [0.0, 59.9, 60.0, 119.9, 120.0, 180.0, 1e6, -5.0, np.nan]
    levels = escalation_levels(elapsed_s, first_after_s=60.0, repeat_after_s=60.0, max_level=3)
    assert levels.tolist() == [0, 0, 1, 1, 2, 3, 3, 0, 0]
    # Broadcasting over per-alarm policies (critical 60/60/3, medium 300/300/2).
    levels = escalation_levels(
        [[61.0, 301.0], [10_000.0, 10_000.0]],
        first_after_s=[60.0, 300.0],
        repeat_after_s=[60.0, 300.0],
        max_level=[3, 2],
    )
    assert levels.tolist() == [[1, 1], [3, 2]]


@given(
    elapsed=st.lists(st.floats(-1e6, 1e7), min_size=1, max_size=20),
    first=st.floats(0.1, 1e4),
    repeat=st.floats(0.1, 1e4),
    cap=st.integers(1, 10),
)
def test_escalation_levels_are_monotone_and_bounded(
    elapsed: list[float], first: float, repeat: float, cap: int
) -> None:
    ordered = np.sort(np.asarray(elapsed))
    levels = escalation_levels(ordered, first_after_s=first, repeat_after_s=repeat, max_level=cap)
    assert np.all(np.diff(levels) >= 0)
    assert np.all((levels >= 0) & (levels <= cap))
    assert np.all((levels > 0) == (ordered >= first))


def test_escalations_due() -> None:
    policies = {
        "critical": EscalationPolicy(first_after_s=60.0, repeat_after_s=60.0, max_level=3),
        "medium": EscalationPolicy(first_after_s=300.0, repeat_after_s=300.0, max_level=2),
    }
    since = {"A": 1000.0, "B": 1000.0, "C": 1000.0, "D": 900.0}
    priorities = {"A": "critical", "B": "medium", "C": "low", "D": "critical"}
    due = escalations_due(
        unacknowledged_since_s=since,
        priorities=priorities,
        escalated_levels={"D": 1},
        now_s=1061.0,
        policies=policies,
    )
    # A: 61 s unacknowledged, level 1 due at 1060; B: 61 s < 300 s; C: low has no policy;
    # D: 161 s -> level 2 (due at 900 + 60 + 60 = 1020), level 1 already sent.
    assert [(item.alarm_id, item.level, item.due_time_s) for item in due] == [
        ("D", 2, 1020.0),
        ("A", 1, 1060.0),
    ]
    assert due[1].event_id == "escalation:A:1000000:1"
    again = escalations_due(
        unacknowledged_since_s=since,
        priorities=priorities,
        escalated_levels={"A": 1, "D": 2},
        now_s=1061.0,
        policies=policies,
    )
    assert again == []
    with pytest.raises(ValueError, match="'X'"):
        escalations_due(
            unacknowledged_since_s={"X": 0.0},
            priorities={},
            escalated_levels={},
            now_s=1.0,
            policies=policies,
        )


def test_topics_and_ids() -> None:
    assert (
        alarm_topic("wanli", "GD07.methane.high") == f"{TOPIC_ROOT}/wanli/alarms/GD07.methane.high"
    )
    assert incident_topic("wanli", "INC-7") == f"{TOPIC_ROOT}/wanli/incidents/INC-7"
    for bad in ("GD07/high", "GD07+", "zone.#", "", "a\x00b"):
        with pytest.raises(NotificationError, match="alarm_id"):
            alarm_topic("wanli", bad)
    with pytest.raises(NotificationError, match="site id"):
        incident_topic("wan/li", "INC-7")


def test_webhook_channel_redacts_credentials() -> None:
    channel = webhook_channel("https://user:pa55@sms.example:8443/send?token=abc")
    assert "pa55" not in channel
    assert "abc" not in channel
    assert channel.startswith("https://sms.example:8443/send?sha256:")
    assert webhook_channel("http://h/x?token=a") != webhook_channel("http://h/x?token=b")
    assert webhook_channel("http://h:80/x") == "http://h:80/x"


def test_hmac_signature() -> None:
    # RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
    expected = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    assert sign_body(b"what do ya want for nothing?", "Jefe") == f"sha256={expected}"
    assert verify_signature(b"what do ya want for nothing?", f"sha256={expected}", "Jefe")
    assert not verify_signature(b"what do ya want for nothing!", f"sha256={expected}", "Jefe")
    assert not verify_signature(b"x", None, "Jefe")


def test_retry_after_and_retryable_statuses() -> None:
    assert parse_retry_after_s("120", now_s=0.0) == 120.0
    assert parse_retry_after_s(" 0 ", now_s=0.0) == 0.0
    when = datetime(2027, 1, 15, 8, 0, 0, tzinfo=UTC)
    header = format_datetime(when, usegmt=True)  # e.g. "Fri, 15 Jan 2027 08:00:00 GMT"
    assert parse_retry_after_s(header, now_s=when.timestamp() - 30.0) == pytest.approx(30.0)
    assert parse_retry_after_s(header, now_s=when.timestamp() + 30.0) == 0.0
    assert parse_retry_after_s("soon", now_s=0.0) is None
    assert parse_retry_after_s("-5", now_s=0.0) is None
    assert parse_retry_after_s(None, now_s=0.0) is None
    retryable = [
        status
        for status in (200, 301, 400, 401, 404, 408, 429, 500, 503)
        if is_retryable_status(status)
    ]
    assert retryable == [408, 429, 500, 503]


def test_settings_fail_fast(tmp_path: Path) -> None:
    NotificationSettings(
        webhook_urls=("https://gw.example/hook",), webhook_secret=SecretStr(SECRET)
    )
    bad: list[dict[str, Any]] = [
        {"webhook_urls": ("ftp://gw.example/hook",)},
        {"webhook_urls": ("gw.example/hook",)},
        {"webhook_urls": ("http:///hook",)},
        {"escalation_webhook_urls": ("http://a/x", "http://a/x")},
        {"webhook_secret": SecretStr("short")},
        {"webhook_timeout_s": -1.0},
        {"webhook_max_attempts": 0},
        {"webhook_retry_min_delay_s": 10.0, "webhook_retry_max_delay_s": 1.0},
        {"escalation": {"critical": {"first_after_s": -60, "repeat_after_s": 60, "max_level": 3}}},
        {"escalation": {"critical": {"first_after_s": 60, "repeat_after_s": 0, "max_level": 3}}},
        {"unacknowledged_states": ()},
        {"mqtt_pending_capacity": 0},
        {"unknown_field": 1},
    ]
    for options in bad:
        with pytest.raises(ValidationError):
            NotificationSettings(**options)
    settings = NotificationSettings(unacknowledged_states=("UNACK",))
    assert settings.unacknowledged_states == ("unack",)


def test_log_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite3"
    with NotificationLog(path) as log:
        log.record(
            [
                Attempt("e1", "mqtt", "alarm", "A", 1, 10.0, Outcome.DELIVERED, latency_s=0.002),
                Attempt("e2", "http://h/x", "alarm", "A", 1, 11.0, Outcome.RETRY, 503, "HTTP 503"),
                Attempt("e2", "http://h/x", "alarm", "A", 2, 12.0, Outcome.DELIVERED, 200),
            ]
        )
    with NotificationLog(path) as log:
        assert log.delivered_keys() == {("e1", "mqtt"), ("e2", "http://h/x")}
        assert log.delivered_keys(since_time_s=11.5) == {("e2", "http://h/x")}
        assert log.was_delivered("e2", "http://h/x")
        assert not log.was_delivered("e2", "mqtt")
        rows = log.attempts(event_id="e2")
        assert [(row.attempt, row.outcome, row.http_status) for row in rows] == [
            (1, Outcome.RETRY, 503),
            (2, Outcome.DELIVERED, 200),
        ]
        assert log.counts_by_outcome() == {Outcome.DELIVERED: 2, Outcome.RETRY: 1}
        assert log.prune(before_time_s=11.0) == 1
        assert len(log.attempts()) == 2


# --- events are validated ------------------------------------------------------------------------


def test_bad_events_are_refused_clearly(tmp_path: Path) -> None:
    notifier = Notifier(settings=fast_settings(tmp_path), site_id="wanli", broker=None)
    with pytest.raises(RuntimeError, match="not running"):
        notifier.notify(alarm())
    with notifier:
        cases: list[tuple[Mapping[str, Any], str]] = [
            ({**alarm(), "alarm_id": "GD07/high"}, "'/'"),
            ({**alarm(), "event_id": ""}, "event_id"),
            ({k: v for k, v in alarm().items() if k != "event_id"}, "event_id"),
            ({**alarm(), "time_s": float("nan")}, "time_s"),
            ({**alarm(), "time_s": True}, "time_s"),
            ({**alarm(), "state": None}, "state"),
            ({**alarm(), "priority": ""}, "priority"),
            ({**alarm(), "value": {1, 2}}, "JSON"),
            ({**alarm(), "value": float("inf")}, "JSON"),
            ({**alarm(), "unacknowledged_since_s": "yesterday"}, "unacknowledged_since_s"),
            ({"event_id": "x", "time_s": 1.0}, "neither"),
            ({**incident(), "incident_id": "INC#1"}, "'#'"),
        ]
        for event, expected in cases:
            with pytest.raises(NotificationError, match=expected):
                notifier.notify(event)
        with pytest.raises(NotificationError, match="mapping"):
            notifier.notify(["not", "a", "mapping"])  # type: ignore[arg-type]


# --- webhooks -------------------------------------------------------------------------------------


def test_webhook_retries_503_with_backoff_then_delivers(
    tmp_path: Path, gateways: Callable[..., Gateway]
) -> None:
    gateway = gateways(script=[(503, {}), (503, {}), (503, {})])
    settings = fast_settings(tmp_path, webhook_urls=(gateway.url,))
    with Notifier(settings=settings, site_id="wanli", broker=None) as notifier:
        event = alarm()
        notifier.notify(event)
        assert notifier.wait_idle(WAIT_S)
        rows = notifier.log.attempts(event_id=event["event_id"])
        stats = notifier.stats()
    assert [(row.attempt, row.outcome, row.http_status) for row in rows] == [
        (1, Outcome.RETRY, 503),
        (2, Outcome.RETRY, 503),
        (3, Outcome.RETRY, 503),
        (4, Outcome.DELIVERED, 200),
    ]
    assert all(row.channel == webhook_channel(gateway.url) for row in rows)
    assert all(row.latency_s is not None and row.latency_s >= 0 for row in rows)
    assert stats.webhook_retries == 3
    assert stats.webhook_delivered == 1
    assert gateway.count() == 4
    # Backoff: retry n waits at least half its ceiling min(0.05 * 2**(n-1), 0.4) s (lower bound).
    gaps = np.diff([request.received_monotonic for request in gateway.requests])
    assert np.all(gaps >= np.array([0.025, 0.05, 0.1]))
    body = gateway.bodies()[0]
    assert body["type"] == "alarm"
    assert body["site_id"] == "wanli"
    assert body["event_id"] == event["event_id"]
    assert body["data"]["alarm_id"] == event["alarm_id"]
    assert gateway.requests[0].headers["Idempotency-Key"] == event["event_id"]


def test_webhook_4xx_is_not_retried_but_429_honours_retry_after(
    tmp_path: Path, gateways: Callable[..., Gateway]
) -> None:
    refusing = gateways(script=[(400, {})])
    throttling = gateways(script=[(429, {"Retry-After": "1"})])
    settings = fast_settings(tmp_path, webhook_urls=(refusing.url, throttling.url))
    with Notifier(settings=settings, site_id="wanli", broker=None) as notifier:
        event = alarm()
        notifier.notify(event)
        assert notifier.wait_idle(WAIT_S)
        refused = notifier.log.attempts(event_id=event["event_id"], channel=refusing.url)
        throttled = notifier.log.attempts(event_id=event["event_id"], channel=throttling.url)
        time.sleep(SETTLE_S)
    assert [(row.attempt, row.outcome, row.http_status) for row in refused] == [
        (1, Outcome.FAILED, 400)
    ]
    assert refused[0].error is not None
    assert "not retried" in refused[0].error
    assert refusing.count() == 1
    assert [(row.outcome, row.http_status) for row in throttled] == [
        (Outcome.RETRY, 429),
        (Outcome.DELIVERED, 200),
    ]
    # Retry-After: 1 outweighs the 0.05 s backoff (a lower bound, not a duration check).
    gap = throttling.requests[1].received_monotonic - throttling.requests[0].received_monotonic
    assert gap >= 1.0


def test_webhook_gives_up_after_max_attempts(
    tmp_path: Path, gateways: Callable[..., Gateway]
) -> None:
    gateway = gateways(script=[(500, {})] * 10)
    settings = fast_settings(tmp_path, webhook_urls=(gateway.url,), webhook_max_attempts=3)
    with Notifier(settings=settings, site_id="wanli", broker=None) as notifier:
        event = incident()
        notifier.notify(event)
        assert notifier.wait_idle(WAIT_S)
        rows = notifier.log.attempts(event_id=event["event_id"])
        assert notifier.stats().webhook_failed == 1
    assert [row.outcome for row in rows] == [Outcome.RETRY, Outcome.RETRY, Outcome.FAILED]
    assert rows[-1].error is not None
    assert "gave up after 3 attempts" in rows[-1].error
    assert gateway.count() == 3


def test_webhook_gives_up_when_past_max_age(
    tmp_path: Path, gateways: Callable[..., Gateway]
) -> None:
    gateway = gateways(script=[(503, {"Retry-After": "3600"})])
    settings = fast_settings(tmp_path, webhook_urls=(gateway.url,), webhook_max_age_s=60.0)
    with Notifier(settings=settings, site_id="wanli", broker=None) as notifier:
        event = alarm()
        notifier.notify(event)
        assert notifier.wait_idle(WAIT_S)
        rows = notifier.log.attempts(event_id=event["event_id"])
    assert [row.outcome for row in rows] == [Outcome.EXPIRED]
    assert gateway.count() == 1


def test_slow_webhook_never_blocks_the_caller_nor_other_webhooks(
    tmp_path: Path, gateways: Callable[..., Gateway]
) -> None:
    gate = threading.Event()
    slow = gateways(gate=gate, gate_timeout_s=5.0)  # answers after 5 s unless released
    fast = gateways()
    settings = fast_settings(tmp_path, webhook_urls=(slow.url, fast.url), webhook_timeout_s=1.0)
    with Notifier(settings=settings, site_id="wanli", broker=None) as notifier:
        events = [alarm(f"GD{index:02d}.methane.high") for index in range(5)]
        for event in events:
            notifier.notify(event)  # returns at once
        # Every event reached the fast gateway while the slow one still holds its first request:
        # nothing waited for the slow gateway (neither the caller nor the other webhook).
        assert wait_until(lambda: fast.count() == len(events))
        assert slow.in_handler == 1
        assert not gate.is_set()
        assert wait_until(lambda: notifier.stats().webhook_retries >= 1)  # the 1 s timeout
        gate.set()  # the slow gateway answers from now on
        assert notifier.wait_idle(WAIT_S)
        slow_rows = notifier.log.attempts(channel=slow.url)
    delivered = {row.event_id for row in slow_rows if row.outcome is Outcome.DELIVERED}
    assert delivered == {event["event_id"] for event in events}
    first = [row for row in slow_rows if row.event_id == events[0]["event_id"]]
    assert first[0].outcome is Outcome.RETRY  # timed out after 1 s
    assert first[0].http_status is None
    assert first[0].error is not None
    assert "Timeout" in first[0].error


def test_webhook_queue_is_bounded_and_overflow_is_recorded(
    tmp_path: Path, gateways: Callable[..., Gateway]
) -> None:
    gate = threading.Event()
    gateway = gateways(gate=gate, gate_timeout_s=10.0)
    settings = fast_settings(tmp_path, webhook_urls=(gateway.url,), webhook_queue_capacity=1)
    with Notifier(settings=settings, site_id="wanli", broker=None) as notifier:
        first, second, third = alarm("A"), alarm("B"), alarm("C")
        notifier.notify(first)
        assert wait_until(lambda: gateway.count() == 1)  # the worker holds the first
        notifier.notify(second)  # queued
        notifier.notify(third)  # no room
        assert notifier.stats().webhook_dropped == 1
        gate.set()
        assert notifier.wait_idle(WAIT_S)
        dropped = notifier.log.attempts(event_id=third["event_id"])
        delivered = notifier.log.delivered_keys()
    assert [(row.outcome, row.attempt) for row in dropped] == [(Outcome.DROPPED, 0)]
    assert delivered == {(first["event_id"], gateway.url), (second["event_id"], gateway.url)}


def test_hmac_signature_verifies_at_the_gateway(
    tmp_path: Path, gateways: Callable[..., Gateway]
) -> None:
    gateway = gateways()
    settings = fast_settings(
        tmp_path, webhook_urls=(gateway.url,), webhook_secret=SecretStr(SECRET)
    )
    with Notifier(settings=settings, site_id="wanli", broker=None) as notifier:
        notifier.notify(alarm())
        notifier.notify(incident())
        assert notifier.wait_idle(WAIT_S)
    assert gateway.count() == 2
    for request in gateway.requests:
        signature = request.headers["X-PipeSentinel-Signature-256"]
        assert verify_signature(request.body, signature, SECRET)
        assert not verify_signature(request.body + b" ", signature, SECRET)
        assert not verify_signature(request.body, signature, SECRET + "x")


def test_restart_with_the_same_log_does_not_resend(
    tmp_path: Path, gateways: Callable[..., Gateway]
) -> None:
    gateway = gateways()
    settings = fast_settings(tmp_path, webhook_urls=(gateway.url,))
    first, second, third = alarm("A"), alarm("B"), incident()
    with Notifier(settings=settings, site_id="wanli", broker=None) as notifier:
        notifier.notify(first)
        notifier.notify(second)
        assert notifier.wait_idle(WAIT_S)
    assert gateway.count() == 2
    with Notifier(settings=settings, site_id="wanli", broker=None) as notifier:
        notifier.notify(first)  # detection re-notifies current states after its own restart
        notifier.notify(second)
        notifier.notify(third)
        assert notifier.wait_idle(WAIT_S)
        assert notifier.stats().duplicates_skipped == 2
    time.sleep(SETTLE_S)
    assert [body["event_id"] for body in gateway.bodies()] == [
        first["event_id"],
        second["event_id"],
        third["event_id"],
    ]


# --- escalation ----------------------------------------------------------------------------------


def test_escalation_timing_with_an_injected_clock(
    tmp_path: Path, gateways: Callable[..., Gateway]
) -> None:
    ordinary = gateways()
    escalations = gateways()
    clock = Clock()
    settings = fast_settings(
        tmp_path,
        webhook_urls=(ordinary.url,),
        escalation_webhook_urls=(escalations.url,),
        escalation={
            "critical": EscalationPolicy(first_after_s=60.0, repeat_after_s=30.0, max_level=2)
        },
        escalation_roles=("shift supervisor", "duty manager"),
    )
    with Notifier(settings=settings, site_id="wanli", broker=None, clock=clock) as notifier:
        notifier.notify(alarm("GD03.methane.high", priority="critical", time_s=T0_S))
        notifier.notify(alarm("GD04.methane.low", priority="low", time_s=T0_S))
        # Still unacknowledged 10 s later: the episode keeps its start time.
        notifier.notify(alarm("GD03.methane.high", priority="critical", time_s=T0_S + 10))
        assert notifier.tick(T0_S + 59.0) == []
        due = notifier.tick(T0_S + 60.0)
        assert [(item.alarm_id, item.level) for item in due] == [("GD03.methane.high", 1)]
        assert notifier.tick(T0_S + 61.0) == []
        assert [item.level for item in notifier.tick(T0_S + 90.0)] == [2]
        assert notifier.tick(T0_S + 10_000.0) == []  # max_level 2
        assert notifier.escalation_level("GD03.methane.high") == 2
        # Acknowledged: no more escalation, level back to 0.
        notifier.notify(
            alarm("GD03.methane.high", state="ack", priority="critical", time_s=T0_S + 95)
        )
        assert notifier.escalation_level("GD03.methane.high") == 0
        assert notifier.tick(T0_S + 20_000.0) == []
        # A new unacknowledged episode escalates again, under new event ids.
        notifier.notify(alarm("GD03.methane.high", priority="critical", time_s=T0_S + 30_000))
        assert [item.level for item in notifier.tick(T0_S + 30_060.0)] == [1]
        assert notifier.wait_idle(WAIT_S)
        stats = notifier.stats()
    assert stats.escalations == 3
    bodies = escalations.bodies()
    assert [body["type"] for body in bodies] == ["escalation"] * 3
    assert [body["data"]["escalation_level"] for body in bodies] == [1, 2, 1]
    assert [body["data"]["role"] for body in bodies] == [
        "shift supervisor",
        "duty manager",
        "shift supervisor",
    ]
    assert bodies[0]["data"]["unacknowledged_since_s"] == T0_S
    assert bodies[0]["data"]["unacknowledged_for_s"] == 60.0
    assert len({body["event_id"] for body in bodies}) == 3
    # The ordinary webhook got the 5 alarm events and no escalation.
    assert [body["type"] for body in ordinary.bodies()] == ["alarm"] * 5


def test_escalations_are_not_resent_after_a_restart(
    tmp_path: Path, gateways: Callable[..., Gateway]
) -> None:
    gateway = gateways()
    settings = fast_settings(tmp_path, webhook_urls=(gateway.url,))  # escalations go here too
    episode = alarm("GD09.methane.high", priority="critical", time_s=T0_S)
    for _ in range(2):
        with Notifier(settings=settings, site_id="wanli", broker=None, clock=Clock()) as notifier:
            notifier.notify(episode)
            assert [item.level for item in notifier.tick(T0_S + 61.0)] == [1]
            assert notifier.wait_idle(WAIT_S)
    time.sleep(SETTLE_S)
    assert [body["type"] for body in gateway.bodies()] == ["alarm", "escalation"]


# --- MQTT ----------------------------------------------------------------------------------------


def test_late_subscriber_gets_the_current_state(
    tmp_path: Path, mosquitto: MosquittoProcess, unique_site_id: str, topic_prefix: str
) -> None:
    settings = fast_settings(
        tmp_path, mqtt_enabled=True, mqtt_client_id=f"notifier-{unique_site_id}"
    )
    with Notifier(
        settings=settings, site_id=unique_site_id, broker=broker_settings(mosquitto)
    ) as notifier:
        assert notifier.wait_connected(WAIT_S)
        notifier.notify(alarm("GD07.methane.high", state="unack"))
        latest = alarm("GD07.methane.high", state="ack", time_s=T0_S + 5)
        notifier.notify(latest)
        notifier.notify(alarm("GD08.fault.stuck", state="unack", priority="medium"))
        case = incident("INC-42")
        notifier.notify(case)
        assert notifier.wait_idle(WAIT_S)
        stats = notifier.stats()
        rows = notifier.log.attempts(event_id=latest["event_id"], channel="mqtt")
    assert stats.mqtt_delivered + stats.mqtt_superseded == 4
    assert [row.outcome for row in rows] == [Outcome.DELIVERED]
    states = retained_states(mosquitto, f"{topic_prefix}/#", expected=3)
    assert set(states) == {
        f"{topic_prefix}/alarms/GD07.methane.high",
        f"{topic_prefix}/alarms/GD08.fault.stuck",
        f"{topic_prefix}/incidents/INC-42",
    }
    assert states[f"{topic_prefix}/alarms/GD07.methane.high"]["event_id"] == latest["event_id"]
    assert states[f"{topic_prefix}/alarms/GD07.methane.high"]["escalation_level"] == 0
    assert states[f"{topic_prefix}/incidents/INC-42"] == case


def test_states_published_during_a_broker_restart_arrive_after_reconnect(
    tmp_path: Path, mosquitto_factory: MosquittoFactory, unique_site_id: str, topic_prefix: str
) -> None:
    broker = mosquitto_factory()
    settings = fast_settings(tmp_path, mqtt_enabled=True)
    with Notifier(
        settings=settings, site_id=unique_site_id, broker=broker_settings(broker)
    ) as notifier:
        assert notifier.wait_connected(WAIT_S)
        notifier.notify(alarm("A", state="normal", priority="low"))
        assert notifier.wait_idle(WAIT_S)
        broker.stop()
        assert wait_until(lambda: not notifier.stats().mqtt_connected)
        a1, a2, a3 = (alarm("A", state=state) for state in ("unack", "ack", "normal"))
        b1 = alarm("B", state="unack", priority="critical")
        for event in (a1, a2, b1, a3):
            notifier.notify(event)
        stats = notifier.stats()
        assert stats.mqtt_pending == 2  # latest state per topic
        assert stats.mqtt_superseded == 2
        broker.start()
        assert notifier.wait_idle(WAIT_S)
        stats = notifier.stats()
        log = notifier.log
        outcomes = {
            event["event_id"]: [row.outcome for row in log.attempts(event_id=event["event_id"])]
            for event in (a1, a2, a3, b1)
        }
    assert stats.mqtt_connections >= 2
    assert outcomes == {
        a1["event_id"]: [Outcome.SUPERSEDED],
        a2["event_id"]: [Outcome.SUPERSEDED],
        a3["event_id"]: [Outcome.DELIVERED],
        b1["event_id"]: [Outcome.DELIVERED],
    }
    states = retained_states(broker, f"{topic_prefix}/alarms/#", expected=2)
    assert states[f"{topic_prefix}/alarms/A"]["event_id"] == a3["event_id"]
    assert states[f"{topic_prefix}/alarms/B"]["event_id"] == b1["event_id"]


def test_escalation_level_is_part_of_the_retained_state(
    tmp_path: Path, mosquitto: MosquittoProcess, unique_site_id: str, topic_prefix: str
) -> None:
    settings = fast_settings(
        tmp_path, mqtt_enabled=True, mqtt_client_id=f"notifier-{unique_site_id}"
    )
    clock = Clock()
    with Notifier(
        settings=settings, site_id=unique_site_id, broker=broker_settings(mosquitto), clock=clock
    ) as notifier:
        assert notifier.wait_connected(WAIT_S)
        notifier.notify(alarm("GD01.methane.high", priority="critical", time_s=T0_S))
        assert [item.level for item in notifier.tick(T0_S + 125.0)] == [2]  # defaults: 60/60
        assert notifier.wait_idle(WAIT_S)
    states = retained_states(mosquitto, f"{topic_prefix}/alarms/#", expected=1)
    assert states[f"{topic_prefix}/alarms/GD01.methane.high"]["escalation_level"] == 2


def test_mqtt_restart_with_the_same_log_does_not_republish(
    tmp_path: Path, mosquitto: MosquittoProcess, unique_site_id: str, topic_prefix: str
) -> None:
    settings = fast_settings(
        tmp_path, mqtt_enabled=True, mqtt_client_id=f"notifier-{unique_site_id}"
    )
    event = alarm("GD02.methane.low", priority="medium")
    published: list[Sequence[int]] = []
    for _ in range(2):
        with Notifier(
            settings=settings, site_id=unique_site_id, broker=broker_settings(mosquitto)
        ) as notifier:
            assert notifier.wait_connected(WAIT_S)
            notifier.notify(event)
            assert notifier.wait_idle(WAIT_S)
            stats = notifier.stats()
            published.append((stats.mqtt_delivered, stats.duplicates_skipped))
    assert published == [(1, 0), (0, 1)]


def test_bad_broker_settings_fail_fast(tmp_path: Path) -> None:
    settings = fast_settings(tmp_path, mqtt_enabled=True)
    with pytest.raises(ValueError, match="scheme"):
        Notifier(settings=settings, site_id="wanli", broker=BrokerSettings(url="http://x:1883"))
    with pytest.raises(NotificationError, match="site id"):
        Notifier(settings=settings, site_id="wan/li", broker=None)
