"""The emergency response, live: every incident update answered off the detection thread.

The detection engine hands each new incident version to :meth:`ResponseService.offer`, which
returns at once (the response takes 50-300 ms; alarms must not wait for it). A worker thread
takes the latest version of each incident (older queued versions of the same incident are
superseded, never lost from the incident store: only their response is skipped, and counted) and:

1. computes the response (:func:`~pipesentinel.plans.response.respond_to_incident`): valves,
   zones, people, the selected plan and a CAP alert that is an ``Update`` of the incident's
   previous alert;
2. keeps it with the incident (:class:`~pipesentinel.ingest.storage.responses.ResponseStore`);
3. journals the automatic plan selection when it changes the plan in effect
   (:class:`~pipesentinel.ingest.storage.plan_decisions.SqlitePlanDecisionLog`: an officer's
   override stays in effect) and notifies the change like an alarm (MQTT + webhooks);
4. publishes the response, the alert and the zones, retained, on MQTT.

A response that fails (a bug, a bad plan library) is logged, counted and kept with its reason
(:attr:`ResponseService.failures`); the service carries on with the next update.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import OrderedDict, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Final, Self

from pipesentinel.detection.engine import EngineOutput
from pipesentinel.detection.incidents import Incident
from pipesentinel.ingest.detection_service import DetectionService
from pipesentinel.ingest.notifications import Notifier
from pipesentinel.ingest.storage.plan_decisions import SqlitePlanDecisionLog
from pipesentinel.ingest.storage.responses import ResponseStore
from pipesentinel.plans.cap import CapSender, CapStatus, reference_of
from pipesentinel.plans.response import (
    EmergencyResponse,
    ResponseContext,
    ResponsePolicy,
    respond_to_incident,
)
from pipesentinel.settings import Environment, Settings
from pipesentinel.site import Site

__all__ = [
    "RESPONSE_ACTOR",
    "ResponseFailure",
    "ResponseService",
    "ResponseStats",
    "attach_response",
    "response_context",
    "response_service",
]

_LOG = logging.getLogger(__name__)
RESPONSE_ACTOR: Final = "pipesentinel"
"""Who the plan-decision journal names for automatic selections."""
MAX_FAILURES_KEPT: Final = 100


@dataclass(frozen=True)
class ResponseFailure:
    """A response that could not be computed, kept for inspection."""

    incident_id: str
    incident_version: int
    reason: str


@dataclass
class ResponseStats:
    """What the service did since it started."""

    offered: int = 0
    superseded: int = 0  # a newer version of the same incident arrived before it was answered
    responded: int = 0
    already_answered: int = 0  # this version (or a newer one) was answered before a restart
    not_localised: int = 0  # no localisation with wind yet: nothing to answer
    failed: int = 0
    plan_changes: int = 0
    by_plan: dict[str, int] = field(default_factory=dict)


class ResponseService:
    """Answers incident versions on its own thread; see the module docstring.

    Parameters
    ----------
    context
        The site's response context (graphs, plan library, alert sender).
    store
        Where responses are kept with their incidents.
    decisions
        The plan-decision journal.
    notifier
        Publishes responses and plan changes; ``None`` to only compute and store.
    """

    def __init__(
        self,
        *,
        context: ResponseContext,
        store: ResponseStore,
        decisions: SqlitePlanDecisionLog,
        notifier: Notifier | None = None,
    ) -> None:
        self.context = context
        self.store = store
        self.decisions = decisions
        self.notifier = notifier
        self.stats = ResponseStats()
        self.failures: deque[ResponseFailure] = deque(maxlen=MAX_FAILURES_KEPT)
        self.latest: dict[str, EmergencyResponse] = {}
        self._pending: OrderedDict[str, Incident] = OrderedDict()
        self._condition = threading.Condition()
        self._busy = False
        self._stopping = False
        self._thread: threading.Thread | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Self:
        """Start the worker thread."""
        if self._thread is not None:
            raise RuntimeError("the response service is already started")
        self._thread = threading.Thread(target=self._run, name="response", daemon=True)
        self._thread.start()
        return self

    def stop(self, *, timeout_s: float = 30.0) -> None:
        """Answer what is queued, then stop the worker."""
        with self._condition:
            self._stopping = True
            self._condition.notify_all()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # --- work --------------------------------------------------------------------------------

    def offer(self, incidents: list[Incident]) -> None:
        """Queue incident versions for a response; returns at once, never blocks on the work."""
        if not incidents:
            return
        with self._condition:
            for incident in incidents:
                self.stats.offered += 1
                queued = self._pending.get(incident.id)
                if queued is not None:
                    self.stats.superseded += 1  # one of the two versions will not be answered
                    if queued.version >= incident.version:
                        continue
                self._pending[incident.id] = incident
            self._condition.notify_all()

    def idle(self) -> bool:
        """Nothing queued and nothing being answered."""
        with self._condition:
            return not self._pending and not self._busy

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until :meth:`idle`; ``False`` on timeout."""
        with self._condition:
            return self._condition.wait_for(
                lambda: not self._pending and not self._busy, timeout=timeout_s
            )

    def answer(self, incident: Incident) -> EmergencyResponse | None:
        """Answer one incident version now, on the caller's thread (replay, tests)."""
        try:
            return self._answer(incident)
        except Exception as error:  # noqa: BLE001 - one bad update must not stop the service
            self._failed(incident, error)
            return None

    def _run(self) -> None:
        while True:
            with self._condition:
                self._condition.wait_for(lambda: bool(self._pending) or self._stopping)
                if not self._pending:
                    return
                _, incident = self._pending.popitem(last=False)
                self._busy = True
            try:
                self.answer(incident)
            finally:
                with self._condition:
                    self._busy = False
                    self._condition.notify_all()

    def _failed(self, incident: Incident, error: BaseException) -> None:
        reason = f"{type(error).__name__}: {error}"
        _LOG.exception("response to %s v%d failed: %s", incident.id, incident.version, reason)
        self.stats.failed += 1
        self.failures.append(ResponseFailure(incident.id, incident.version, reason))

    def _answer(self, incident: Incident) -> EmergencyResponse | None:
        previous = self.store.latest(incident.id)
        if previous is not None and previous.incident_version >= incident.version:
            self.stats.already_answered += 1
            return None
        references = [] if previous is None else [reference_of(previous.cap_xml)]
        response = respond_to_incident(self.context, incident, references=references)
        if response is None:
            self.stats.not_localised += 1
            return None
        body = response.to_json_dict()
        self.store.append(
            incident_id=incident.id,
            incident_version=incident.version,
            time_s=response.time_s,
            plan_id=response.selection.plan_id,
            cap_identifier=response.cap_identifier,
            body=body,
            cap_xml=response.cap_xml,
            geojson=response.geojson,
        )
        self.stats.responded += 1
        self.stats.by_plan[response.selection.plan_id] = (
            self.stats.by_plan.get(response.selection.plan_id, 0) + 1
        )
        self.latest[incident.id] = response
        self._journal(incident, response)
        if self.notifier is not None:
            self.notifier.notify_response(
                incident_id=incident.id,
                incident_version=incident.version,
                time_s=response.time_s,
                response=body,
                cap_xml=response.cap_xml,
                geojson=response.geojson,
            )
        return response

    def _journal(self, incident: Incident, response: EmergencyResponse) -> None:
        selection = response.selection
        current = self.decisions.current(incident.id)
        automatic = (
            None if current is None else (current.automatic_plan_id, current.automatic_plan_version)
        )
        if automatic == (selection.plan_id, selection.plan_version):
            return
        outcome = self.decisions.record_automatic(
            incident_id=incident.id,
            plan_id=selection.plan_id,
            plan_version=selection.plan_version,
            time_s=response.time_s,
            reason=selection.explanation,
            actor=RESPONSE_ACTOR,
        )
        event = outcome.change_event()
        if event is not None:
            self.stats.plan_changes += 1
            if self.notifier is not None:
                self.notifier.notify_plan(event)


def response_context(
    settings: Settings, site: Site, *, cap_status: CapStatus | None = None
) -> ResponseContext:
    """The site's response context from the settings (``settings.response``).

    The CAP status is ``cap_status`` if given, else ``settings.response.cap_status``, else
    ``Actual`` in production and ``Exercise`` otherwise (a development system never sends a real
    public alert by default).
    """
    options = settings.response
    status = cap_status or (
        CapStatus(options.cap_status)
        if options.cap_status is not None
        else (
            CapStatus.ACTUAL
            if settings.environment is Environment.PRODUCTION
            else CapStatus.EXERCISE
        )
    )
    sender = None
    if options.cap_sender_id is not None or options.cap_sender_name is not None:
        sender = CapSender(
            sender_id=options.cap_sender_id or f"pipesentinel@{site.id}.invalid",
            name=options.cap_sender_name or f"{site.name} pipeline safety duty office",
        )
    return ResponseContext.for_site(
        site,
        Path(settings.site_dir),
        sender=sender,
        policy=ResponsePolicy(
            major_rate_kg_per_s=options.major_rate_kg_per_s,
            major_active_zones=options.major_active_zones,
        ),
        cap_status=status,
    )


@contextlib.contextmanager
def response_service(
    *, settings: Settings, site: Site, notifier: Notifier | None
) -> Iterator[ResponseService]:
    """Open the response and plan-decision stores and run a :class:`ResponseService`."""
    context = response_context(settings, site)
    with (
        ResponseStore(Path(settings.response.responses_path)) as store,
        SqlitePlanDecisionLog(Path(settings.response.plan_decisions_path)) as decisions,
        ResponseService(
            context=context, store=store, decisions=decisions, notifier=notifier
        ) as service,
    ):
        yield service


def attach_response(detection: DetectionService, service: ResponseService) -> None:
    """Give every new incident version of ``detection`` to ``service``, and the open ones now.

    The open incidents are offered at once so that, after a restart, an incident whose latest
    version was not answered yet is answered (one already answered is not answered again).
    """

    def on_output(output: EngineOutput) -> None:
        service.offer(list(output.incidents))

    detection.add_listener(on_output)
    service.offer(detection.open_incidents())
