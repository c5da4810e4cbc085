"""What the API serves from: the stores, the optional live services, and its own state."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pipesentinel.api.audit import AuditLog
from pipesentinel.api.auth import TokenRegistry
from pipesentinel.api.errors import ServiceUnavailableError
from pipesentinel.api.metrics import RequestMetrics
from pipesentinel.api.stream import StreamBroadcaster
from pipesentinel.api.views import AlarmReader
from pipesentinel.detection.alarms import AlarmSnapshot
from pipesentinel.ingest.detection_service import DetectionService
from pipesentinel.ingest.response_service import ResponseService, response_context
from pipesentinel.ingest.storage.base import FrameStore, TelemetryStore
from pipesentinel.ingest.storage.factory import open_frame_store, open_telemetry_store
from pipesentinel.ingest.storage.incidents import IncidentStore
from pipesentinel.ingest.storage.journal import SqliteAlarmJournal
from pipesentinel.ingest.storage.plan_decisions import SqlitePlanDecisionLog
from pipesentinel.ingest.storage.responses import ResponseStore
from pipesentinel.plans.cap import CapStatus
from pipesentinel.plans.response import ResponseContext
from pipesentinel.settings import Settings
from pipesentinel.simulation.gltf import scene_to_glb
from pipesentinel.simulation.scene import build_scene
from pipesentinel.site import Site

__all__ = ["ApiContext", "ApiState", "open_api_context"]


@dataclass
class ApiContext:
    """Everything the API reads and acts through; built by the caller (``serve``, tests).

    Without ``detection`` the API serves alarms rebuilt from the journal and incidents from
    their store, read-only: alarm and incident actions answer 503 with the reason. Without
    ``response`` plan decisions answer 503 likewise. ``ingest_stats`` (e.g. an ingest service's
    ``stats``) adds its counters to ``/metrics``. ``response_context`` is built from the
    settings on first use if not given (what-if, plans).
    """

    settings: Settings
    site: Site
    telemetry: TelemetryStore
    journal: SqliteAlarmJournal
    incidents: IncidentStore
    responses: ResponseStore
    plan_decisions: SqlitePlanDecisionLog
    tokens: TokenRegistry
    audit: AuditLog
    frames: FrameStore | None = None
    detection: DetectionService | None = None
    response: ResponseService | None = None
    ingest_stats: Callable[[], object] | None = None
    response_context: ResponseContext | None = None
    clock: Callable[[], float] = time.time


@dataclass
class ApiState:
    """The running app's state: the context plus what the app adds (stream, metrics)."""

    context: ApiContext
    broadcaster: StreamBroadcaster
    metrics: RequestMetrics = field(default_factory=RequestMetrics)
    audit_failures: int = 0
    _alarm_reader: AlarmReader | None = None
    _response_context: ResponseContext | None = None
    _scene_glb: bytes | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def tokens(self) -> TokenRegistry:
        """The token registry."""
        return self.context.tokens

    def alarm_snapshots(self) -> tuple[AlarmSnapshot, ...]:
        """Every alarm's state: live from detection, else rebuilt from the journal."""
        if self.context.detection is not None:
            return self.context.detection.alarm_snapshots()
        with self._lock:
            if self._alarm_reader is None:
                self._alarm_reader = AlarmReader(self.context.journal)
            reader = self._alarm_reader
        return reader.snapshots()

    def scene_glb(self) -> bytes:
        """The site's 3D model as GLB (``docs/scene.md``), built once on first use (~1 s)."""
        with self._lock:
            if self._scene_glb is None:
                self._scene_glb = scene_to_glb(build_scene(self.context.site))
            return self._scene_glb

    def detection(self) -> DetectionService:
        """The live detection service; :class:`ServiceUnavailableError` on a read-only API."""
        if self.context.detection is None:
            raise ServiceUnavailableError(
                "this API serves the stores read-only (no detection service is running here): "
                "alarm and incident actions are not available"
            )
        return self.context.detection

    def response(self) -> ResponseService:
        """The live response service; :class:`ServiceUnavailableError` on a read-only API."""
        if self.context.response is None:
            raise ServiceUnavailableError(
                "this API serves the stores read-only (no response service is running here): "
                "plan decisions are not available"
            )
        return self.context.response

    def response_context(self) -> ResponseContext:
        """The site's response context (graphs, plan library), built once."""
        given = self.context.response_context
        if given is not None:
            return given
        if self.context.response is not None:
            return self.context.response.context
        with self._lock:
            if self._response_context is None:
                self._response_context = response_context(
                    self.context.settings, self.context.site, cap_status=CapStatus.EXERCISE
                )
            return self._response_context


@contextlib.contextmanager
def open_api_context(
    settings: Settings,
    site: Site,
    *,
    detection: DetectionService | None = None,
    response: ResponseService | None = None,
    ingest_stats: Callable[[], object] | None = None,
) -> Iterator[ApiContext]:
    """Open the stores named by ``settings`` (closed on exit) and give the API's context."""
    telemetry = open_telemetry_store(settings.storage)
    try:
        with (
            SqliteAlarmJournal(Path(settings.alarms.journal_path)) as journal,
            IncidentStore(Path(settings.alarms.incidents_path)) as incidents,
            ResponseStore(Path(settings.response.responses_path)) as responses,
            SqlitePlanDecisionLog(Path(settings.response.plan_decisions_path)) as decisions,
            AuditLog(Path(settings.api.audit_path)) as audit,
        ):
            yield ApiContext(
                settings=settings,
                site=site,
                telemetry=telemetry,
                journal=journal,
                incidents=incidents,
                responses=responses,
                plan_decisions=decisions,
                tokens=TokenRegistry(Path(settings.api.tokens_path)),
                audit=audit,
                frames=open_frame_store(settings.storage),
                detection=detection,
                response=response,
                ingest_stats=ingest_stats,
            )
    finally:
        telemetry.close()
