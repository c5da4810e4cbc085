"""The process layout of a live deployment: a storing ingest process and a detection process.

One Python process cannot take 4000 messages/s through paho, decoding, storage and the detection
chain on one GIL (issue 3, section 9: the backlog grew to seconds). Mosquitto fans every device
message out to two subscribers of their own, each on its own core::

                 ┌─▶ [storage process]   IngestService(store)          -> telemetry + frame store,
    devices ─▶ broker                    (client id broker.client_id)     dead letters, recording
                 └─▶ [detection process] IngestService(store=None), a feed -> DetectionService
                                         (client id detection.mqtt_client_id) -> Notifier -> broker

* **Nothing lost.** Both subscriptions are QoS 1 persistent sessions with manual
  acknowledgement: the storing service acknowledges after the batch is durable (as before), the
  feed once the detection service has queued the batch. Either process can be down while the
  other runs; the broker keeps its messages until it is back.
* **Detection does not wait for storage**: an alarm no longer waits for the telemetry store's
  commit (``synchronous=FULL``), and a slow store no longer backs up the alarms.
* The detection process decodes and validates every message itself (the same
  :class:`~pipesentinel.ingest.contract.Decoder` and sequence tracker), so it sees exactly the
  records the storing service stores; it does not dead-letter rejections (the storing process
  does).

``pipesentinel ingest`` runs the storing service in its own process and the detection chain in a
child process (:class:`ServiceProcess`); ``--role`` runs one of them alone (one systemd unit
each). The demo keeps everything in one process: its load is small and its screen shows both.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from types import TracebackType
from typing import Any, Final, Self

from pipesentinel.alarm_config import AlarmConfig
from pipesentinel.ingest.detection_service import DetectionService
from pipesentinel.ingest.notifications import Notifier
from pipesentinel.ingest.records import RejectReason
from pipesentinel.ingest.response_service import (
    ResponseService,
    attach_response,
    response_service,
)
from pipesentinel.ingest.service import IngestService, MqttProtocol
from pipesentinel.ingest.storage.factory import open_frame_store, open_telemetry_store
from pipesentinel.settings import Settings
from pipesentinel.site import Site

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_S: Final = 30.0  # a role that is not connected by then fails to start
PROCESS_ANSWER_TIMEOUT_S: Final = 60.0  # beyond the connection: start-up and shut-down work
STOP_TIMEOUT_S: Final = 30.0
PROCESS_CPU_KEY: Final = "process_cpu_us"
"""Key of the child's CPU time (user + system, all threads) in :meth:`ServiceProcess.counters`."""
PROCESS_NICE_KEY: Final = "process_nice"
"""Key of the child's nice value (storage: ``settings.ingest.storage_nice``)."""
MICROSECONDS_PER_SECOND: Final = 1_000_000


class Role(StrEnum):
    """What a PipeSentinel service process runs."""

    STORAGE = "storage"  # the ingest service that stores, dead-letters and records
    DETECTION = "detection"  # the feed, the detection service and the notifier


def feed_settings(settings: Settings) -> Settings:
    """``settings`` with the broker client id of the detection process's feed."""
    broker = settings.broker.model_copy(update={"client_id": settings.detection.mqtt_client_id})
    return settings.model_copy(update={"broker": broker})


def feed_protocol(settings: Settings, protocol: MqttProtocol | str) -> MqttProtocol:
    """The feed's MQTT protocol: 3.1.1 for a QoS 0 feed unless ``protocol`` asks for 5.

    A QoS 0 feed uses no MQTT 5 feature (no Receive Maximum, session expiry or subscription
    options are needed without acknowledgements or a session), and paho 2.2 parses MQTT 5
    properties on every PUBLISH (measured: 20 000 messages drained by bare paho, 73 us of CPU
    per message with MQTT 5 and QoS 1, 38 with MQTT 3.1.1).
    """
    chosen = MqttProtocol(protocol)
    if settings.detection.feed_qos == 0 and chosen is MqttProtocol.AUTO:
        return MqttProtocol.V311
    return chosen


@dataclass(frozen=True)
class DetectionChain:
    """The running detection chain: feed, detection service, notifier and emergency response.

    ``response`` is None when ``settings.response.enabled`` is off.
    """

    feed: IngestService
    detection: DetectionService
    notifier: Notifier
    response: ResponseService | None = None


@contextlib.contextmanager
def detection_chain(
    *,
    settings: Settings,
    site: Site,
    alarm_config: AlarmConfig | None = None,
    topic_filters: Sequence[str] | None = None,
    protocol: MqttProtocol | str = MqttProtocol.AUTO,
    clock: Callable[[], float] = time.time,
) -> Iterator[DetectionChain]:
    """Run notifier, response, detection service and their feed (``detection.mqtt_client_id``).

    Stopped in reverse order: the feed first (it hands over what it took), then detection
    (it processes what is queued), then the response service (it answers what is queued), then
    the notifier (it sends what is pending).
    """
    with (
        Notifier(
            settings=settings.notifications,
            site_id=site.id,
            broker=settings.broker,
            protocol=protocol,
            clock=clock,
        ) as notifier,
        (
            response_service(settings=settings, site=site, notifier=notifier)
            if settings.response.enabled
            else contextlib.nullcontext()
        ) as responder,
        DetectionService(
            settings=settings, site=site, notifier=notifier, alarm_config=alarm_config, clock=clock
        ) as detection,
        IngestService(
            settings=feed_settings(settings),
            sites=site,
            store=None,
            topic_filters=topic_filters,
            protocol=feed_protocol(settings, protocol),
            clock=clock,
            subscription_qos=settings.detection.feed_qos,
        ) as feed,
    ):
        if responder is not None:
            attach_response(detection, responder)
        feed.subscribe(detection.submit)
        yield DetectionChain(feed=feed, detection=detection, notifier=notifier, response=responder)


@contextlib.contextmanager
def storage_ingest(
    *,
    settings: Settings,
    site: Site,
    topic_filters: Sequence[str] | None = None,
    protocol: MqttProtocol | str = MqttProtocol.AUTO,
) -> Iterator[IngestService]:
    """Run the storing ingest service on the configured telemetry and frame stores."""
    store = open_telemetry_store(settings.storage)
    try:
        with IngestService(
            settings=settings,
            sites=site,
            store=store,
            frame_store=open_frame_store(settings.storage),
            topic_filters=topic_filters,
            protocol=protocol,
        ) as service:
            yield service
    finally:
        store.close()


@contextlib.contextmanager
def run_role(
    role: Role,
    *,
    settings: Settings,
    site: Site,
    alarm_config: AlarmConfig | None = None,
    topic_filters: Sequence[str] | None = None,
) -> Iterator[Callable[[], dict[str, int]]]:
    """Run ``role`` until the context ends; yields a function returning its counters."""
    if role is Role.STORAGE:
        with storage_ingest(settings=settings, site=site, topic_filters=topic_filters) as service:
            connected = service.wait_connected(CONNECT_TIMEOUT_S)
            if not connected:
                raise TimeoutError(f"storage: not connected to {settings.broker.url}")
            yield lambda: storage_counters(service)
        return
    with detection_chain(
        settings=settings, site=site, alarm_config=alarm_config, topic_filters=topic_filters
    ) as chain:
        if not (
            chain.feed.wait_connected(CONNECT_TIMEOUT_S)
            and chain.notifier.wait_connected(CONNECT_TIMEOUT_S)
        ):
            raise TimeoutError(f"detection: not connected to {settings.broker.url}")
        yield lambda: detection_counters(chain)


def storage_counters(service: IngestService) -> dict[str, int]:
    """The storing service's counters, as plain integers."""
    stats = service.stats()
    return {
        "accepted": stats.accepted,
        "rejected": stats.rejected,
        # Redelivered copies (QoS 1 at least once) among the rejections: not new messages.
        "duplicates": stats.rejected_by_reason.get(RejectReason.DUPLICATE, 0),
        "queue_overflows": stats.queue_overflows,
        "batches_written": stats.batches_written,
        "records_written": stats.records_written,
        "unacknowledged": stats.unacknowledged,
    }


def detection_counters(chain: DetectionChain) -> dict[str, int]:
    """The detection process's counters (feed and detection), as plain integers."""
    feed = chain.feed.stats()
    detection = chain.detection.stats()
    return {
        "feed_accepted": feed.accepted,
        "feed_rejected": feed.rejected,
        "feed_duplicates": feed.rejected_by_reason.get(RejectReason.DUPLICATE, 0),
        "feed_queue_overflows": feed.queue_overflows,
        "feed_batches": feed.batches_written,
        "detection_batches": detection.batches,
        "detection_records": detection.records,
        "detection_errors": detection.errors,
        "alarm_events": detection.alarm_events,
    }


@dataclass(frozen=True)
class _ProcessArguments:
    """What a role's child process is given (pickled)."""

    role: Role
    settings: Settings
    site: Site
    alarm_config: AlarmConfig | None
    topic_filters: tuple[str, ...] | None
    log_level: int


def _with_cpu(counters: dict[str, int]) -> dict[str, int]:
    """``counters``, this process's CPU time so far [us] and its nice value."""
    return counters | {
        PROCESS_CPU_KEY: round(time.process_time() * MICROSECONDS_PER_SECOND),
        PROCESS_NICE_KEY: os.nice(0),
    }


def _process_main(connection: Connection, arguments: _ProcessArguments) -> None:
    """A role's child process: ``("ready",)``, then answers ``("stats",)`` until ``("stop",)``."""
    # Ctrl-C reaches the whole process group: the parent decides when its child stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    role = arguments.role
    if role is Role.STORAGE and arguments.settings.ingest.storage_nice > 0:
        # Storage yields the CPU to detection (settings.ingest.storage_nice): only ever in this
        # child, never in the process that started it.
        os.nice(arguments.settings.ingest.storage_nice)
    logging.basicConfig(
        level=arguments.log_level, format=f"%(asctime)s {role.value} %(name)s %(message)s"
    )
    try:
        with run_role(
            role,
            settings=arguments.settings,
            site=arguments.site,
            alarm_config=arguments.alarm_config,
            topic_filters=arguments.topic_filters,
        ) as counters:
            connection.send(("ready",))
            while True:
                # A parent that died without a word closes the pipe: EOFError, stop as well.
                request = connection.recv()
                if request[0] == "stop":
                    break
                connection.send(("stats", _with_cpu(counters())))
            final = _with_cpu(counters())
        connection.send(("stopped", final))
    except Exception as error:
        logger.exception("%s process failed", role.value)
        with contextlib.suppress(OSError):
            connection.send(("error", f"{type(error).__name__}: {error}"))
    finally:
        connection.close()


class ServiceProcess:
    """A role in a child process of its own (a fresh interpreter: its own GIL).

    Parameters
    ----------
    role
        What the child runs.
    settings, site
        Passed to the child (pickled).
    alarm_config
        Set points of the detection role; ``None``: the site's ``alarms.toml``.
    topic_filters
        MQTT subscriptions of the role's service; ``None``: every site.
    """

    def __init__(
        self,
        role: Role,
        *,
        settings: Settings,
        site: Site,
        alarm_config: AlarmConfig | None = None,
        topic_filters: Sequence[str] | None = None,
    ) -> None:
        self.role = Role(role)
        self._arguments = _ProcessArguments(
            role=self.role,
            settings=settings,
            site=site,
            alarm_config=alarm_config,
            topic_filters=None if topic_filters is None else tuple(topic_filters),
            log_level=logging.getLogger().getEffectiveLevel(),
        )
        self._connection: Connection | None = None
        self._process: BaseProcess | None = None
        self.final_counters: dict[str, int] | None = None

    def start(self) -> Self:
        """Start the child and wait until its role is connected; raises what failed there."""
        context = multiprocessing.get_context("spawn")
        self._connection, child = context.Pipe()
        self._process = context.Process(
            target=_process_main,
            args=(child, self._arguments),
            name=f"pipesentinel-{self.role.value}",
            daemon=True,
        )
        self._process.start()
        child.close()
        try:
            self._answer(CONNECT_TIMEOUT_S + PROCESS_ANSWER_TIMEOUT_S)
        except BaseException:
            self._kill()
            raise
        logger.info("%s process %d started", self.role.value, self._process.pid)
        return self

    def counters(self) -> dict[str, int]:
        """The child's counters now."""
        answer = self._ask(("stats",))
        counters: dict[str, int] = answer[1]
        return counters

    def alive(self) -> bool:
        """Whether the child process runs."""
        return self._process is not None and self._process.is_alive()

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Ask the child to stop (it drains and acknowledges what it took) and wait. Idempotent."""
        if self._process is None or self._connection is None:
            return
        try:
            if self._process.is_alive():
                answer = self._ask(("stop",), timeout_s)
                self.final_counters = answer[1]
        except (OSError, EOFError, TimeoutError, RuntimeError) as error:
            logger.error("%s process did not stop cleanly: %s", self.role.value, error)
        finally:
            self._process.join(timeout_s)
            self._kill()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _ask(
        self, request: tuple[Any, ...], timeout_s: float = PROCESS_ANSWER_TIMEOUT_S
    ) -> tuple[Any, ...]:
        if self._connection is None:
            raise RuntimeError(f"the {self.role.value} process is not started")
        self._connection.send(request)
        return self._answer(timeout_s)

    def _answer(self, timeout_s: float) -> tuple[Any, ...]:
        assert self._connection is not None  # noqa: S101 - set by start()
        if not self._connection.poll(timeout_s):
            raise TimeoutError(f"the {self.role.value} process did not answer within {timeout_s} s")
        answer: tuple[Any, ...] = self._connection.recv()
        if answer[0] == "error":
            raise RuntimeError(f"{self.role.value} process: {answer[1]}")
        return answer

    def _kill(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.is_alive():
            logger.error("%s process %d killed", self.role.value, process.pid)
            process.kill()
            process.join(STOP_TIMEOUT_S)
        if self._connection is not None:
            self._connection.close()
            self._connection = None
