"""``pipesentinel simulate``: a scenario end to end on a simulated clock, or a what-if leak.

A **scenario run** plays the device simulators
(:class:`~pipesentinel.hardware.world.SiteSimulation`) and feeds every MQTT message they would
publish (the same topics and payload bytes, stamped with the simulated time) through the live
pipeline's stages (:class:`~pipesentinel.ingest.replay.PipelineRun`: contract decoding, sequence
tracking, storage, dead letters, the detection engine ticking every
``settings.detection.tick_period_s`` of simulated time). Every incident version that carries a
localisation is answered as the live service answers it
(:class:`~pipesentinel.ingest.response_service.ResponseService`, on the caller's thread): valves,
zones, people, the selected plan (journaled in a plan-decision log) and a CAP alert (``Update``
of the previous one). The messages go through an MQTT broker (an embedded one by default, or a
given one; ``broker=None`` hands them over directly): each simulation step's messages are
published with QoS 1 and handed on once all have come back, in publish order, so the run stays
deterministic whatever the broker's interleaving of topics.

A **what-if** takes a hypothetical leak (position, gas, rate, wind) and runs the response only.

Outputs in ``out_dir``: ``report.json`` (readable without the code: a summary, the timeline, the
incident, localisation, plan and rationale, valves, zones, buildings, routes; for a scenario, the
truth it was played with and how far the estimate was from it), ``zones.geojson`` (WGS84),
``alert.cap.xml`` (CAP 1.2, status ``Exercise``: a simulation is never a real alert), ``map.png``
and, for a scenario, the stores of the run (``alarm_journal.sqlite3``, ``incidents.sqlite3``,
``telemetry.sqlite3``, ``dead_letter.sqlite3``, ``plan_decisions.sqlite3``,
``responses.sqlite3``).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import threading
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from shapely import LineString, MultiLineString

from pipesentinel.alarm_config import AlarmConfig
from pipesentinel.detection.incidents import Incident
from pipesentinel.hardware.offline import Message, scenario_messages
from pipesentinel.hardware.scenario import Scenario
from pipesentinel.hardware.world import SiteSimulation
from pipesentinel.ingest.embedded_broker import EmbeddedBroker
from pipesentinel.ingest.replay import OUTPUT_FILES, PipelineRun, next_boundary, pipeline_report
from pipesentinel.ingest.response_service import ResponseService
from pipesentinel.ingest.storage.plan_decisions import SqlitePlanDecisionLog
from pipesentinel.ingest.storage.responses import ResponseStore
from pipesentinel.ingest.topics import TOPIC_ROOT
from pipesentinel.plans.response import EmergencyResponse, ResponseContext
from pipesentinel.plans.zones import ZoneLevel
from pipesentinel.settings import Settings
from pipesentinel.simulation.map2d import MapLayers, MapRoute, render_incident_map
from pipesentinel.site import Site

__all__ = [
    "ALERT_NAME",
    "GEOJSON_NAME",
    "MAP_NAME",
    "PLAN_DECISIONS_NAME",
    "REPORT_NAME",
    "SimulationError",
    "incident_map_layers",
    "simulate_scenario",
    "simulate_what_if",
    "summary_lines",
]

REPORT_NAME: Final = "report.json"
EMBEDDED_BROKER: Final = "embedded"
HOP_TIMEOUT_S: Final = 60.0  # a step's messages must be back from the broker within this [s]
GEOJSON_NAME: Final = "zones.geojson"
ALERT_NAME: Final = "alert.cap.xml"
MAP_NAME: Final = "map.png"
PLAN_DECISIONS_NAME: Final = "plan_decisions.sqlite3"
RESPONSES_NAME: Final = "responses.sqlite3"


class SimulationError(RuntimeError):
    """The simulation cannot run (output folder not writable, no scenario)."""


@dataclass
class _Responses:
    """The responses of a run, with what the timeline says about them."""

    latest: dict[str, EmergencyResponse] = field(default_factory=dict)
    timeline: list[dict[str, Any]] = field(default_factory=list)
    count: int = 0


def _local(time_s: float, context: ResponseContext) -> str:
    moment = dt.datetime.fromtimestamp(time_s, tz=dt.UTC).astimezone(context.time_zone)
    return moment.isoformat(timespec="seconds")


def _leak_text(response: EmergencyResponse) -> str:
    leak = response.estimate
    where = (
        f"on {leak.pipeline_id} near chainage {leak.chainage_m:.0f} m"
        if leak.pipeline_id is not None and leak.chainage_m is not None
        else f"at ({leak.position_m[0]:.0f}, {leak.position_m[1]:.0f}) m"
    )
    segments = sorted(leak.segment_probabilities.items(), key=lambda item: (-item[1], item[0]))
    segment = f", segment {segments[0][0]} ({segments[0][1]:.0%})" if segments else ""
    return (
        f"{leak.gas.value} leak {where}{segment}; rate {leak.rate_median_kg_per_s:.2g} kg/s "
        f"(90 % interval {leak.rate_low_kg_per_s:.2g}-{leak.rate_high_kg_per_s:.2g})"
    )


def _respond(
    service: ResponseService,
    responses: _Responses,
    incidents: Sequence[Incident],
    start_s: float,
) -> None:
    context = service.context
    for incident in incidents:
        previous = responses.latest.get(incident.id)
        plan_changes = service.stats.plan_changes
        response = service.answer(incident)
        if response is None:
            continue
        responses.count += 1
        responses.latest[incident.id] = response
        selection = response.selection
        if service.stats.plan_changes > plan_changes:
            responses.timeline.append(
                _entry(
                    incident.updated_time_s,
                    start_s,
                    context,
                    "plan",
                    f"plan {selection.plan_id} v{selection.plan_version} selected for "
                    f"{incident.id}: {selection.explanation}",
                )
            )
        if previous is None or previous.severity != response.severity:
            responses.timeline.append(
                _entry(
                    incident.updated_time_s,
                    start_s,
                    context,
                    "incident",
                    f"{incident.id} severity {response.severity.value}: {_leak_text(response)}",
                )
            )


def _entry(
    time_s: float, start_s: float, context: ResponseContext, source: str, text: str
) -> dict[str, Any]:
    return {
        "time_s": time_s,
        "offset_s": round(time_s - start_s, 3),
        "local_time": _local(time_s, context),
        "source": source,
        "text": text,
    }


def _truth(scenario: Scenario, site: Site) -> list[dict[str, Any]]:
    del site
    return [
        {
            "id": leak.id,
            "pipeline_id": leak.pipeline_id,
            "chainage_m": leak.chainage_m,
            "position_m": [round(float(v), 2) for v in leak.position_m],
            "emission_rate_kg_per_s": leak.emission_rate_kg_per_s,
            "mass_fractions": {
                gas.value: fraction for gas, fraction in leak.mass_fraction_by_gas.items()
            },
            "start_s": leak.start_s,
            "end_s": leak.end_s if math.isfinite(leak.end_s) else None,
        }
        for leak in scenario.leaks
    ]


def _accuracy(response: EmergencyResponse, truth: dict[str, Any], site: Site) -> dict[str, Any]:
    """How far the estimate was from the leak the scenario played (for people checking it)."""
    pipeline_id = truth.get("pipeline_id")
    chainage = truth.get("chainage_m")
    point = np.asarray(truth["position_m"][:2], dtype=np.float64)
    error = float(np.hypot(*(np.asarray(response.estimate.position_m) - point)))
    result: dict[str, Any] = {"leak_id": truth["id"], "position_error_m": round(error, 1)}
    if pipeline_id is not None and chainage is not None:
        segment = site.pipeline(pipeline_id).segment_at_chainage(float(chainage)).id
        result |= {
            "true_segment": segment,
            "segment_probability": response.estimate.segment_probabilities.get(segment, 0.0),
        }
    fraction = float(truth["mass_fractions"].get(response.estimate.gas.value, 0.0))
    true_rate = float(truth["emission_rate_kg_per_s"]) * fraction
    if true_rate > 0.0:
        result |= {
            "true_rate_kg_per_s": true_rate,
            "rate_ratio": round(response.estimate.rate_median_kg_per_s / true_rate, 3),
            "true_rate_in_interval": response.estimate.rate_low_kg_per_s
            <= true_rate
            <= response.estimate.rate_high_kg_per_s,
        }
    return result


def _response_summary(response: EmergencyResponse) -> list[str]:
    lines = [f"{response.incident_id} ({response.severity.value}): {_leak_text(response)}"]
    selection = response.selection
    lines.append(f"plan: {selection.explanation}")
    closures = response.isolation.closures
    if closures:
        valves = ", ".join(
            f"{c.valve_id} ({'remote' if c.remotely_operated else 'manual, crew needed'})"
            for c in closures
        )
        lines.append(f"close valves in this order: {valves}")
    lines.extend(
        f"{zone.level.value} zone: up to {zone.max_downwind_extent_m:.0f} m from the leak, "
        f"{zone.area_m2 / 1e4:.2f} ha"
        + (f" (flags: {', '.join(sorted(f.value for f in zone.flags))})" if zone.flags else "")
        for zone in response.zones.zones
    )
    people = response.exposure
    sensitive = [b.name for b in people.buildings if b.sensitive]
    lines.append(
        f"evacuate {people.persons_to_evacuate} people in {len(people.buildings)} buildings"
        + (f"; sensitive first: {', '.join(sensitive)}" if sensitive else "")
    )
    usable = [a.name for a in people.assembly_points if a.usable]
    if usable:
        lines.append(f"assembly points (best first): {', '.join(usable)}")
    if people.unrouted:
        lines.append(
            f"{len(people.unrouted)} buildings without a safe walking route: shelter in place or "
            "escort"
        )
    return lines


def _write_outputs(
    out: Path, report: dict[str, Any], response: EmergencyResponse | None, context: ResponseContext
) -> None:
    if response is not None:
        (out / GEOJSON_NAME).write_text(
            json.dumps(response.geojson, indent=1, allow_nan=False) + "\n", encoding="utf-8"
        )
        (out / ALERT_NAME).write_text(response.cap_xml, encoding="utf-8")
        _write_map(out / MAP_NAME, response, context)
    (out / REPORT_NAME).write_text(
        json.dumps(report, indent=2, sort_keys=True, allow_nan=False, default=_jsonable) + "\n",
        encoding="utf-8",
    )


def incident_map_layers(response: EmergencyResponse, site: Site, time_zone: str) -> MapLayers:
    """What the responder's map draws for one response."""
    estimate = response.estimate
    credible = [
        LineString(
            site.pipeline(i.pipeline_id).polyline_between(i.start_chainage_m, i.end_chainage_m)
        )
        for i in estimate.credible_intervals
        if i.end_chainage_m > i.start_chainage_m
    ]
    exposure = response.exposure
    return MapLayers(
        time_label=f"{response.local_time:%Y-%m-%d %H:%M} ({time_zone})",
        leak_position_m=np.asarray(estimate.position_m),
        leak_credible_m=MultiLineString(credible) if credible else None,
        zones_m={zone.level.value: zone.polygon_m for zone in response.zones.zones},
        median_zones_m={
            zone.level.value: zone.median_polygon_m
            for zone in response.zones.zones
            if zone.level is not ZoneLevel.ISOLATION
        },
        valves_to_close=response.isolation.valves_to_close,
        building_zones={b.building_id: b.worst_zone.value for b in exposure.buildings},
        usable_assembly_point_ids=tuple(
            a.assembly_point_id for a in exposure.assembly_points if a.usable
        ),
        excluded_assembly_point_ids=tuple(
            a.assembly_point_id for a in exposure.assembly_points if not a.usable
        ),
        routes=tuple(
            MapRoute(r.building_id, r.assembly_point_id, r.polyline_m) for r in exposure.routes
        ),
        traffic_control_road_ids=tuple(t.road_id for t in exposure.traffic_control),
        closed_road_ids=tuple(t.road_id for t in exposure.traffic_control if t.closed),
        wind_from_deg=estimate.wind_from_deg,
        wind_speed_m_per_s=estimate.wind_speed_m_per_s,
        notes=tuple(sorted(flag.value for flag in response.zones.flags)),
    )


def _write_map(path: Path, response: EmergencyResponse, context: ResponseContext) -> None:
    site = context.site
    estimate = response.estimate
    where = (
        f"{estimate.pipeline_id} chainage {estimate.chainage_m:.0f} m"
        if estimate.pipeline_id is not None and estimate.chainage_m is not None
        else "off the modelled lines"
    )
    title = (
        f"{estimate.gas.value.capitalize()} leak {where}, {estimate.rate_median_kg_per_s:.2g} "
        f"kg/s: plan {response.selection.plan_id}"
    )
    png = render_incident_map(
        site, incident_map_layers(response, site, site.time_zone), title=title
    )
    path.write_bytes(png)


def _jsonable(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return str(value)


def _prepare(out_dir: Path | str, names: Sequence[str]) -> Path:
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name in names:  # a run starts from nothing: its result depends on its inputs only
            for suffix in ("", "-wal", "-shm"):
                (out / f"{name}{suffix}").unlink(missing_ok=True)
    except OSError as error:
        raise SimulationError(f"output folder {out}: {error}") from error
    return out


class _BrokerHop:
    """Carries each step's messages through an MQTT broker and hands back what arrived.

    A publisher sends the step's messages (QoS 1, as the devices do); a subscriber on the site's
    device topics receives them; the step is handed on once every message has arrived, in the
    order it was published (MQTT orders per topic only; the run must not depend on the broker's
    interleaving of topics, so that it stays deterministic). A message that does not come back
    within ``timeout_s`` is an error that says how many are missing.
    """

    def __init__(self, url: str, site_id: str, *, timeout_s: float = HOP_TIMEOUT_S) -> None:
        parsed = urlsplit(url)
        if parsed.scheme != "mqtt" or parsed.hostname is None:
            raise SimulationError(f"broker URL {url!r}: expected mqtt://host:port")
        self.url = url
        self._timeout_s = timeout_s
        self._condition = threading.Condition()
        self._received: list[tuple[str, bytes]] = []
        self._subscribed = threading.Event()
        tag = uuid.uuid4().hex[:8]
        self._subscriber = self._client(f"pipesentinel-simulate-in-{tag}")
        self._subscriber.on_message = self._on_message
        self._subscriber.on_subscribe = lambda *_: self._subscribed.set()
        self._publisher = self._client(f"pipesentinel-simulate-out-{tag}")
        port = parsed.port or 1883
        try:
            for client in (self._subscriber, self._publisher):
                client.connect(parsed.hostname, port)
                client.loop_start()
        except OSError as error:
            self.close()
            raise SimulationError(f"broker {url}: cannot connect: {error}") from error
        self._subscriber.subscribe(f"{TOPIC_ROOT}/{site_id}/#", qos=1)
        if not self._subscribed.wait(timeout_s):
            self.close()
            raise SimulationError(f"broker {url}: no SUBACK within {timeout_s:.0f} s")
        self.messages = 0

    @staticmethod
    def _client(client_id: str) -> mqtt.Client:
        return mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv311,
        )

    def _on_message(
        self, _client: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage
    ) -> None:
        with self._condition:
            self._received.append((message.topic, bytes(message.payload)))
            self._condition.notify_all()

    def carry(self, messages: Sequence[Message]) -> list[Message]:
        """Publish ``messages``, wait for all of them, return them as received."""
        if not messages:
            return []
        for message in messages:
            self._publisher.publish(message.topic, message.payload, qos=1)
        with self._condition:
            arrived = self._condition.wait_for(
                lambda: len(self._received) >= len(messages), timeout=self._timeout_s
            )
            received, self._received = self._received, []
        if not arrived:
            raise SimulationError(
                f"broker {self.url}: {len(messages) - len(received)} of {len(messages)} messages "
                f"did not come back within {self._timeout_s:.0f} s"
            )
        order: dict[tuple[str, bytes], deque[int]] = {}
        for index, message in enumerate(messages):
            order.setdefault((message.topic, message.payload), deque()).append(index)
        carried: list[Message | None] = [None] * len(messages)
        for topic, payload in received:
            slots = order.get((topic, payload))
            if not slots:  # a QoS 1 duplicate, or something not published by this run
                continue
            index = slots.popleft()
            carried[index] = Message(topic, payload, messages[index].time_s)
        missing = sum(item is None for item in carried)
        if missing:
            raise SimulationError(f"broker {self.url}: {missing} messages came back altered")
        self.messages += len(messages)
        return [item for item in carried if item is not None]

    def close(self) -> None:
        """Disconnect both clients."""
        for client in (self._subscriber, self._publisher):
            client.loop_stop()
            client.disconnect()


def simulate_scenario(
    scenario: Scenario,
    *,
    out_dir: Path | str,
    settings: Settings,
    site: Site,
    context: ResponseContext,
    alarm_config: AlarmConfig | None = None,
    frames: bool = False,
    until_s: float | None = None,
    broker: str | None = EMBEDDED_BROKER,
) -> dict[str, Any]:
    """Play ``scenario`` through a broker, detection and response; write and return the report.

    ``frames`` renders the camera frames (slower; the thermal/laser confirmation needs them);
    ``until_s`` stops at that scenario time [s]; ``broker`` is ``"embedded"`` (an in-process
    broker, the default), an ``mqtt://host:port`` URL of a broker that admits anonymous clients,
    or ``None`` to hand the messages over directly (the same bytes, faster).
    """
    names = (
        *OUTPUT_FILES,
        PLAN_DECISIONS_NAME,
        RESPONSES_NAME,
        REPORT_NAME,
        GEOJSON_NAME,
        ALERT_NAME,
        MAP_NAME,
    )
    out = _prepare(out_dir, names)
    start_s = scenario.start_time_s
    period_s = settings.detection.tick_period_s
    run = PipelineRun(out, settings, site, alarm_config)
    decisions = SqlitePlanDecisionLog(out / PLAN_DECISIONS_NAME)
    store = ResponseStore(out / RESPONSES_NAME)
    service = ResponseService(context=context, store=store, decisions=decisions)
    responses = _Responses()
    embedded = EmbeddedBroker().start() if broker == EMBEDDED_BROKER else None
    hop: _BrokerHop | None = None
    try:
        if broker is not None:
            hop = _BrokerHop(embedded.url if embedded is not None else broker, site.id)
        boundary = next_boundary(start_s, period_s)
        last_s = start_s
        simulation = SiteSimulation(site, scenario, frames=frames)
        for step in scenario_messages(simulation, origin_epoch_s=start_s, until_s=until_s):
            carried = step.messages if hop is None else hop.carry(step.messages)
            for message in carried:
                while message.time_s >= boundary:
                    _respond(service, responses, run.flush(boundary), start_s)
                    boundary += period_s
                run.take(message.topic, message.payload, message.time_s)
                last_s = max(last_s, message.time_s)
        _respond(service, responses, run.flush(boundary), start_s)
        detection = pipeline_report(
            run.tally, run.engine, run.incidents, start_s=start_s, end_s=last_s
        )
        decision_rows = [d.to_json_dict() for d in decisions.decisions()]
    except OSError as error:
        raise SimulationError(f"simulation of {scenario.name}: {error}") from error
    finally:
        if hop is not None:
            hop.close()
        if embedded is not None:
            embedded.stop()
        run.close()
        decisions.close()
        store.close()
    truth = _truth(scenario, site)
    embedded_url = "embedded" if embedded is not None else None
    final = _final_response(responses)
    timeline = sorted(
        [
            _entry(
                item["time_s"],
                start_s,
                context,
                "alarm",
                f"{item['event']} {item['alarm_id']}"
                + (f" -> {item['to_state']}" if item.get("to_state") else "")
                + (f": {item['detail']}" if item.get("detail") else ""),
            )
            for item in detection["alarm_timeline"]
            if item["event"] in {"activated", "cleared", "flood_started", "flood_ended"}
        ]
        + responses.timeline,
        key=lambda item: (item["time_s"], item["source"], item["text"]),
    )
    report: dict[str, Any] = {
        "kind": "scenario",
        "site": {"id": site.id, "name": site.name, "time_zone": site.time_zone},
        "scenario": {
            "name": scenario.name,
            "description": scenario.description,
            "start_time_utc": scenario.start_time_utc.isoformat(),
            "start_local_time": _local(start_s, context),
            "simulated_s": round(last_s - start_s, 3),
            "frames": frames,
            "broker": None if broker is None else (embedded_url or broker),
            "messages_through_broker": 0 if hop is None else hop.messages,
            "truth": truth,
        },
        "summary": _scenario_summary(detection, final, truth, site),
        "timeline": timeline,
        "incidents": detection["incidents"],
        "response": None if final is None else final.to_json_dict(),
        "responses_computed": responses.count,
        "accuracy": [] if final is None else [_accuracy(final, leak, site) for leak in truth],
        "plan_decisions": decision_rows,
        "detection": {
            key: detection[key]
            for key in ("messages", "records", "rejections", "faults", "kpis", "alarm_timeline")
        },
        "outputs": _outputs(final),
    }
    _write_outputs(out, report, final, context)
    return report


def _final_response(responses: _Responses) -> EmergencyResponse | None:
    if not responses.latest:
        return None
    return max(responses.latest.values(), key=lambda r: (r.time_s, r.incident_id))


def _outputs(response: EmergencyResponse | None) -> list[str]:
    names = [REPORT_NAME]
    if response is not None:
        names += [GEOJSON_NAME, ALERT_NAME, MAP_NAME]
    return names


def _scenario_summary(
    detection: dict[str, Any],
    response: EmergencyResponse | None,
    truth: Sequence[dict[str, Any]],
    site: Site,
) -> list[str]:
    activated = [item for item in detection["alarm_timeline"] if item["event"] == "activated"]
    lines = [
        f"{detection['messages']} device messages; {len(activated)} alarm activations; "
        f"{len(detection['faults'])} fault events; {len(detection['incidents'])} incidents"
    ]
    if response is None:
        lines.append("no incident with a localisation: no emergency response was computed")
        return lines
    lines += _response_summary(response)
    for leak in truth:
        accuracy = _accuracy(response, leak, site)
        text = f"truth {leak['id']}: estimate {accuracy['position_error_m']:.0f} m from the leak"
        if "true_segment" in accuracy:
            text += (
                f"; P(true segment {accuracy['true_segment']}) = "
                f"{accuracy['segment_probability']:.0%}"
            )
        if "rate_ratio" in accuracy:
            text += f"; estimated/true rate {accuracy['rate_ratio']:.2f}"
        lines.append(text)
    return lines


def simulate_what_if(
    response: EmergencyResponse, *, out_dir: Path | str, context: ResponseContext
) -> dict[str, Any]:
    """Write the outputs of a what-if response (see :meth:`LeakEstimate.what_if`)."""
    out = _prepare(out_dir, (REPORT_NAME, GEOJSON_NAME, ALERT_NAME, MAP_NAME))
    report: dict[str, Any] = {
        "kind": "what_if",
        "site": {
            "id": context.site.id,
            "name": context.site.name,
            "time_zone": context.site.time_zone,
        },
        "summary": _response_summary(response),
        "response": response.to_json_dict(),
        "outputs": _outputs(response),
    }
    try:
        _write_outputs(out, report, response, context)
    except OSError as error:
        raise SimulationError(f"output folder {out}: {error}") from error
    return report


def summary_lines(report: dict[str, Any]) -> list[str]:
    """What the CLI prints after a run."""
    return [str(line) for line in report["summary"]]
