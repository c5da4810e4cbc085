"""The live detection service: ingest batches -> detection engine -> journals and notifications.

The ingest service hands every durably stored batch to :meth:`DetectionService.submit` (its
subscriber callback), which queues it for the detection thread; the thread runs the
:class:`~pipesentinel.detection.engine.DetectionEngine`, appends new incident versions to the
incident store, and gives every alarm event and incident version to the notifier (MQTT retained
state, webhooks). A tick every ``settings.detection.tick_period_s`` catches what does not come
with readings: silent devices, shelve expiry, escalation. Operator actions (acknowledge, shelve,
...) go through the same lock as the batches, so the engine is only ever used by one thread at a
time.

Backpressure, not loss: when detection falls behind, ``submit`` blocks the ingest writer, which
stops acknowledging, so the broker keeps the messages (QoS 1). Batches that queue up meanwhile
are run through the engine together (up to ``settings.detection.max_batch_records``): the
engine's cost is mostly per call, so a backlog is worked off in larger, cheaper steps.

In a deployment the batches come from the detection process's own feed
(:mod:`pipesentinel.ingest.workers`), not from the storing ingest service.
"""

from __future__ import annotations

import functools
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Final, Self

from pipesentinel.alarm_config import AlarmConfig, load_alarm_config
from pipesentinel.detection.alarms import AlarmEvent, AlarmJournal, AlarmSnapshot, ShelveMode
from pipesentinel.detection.engine import (
    DetectionEngine,
    EngineOutput,
    alarm_notification,
    incident_notification,
)
from pipesentinel.detection.incidents import Incident
from pipesentinel.ingest.notifications import Notifier
from pipesentinel.ingest.records import Record
from pipesentinel.ingest.storage.incidents import IncidentStore
from pipesentinel.ingest.storage.journal import SqliteAlarmJournal
from pipesentinel.settings import Settings
from pipesentinel.site import Site

logger = logging.getLogger(__name__)

QUEUE_CAPACITY_BATCHES: Final = 64
"""Batches waiting for detection before ``submit`` blocks the ingest writer (backpressure)."""

THREAD_JOIN_TIMEOUT_S: Final = 30.0
# Longest rest between two engine steps (adaptive batching, settings.detection.max_busy_fraction):
# bounds the wait a reading can get after one unusually long step (design choice) [s].
MAX_REST_S: Final = 0.1
# Steps of at most this many records are never followed by a rest: the seed load of the reference
# site (40 readings/s) gives steps of one or two readings (design choice) [-].
REST_ABOVE_RECORDS: Final = 10


@dataclass(frozen=True)
class DetectionStats:
    """Counters of the detection service."""

    batches: int
    records: int
    alarm_events: int
    incident_versions: int
    errors: int
    queued_batches: int
    last_error: str | None
    submitted_batches_merged: int = 0  # submitted batches run together with an earlier one


class DetectionService:
    """Run detection for one site on the batches of an ingest service.

    Parameters
    ----------
    settings
        The settings (``alarms``, ``detection``, ``lel_basis``).
    site
        The site.
    journal
        The alarm journal; ``None``: SQLite at ``settings.alarms.journal_path``.
    incident_store
        Incident versions; ``None``: SQLite at ``settings.alarms.incidents_path``.
    notifier
        Where events go (started and stopped by its owner); ``None``: nowhere.
    alarm_config
        Set points; ``None``: ``alarms.toml`` of ``settings.site_dir``.
    clock
        Seconds since the Unix epoch, the same clock the ingest stamps receive times with [s].
    """

    def __init__(
        self,
        *,
        settings: Settings,
        site: Site,
        journal: AlarmJournal | None = None,
        incident_store: IncidentStore | None = None,
        notifier: Notifier | None = None,
        alarm_config: AlarmConfig | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._site = site
        self._owned: list[SqliteAlarmJournal | IncidentStore] = []
        if journal is None:
            sqlite_journal = SqliteAlarmJournal(Path(settings.alarms.journal_path))
            self._owned.append(sqlite_journal)
            journal = sqlite_journal
        if incident_store is None:
            incident_store = IncidentStore(Path(settings.alarms.incidents_path))
            self._owned.append(incident_store)
        self._incidents = incident_store
        self._notifier = notifier
        self._clock = clock
        self.engine = DetectionEngine(
            site,
            alarm_config=alarm_config or load_alarm_config(settings.site_dir, site),
            lel_basis=settings.lel_basis,
            journal=journal,
            alarm_settings=settings.alarms,
            detection_settings=settings.detection,
            incidents=incident_store.latest(),
        )
        self._lock = threading.Lock()
        self._queue: queue.Queue[Sequence[Record] | None] = queue.Queue(QUEUE_CAPACITY_BATCHES)
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._main, name="pipesentinel-detection", daemon=True
        )
        self._batches = 0
        self._coalesced = 0  # submitted batches merged into an earlier one
        self._records = 0
        self._alarm_events = 0
        self._incident_versions = 0
        self._errors = 0
        self._last_error: str | None = None
        self._listeners: list[Callable[[EngineOutput], None]] = []

    # --- lifecycle --------------------------------------------------------------------------

    def start(self) -> Self:
        """Start the detection thread; republish the current state of every alarm and incident."""
        with self._lock:
            for snapshot in self.engine.alarms.alarms():
                if snapshot.record.active or not snapshot.record.acknowledged:
                    self._notify_state(snapshot.alarm_id)
            for incident in self.engine.tracker.open_incidents():
                self._publish_incident(incident)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Process what is queued, stop the thread, close what this service opened."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(THREAD_JOIN_TIMEOUT_S)
        for item in self._owned:
            item.close()
        self._owned.clear()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def submit(self, records: Sequence[Record]) -> None:
        """The ingest subscriber: queue a stored batch (blocks when detection is behind)."""
        self._queue.put(list(records))

    def add_listener(self, listener: Callable[[EngineOutput], None]) -> None:
        """Call ``listener`` with every non-empty engine output (on the detection thread)."""
        self._listeners.append(listener)

    def alarm_snapshots(self) -> tuple[AlarmSnapshot, ...]:
        """Every alarm's current state (a consistent copy)."""
        with self._lock:
            return self.engine.alarms.alarms()

    def open_incidents(self) -> list[Incident]:
        """The open incidents (a consistent copy)."""
        with self._lock:
            return self.engine.tracker.open_incidents()

    def stats(self) -> DetectionStats:
        """Counters at this moment."""
        return DetectionStats(
            batches=self._batches,
            records=self._records,
            alarm_events=self._alarm_events,
            incident_versions=self._incident_versions,
            errors=self._errors,
            queued_batches=self._queue.qsize(),
            last_error=self._last_error,
            submitted_batches_merged=self._coalesced,
        )

    # --- the detection thread ---------------------------------------------------------------

    def _main(self) -> None:
        period_s = self._settings.detection.tick_period_s
        busy_fraction = self._settings.detection.max_busy_fraction
        next_tick = time.monotonic() + period_s
        next_step = 0.0  # monotonic time before which the engine takes no new records [s]
        while True:
            try:
                batch = self._queue.get(timeout=max(next_tick - time.monotonic(), 0.0))
            except queue.Empty:
                batch = []
            if batch is None:
                return
            if batch:
                # Adaptive batching under load: after a step of more than REST_ABOVE_RECORDS
                # records that took d seconds the engine rests d (1 - f) / f, so it is busy at
                # most a fraction f of the time and leaves the GIL to the feed; what arrives
                # meanwhile is taken in the next, larger (cheaper per record) step. Wall time,
                # so the steps also grow when the machine is busy with other work. At seed load
                # the steps are of a reading or two and nothing rests.
                rest_s = next_step - time.monotonic()
                if rest_s > 0:
                    time.sleep(min(rest_s, MAX_REST_S))
                records, stopping = self._coalesce(batch)
                started_s = time.monotonic()
                self._run(functools.partial(self.engine.process, records), records=len(records))
                ended_s = time.monotonic()
                if len(records) > REST_ABOVE_RECORDS:
                    next_step = (
                        ended_s + (ended_s - started_s) * (1 - busy_fraction) / busy_fraction
                    )
                if stopping:
                    return
            # Tick only once caught up: a tick judges silence against the clock, so it must not
            # run while received records still wait in the queue.
            if time.monotonic() >= next_tick and self._queue.empty():
                next_tick = time.monotonic() + period_s
                self._run(lambda: self.engine.tick(self._clock()), records=0)
                if self._notifier is not None:
                    self._notifier.tick(self._clock())

    def _coalesce(self, batch: Sequence[Record]) -> tuple[list[Record], bool]:
        """``batch`` with the batches queued behind it, and whether the stop marker came.

        Most of the engine's cost is per call (vectorised over the records of a batch), so when
        detection falls behind it catches up in fewer, larger steps instead of falling further
        behind (measured: ``bench/alarm_latency.py``).
        """
        records = list(batch)
        limit = self._settings.detection.max_batch_records
        while len(records) < limit:
            try:
                more = self._queue.get_nowait()
            except queue.Empty:
                break
            if more is None:
                return records, True
            records.extend(more)
            self._coalesced += 1
        return records, False

    def _run(self, step: Callable[[], EngineOutput], *, records: int) -> None:
        with self._lock:
            try:
                output = step()
            except Exception as error:  # detection must survive a bug on one batch
                self._errors += 1
                self._last_error = f"{type(error).__name__}: {error}"
                logger.exception("detection failed on a batch of %d records", records)
                return
            if records:
                self._batches += 1
                self._records += records
            self._publish(output)

    def _publish(self, output: EngineOutput) -> None:
        self._incidents.append(output.incidents)
        for event in output.alarm_events:
            self._alarm_events += 1
            if event.alarm_id is not None:
                self._notify_state(event.alarm_id, event)
        for incident in output.incidents:
            self._publish_incident(incident)
        if output:
            for listener in self._listeners:
                listener(output)

    def _notify_state(self, alarm_id: str, event: AlarmEvent | None = None) -> None:
        if self._notifier is not None:
            self._notifier.notify_alarm(alarm_notification(self.engine, alarm_id, event))

    def _publish_incident(self, incident: Incident) -> None:
        self._incident_versions += 1
        if self._notifier is not None:
            self._notifier.notify_incident(incident_notification(incident))

    # --- operator actions (thread-safe) -------------------------------------------------------

    def acknowledge(self, alarm_id: str, *, user: str, comment: str = "") -> None:
        """A duty officer acknowledges an alarm."""
        with self._lock:
            events = self.engine.acknowledge(
                alarm_id, user=user, time_s=self._clock(), comment=comment
            )
            self._publish(EngineOutput(alarm_events=events))

    def shelve(
        self,
        alarm_id: str,
        *,
        user: str,
        reason: str,
        mode: ShelveMode,
        duration_s: float | None = None,
    ) -> None:
        """Shelve an alarm with a reason."""
        with self._lock:
            events = self.engine.shelve(
                alarm_id,
                user=user,
                reason=reason,
                time_s=self._clock(),
                mode=mode,
                duration_s=duration_s,
            )
            self._publish(EngineOutput(alarm_events=events))

    def reset(self, alarm_id: str, *, user: str, comment: str = "") -> None:
        """Reset a latched alarm whose condition has cleared."""
        with self._lock:
            events = self.engine.reset(alarm_id, user=user, time_s=self._clock(), comment=comment)
            self._publish(EngineOutput(alarm_events=events))

    def comment(self, alarm_id: str, *, user: str, text: str) -> None:
        """A duty officer's comment on an alarm (journaled; no state change)."""
        with self._lock:
            events = self.engine.comment(alarm_id, user=user, text=text, time_s=self._clock())
            self._publish(EngineOutput(alarm_events=events))

    def confirm_zone(self, zone: str, *, user: str, reason: str) -> Incident:
        """A duty officer confirms a suspected zone: opens (or joins) an incident, returned."""
        with self._lock:
            output = self.engine.confirm_zone(zone, user=user, reason=reason, time_s=self._clock())
            self._publish(output)
            return next(i for i in output.incidents if zone in i.zones)

    def close_incident(self, incident_id: str, *, user: str, reason: str) -> Incident:
        """Close an incident whose zones are back to normal."""
        with self._lock:
            incident = self.engine.close_incident(
                incident_id, user=user, reason=reason, time_s=self._clock()
            )
            self._publish(EngineOutput(incidents=[incident]))
            return incident
