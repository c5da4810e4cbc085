"""Valve isolation: which block valves to close, what they trap and what can still be released.

The pipelines of a site become a graph (:func:`pipeline_graph`, networkx): nodes at the
pipeline ends, at the block valves and at junctions (the site model has none yet: every
pipeline is a path from its first to its last vertex), edges for the pipe sections between them
(the site's *segments*) carrying length, internal diameter, line-fill volume, product, operating
pressure and segment id. The graph is a pure function of the :class:`~pipesentinel.site.Site`:
build it once per site and pass it to the planners.

A plan starts from one or more *leak candidates* — a chainage interval on a pipeline, a segment,
or the localiser's credible intervals or segment probabilities — and walks the graph outwards
from the candidate sections until it meets a block valve that can be relied on. A valve cannot be
relied on when it is out of service (a parameter: the walk passes through it to the next valve
out) or when it lies within the candidate interval itself (a leak at a valve may be at its body
or flanges, and either side of it). What the walk reaches is an *isolated section*; the valves
at its edge are the ones to close. Where the walk reaches a pipeline end instead, the site model
holds no valve on that side: isolation needs a station or end valve outside the site, or is not
possible, and the plan says so (status ``partial``).

For each section the plan gives the line fill between the closed valves (``pi/4 d_i^2 L``, m3
and kg of crude) and an estimate of what can still be released, after the structure of the
worst-case discharge of 49 CFR 194.105(b)(1): the flow pumped during detection and shutdown
(release time x flow rate) plus the drainage volume of the isolated section. Every assumption
(crude density, flow rate, detection and valve-closure times, drain-down fraction, gas-oil
ratio) is a field of :class:`IsolationAssumptions`, stated in the plan's JSON; see
``docs/isolation.md`` for the reasoning and the sources.

Chainage increases in the direction of flow unless a pipeline is listed in
``IsolationAssumptions.reverse_flow_pipeline_ids`` (the site model's ``upstream_valve_id`` of a
segment is the valve at its lower chainage).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from itertools import pairwise
from typing import Any, Final, TypeAlias

import networkx as nx
import numpy as np

from pipesentinel.detection.gases import gas_density_kg_per_m3
from pipesentinel.detection.localisation import (
    ChainageInterval,
    LocalisationResult,
    SegmentProbability,
)
from pipesentinel.site import Gas, Pipeline, Product, Site

PipelineGraph: TypeAlias = "nx.DiGraph[str]"
"""The pipeline graph of :func:`pipeline_graph` (node ids are str)."""

# --- Constants and default assumptions, each with its source ----------------------------------

API_GRAVITY_NUMERATOR: Final = 141.5
API_GRAVITY_OFFSET: Final = 131.5
"""API gravity: deg API = 141.5 / SG(60/60 degF) - 131.5. API Manual of Petroleum Measurement
Standards ch. 11.1 / ASTM D287 (definition of the API gravity scale)."""

WATER_DENSITY_60F_KG_PER_M3: Final = 999.016
"""Density of pure water at 60 degF (15.56 degC) [kg m-3], the reference of the 60/60 degF
specific gravity. API MPMS ch. 11.1 (2004) uses 999.016 kg m-3 (value quoted from memory of the
standard; it agrees with the IAPWS-95 density of water at 15.56 degC, 999.01-999.02 kg m-3)."""

DEFAULT_CRUDE_API_GRAVITY_DEG: Final = 30.0
"""Default crude API gravity [deg API] (ASSUMPTION: a medium crude). Conventional crudes are
graded light above 31.1 deg API (< 870 kg m-3), medium 22.3-31.1 (870-920 kg m-3), heavy below
22.3 (the common API-gravity grading, e.g. Anton Paar wiki "Crude oil"; not all parties use the
same limits). 30 deg API gives 875.3 kg m-3 at 60 degF. Replace with the shipper's assay."""

DEFAULT_FLOW_VELOCITY_M_PER_S: Final = 1.5
"""Default mean flow velocity when the site gives no flow rate [m s-1] (ASSUMPTION). Liquid
pipelines are usually sized for about 1-3 m s-1 (engineering rule of thumb, e.g. line-sizing
guidance quoting 3-6 ft s-1 typical for crude; not a standard). 1.5 m s-1 in a DN400 line is
0.18 m3 s-1, about 15 600 m3 per day. 49 CFR 194.105 asks for the maximum flow rate from the
line's maximum daily capacity: pass it in ``flow_rates_m3_per_s`` when known."""

DEFAULT_DETECTION_TIME_S: Final = 600.0
"""Default time from leak onset to a confirmed incident [s] (ASSUMPTION, 10 min: the 2ooN vote,
sensor response and operator confirmation). Use the incident's own figure when known."""

DEFAULT_REMOTE_VALVE_CLOSURE_TIME_S: Final = 180.0
"""Default time from confirmation to a remotely operated valve fully closed [s] (ASSUMPTION:
the control room's decision and command plus the actuator stroke; a gate-valve actuator strokes a
DN400-DN500 valve in about 1-2 min at a usual stem speed of ~300 mm min-1 — figure not checked
against a data sheet). Replace with the valves' stroke times."""

DEFAULT_MANUAL_VALVE_CLOSURE_TIME_S: Final = 2700.0
"""Default time from confirmation to a manual valve fully closed [s] (ASSUMPTION, 45 min: crew
call-out and travel within an urban subdistrict plus hand-operating a geared DN400-DN500 valve).
Replace with the operator's response-time data (49 CFR 194.105 asks for historic data)."""

DEFAULT_DRAIN_DOWN_FRACTION: Final = 0.5
"""Best-estimate fraction of the isolated line fill that drains out of the leak [1] (REASONED
ASSUMPTION). The site model has no elevation profile and takes the ground as flat: once the
isolated section is depressurised, liquid above the level of the hole can run out (air entering
through the hole), liquid below it cannot. With the hole equally likely anywhere around the
circumference, the expected fraction of the cross-section above it is exactly 1/2 (a hole at
angle theta from the crown leaves the complement of what a hole at pi - theta leaves). The upper
bound is the whole isolated line fill, as in 49 CFR 194.105(b)(1) "line drainage volume"."""

STANDARD_TEMPERATURE_K: Final = 288.15
STANDARD_PRESSURE_PA: Final = 101_325.0
"""Standard reference conditions for gas volumes (Sm3): 15 degC, 101.325 kPa. ISO 13443:1996."""

_CLOSED_INTERVAL_TOLERANCE_M: Final = 1e-9
"""Chainages closer than this are the same point [m] (numerical, not physics)."""

_PROBABILITY_TOLERANCE: Final = 1e-9
"""Probability sums within this of the credible mass reach it [1] (numerical, not physics)."""

_END_NODE_SEPARATOR: Final = ":"
"""End-node ids are ``<pipeline>:start`` / ``<pipeline>:end``; ':' is not allowed in site ids."""


def crude_density_from_api_gravity(api_gravity_deg: float) -> float:
    """Density at 60 degF of a crude with the given API gravity [kg m-3].

    ``rho = 141.5 / (API + 131.5) * rho_water(60 degF)`` (API MPMS ch. 11.1).

    Parameters
    ----------
    api_gravity_deg : float
        API gravity [deg API].
    """
    return (
        API_GRAVITY_NUMERATOR
        / (api_gravity_deg + API_GRAVITY_OFFSET)
        * (WATER_DENSITY_60F_KG_PER_M3)
    )


def line_fill_m3(internal_diameter_m: float, length_m: float) -> float:
    """Volume of a full pipe, ``pi / 4 d_i^2 L`` [m3].

    Parameters
    ----------
    internal_diameter_m : float
        Internal diameter, outside diameter minus twice the wall [m].
    length_m : float
        Length along the centreline [m].
    """
    return math.pi / 4.0 * internal_diameter_m**2 * length_m


# --- Enumerations -----------------------------------------------------------------------------


class NodeKind(StrEnum):
    """What a node of the pipeline graph is."""

    END = "end"  # a pipeline end: the line continues beyond the site model
    VALVE = "valve"  # a block valve
    JUNCTION = "junction"  # pipelines joining (none in the site model yet)


class IsolationStatus(StrEnum):
    """How completely the block valves of the site can isolate the candidates."""

    ISOLATED = "isolated"  # every candidate section is closed in on all sides by valves
    PARTIAL = "partial"  # some side reaches a pipeline end: no valve there in the site model
    NOT_ISOLABLE = "not_isolable"  # some section has no usable valve at all


class Side(StrEnum):
    """Side of an isolated section, in the direction of flow."""

    UPSTREAM = "upstream"
    DOWNSTREAM = "downstream"


# --- Assumptions ------------------------------------------------------------------------------


@dataclass(frozen=True)
class IsolationAssumptions:
    """Every assumption of the release estimate, stated in the plan's JSON.

    Attributes
    ----------
    crude_api_gravity_deg
        API gravity of the crude [deg API]; the density follows from it.
    crude_density_source
        Where the crude's density comes from (printed in the plan).
    flow_velocity_m_per_s
        Mean flow velocity used for a pipeline whose flow rate is not given [m s-1].
    flow_rates_m3_per_s
        Flow rate per pipeline id, overriding the velocity [m3 s-1].
    detection_time_s
        Leak onset to confirmed incident [s].
    remote_valve_closure_time_s, manual_valve_closure_time_s
        Confirmation to valve fully closed, by kind of valve [s].
    pump_shutdown_time_s
        Confirmation to the line's pumps stopped [s], or ``None`` when unknown: the pumps are
        outside the site model, so flow into a section is taken to stop only when its upstream
        valves are closed (and is unbounded where the upstream side has no valve).
    leak_rate_m3_per_s
        Liquid outflow through the leak while the line runs [m3 s-1], e.g. from a SCADA mass
        balance; ``None``: the best estimate is a full-bore release of the whole flow.
    drain_down_fraction
        Best-estimate fraction of the isolated line fill that drains out [1].
    gas_oil_ratio_sm3_per_m3
        Solution gas-oil ratio of the crude [Sm3 per m3 of oil], or ``None``: the site model does
        not state it, and the associated gas that flashes off released crude is not estimated.
    associated_gas
        Gas whose standard density converts the flashed gas volume to mass.
    reverse_flow_pipeline_ids
        Pipelines whose product flows towards decreasing chainage.
    """

    crude_api_gravity_deg: float = DEFAULT_CRUDE_API_GRAVITY_DEG
    crude_density_source: str = (
        "assumed typical medium crude, 30 deg API (API gravity grading: medium 22.3-31.1 deg "
        "API); density from the API MPMS ch. 11.1 definition at 60 degF"
    )
    flow_velocity_m_per_s: float = DEFAULT_FLOW_VELOCITY_M_PER_S
    flow_rates_m3_per_s: Mapping[str, float] = field(default_factory=dict)
    detection_time_s: float = DEFAULT_DETECTION_TIME_S
    remote_valve_closure_time_s: float = DEFAULT_REMOTE_VALVE_CLOSURE_TIME_S
    manual_valve_closure_time_s: float = DEFAULT_MANUAL_VALVE_CLOSURE_TIME_S
    pump_shutdown_time_s: float | None = None
    leak_rate_m3_per_s: float | None = None
    drain_down_fraction: float = DEFAULT_DRAIN_DOWN_FRACTION
    gas_oil_ratio_sm3_per_m3: float | None = None
    associated_gas: Gas = Gas.METHANE
    reverse_flow_pipeline_ids: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        checks: dict[str, float | None] = {
            "flow_velocity_m_per_s": self.flow_velocity_m_per_s,
            "detection_time_s": self.detection_time_s,
            "remote_valve_closure_time_s": self.remote_valve_closure_time_s,
            "manual_valve_closure_time_s": self.manual_valve_closure_time_s,
            "pump_shutdown_time_s": self.pump_shutdown_time_s,
            "leak_rate_m3_per_s": self.leak_rate_m3_per_s,
            "gas_oil_ratio_sm3_per_m3": self.gas_oil_ratio_sm3_per_m3,
        }
        checks.update(
            {f"flow_rates_m3_per_s[{k!r}]": v for k, v in self.flow_rates_m3_per_s.items()}
        )
        for name, value in checks.items():
            if value is not None and not (math.isfinite(value) and value >= 0.0):
                raise ValueError(
                    f"IsolationAssumptions.{name} must be finite and >= 0, got {value}"
                )
        if not (math.isfinite(self.crude_api_gravity_deg) and self.crude_api_gravity_deg > 0.0):
            raise ValueError(
                "IsolationAssumptions.crude_api_gravity_deg must be > 0, "
                f"got {self.crude_api_gravity_deg}"
            )
        if not 0.0 <= self.drain_down_fraction <= 1.0:
            raise ValueError(
                "IsolationAssumptions.drain_down_fraction must be in [0, 1], "
                f"got {self.drain_down_fraction}"
            )
        object.__setattr__(self, "flow_rates_m3_per_s", dict(self.flow_rates_m3_per_s))
        object.__setattr__(
            self, "reverse_flow_pipeline_ids", frozenset(self.reverse_flow_pipeline_ids)
        )

    @property
    def crude_density_kg_per_m3(self) -> float:
        """Density of the crude at 60 degF [kg m-3]."""
        return crude_density_from_api_gravity(self.crude_api_gravity_deg)

    @property
    def associated_gas_density_kg_per_sm3(self) -> float:
        """Ideal-gas density of ``associated_gas`` at ISO 13443 standard conditions [kg m-3]."""
        return float(
            gas_density_kg_per_m3(
                self.associated_gas,
                temperature_k=STANDARD_TEMPERATURE_K,
                pressure_pa=STANDARD_PRESSURE_PA,
            )
        )

    def to_json_dict(self) -> dict[str, object]:
        """The assumptions as plain JSON types (units in the keys)."""
        return {
            "crude_api_gravity_deg": self.crude_api_gravity_deg,
            "crude_density_kg_per_m3": self.crude_density_kg_per_m3,
            "crude_density_source": self.crude_density_source,
            "flow_velocity_m_per_s": self.flow_velocity_m_per_s,
            "flow_rates_m3_per_s": dict(sorted(self.flow_rates_m3_per_s.items())),
            "detection_time_s": self.detection_time_s,
            "remote_valve_closure_time_s": self.remote_valve_closure_time_s,
            "manual_valve_closure_time_s": self.manual_valve_closure_time_s,
            "pump_shutdown_time_s": self.pump_shutdown_time_s,
            "leak_rate_m3_per_s": self.leak_rate_m3_per_s,
            "drain_down_fraction": self.drain_down_fraction,
            "gas_oil_ratio_sm3_per_m3": self.gas_oil_ratio_sm3_per_m3,
            "associated_gas": self.associated_gas.value,
            "reverse_flow_pipeline_ids": sorted(self.reverse_flow_pipeline_ids),
        }


# --- The graph --------------------------------------------------------------------------------


def end_node_id(pipeline_id: str, *, at_start: bool) -> str:
    """Id of the graph node at a pipeline's first (``at_start``) or last vertex."""
    return f"{pipeline_id}{_END_NODE_SEPARATOR}{'start' if at_start else 'end'}"


def pipeline_graph(site: Site) -> PipelineGraph:
    """The site's pipelines as a directed graph (edges point towards increasing chainage).

    Nodes (ids: valve ids, ``<pipeline>:start`` and ``<pipeline>:end``) carry ``kind``
    (:class:`NodeKind`), ``pipeline_id``, ``chainage_m``, ``position_m`` (east, north) and, for
    valves, ``remotely_operated``. A valve exactly at a pipeline end takes the end's place. Edges
    are the site's segments and carry ``segment_id``, ``pipeline_id``, ``start_chainage_m``,
    ``end_chainage_m``, ``length_m``, ``internal_diameter_m``, ``volume_m3`` (line fill),
    ``product`` and ``operating_pressure_pa``. ``graph.graph`` holds ``site_id``,
    ``pipeline_ids`` (site order) and ``segment_edges`` (segment id -> (from node, to node)).
    """
    graph: PipelineGraph = nx.DiGraph(site_id=site.id)
    segment_edges: dict[str, tuple[str, str]] = {}
    for pipeline in site.pipelines:
        internal_diameter_m = pipeline.diameter_m - 2.0 * pipeline.wall_thickness_m
        for valve in pipeline.valves:
            graph.add_node(
                valve.id,
                kind=NodeKind.VALVE,
                pipeline_id=pipeline.id,
                chainage_m=valve.chainage_m,
                position_m=_position(pipeline, valve.chainage_m),
                remotely_operated=valve.remotely_operated,
            )
        for segment in pipeline.segments:
            ends: list[str] = []
            for valve_id, at_start, chainage_m in (
                (segment.upstream_valve_id, True, segment.start_chainage_m),
                (segment.downstream_valve_id, False, segment.end_chainage_m),
            ):
                node_id = valve_id
                if node_id is None:
                    node_id = end_node_id(pipeline.id, at_start=at_start)
                    graph.add_node(
                        node_id,
                        kind=NodeKind.END,
                        pipeline_id=pipeline.id,
                        chainage_m=chainage_m,
                        position_m=_position(pipeline, chainage_m),
                    )
                ends.append(node_id)
            length_m = segment.end_chainage_m - segment.start_chainage_m
            graph.add_edge(
                ends[0],
                ends[1],
                segment_id=segment.id,
                pipeline_id=pipeline.id,
                start_chainage_m=segment.start_chainage_m,
                end_chainage_m=segment.end_chainage_m,
                length_m=length_m,
                internal_diameter_m=internal_diameter_m,
                volume_m3=line_fill_m3(internal_diameter_m, length_m),
                product=pipeline.product,
                operating_pressure_pa=pipeline.operating_pressure_pa,
            )
            segment_edges[segment.id] = (ends[0], ends[1])
    graph.graph["pipeline_ids"] = tuple(pipeline.id for pipeline in site.pipelines)
    graph.graph["segment_edges"] = segment_edges
    return graph


def _position(pipeline: Pipeline, chainage_m: float) -> tuple[float, float]:
    east, north = pipeline.point_at_chainage(chainage_m)
    return (float(east), float(north))


def _as_graph(graph_or_site: PipelineGraph | Site) -> PipelineGraph:
    if isinstance(graph_or_site, Site):
        return pipeline_graph(graph_or_site)
    return graph_or_site


# --- Results ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LeakCandidate:
    """Where the leak may be: a closed chainage interval on a pipeline, or a whole segment.

    ``segment_id`` is set for a segment candidate (from the localiser's segment probabilities);
    then the valves at the segment's ends can isolate it. For an interval, a valve inside the
    closed interval (including at either end) cannot be relied on.
    """

    pipeline_id: str
    start_chainage_m: float
    end_chainage_m: float
    probability: float | None = None
    segment_id: str | None = None

    def to_json_dict(self) -> dict[str, object]:
        """Plain JSON types."""
        return {
            "pipeline_id": self.pipeline_id,
            "start_chainage_m": self.start_chainage_m,
            "end_chainage_m": self.end_chainage_m,
            "probability": self.probability,
            "segment_id": self.segment_id,
        }


@dataclass(frozen=True)
class OpenEnd:
    """A side of an isolated section with no usable valve inside the site model."""

    node_id: str
    pipeline_id: str
    chainage_m: float
    side: Side

    def to_json_dict(self) -> dict[str, object]:
        """Plain JSON types."""
        return {
            "node_id": self.node_id,
            "pipeline_id": self.pipeline_id,
            "chainage_m": self.chainage_m,
            "side": self.side.value,
        }


@dataclass(frozen=True)
class ValveClosure:
    """One valve to close, in plan order (``order`` from 1)."""

    order: int
    valve_id: str
    pipeline_id: str
    chainage_m: float
    position_m: tuple[float, float]
    remotely_operated: bool
    needs_crew: bool
    side: Side
    section_ids: tuple[str, ...]
    closed_after_s: float
    replaces_valve_ids: tuple[str, ...]
    instruction: str

    def to_json_dict(self) -> dict[str, object]:
        """Plain JSON types."""
        return {
            "order": self.order,
            "valve_id": self.valve_id,
            "pipeline_id": self.pipeline_id,
            "chainage_m": self.chainage_m,
            "position_m": list(self.position_m),
            "remotely_operated": self.remotely_operated,
            "needs_crew": self.needs_crew,
            "side": self.side.value,
            "section_ids": list(self.section_ids),
            "closed_after_s": self.closed_after_s,
            "replaces_valve_ids": list(self.replaces_valve_ids),
            "instruction": self.instruction,
        }


@dataclass(frozen=True)
class ReleaseEstimate:
    """What a leak in one isolated section can still release (49 CFR 194.105(b)(1) structure).

    Volumes are of liquid at line conditions; ``None`` where the site model cannot bound them
    (no upstream valve and no pump-shutdown time). Times count from the confirmed incident,
    except ``release_time_s``, which counts from the leak onset.
    """

    flow_rate_m3_per_s: float
    flow_rate_source: str
    supply_stopped_after_s: float | None
    release_time_s: float | None
    pumped_volume_upper_m3: float | None
    pumped_volume_best_m3: float | None
    drain_down_upper_m3: float
    drain_down_best_m3: float
    drain_down_bounded: bool
    total_upper_m3: float | None
    total_best_m3: float | None
    total_upper_kg: float | None
    total_best_kg: float | None
    associated_gas_upper_sm3: float | None
    associated_gas_best_sm3: float | None
    associated_gas_upper_kg: float | None
    associated_gas_best_kg: float | None

    def to_json_dict(self) -> dict[str, object]:
        """Plain JSON types."""
        return {
            "flow_rate_m3_per_s": self.flow_rate_m3_per_s,
            "flow_rate_source": self.flow_rate_source,
            "supply_stopped_after_s": self.supply_stopped_after_s,
            "release_time_s": self.release_time_s,
            "pumped_volume_upper_m3": self.pumped_volume_upper_m3,
            "pumped_volume_best_m3": self.pumped_volume_best_m3,
            "drain_down_upper_m3": self.drain_down_upper_m3,
            "drain_down_best_m3": self.drain_down_best_m3,
            "drain_down_bounded": self.drain_down_bounded,
            "total_upper_m3": self.total_upper_m3,
            "total_best_m3": self.total_best_m3,
            "total_upper_kg": self.total_upper_kg,
            "total_best_kg": self.total_best_kg,
            "associated_gas_upper_sm3": self.associated_gas_upper_sm3,
            "associated_gas_best_sm3": self.associated_gas_best_sm3,
            "associated_gas_upper_kg": self.associated_gas_upper_kg,
            "associated_gas_best_kg": self.associated_gas_best_kg,
        }


@dataclass(frozen=True)
class IsolatedSection:
    """The pipe between the closed valves around one group of candidates.

    Attributes
    ----------
    id
        ``ISO-1``, ``ISO-2``, ... in plan order (most probable first).
    pipeline_ids, segment_ids
        What it contains, segments in chainage order.
    candidate_indices
        Indices into the plan's candidates that lie in it.
    leak_probability
        Sum of their probabilities, ``None`` when not given [1].
    length_m, line_fill_m3, line_fill_kg
        Length, volume between the closed valves (to the end of the modelled line on an open
        side) and its mass (``None`` for a product other than crude oil) [m, m3, kg].
    upstream_valve_ids, downstream_valve_ids
        Valves at its edge, to close.
    open_ends
        Sides with no usable valve in the site model.
    bypassed_valve_ids
        Out-of-service valves inside it (passed over to reach the next valve out).
    leak_range_valve_ids
        Valves inside a candidate interval, not relied on for isolation.
    isolated_after_s
        Confirmation to the last edge valve closed [s]; ``None`` with an open end.
    release
        What can still be released if the leak is here.
    """

    id: str
    pipeline_ids: tuple[str, ...]
    segment_ids: tuple[str, ...]
    candidate_indices: tuple[int, ...]
    leak_probability: float | None
    length_m: float
    line_fill_m3: float
    line_fill_kg: float | None
    upstream_valve_ids: tuple[str, ...]
    downstream_valve_ids: tuple[str, ...]
    open_ends: tuple[OpenEnd, ...]
    bypassed_valve_ids: tuple[str, ...]
    leak_range_valve_ids: tuple[str, ...]
    isolated_after_s: float | None
    release: ReleaseEstimate

    @property
    def complete(self) -> bool:
        """Whether valves close the section in on every side."""
        return not self.open_ends

    def to_json_dict(self) -> dict[str, object]:
        """Plain JSON types."""
        return {
            "id": self.id,
            "pipeline_ids": list(self.pipeline_ids),
            "segment_ids": list(self.segment_ids),
            "candidate_indices": list(self.candidate_indices),
            "leak_probability": self.leak_probability,
            "complete": self.complete,
            "length_m": self.length_m,
            "line_fill_m3": self.line_fill_m3,
            "line_fill_kg": self.line_fill_kg,
            "upstream_valve_ids": list(self.upstream_valve_ids),
            "downstream_valve_ids": list(self.downstream_valve_ids),
            "open_ends": [end.to_json_dict() for end in self.open_ends],
            "bypassed_valve_ids": list(self.bypassed_valve_ids),
            "leak_range_valve_ids": list(self.leak_range_valve_ids),
            "isolated_after_s": self.isolated_after_s,
            "release": self.release.to_json_dict(),
        }


@dataclass(frozen=True)
class IsolationPlan:
    """Which valves to close, in which order, what they trap and what can still escape.

    ``worst_case_*`` is the largest upper bound over the sections (one leak, in whichever
    section is worst); ``best_estimate_*`` is the best estimate of the most probable section
    (the first). ``notes`` are plain sentences for the responder, in plan order.
    """

    site_id: str
    status: IsolationStatus
    candidates: tuple[LeakCandidate, ...]
    sections: tuple[IsolatedSection, ...]
    closures: tuple[ValveClosure, ...]
    valves_out_of_service: tuple[str, ...]
    crude_density_kg_per_m3: float
    crude_density_source: str
    assumptions: IsolationAssumptions
    worst_case_release_m3: float | None
    worst_case_release_kg: float | None
    best_estimate_release_m3: float | None
    best_estimate_release_kg: float | None
    notes: tuple[str, ...]

    @property
    def valves_to_close(self) -> tuple[str, ...]:
        """Valve ids in closure order."""
        return tuple(closure.valve_id for closure in self.closures)

    def to_json_dict(self) -> dict[str, object]:
        """Plain JSON types (the ``isolation`` block of report.json)."""
        return {
            "site_id": self.site_id,
            "status": self.status.value,
            "valves_to_close": list(self.valves_to_close),
            "candidates": [candidate.to_json_dict() for candidate in self.candidates],
            "sections": [section.to_json_dict() for section in self.sections],
            "closures": [closure.to_json_dict() for closure in self.closures],
            "valves_out_of_service": list(self.valves_out_of_service),
            "crude_density_kg_per_m3": self.crude_density_kg_per_m3,
            "crude_density_source": self.crude_density_source,
            "assumptions": self.assumptions.to_json_dict(),
            "worst_case_release_m3": self.worst_case_release_m3,
            "worst_case_release_kg": self.worst_case_release_kg,
            "best_estimate_release_m3": self.best_estimate_release_m3,
            "best_estimate_release_kg": self.best_estimate_release_kg,
            "notes": list(self.notes),
        }


# --- Planning ---------------------------------------------------------------------------------


def isolation_plan(
    graph_or_site: PipelineGraph | Site,
    pipeline_id: str,
    chainage_low_m: float,
    chainage_high_m: float | None = None,
    *,
    valves_out_of_service: Iterable[str] = (),
    assumptions: IsolationAssumptions | None = None,
) -> IsolationPlan:
    """Plan the isolation of a leak somewhere in ``[chainage_low_m, chainage_high_m]``.

    Parameters
    ----------
    graph_or_site : networkx.DiGraph or Site
        :func:`pipeline_graph` of the site (built here from a ``Site``).
    pipeline_id : str
        The leaking pipeline.
    chainage_low_m, chainage_high_m : float
        Closed interval of chainage the leak lies in [m]; a single point when
        ``chainage_high_m`` is ``None``. A valve inside it (or at either end) is not relied on.
    valves_out_of_service : iterable of str
        Valves that cannot be closed; the next valve out is used.
    assumptions : IsolationAssumptions, optional
        Release-estimate assumptions (defaults documented on the class).
    """
    high = chainage_low_m if chainage_high_m is None else chainage_high_m
    candidate = LeakCandidate(pipeline_id, float(chainage_low_m), float(high))
    return plan_for_candidates(
        graph_or_site,
        (candidate,),
        valves_out_of_service=valves_out_of_service,
        assumptions=assumptions,
    )


def isolation_plan_for_intervals(
    graph_or_site: PipelineGraph | Site,
    intervals: Sequence[ChainageInterval],
    *,
    valves_out_of_service: Iterable[str] = (),
    assumptions: IsolationAssumptions | None = None,
) -> IsolationPlan:
    """Plan the isolation of the localiser's credible chainage intervals (one leak in one of them).

    Parameters are as for :func:`isolation_plan`; ``intervals`` are
    ``LocalisationResult.credible_intervals`` (probabilities [1] carried into the sections).
    """
    candidates = tuple(
        LeakCandidate(
            interval.pipeline_id,
            interval.start_chainage_m,
            interval.end_chainage_m,
            probability=interval.probability,
        )
        for interval in intervals
    )
    return plan_for_candidates(
        graph_or_site,
        candidates,
        valves_out_of_service=valves_out_of_service,
        assumptions=assumptions,
    )


def isolation_plan_for_segments(
    graph_or_site: PipelineGraph | Site,
    segments: Sequence[SegmentProbability] | Mapping[str, float],
    *,
    credible_mass: float = 0.95,
    valves_out_of_service: Iterable[str] = (),
    assumptions: IsolationAssumptions | None = None,
) -> IsolationPlan:
    """Plan the isolation of the most probable segments holding ``credible_mass`` of probability.

    Segments are taken most probable first (ties by id) until their probabilities sum to at
    least ``credible_mass`` [1]; segments of zero probability are never taken. ``segments`` is
    ``LocalisationResult.segments`` or a mapping segment id -> probability [1].
    """
    if not 0.0 < credible_mass <= 1.0:
        raise ValueError(f"credible_mass must be in (0, 1], got {credible_mass}")
    graph = _as_graph(graph_or_site)
    if isinstance(segments, Mapping):
        pairs = [(str(key), float(value)) for key, value in segments.items()]
    else:
        pairs = [(item.segment_id, item.probability) for item in segments]
    for segment_id, probability in pairs:
        if not (math.isfinite(probability) and probability >= 0.0):
            raise ValueError(f"segment {segment_id!r}: probability must be >= 0, got {probability}")
    pairs.sort(key=lambda pair: (-pair[1], pair[0]))
    chosen: list[tuple[str, float]] = []
    mass = 0.0
    for segment_id, probability in pairs:
        if probability <= 0.0 or (chosen and mass >= credible_mass - _PROBABILITY_TOLERANCE):
            break
        chosen.append((segment_id, probability))
        mass += probability
    if not chosen:
        raise ValueError("no segment with a probability > 0: nothing to isolate")
    segment_edges: Mapping[str, tuple[str, str]] = graph.graph["segment_edges"]
    candidates: list[LeakCandidate] = []
    for segment_id, probability in chosen:
        if segment_id not in segment_edges:
            raise KeyError(f"no segment {segment_id!r} in site {graph.graph['site_id']!r}")
        data = graph.edges[segment_edges[segment_id]]
        candidates.append(
            LeakCandidate(
                data["pipeline_id"],
                data["start_chainage_m"],
                data["end_chainage_m"],
                probability=probability,
                segment_id=segment_id,
            )
        )
    return plan_for_candidates(
        graph,
        tuple(candidates),
        valves_out_of_service=valves_out_of_service,
        assumptions=assumptions,
    )


def isolation_plan_for_localisation(
    graph_or_site: PipelineGraph | Site,
    result: LocalisationResult,
    *,
    valves_out_of_service: Iterable[str] = (),
    assumptions: IsolationAssumptions | None = None,
) -> IsolationPlan:
    """Plan from a localisation: its credible chainage intervals, else its segment probabilities.

    ``ValueError`` when the result has neither (grid mode: no pipeline was located).
    """
    if result.credible_intervals:
        return isolation_plan_for_intervals(
            graph_or_site,
            result.credible_intervals,
            valves_out_of_service=valves_out_of_service,
            assumptions=assumptions,
        )
    if result.segments:
        return isolation_plan_for_segments(
            graph_or_site,
            result.segments,
            credible_mass=result.credible_mass,
            valves_out_of_service=valves_out_of_service,
            assumptions=assumptions,
        )
    raise ValueError("the localisation result locates no pipeline segment: nothing to isolate")


@dataclass
class _Walk:
    """One connected group of candidate edges and what bounds it (mutable while walking)."""

    edges: set[tuple[str, str]] = field(default_factory=set)
    candidate_indices: set[int] = field(default_factory=set)
    boundary_valves: set[str] = field(default_factory=set)
    open_ends: set[str] = field(default_factory=set)
    passed_valves: set[str] = field(default_factory=set)


def plan_for_candidates(
    graph_or_site: PipelineGraph | Site,
    candidates: Sequence[LeakCandidate],
    *,
    valves_out_of_service: Iterable[str] = (),
    assumptions: IsolationAssumptions | None = None,
) -> IsolationPlan:
    """Plan the isolation of a leak in one of ``candidates`` (the general form of the planners).

    Walks the graph out from the candidates' segments; in-service valves outside every
    candidate interval stop the walk (they are closed), pipeline ends stop it as open ends, and
    any other node (out-of-service valve, valve in a candidate interval, junction) is passed.
    Candidates that the walk joins share one isolated section.
    """
    graph = _as_graph(graph_or_site)
    settings = assumptions if assumptions is not None else IsolationAssumptions()
    if not candidates:
        raise ValueError("no leak candidate given: nothing to isolate")
    out_of_service = tuple(sorted(set(valves_out_of_service)))
    for valve_id in out_of_service:
        if graph.nodes.get(valve_id, {}).get("kind") is not NodeKind.VALVE:
            raise KeyError(f"no valve {valve_id!r} in site {graph.graph['site_id']!r}")
    candidates = tuple(candidates)
    for candidate in candidates:
        chance = candidate.probability
        if chance is not None and not (math.isfinite(chance) and 0.0 <= chance <= 1.0):
            raise ValueError(f"leak candidate probability must be in [0, 1], got {chance}")
    seed_edges, leak_range_valves = _candidate_edges(graph, candidates)
    passable = set(out_of_service) | leak_range_valves

    walks: list[_Walk] = []
    assigned: dict[tuple[str, str], _Walk] = {}
    for index, edges in enumerate(seed_edges):
        joined = [assigned[edge] for edge in edges if edge in assigned]
        if joined:
            joined[0].candidate_indices.add(index)
            continue
        walk = _walk(graph, edges, passable)
        walk.candidate_indices.add(index)
        walks.append(walk)
        for edge in walk.edges:
            assigned[edge] = walk

    sections = _sections(
        graph,
        candidates=candidates,
        walks=walks,
        out_of_service=set(out_of_service),
        leak_range_valves=leak_range_valves,
        settings=settings,
    )
    closures = _closures(graph, sections, set(out_of_service), settings)
    return _assemble(
        graph,
        candidates=candidates,
        sections=sections,
        closures=closures,
        out_of_service=out_of_service,
        settings=settings,
    )


def _candidate_edges(
    graph: PipelineGraph, candidates: tuple[LeakCandidate, ...]
) -> tuple[list[list[tuple[str, str]]], set[str]]:
    """Edges each candidate touches, and the valves inside candidate intervals."""
    pipeline_ids: tuple[str, ...] = graph.graph["pipeline_ids"]
    segment_edges: Mapping[str, tuple[str, str]] = graph.graph["segment_edges"]
    edges_by_pipeline: dict[str, list[tuple[str, str]]] = {pid: [] for pid in pipeline_ids}
    for edge in segment_edges.values():
        edges_by_pipeline[graph.edges[edge]["pipeline_id"]].append(edge)
    seed: list[list[tuple[str, str]]] = []
    leak_range_valves: set[str] = set()
    for candidate in candidates:
        if candidate.pipeline_id not in edges_by_pipeline:
            raise KeyError(
                f"no pipeline {candidate.pipeline_id!r} in site {graph.graph['site_id']!r}"
            )
        low, high = candidate.start_chainage_m, candidate.end_chainage_m
        pipeline_edges = edges_by_pipeline[candidate.pipeline_id]
        length_m = max(graph.edges[edge]["end_chainage_m"] for edge in pipeline_edges)
        if not (math.isfinite(low) and math.isfinite(high) and 0.0 <= low <= high <= length_m):
            raise ValueError(
                f"pipeline {candidate.pipeline_id!r}: leak interval {low}..{high} m is not an "
                f"ordered interval within 0..{length_m:.3f} m"
            )
        if candidate.segment_id is not None:
            seed.append([segment_edges[candidate.segment_id]])
            continue
        touched = [
            edge
            for edge in pipeline_edges
            if graph.edges[edge]["start_chainage_m"] <= high + _CLOSED_INTERVAL_TOLERANCE_M
            and graph.edges[edge]["end_chainage_m"] >= low - _CLOSED_INTERVAL_TOLERANCE_M
        ]
        seed.append(touched)
        for edge in touched:
            for node in edge:
                data = graph.nodes[node]
                inside = (
                    low - _CLOSED_INTERVAL_TOLERANCE_M
                    <= data["chainage_m"]
                    <= high + _CLOSED_INTERVAL_TOLERANCE_M
                )
                if data["kind"] is NodeKind.VALVE and inside:
                    leak_range_valves.add(node)
    return seed, leak_range_valves


def _walk(graph: PipelineGraph, seed: list[tuple[str, str]], passable: set[str]) -> _Walk:
    """Grow a section from ``seed`` edges through passable nodes."""
    walk = _Walk()
    undirected = graph.to_undirected(as_view=True)
    frontier: list[str] = []
    for edge in seed:
        walk.edges.add(edge)
        frontier.extend(edge)
    visited: set[str] = set()
    while frontier:
        node = frontier.pop()
        if node in visited:
            continue
        visited.add(node)
        kind = graph.nodes[node]["kind"]
        if kind is NodeKind.END:
            walk.open_ends.add(node)
            continue
        if kind is NodeKind.VALVE and node not in passable:
            walk.boundary_valves.add(node)
            continue
        if kind is NodeKind.VALVE:
            walk.passed_valves.add(node)
            if undirected.degree(node) == 1:  # a valve at a pipeline end: the line goes on
                walk.open_ends.add(node)
        for neighbour in undirected.neighbors(node):
            edge = (node, neighbour) if graph.has_edge(node, neighbour) else (neighbour, node)
            if edge not in walk.edges:
                walk.edges.add(edge)
                frontier.append(neighbour)
    return walk


def _side(graph: PipelineGraph, node: str, walk: _Walk, settings: IsolationAssumptions) -> Side:
    """Side of ``node`` relative to the section's flow (from edge direction and flow sense)."""
    at_low_chainage = any(edge[0] == node for edge in walk.edges)
    if graph.nodes[node]["pipeline_id"] in settings.reverse_flow_pipeline_ids:
        at_low_chainage = not at_low_chainage
    return Side.UPSTREAM if at_low_chainage else Side.DOWNSTREAM


def _closure_time_s(graph: PipelineGraph, valve_id: str, settings: IsolationAssumptions) -> float:
    if graph.nodes[valve_id]["remotely_operated"]:
        return settings.remote_valve_closure_time_s
    return settings.manual_valve_closure_time_s


def _valve_closed_after_s(
    graph: PipelineGraph,
    valve_id: str,
    side: Side,
    release: ReleaseEstimate,
    settings: IsolationAssumptions,
) -> float:
    """Confirmation to ``valve_id`` closed [s]; a downstream valve waits for the supply to stop."""
    own_s = _closure_time_s(graph, valve_id, settings)
    if side is Side.DOWNSTREAM and release.supply_stopped_after_s is not None:
        return max(own_s, release.supply_stopped_after_s)
    return own_s


def _flow_rate(
    pipeline_id: str, internal_diameter_m: float, settings: IsolationAssumptions
) -> tuple[float, str]:
    """Flow rate of a pipeline and where it comes from (the site model holds none)."""
    if pipeline_id in settings.flow_rates_m3_per_s:
        return settings.flow_rates_m3_per_s[pipeline_id], "given flow rate (assumptions)"
    area_m2 = math.pi / 4.0 * internal_diameter_m**2
    return (
        settings.flow_velocity_m_per_s * area_m2,
        f"assumed mean velocity {settings.flow_velocity_m_per_s:g} m/s x internal area "
        f"{area_m2:.4f} m2 (the site model has no flow rate)",
    )


def _sections(
    graph: PipelineGraph,
    *,
    candidates: tuple[LeakCandidate, ...],
    walks: list[_Walk],
    out_of_service: set[str],
    leak_range_valves: set[str],
    settings: IsolationAssumptions,
) -> list[IsolatedSection]:
    pipeline_order = {pid: index for index, pid in enumerate(graph.graph["pipeline_ids"])}

    def probability(walk: _Walk) -> float | None:
        values = [candidates[index].probability for index in walk.candidate_indices]
        if any(value is None for value in values):
            return None
        return float(sum(value for value in values if value is not None))

    def edge_key(edge: tuple[str, str]) -> tuple[int, float]:
        data = graph.edges[edge]
        return (pipeline_order[data["pipeline_id"]], data["start_chainage_m"])

    def walk_key(walk: _Walk) -> tuple[float, int, float]:
        first = min(walk.edges, key=edge_key)
        return (-(probability(walk) or 0.0), *edge_key(first))

    sections: list[IsolatedSection] = []
    for number, walk in enumerate(sorted(walks, key=walk_key), start=1):
        edges = sorted(walk.edges, key=edge_key)
        data = [graph.edges[edge] for edge in edges]
        pipeline_ids = tuple(
            sorted({str(item["pipeline_id"]) for item in data}, key=lambda pid: pipeline_order[pid])
        )
        length_m = float(sum(item["length_m"] for item in data))
        volume_m3 = float(sum(item["volume_m3"] for item in data))
        crude = all(item["product"] is Product.CRUDE_OIL for item in data)
        mass_kg = volume_m3 * settings.crude_density_kg_per_m3 if crude else None
        sides = {node: _side(graph, node, walk, settings) for node in walk.boundary_valves}
        upstream = tuple(sorted((n for n, s in sides.items() if s is Side.UPSTREAM), key=str))
        downstream = tuple(sorted((n for n, s in sides.items() if s is Side.DOWNSTREAM), key=str))
        open_ends = tuple(
            OpenEnd(
                node_id=node,
                pipeline_id=graph.nodes[node]["pipeline_id"],
                chainage_m=graph.nodes[node]["chainage_m"],
                side=_side(graph, node, walk, settings),
            )
            for node in sorted(walk.open_ends)
        )
        release = _release(
            graph,
            data=data,
            upstream=upstream,
            open_ends=open_ends,
            volume_m3=volume_m3,
            crude=crude,
            settings=settings,
            pipeline_ids=pipeline_ids,
        )
        closure_times = [
            _valve_closed_after_s(graph, valve, sides[valve], release, settings)
            for valve in walk.boundary_valves
        ]
        isolated_after_s = None if open_ends or not closure_times else max(closure_times)
        sections.append(
            IsolatedSection(
                id=f"ISO-{number}",
                pipeline_ids=pipeline_ids,
                segment_ids=tuple(item["segment_id"] for item in data),
                candidate_indices=tuple(sorted(walk.candidate_indices)),
                leak_probability=probability(walk),
                length_m=length_m,
                line_fill_m3=volume_m3,
                line_fill_kg=mass_kg,
                upstream_valve_ids=upstream,
                downstream_valve_ids=downstream,
                open_ends=open_ends,
                bypassed_valve_ids=tuple(sorted(walk.passed_valves & out_of_service)),
                leak_range_valve_ids=tuple(
                    sorted((walk.passed_valves & leak_range_valves) - out_of_service)
                ),
                isolated_after_s=isolated_after_s,
                release=release,
            )
        )
    return sections


def _release(
    graph: PipelineGraph,
    *,
    data: Sequence[Mapping[str, Any]],
    upstream: tuple[str, ...],
    open_ends: tuple[OpenEnd, ...],
    volume_m3: float,
    crude: bool,
    settings: IsolationAssumptions,
    pipeline_ids: tuple[str, ...],
) -> ReleaseEstimate:
    """Pumped volume + drain-down for a leak in one section."""
    flows = []
    for pipeline_id in pipeline_ids:
        diameter = next(
            float(item["internal_diameter_m"])
            for item in data
            if item["pipeline_id"] == pipeline_id
        )
        flows.append(_flow_rate(pipeline_id, diameter, settings))
    flow_m3_per_s, flow_source = max(flows, key=lambda pair: pair[0])

    open_upstream = any(end.side is Side.UPSTREAM for end in open_ends)
    stop_times = [math.inf if open_upstream else 0.0]
    stop_times += [_closure_time_s(graph, valve, settings) for valve in upstream]
    supply_stop_s = max(stop_times)
    if settings.pump_shutdown_time_s is not None:
        supply_stop_s = min(supply_stop_s, settings.pump_shutdown_time_s)
    bounded = math.isfinite(supply_stop_s)
    release_time_s = settings.detection_time_s + supply_stop_s if bounded else None
    leak_flow = flow_m3_per_s
    if settings.leak_rate_m3_per_s is not None:
        leak_flow = min(flow_m3_per_s, settings.leak_rate_m3_per_s)
    pumped_upper = None if release_time_s is None else flow_m3_per_s * release_time_s
    pumped_best = None if release_time_s is None else leak_flow * release_time_s
    drain_upper = volume_m3
    drain_best = settings.drain_down_fraction * volume_m3
    total_upper = None if pumped_upper is None else pumped_upper + drain_upper
    total_best = None if pumped_best is None else pumped_best + drain_best
    density = settings.crude_density_kg_per_m3

    def mass(volume: float | None) -> float | None:
        return None if volume is None or not crude else volume * density

    ratio = settings.gas_oil_ratio_sm3_per_m3 if crude else None

    def gas(volume: float | None) -> float | None:
        return None if volume is None or ratio is None else volume * ratio

    def gas_mass(volume: float | None) -> float | None:
        standard_volume = gas(volume)
        if standard_volume is None:
            return None
        return standard_volume * settings.associated_gas_density_kg_per_sm3

    return ReleaseEstimate(
        flow_rate_m3_per_s=flow_m3_per_s,
        flow_rate_source=flow_source,
        supply_stopped_after_s=supply_stop_s if bounded else None,
        release_time_s=release_time_s,
        pumped_volume_upper_m3=pumped_upper,
        pumped_volume_best_m3=pumped_best,
        drain_down_upper_m3=drain_upper,
        drain_down_best_m3=drain_best,
        drain_down_bounded=not open_ends,
        total_upper_m3=total_upper,
        total_best_m3=total_best,
        total_upper_kg=mass(total_upper),
        total_best_kg=mass(total_best),
        associated_gas_upper_sm3=gas(total_upper),
        associated_gas_best_sm3=gas(total_best),
        associated_gas_upper_kg=gas_mass(total_upper),
        associated_gas_best_kg=gas_mass(total_best),
    )


def _closures(
    graph: PipelineGraph,
    sections: list[IsolatedSection],
    out_of_service: set[str],
    settings: IsolationAssumptions,
) -> list[ValveClosure]:
    """Valves to close: upstream edges first, then downstream, each in flow order."""
    pipeline_order = {pid: index for index, pid in enumerate(graph.graph["pipeline_ids"])}
    sides: dict[str, Side] = {}
    owners: dict[str, list[str]] = {}
    closed_after: dict[str, float] = {}
    for section in sections:
        for side, valves in (
            (Side.UPSTREAM, section.upstream_valve_ids),
            (Side.DOWNSTREAM, section.downstream_valve_ids),
        ):
            for valve in valves:
                sides.setdefault(valve, side)
                owners.setdefault(valve, []).append(section.id)
                time_s = _valve_closed_after_s(graph, valve, side, section.release, settings)
                closed_after[valve] = max(closed_after.get(valve, 0.0), time_s)

    def flow_position(valve: str) -> float:
        node = graph.nodes[valve]
        sign = -1.0 if node["pipeline_id"] in settings.reverse_flow_pipeline_ids else 1.0
        return sign * float(node["chainage_m"])

    def key(valve: str) -> tuple[int, int, float, str]:
        node = graph.nodes[valve]
        return (
            0 if sides[valve] is Side.UPSTREAM else 1,
            pipeline_order[node["pipeline_id"]],
            flow_position(valve),
            valve,
        )

    closures: list[ValveClosure] = []
    for order, valve in enumerate(sorted(sides, key=key), start=1):
        node = graph.nodes[valve]
        remote = bool(node["remotely_operated"])
        replaces = _replaced_valves(graph, valve, sides[valve], out_of_service, settings)
        minutes = _closure_time_s(graph, valve, settings) / 60.0
        how = (
            "close remotely from the control room"
            if remote
            else f"MANUAL valve: dispatch a crew now to close it on site (~{minutes:.0f} min)"
        )
        if sides[valve] is Side.DOWNSTREAM:
            how += ", once the supply is cut (pumps stopped or upstream valves closed)"
        instruction = (
            f"{order}. {valve} ({sides[valve].value} of the leak, {node['pipeline_id']} at "
            f"chainage {node['chainage_m']:.0f} m): {how}"
        )
        if replaces:
            instruction += f"; replaces out-of-service {', '.join(replaces)}"
        closures.append(
            ValveClosure(
                order=order,
                valve_id=valve,
                pipeline_id=node["pipeline_id"],
                chainage_m=float(node["chainage_m"]),
                position_m=node["position_m"],
                remotely_operated=remote,
                needs_crew=not remote,
                side=sides[valve],
                section_ids=tuple(owners[valve]),
                closed_after_s=closed_after[valve],
                replaces_valve_ids=replaces,
                instruction=instruction,
            )
        )
    return closures


def _replaced_valves(
    graph: PipelineGraph,
    valve: str,
    side: Side,
    out_of_service: set[str],
    settings: IsolationAssumptions,
) -> tuple[str, ...]:
    """Out-of-service valves between the leak and ``valve``, from the leak outwards."""
    node = graph.nodes[valve]
    pipeline_id = node["pipeline_id"]
    low_side = side is Side.UPSTREAM
    if pipeline_id in settings.reverse_flow_pipeline_ids:
        low_side = not low_side
    chainage = node["chainage_m"]
    found: list[tuple[float, str]] = []
    for other in out_of_service:
        data = graph.nodes[other]
        if data["pipeline_id"] != pipeline_id:
            continue
        beyond = data["chainage_m"] > chainage if low_side else data["chainage_m"] < chainage
        if beyond:
            found.append((abs(data["chainage_m"] - chainage), other))
    # Only the contiguous run next to the valve: stop at the first in-service valve.
    in_service = sorted(
        abs(graph.nodes[other]["chainage_m"] - chainage)
        for other in graph.nodes
        if other != valve
        and graph.nodes[other]["kind"] is NodeKind.VALVE
        and graph.nodes[other]["pipeline_id"] == pipeline_id
        and other not in out_of_service
        and (
            graph.nodes[other]["chainage_m"] > chainage
            if low_side
            else graph.nodes[other]["chainage_m"] < chainage
        )
    )
    limit = in_service[0] if in_service else math.inf
    run = [other for distance, other in sorted(found, reverse=True) if distance < limit]
    return tuple(run)


def _minutes(seconds: float) -> str:
    return f"{seconds / 60.0:.0f} min"


def _status(sections: Sequence[IsolatedSection]) -> IsolationStatus:
    if any(
        not (section.upstream_valve_ids or section.downstream_valve_ids) for section in sections
    ):
        return IsolationStatus.NOT_ISOLABLE
    if any(section.open_ends for section in sections):
        return IsolationStatus.PARTIAL
    return IsolationStatus.ISOLATED


def _section_notes(section: IsolatedSection) -> list[str]:
    """Sentences about one section, for the responder."""
    label = f"{section.id} ({', '.join(section.segment_ids)})"
    notes: list[str] = []
    for end in section.open_ends:
        where = "start" if end.chainage_m <= _CLOSED_INTERVAL_TOLERANCE_M else "end"
        action = (
            "the pumps must be stopped at the upstream station"
            if end.side is Side.UPSTREAM
            else "the downstream station must close its inlet valve"
        )
        notes.append(
            f"{label}: no usable block valve {end.side.value} of the leak on {end.pipeline_id} "
            f"before the {where} of the modelled line (chainage {end.chainage_m:.0f} m): "
            "isolation on this side needs a station or end valve outside the site model, or is "
            f"not possible; {action}. Line fill and drain-down are counted only to the end of "
            "the modelled line (a lower bound)."
        )
    if not (section.upstream_valve_ids or section.downstream_valve_ids):
        notes.append(f"{label}: no block valve can isolate this section.")
    notes.extend(
        f"{label}: {valve} lies within the credible leak range and is not relied on to isolate "
        "(the leak may be at the valve or on either side); closing it too, once the leak side is "
        "known, shortens the section that can drain to the leak."
        for valve in section.leak_range_valve_ids
    )
    release = section.release
    if release.total_upper_m3 is None or release.total_best_m3 is None:
        notes.append(
            f"{label}: the release cannot be bounded: flow continues until the upstream station "
            "stops pumping (set pump_shutdown_time_s when known)."
        )
        return notes
    when = (
        f"isolated about {_minutes(section.isolated_after_s)} after confirmation"
        if section.isolated_after_s is not None
        else "not fully isolable from within the site"
    )
    notes.append(
        f"{label}: {when}; line fill {section.line_fill_m3:.0f} m3; up to "
        f"{release.total_upper_m3:.0f} m3 can still be released (best estimate "
        f"{release.total_best_m3:.0f} m3)."
    )
    return notes


def _closure_notes(closures: Sequence[ValveClosure]) -> list[str]:
    notes: list[str] = []
    for closure in closures:
        if closure.replaces_valve_ids:
            notes.append(
                f"{', '.join(closure.replaces_valve_ids)} out of service: {closure.valve_id}, the "
                "next valve out, is used instead (a longer section is isolated)."
            )
        if closure.needs_crew:
            notes.append(
                f"{closure.valve_id} is manual: a crew must go to it "
                f"(assumed {_minutes(closure.closed_after_s)} to close)."
            )
    return notes


def _assumption_notes(
    sections: Sequence[IsolatedSection], settings: IsolationAssumptions
) -> list[str]:
    notes: list[str] = []
    if settings.leak_rate_m3_per_s is None:
        notes.append(
            "No liquid leak rate given: the pumped volume is that of a full-bore release of the "
            "whole flow, both as upper bound and best estimate."
        )
    crude = [section for section in sections if section.line_fill_kg is not None]
    if settings.gas_oil_ratio_sm3_per_m3 is None and crude:
        pipelines = sorted({pid for section in crude for pid in section.pipeline_ids})
        notes.append(
            f"Associated gas: the site model gives no gas-oil ratio for {', '.join(pipelines)}, "
            "so the gas that can flash off released crude is not estimated (set "
            "gas_oil_ratio_sm3_per_m3)."
        )
    non_crude = [section.id for section in sections if section.line_fill_kg is None]
    if non_crude:
        notes.append(
            f"{', '.join(non_crude)}: the product is not crude oil; volumes are geometric line "
            "fill only (no density, no line pack)."
        )
    return notes


def _largest(values: Iterable[float | None]) -> float | None:
    """The largest value, or ``None`` if any is unbounded (``None``) or there are none."""
    listed = list(values)
    if not listed or any(value is None for value in listed):
        return None
    return max(value for value in listed if value is not None)


def _assemble(
    graph: PipelineGraph,
    *,
    candidates: tuple[LeakCandidate, ...],
    sections: list[IsolatedSection],
    closures: list[ValveClosure],
    out_of_service: tuple[str, ...],
    settings: IsolationAssumptions,
) -> IsolationPlan:
    notes: list[str] = []
    if closures:
        notes.append(
            "Closure order: stop the pumps feeding the line, then close the upstream valves "
            "before the downstream ones (assumed common practice for liquid lines: the supply is "
            "cut first, so that flow is not pumped against a closed valve and the pressure at the "
            "leak does not rise); confirm against the operator's emergency procedure "
            "(49 CFR 195.402(e))."
        )
    for section in sections:
        notes.extend(_section_notes(section))
    notes.extend(_closure_notes(closures))
    notes.extend(_assumption_notes(sections, settings))
    first = sections[0]
    return IsolationPlan(
        site_id=str(graph.graph["site_id"]),
        status=_status(sections),
        candidates=candidates,
        sections=tuple(sections),
        closures=tuple(closures),
        valves_out_of_service=out_of_service,
        crude_density_kg_per_m3=settings.crude_density_kg_per_m3,
        crude_density_source=settings.crude_density_source,
        assumptions=settings,
        worst_case_release_m3=_largest(section.release.total_upper_m3 for section in sections),
        worst_case_release_kg=_largest(section.release.total_upper_kg for section in sections),
        best_estimate_release_m3=first.release.total_best_m3,
        best_estimate_release_kg=first.release.total_best_kg,
        notes=tuple(notes),
    )


def graph_invariant_problems(graph: PipelineGraph) -> list[str]:
    """Checks of the graph's structure; an empty list when it is sound.

    Every edge is a segment of one pipeline that runs between two valves, a valve and a pipeline
    end, or two ends; the segments of a pipeline tile ``[0, length]`` without gaps; each node's
    chainage equals the chainage of the edge ends that meet there.
    """
    problems: list[str] = []
    by_pipeline: dict[str, list[tuple[float, float]]] = {}
    for start, end, data in graph.edges(data=True):
        for node, chainage in ((start, data["start_chainage_m"]), (end, data["end_chainage_m"])):
            kind = graph.nodes[node]["kind"]
            if kind not in {NodeKind.VALVE, NodeKind.END, NodeKind.JUNCTION}:
                problems.append(f"{data['segment_id']}: node {node} of unknown kind {kind!r}")
            if not np.isclose(graph.nodes[node]["chainage_m"], chainage):
                problems.append(f"{data['segment_id']}: node {node} not at chainage {chainage}")
        if not data["end_chainage_m"] > data["start_chainage_m"]:
            problems.append(f"{data['segment_id']}: empty or reversed")
        by_pipeline.setdefault(data["pipeline_id"], []).append(
            (data["start_chainage_m"], data["end_chainage_m"])
        )
    for pipeline_id, stretches in by_pipeline.items():
        stretches.sort()
        if not np.isclose(stretches[0][0], 0.0):
            problems.append(f"{pipeline_id}: first segment starts at {stretches[0][0]}")
        for (_, first_end), (second_start, _) in pairwise(stretches):
            if not np.isclose(first_end, second_start):
                problems.append(f"{pipeline_id}: gap or overlap at {first_end}..{second_start}")
    for node, data in graph.nodes(data=True):
        degree = graph.degree(node)
        if data["kind"] is NodeKind.END and degree != 1:
            problems.append(f"end node {node} has degree {degree}, expected 1")
        if data["kind"] is NodeKind.VALVE and degree not in (1, 2):
            problems.append(f"valve {node} has degree {degree}, expected 1 or 2")
    return problems
