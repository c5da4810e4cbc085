"""The HTTP API: ``create_app(context)`` gives the FastAPI app (``docs/api.md``).

Routes are thin: pydantic models (``models.py``) validate, dependencies (``deps.py``) check the
bearer token and role, and functions in ``views.py`` compute the answer. Errors raised as
:class:`~pipesentinel.api.errors.ApiError` become ``{"detail": message}`` with their status; a
store that cannot be read is a 503, never a 500. Every write request (POST under ``/api/v1``) is
written to the audit log with who made it and how it ended (:class:`_AuditAndMetrics`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Annotated, Any, Final

import anyio
from fastapi import FastAPI, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse, Response

from pipesentinel.api import views
from pipesentinel.api.audit import SUMMARY_MAX_CHARS, summarize
from pipesentinel.api.auth import Principal
from pipesentinel.api.context import ApiContext, ApiState
from pipesentinel.api.deps import Admin, Officer, State, Viewer
from pipesentinel.api.errors import (
    ApiError,
    BadRequestError,
    ConflictError,
    NotFoundError,
)
from pipesentinel.api.metrics import CONTENT_TYPE, MetricFamily, render, stats_families
from pipesentinel.api.models import (
    AcknowledgeRequest,
    CloseIncidentRequest,
    CommentRequest,
    ConfirmPlanRequest,
    ConfirmZoneRequest,
    OverridePlanRequest,
    ReleasePlanRequest,
    ResetRequest,
    ShelveRequest,
    WhatIfRequest,
)
from pipesentinel.api.stream import StreamBroadcaster, StreamClient
from pipesentinel.detection.alarms import (
    AlarmError,
    AlarmState,
    IllegalActionError,
    Priority,
    UnknownAlarmError,
)
from pipesentinel.detection.incidents import IncidentError, IncidentStatus
from pipesentinel.detection.stability import StabilityClass
from pipesentinel.ingest.records import CameraChannel
from pipesentinel.ingest.storage.base import MAX_TIME_S, MIN_TIME_S, StorageError

__all__ = ["API_PREFIX", "GLB_MEDIA_TYPE", "create_app"]

GLB_MEDIA_TYPE: Final = "model/gltf-binary"  # registered with IANA (glTF 2.0 spec, media types)

API_PREFIX: Final = "/api/v1"
WRITE_METHODS: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})
KEPT_BODY_BYTES: Final = 4 * SUMMARY_MAX_CHARS  # of a request or error answer, for the audit
WS_POLICY_VIOLATION: Final = 1008  # RFC 6455 sec. 7.4.1
WS_TRY_AGAIN_LATER: Final = 1013  # IANA WebSocket close code registry
_LOG = logging.getLogger(__name__)

Time = Annotated[float, Query(ge=MIN_TIME_S, le=MAX_TIME_S, allow_inf_nan=False)]
Limit = Annotated[int, Query(ge=1, description="items per page (at most api.max_page_items)")]
Offset = Annotated[int, Query(ge=0, le=2**31)]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Asgi = Callable[[Scope, Receive, Send], Awaitable[None]]


class _AuditAndMetrics:
    """ASGI middleware: request counts and latency by route; every write audited.

    A write request's audit entry is stored after the route ran and before the last part of
    its answer is sent: a client that got an answer can rely on the write being on record.
    """

    def __init__(self, app: Asgi, state: ApiState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        method = str(scope["method"])
        audited = method in WRITE_METHODS and str(scope["path"]).startswith(API_PREFIX)
        body = bytearray()  # the first KEPT_BODY_BYTES of the request body
        body_bytes = 0
        answer = bytearray()
        status = 500

        async def receive_and_keep() -> Message:
            nonlocal body_bytes
            message = await receive()
            if audited and message["type"] == "http.request":
                chunk = message.get("body", b"")
                body_bytes += len(chunk)
                body.extend(chunk[: max(KEPT_BODY_BYTES - len(body), 0)])
            return message

        audit_written = False

        async def write_audit() -> None:
            nonlocal audit_written
            audit_written = True
            await self._audit(
                principal=scope.get("state", {}).get("principal"),
                method=method,
                route=_template(scope),
                body=bytes(body),
                body_bytes=body_bytes,
                status=status,
                answer=bytes(answer),
            )

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            elif audited and message["type"] == "http.response.body":
                if status >= 400:
                    chunk = message.get("body", b"")
                    answer.extend(chunk[: max(KEPT_BODY_BYTES - len(answer), 0)])
                if not message.get("more_body", False):
                    # The answer's last part goes out only once the write is on record.
                    await write_audit()
            await send(message)

        try:
            await self.app(scope, receive_and_keep, send_and_note)
        finally:
            self.state.metrics.observe(
                method=method,
                route=_template(scope),
                status=status,
                duration_s=time.perf_counter() - started,
            )
            if audited and not audit_written:  # no answer was sent (an exception)
                await write_audit()

    async def _audit(
        self,
        *,
        principal: Principal | None,
        method: str,
        route: str,
        body: bytes,
        body_bytes: int,
        status: int,
        answer: bytes,
    ) -> None:
        result = "ok" if status < 400 else summarize(answer)
        log = self.state.context.audit
        try:
            await anyio.to_thread.run_sync(
                lambda: log.append(
                    time_s=self.state.context.clock(),
                    actor="-" if principal is None else principal.name,
                    role="-" if principal is None else principal.role.value,
                    method=method,
                    route=route,
                    body_summary=summarize(body, total_bytes=body_bytes),
                    status_code=status,
                    result=result,
                )
            )
        except StorageError:
            self.state.audit_failures += 1
            _LOG.exception("audit log: %s %s by %s not recorded", method, route, principal)


def _template(scope: Scope) -> str:
    """The matched route's path template (``/api/v1/alarms/{alarm_id}``), or ``unmatched``."""
    return str(getattr(scope.get("route"), "path", None) or "unmatched")


def _limit(state: ApiState, limit: int) -> int:
    maximum = state.context.settings.api.max_page_items
    if limit > maximum:
        raise BadRequestError(f"limit {limit} is above the maximum of {maximum} items per page")
    return limit


def _alarm_action(state: ApiState, alarm_id: str, action: Callable[[], None]) -> dict[str, Any]:
    """Run an alarm action; map the alarm manager's refusals to 404/409/422."""
    views.require_alarm(state.alarm_snapshots(), alarm_id)
    try:
        action()
    except UnknownAlarmError as error:
        raise NotFoundError(str(error)) from error
    except IllegalActionError as error:
        raise ConflictError(str(error)) from error
    except AlarmError as error:
        raise BadRequestError(str(error)) from error
    return views.alarm_detail(
        state.alarm_snapshots(), alarm_id=alarm_id, journal=state.context.journal
    )


def _metric_families(state: ApiState) -> list[MetricFamily]:
    context = state.context
    families = state.metrics.families()
    families.append(
        MetricFamily(
            "pipesentinel_api_audit_failures_total",
            "counter",
            "write requests whose audit entry could not be stored",
            (("", (), float(state.audit_failures)),),
        )
    )
    stream = state.broadcaster.stats()
    families.append(
        MetricFamily(
            "pipesentinel_stream_clients",
            "gauge",
            "connected stream clients",
            (("", (), stream.clients),),
        )
    )
    families.append(
        MetricFamily(
            "pipesentinel_stream_messages_published_total",
            "counter",
            "messages offered to stream clients",
            (("", (), stream.messages_published),),
        )
    )
    families.append(
        MetricFamily(
            "pipesentinel_stream_dropped_clients_total",
            "counter",
            "stream clients dropped, by reason",
            tuple(
                ("", (("reason", reason),), float(n))
                for reason, n in sorted(stream.dropped_clients.items())
            ),
        )
    )
    if context.detection is not None:
        families += stats_families(
            "pipesentinel_detection",
            context.detection.stats(),
            gauges=("queued_batches",),
            what="detection service",
        )
    if context.response is not None:
        families += stats_families(
            "pipesentinel_response", context.response.stats, what="response service"
        )
    if context.ingest_stats is not None:
        families += stats_families(
            "pipesentinel_ingest",
            context.ingest_stats(),
            gauges=("queue_depth", "queue_capacity", "unacknowledged"),
            what="ingest service",
        )
    return families


def create_app(context: ApiContext) -> FastAPI:  # noqa: PLR0915 - the route table
    """The FastAPI app serving ``context``; see ``docs/api.md`` for the routes and roles.

    A live :class:`DetectionService` in the context feeds the stream (alarm events, incident
    versions); readings reach it through ``app.state.api.broadcaster.on_records`` given to the
    ingest service as a subscriber (the caller wires that, as it owns the ingest service).
    """
    state = ApiState(
        context=context,
        broadcaster=StreamBroadcaster(queue_messages=context.settings.api.stream_queue_messages),
    )
    if context.detection is not None:
        context.detection.add_listener(state.broadcaster.on_engine_output)
    app = FastAPI(
        title="PipeSentinel API",
        version="1",
        description="Pipeline leak monitoring and emergency response (docs/api.md).",
    )
    app.state.api = state
    app.add_middleware(_AuditAndMetrics, state=state)

    @app.exception_handler(ApiError)
    async def api_error(_request: Request, error: ApiError) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=error.status_code)

    @app.exception_handler(StorageError)
    async def storage_error(_request: Request, error: StorageError) -> JSONResponse:
        _LOG.error("storage error: %s", error)
        return JSONResponse({"detail": f"storage unavailable: {error}"}, status_code=503)

    # --- health, metrics ------------------------------------------------------------------------

    @app.get("/healthz", tags=["health"])
    def healthz(state: State) -> dict[str, Any]:
        """Liveness (no token needed): the process answers; which services run here."""
        detection = state.context.detection
        return {
            "status": "ok",
            "site_id": state.context.site.id,
            "detection": None if detection is None else {"errors": detection.stats().errors},
            "response": state.context.response is not None,
        }

    @app.get("/metrics", tags=["health"], response_class=Response)
    def metrics(state: State, _who: Viewer) -> Response:
        """Prometheus text exposition: requests by route, stream, ingest/detection/response."""
        return Response(render(_metric_families(state)), media_type=CONTENT_TYPE)

    @app.get(f"{API_PREFIX}/me", tags=["auth"])
    def me(who: Viewer) -> dict[str, str]:
        """Who the token belongs to and its role."""
        return {"name": who.name, "role": who.role.value}

    # --- site, devices, readings ----------------------------------------------------------------

    @app.get(f"{API_PREFIX}/sites", tags=["site"])
    def sites(state: State, _who: Viewer) -> list[dict[str, Any]]:
        """The site this API serves (one per deployment)."""
        return [views.site_summary(state.context.site)]

    @app.get(f"{API_PREFIX}/sites/{{site_id}}", tags=["site"])
    def site(site_id: str, state: State, _who: Viewer) -> dict[str, Any]:
        """One site."""
        if site_id != state.context.site.id:
            raise NotFoundError(f"no site {site_id!r}; this API serves {state.context.site.id!r}")
        return views.site_summary(state.context.site)

    @app.get(f"{API_PREFIX}/devices", tags=["site"])
    def devices(state: State, _who: Viewer) -> list[dict[str, Any]]:
        """Every device with its health (store state, active fault alarms)."""
        context = state.context
        return views.device_list(
            site=context.site,
            states=context.telemetry.latest_status(site_id=context.site.id),
            alarms=state.alarm_snapshots(),
        )

    @app.get(f"{API_PREFIX}/devices/{{device_id}}", tags=["site"])
    def device(device_id: str, state: State, _who: Viewer) -> dict[str, Any]:
        """One device with its health."""
        context = state.context
        return views.device_view(
            site=context.site,
            device_id=device_id,
            states=context.telemetry.latest_status(site_id=context.site.id),
            alarms=state.alarm_snapshots(),
        )

    @app.get(
        f"{API_PREFIX}/devices/{{device_id}}/frames/{{channel}}/latest",
        tags=["site"],
        response_class=Response,
        responses={200: {"content": {"image/jpeg": {}, "image/png": {}}}},
    )
    def latest_frame(
        device_id: str, channel: CameraChannel, state: State, _who: Viewer
    ) -> Response:
        """The newest kept frame of a camera channel (visible JPEG, thermal 16-bit PNG)."""
        context = state.context
        views.device_view(site=context.site, device_id=device_id, states={}, alarms=())
        frame = (
            None
            if context.frames is None
            else context.frames.latest(
                site_id=context.site.id, device_id=device_id, channel=channel
            )
        )
        if frame is None:
            raise NotFoundError(f"no {channel.value} frame of {device_id!r} is kept")
        media = "image/jpeg" if channel is CameraChannel.VISIBLE else "image/png"
        return Response(
            frame.image,
            media_type=media,
            headers={"X-Frame-Time-S": repr(frame.time_s), "X-Frame-Seq": str(frame.seq)},
        )

    @app.get(f"{API_PREFIX}/readings/latest", tags=["readings"])
    def readings_latest(
        state: State,
        _who: Viewer,
        device_id: Annotated[list[str] | None, Query()] = None,
    ) -> list[dict[str, Any]]:
        """The newest values of each device (or of the given ``device_id``s), SI and display."""
        context = state.context
        return views.latest_readings(
            store=context.telemetry,
            site=context.site,
            states=context.telemetry.latest_status(site_id=context.site.id),
            lookback_s=context.settings.api.latest_lookback_s,
            device_ids=device_id,
        )

    @app.get(f"{API_PREFIX}/readings/history", tags=["readings"])
    def readings_history(
        *,
        state: State,
        _who: Viewer,
        device_id: str,
        field: str,
        start_s: Time,
        end_s: Time,
        max_points: Annotated[int, Query(ge=1)] = 500,
    ) -> dict[str, Any]:
        """One field of one device over ``[start_s, end_s)`` in ``max_points`` buckets.

        Each bucket: mean, min, max and count.
        """
        settings = state.context.settings.api
        if max_points > settings.max_history_points:
            raise BadRequestError(
                f"max_points {max_points} is above the maximum of {settings.max_history_points}"
            )
        return views.history(
            store=state.context.telemetry,
            site=state.context.site,
            device_id=device_id,
            field=field,
            start_s=start_s,
            end_s=end_s,
            max_points=max_points,
            max_range_s=settings.max_history_range_s,
        )

    # --- alarms ---------------------------------------------------------------------------------

    @app.get(f"{API_PREFIX}/alarms", tags=["alarms"])
    def alarms(
        *,
        state: State,
        _who: Viewer,
        priority: Annotated[list[Priority] | None, Query()] = None,
        alarm_state: Annotated[list[AlarmState] | None, Query(alias="state")] = None,
        active: bool | None = None,
        limit: Limit = 100,
        offset: Offset = 0,
    ) -> dict[str, Any]:
        """Alarms by priority and state (highest priority, unacknowledged, newest first)."""
        listed = views.alarm_list(
            state.alarm_snapshots(),
            priorities=priority or (),
            states=alarm_state or (),
            active=active,
        )
        return views.paginate(listed, limit=_limit(state, limit), offset=offset)

    @app.get(f"{API_PREFIX}/alarms/{{alarm_id}}", tags=["alarms"])
    def alarm(alarm_id: str, state: State, _who: Viewer) -> dict[str, Any]:
        """One alarm with its latest journal entries."""
        return views.alarm_detail(
            state.alarm_snapshots(), alarm_id=alarm_id, journal=state.context.journal
        )

    @app.post(f"{API_PREFIX}/alarms/{{alarm_id}}/acknowledge", tags=["alarms"])
    def acknowledge(
        alarm_id: str, body: AcknowledgeRequest, state: State, who: Officer
    ) -> dict[str, Any]:
        """Acknowledge an alarm (duty officer)."""
        service = state.detection()
        return _alarm_action(
            state,
            alarm_id,
            lambda: service.acknowledge(alarm_id, user=who.name, comment=body.comment),
        )

    @app.post(f"{API_PREFIX}/alarms/{{alarm_id}}/shelve", tags=["alarms"])
    def shelve(alarm_id: str, body: ShelveRequest, state: State, who: Officer) -> dict[str, Any]:
        """Shelve an alarm with a reason, one-shot or for ``duration_s`` (duty officer)."""
        service = state.detection()
        longest_s = state.context.settings.alarms.max_shelve_s
        if body.duration_s is not None and body.duration_s > longest_s:
            raise BadRequestError(
                f"duration_s {body.duration_s:g} s is longer than the longest shelve, "
                f"{longest_s:g} s (alarms.max_shelve_s)"
            )
        return _alarm_action(
            state,
            alarm_id,
            lambda: service.shelve(
                alarm_id,
                user=who.name,
                reason=body.reason,
                mode=body.mode,
                duration_s=body.duration_s,
            ),
        )

    @app.post(f"{API_PREFIX}/alarms/{{alarm_id}}/reset", tags=["alarms"])
    def reset(alarm_id: str, body: ResetRequest, state: State, who: Officer) -> dict[str, Any]:
        """Reset a latched alarm whose condition has cleared (duty officer)."""
        service = state.detection()
        return _alarm_action(
            state, alarm_id, lambda: service.reset(alarm_id, user=who.name, comment=body.comment)
        )

    @app.post(f"{API_PREFIX}/alarms/{{alarm_id}}/comment", tags=["alarms"])
    def comment(alarm_id: str, body: CommentRequest, state: State, who: Officer) -> dict[str, Any]:
        """Journal a comment on an alarm (duty officer)."""
        service = state.detection()
        return _alarm_action(
            state, alarm_id, lambda: service.comment(alarm_id, user=who.name, text=body.text)
        )

    @app.post(f"{API_PREFIX}/zones/{{zone}}/confirm", tags=["alarms"])
    def confirm_zone(
        zone: str, body: ConfirmZoneRequest, state: State, who: Officer
    ) -> dict[str, Any]:
        """Confirm a suspected zone by hand: opens (or joins) an incident (duty officer)."""
        service = state.detection()
        if zone not in state.context.site.zones:
            raise NotFoundError(f"no voting zone {zone!r} in site {state.context.site.id!r}")
        try:
            incident = service.confirm_zone(zone, user=who.name, reason=body.reason)
        except IncidentError as error:
            raise ConflictError(str(error)) from error
        return incident.to_json()

    # --- incidents ------------------------------------------------------------------------------

    @app.get(f"{API_PREFIX}/incidents", tags=["incidents"])
    def incidents(
        state: State,
        _who: Viewer,
        status: IncidentStatus | None = None,
        limit: Limit = 100,
        offset: Offset = 0,
    ) -> dict[str, Any]:
        """Incidents (latest version of each), newest update first."""
        listed = views.incident_list(state.context.incidents.latest(), status=status)
        return views.paginate(listed, limit=_limit(state, limit), offset=offset)

    @app.get(f"{API_PREFIX}/incidents/{{incident_id}}", tags=["incidents"])
    def incident(incident_id: str, state: State, _who: Viewer) -> dict[str, Any]:
        """An incident with localisation and response: plan, checklist, valves, zones."""
        context = state.context
        found = views.find_incident(context.incidents.latest(), incident_id)
        return views.incident_view(
            found,
            response=context.responses.latest(incident_id),
            decisions=context.plan_decisions,
        )

    @app.get(f"{API_PREFIX}/incidents/{{incident_id}}/versions", tags=["incidents"])
    def incident_versions(incident_id: str, state: State, _who: Viewer) -> list[dict[str, Any]]:
        """Every stored version of an incident, oldest first."""
        history = state.context.incidents.history(incident_id)
        if not history:
            raise NotFoundError(f"no incident {incident_id!r}")
        return [version.to_json() for version in history]

    @app.get(
        f"{API_PREFIX}/incidents/{{incident_id}}/zones",
        tags=["incidents"],
        responses={200: {"content": {"application/geo+json": {}}}},
    )
    def incident_zones(incident_id: str, state: State, _who: Viewer) -> JSONResponse:
        """The zones, valves and people of the latest response as GeoJSON."""
        views.find_incident(state.context.incidents.latest(), incident_id)
        response = state.context.responses.latest(incident_id)
        if response is None:
            raise NotFoundError(f"incident {incident_id!r} has no response yet (no localisation)")
        return JSONResponse(response.geojson, media_type="application/geo+json")

    @app.post(f"{API_PREFIX}/incidents/{{incident_id}}/close", tags=["incidents"])
    def close_incident(
        incident_id: str, body: CloseIncidentRequest, state: State, who: Officer
    ) -> dict[str, Any]:
        """Close an incident whose zones are back to normal (duty officer)."""
        service = state.detection()
        views.find_incident(state.context.incidents.latest(), incident_id)
        try:
            closed = service.close_incident(incident_id, user=who.name, reason=body.reason)
        except IncidentError as error:
            raise ConflictError(str(error)) from error
        return closed.to_json()

    # --- 3D model ------------------------------------------------------------------------------

    @app.get(
        f"{API_PREFIX}/scene.glb",
        tags=["scene"],
        response_class=Response,
        responses={200: {"content": {GLB_MEDIA_TYPE: {}}}},
    )
    def scene(state: State, _who: Viewer) -> Response:
        """The site's 3D model, glTF binary: one named node per asset with its data."""
        return Response(content=state.scene_glb(), media_type=GLB_MEDIA_TYPE)

    # --- plans ----------------------------------------------------------------------------------

    @app.get(f"{API_PREFIX}/plans", tags=["plans"])
    def plans(state: State, _who: Viewer) -> list[dict[str, Any]]:
        """The site's plan library."""
        return views.plan_list(state.response_context().library)

    @app.get(f"{API_PREFIX}/plans/{{plan_id}}", tags=["plans"])
    def plan(plan_id: str, state: State, _who: Viewer) -> dict[str, Any]:
        """One plan of the library."""
        return views.plan_view(state.response_context().library, plan_id)

    @app.get(f"{API_PREFIX}/incidents/{{incident_id}}/plan-decisions", tags=["plans"])
    def plan_decisions(incident_id: str, state: State, _who: Viewer) -> dict[str, Any]:
        """The plan decisions on an incident and the plan in effect."""
        decisions = state.context.plan_decisions
        current = decisions.current(incident_id)
        listed = decisions.decisions(incident_id)
        if not listed:
            views.find_incident(state.context.incidents.latest(), incident_id)
        return {
            "decisions": [decision.to_json_dict() for decision in listed],
            "in_effect": None if current is None else current.to_json_dict(),
        }

    def _decide(
        state: ApiState,
        who: Principal,
        incident_id: str,
        action: str,
        *,
        reason: str | None,
        plan_id: str | None = None,
    ) -> dict[str, Any]:
        service = state.response()
        views.find_incident(state.context.incidents.latest(), incident_id)
        outcome = views.plan_decision(
            action=action,
            decisions=service.decisions,
            library=service.context.library,
            incident_id=incident_id,
            actor=who.name,
            reason=reason,
            plan_id=plan_id,
            now_s=state.context.clock(),
        )
        event = outcome.change_event(include_unchanged=True)
        if event is not None and service.notifier is not None:
            service.notifier.notify_plan(event)
        current = service.decisions.current(incident_id)
        return {
            "decision": outcome.decision.to_json_dict(),
            "in_effect": None if current is None else current.to_json_dict(),
        }

    @app.post(f"{API_PREFIX}/incidents/{{incident_id}}/plan-decisions/confirm", tags=["plans"])
    def confirm_plan(
        incident_id: str, body: ConfirmPlanRequest, state: State, who: Officer
    ) -> dict[str, Any]:
        """Confirm the plan in effect (duty officer)."""
        return _decide(state, who, incident_id, "confirm", reason=body.reason)

    @app.post(f"{API_PREFIX}/incidents/{{incident_id}}/plan-decisions/override", tags=["plans"])
    def override_plan(
        incident_id: str, body: OverridePlanRequest, state: State, who: Officer
    ) -> dict[str, Any]:
        """Put another plan in effect until released (duty officer; a reason is required)."""
        return _decide(
            state, who, incident_id, "override", reason=body.reason, plan_id=body.plan_id
        )

    @app.post(f"{API_PREFIX}/incidents/{{incident_id}}/plan-decisions/release", tags=["plans"])
    def release_plan(
        incident_id: str, body: ReleasePlanRequest, state: State, who: Officer
    ) -> dict[str, Any]:
        """End the override; the automatic selection applies again (duty officer)."""
        return _decide(state, who, incident_id, "release", reason=body.reason)

    @app.post(f"{API_PREFIX}/what-if", tags=["plans"])
    def what_if(body: WhatIfRequest, state: State, _who: Viewer) -> dict[str, Any]:
        """A hypothetical leak: zones, plan, valves, people. Nothing is stored or changed."""
        context = state.context
        return views.what_if(
            state.response_context(),
            gas=body.gas,
            rate_kg_per_s=body.rate_kg_per_s,
            wind_speed_m_per_s=body.wind_speed_m_per_s,
            wind_from_deg=body.wind_from_deg,
            stability_class=StabilityClass[body.stability_class],
            severity=body.severity,
            time_s=context.clock() if body.time_s is None else body.time_s,
            pipeline_id=body.pipeline_id,
            chainage_m=body.chainage_m,
            position_m=body.position_m,
            sigma_theta_deg=body.sigma_theta_deg,
            rate_factor=body.rate_factor,
            lel_basis=context.settings.lel_basis,
            underground_zone_ids=body.underground_zone_ids,
        )

    # --- audit ----------------------------------------------------------------------------------

    @app.get(f"{API_PREFIX}/audit", tags=["auth"])
    def audit(
        state: State,
        _who: Admin,
        limit: Limit = 100,
        before_sequence: Annotated[int | None, Query(ge=1, le=2**62)] = None,
    ) -> list[dict[str, Any]]:
        """The newest audit entries, newest first (admin)."""
        entries = state.context.audit.entries(
            limit=_limit(state, limit), before_sequence=before_sequence
        )
        return [entry.to_json_dict() for entry in entries]

    # --- live stream ----------------------------------------------------------------------------

    @app.websocket(f"{API_PREFIX}/stream")
    async def stream(websocket: WebSocket, token: str | None = None) -> None:
        """Readings, alarm events and incident versions as JSON messages (``?token=``)."""
        state: ApiState = websocket.app.state.api
        principal = None if not token else state.tokens.authenticate(token)
        if principal is None:
            await websocket.close(code=WS_POLICY_VIOLATION, reason="missing or invalid token")
            return
        await websocket.accept()
        client = state.broadcaster.connect(asyncio.get_running_loop())
        try:
            await websocket.send_json(
                {
                    "type": "hello",
                    "user": principal.name,
                    "role": principal.role.value,
                    "queue_messages": client.capacity,
                }
            )
            await _pump(websocket, client)
        finally:
            state.broadcaster.disconnect(client)

    return app


async def _wait_closed(websocket: WebSocket) -> None:
    """Return when the client closes (its messages are ignored)."""
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
    except WebSocketDisconnect:
        return


async def _send_batches(websocket: WebSocket, client: StreamClient) -> None:
    """Send what the client's queue holds; close with the reason once the client is dropped."""
    while True:
        batch = await client.next_batch()
        if not batch:
            await websocket.close(
                code=WS_TRY_AGAIN_LATER, reason=f"dropped: {client.dropped_reason}"
            )
            return
        for message in batch:
            await websocket.send_json(message)


async def _pump(websocket: WebSocket, client: StreamClient) -> None:
    closed = asyncio.create_task(_wait_closed(websocket))
    sending = asyncio.create_task(_send_batches(websocket, client))
    done, pending = await asyncio.wait({closed, sending}, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    for task in done:
        error = task.exception()
        if error is not None and not isinstance(error, WebSocketDisconnect | RuntimeError):
            raise error
