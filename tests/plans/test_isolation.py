"""Valve isolation (plans/isolation.py) on the reference site and on hand-built lines.

Hand-worked figures (pi/4 d_i^2 L, internal diameter = outside - 2 x wall):
- Wanli P1, DN400 406.4 x 7.1 mm: d_i = 0.3922 m, area = pi/4 x 0.3922^2 = 0.120811 m2;
  P1-S3 runs 1700-2950 m (valves P1-V2 manual, P1-V3 remote): 1250 m -> 151.013 m3.
- Wanli P2, DN500 508.0 x 9.5 mm: d_i = 0.489 m, area = 0.187805 m2; P2-V1..P2-V4 is
  200-2800 m: 2600 m -> 488.29 m3.
- 30 deg API crude: 141.5 / (30 + 131.5) x 999.016 = 875.30 kg m-3; 10 deg API is water.
- Methane at 15 degC, 101 325 Pa (ideal gas): 101325 x 0.016043 / (8.314462618 x 288.15)
  = 0.67850 kg m-3.
"""

import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose

from pipesentinel.detection.gases import LelBasis
from pipesentinel.detection.localisation import (
    ChainageInterval,
    LocalisationMode,
    LocalisationResult,
    RateEstimate,
    SegmentProbability,
)
from pipesentinel.plans.isolation import (
    IsolationAssumptions,
    IsolationStatus,
    NodeKind,
    Side,
    crude_density_from_api_gravity,
    end_node_id,
    graph_invariant_problems,
    isolation_plan,
    isolation_plan_for_intervals,
    isolation_plan_for_localisation,
    isolation_plan_for_segments,
    line_fill_m3,
    pipeline_graph,
)
from pipesentinel.site import Gas, GeoOrigin, Pipeline, Product, Site, Valve
from pipesentinel.site_loader import load_site

REPO = Path(__file__).resolve().parents[2]
WANLI = load_site(REPO / "sites" / "wanli")
LAKESIDE = load_site(REPO / "tests" / "site_fixtures" / "lakeside")
GRAPH = pipeline_graph(WANLI)

P1_AREA_M2 = math.pi / 4.0 * 0.3922**2  # 0.120811 m2
P2_AREA_M2 = math.pi / 4.0 * 0.489**2  # 0.187805 m2
CRUDE_30_API_KG_PER_M3 = 141.5 / 161.5 * 999.016  # 875.30 kg m-3
METHANE_STANDARD_KG_PER_M3 = 0.67850


def line_site(
    valves: tuple[tuple[float, bool], ...], *, product: Product = Product.CRUDE_OIL
) -> Site:
    """A site with one straight 1000 m DN300 line 'L' and valves (chainage, remote)."""
    pipeline = Pipeline(
        id="L",
        name="test line",
        product=product,
        vertices_m=np.array([[0.0, 0.0], [1000.0, 0.0]]),
        diameter_m=0.3239,
        wall_thickness_m=0.0064,
        depth_of_cover_m=1.2,
        operating_pressure_pa=3.5e6,
        valves=tuple(
            Valve(
                id=f"L-V{index + 1}", pipeline_id="L", chainage_m=chainage, remotely_operated=remote
            )
            for index, (chainage, remote) in enumerate(valves)
        ),
    )
    return Site(
        id="line",
        name="line",
        origin=GeoOrigin(0.0, 0.0, 0.0),
        pipelines=(pipeline,),
        municipal_pipes=(),
        manholes=(),
        utility_tunnels=(),
        buildings=(),
        road_nodes=(),
        roads=(),
        assembly_points=(),
        gas_detectors=(),
        wind_stations=(),
        cameras=(),
    )


# --- Constants and formulas ---------------------------------------------------------------------


def test_api_gravity_density_hand_worked() -> None:
    assert_allclose(crude_density_from_api_gravity(10.0), 999.016, rtol=1e-12)  # water: 10 deg API
    assert_allclose(crude_density_from_api_gravity(30.0), 875.2988, rtol=1e-6)
    assert IsolationAssumptions().crude_density_kg_per_m3 == pytest.approx(CRUDE_30_API_KG_PER_M3)


def test_line_fill_hand_worked() -> None:
    assert_allclose(line_fill_m3(0.3922, 1250.0), 151.01326, rtol=1e-6)
    assert_allclose(line_fill_m3(1.0, 4.0 / math.pi), 1.0, rtol=1e-12)


def test_standard_methane_density() -> None:
    assumptions = IsolationAssumptions()
    assert_allclose(
        assumptions.associated_gas_density_kg_per_sm3, METHANE_STANDARD_KG_PER_M3, rtol=1e-4
    )


# --- The graph ---------------------------------------------------------------------------------


def test_wanli_graph_nodes_and_edges() -> None:
    valves = {valve.id for pipeline in WANLI.pipelines for valve in pipeline.valves}
    ends = {end_node_id(pid, at_start=flag) for pid in ("P1", "P2") for flag in (True, False)}
    assert set(GRAPH.nodes) == valves | ends
    assert {GRAPH.nodes[node]["kind"] for node in valves} == {NodeKind.VALVE}
    assert {GRAPH.nodes[node]["kind"] for node in ends} == {NodeKind.END}
    assert sorted(GRAPH.graph["segment_edges"]) == sorted(segment.id for segment in WANLI.segments)
    assert GRAPH.number_of_edges() == 9  # 4 segments on P1, 5 on P2
    assert graph_invariant_problems(GRAPH) == []


def test_wanli_graph_edges_carry_the_segments() -> None:
    for segment in WANLI.segments:
        pipeline = WANLI.pipeline(segment.pipeline_id)
        start, end = GRAPH.graph["segment_edges"][segment.id]
        data = GRAPH.edges[start, end]
        length_m = segment.end_chainage_m - segment.start_chainage_m
        internal_m = pipeline.diameter_m - 2.0 * pipeline.wall_thickness_m
        assert data["length_m"] == pytest.approx(length_m)
        assert data["internal_diameter_m"] == pytest.approx(internal_m)
        assert data["volume_m3"] == pytest.approx(math.pi / 4.0 * internal_m**2 * length_m)
        assert data["product"] is Product.CRUDE_OIL
        assert data["operating_pressure_pa"] == pipeline.operating_pressure_pa
        # every segment runs between two valves or a valve and an end
        assert start == (segment.upstream_valve_id or end_node_id(pipeline.id, at_start=True))
        assert end == (segment.downstream_valve_id or end_node_id(pipeline.id, at_start=False))
    for pipeline in WANLI.pipelines:
        total = sum(
            data["length_m"]
            for _, _, data in GRAPH.edges(data=True)
            if data["pipeline_id"] == pipeline.id
        )
        assert total == pytest.approx(pipeline.length_m)
    assert GRAPH.edges["P1-V2", "P1-V3"]["volume_m3"] == pytest.approx(151.01326, rel=1e-6)


def test_valve_at_a_pipeline_end_takes_the_end_node() -> None:
    graph = pipeline_graph(line_site(((0.0, True), (500.0, True), (1000.0, False))))
    assert set(graph.nodes) == {"L-V1", "L-V2", "L-V3"}
    assert graph_invariant_problems(graph) == []


def test_graph_invariants_catch_a_gap() -> None:
    graph = pipeline_graph(line_site(((500.0, True),))).copy()
    graph.edges["L-V1", "L:end"]["start_chainage_m"] = 520.0
    assert any("gap" in problem for problem in graph_invariant_problems(graph))


# --- Single leaks on the reference site -----------------------------------------------------------


def test_leak_inside_a_segment_closes_its_two_valves() -> None:
    plan = isolation_plan(GRAPH, "P1", 2236.0)
    assert plan.status is IsolationStatus.ISOLATED
    assert plan.valves_to_close == ("P1-V2", "P1-V3")  # upstream first
    (section,) = plan.sections
    assert section.segment_ids == ("P1-S3",)
    assert section.length_m == pytest.approx(1250.0)
    assert section.line_fill_m3 == pytest.approx(P1_AREA_M2 * 1250.0)
    assert section.line_fill_kg == pytest.approx(P1_AREA_M2 * 1250.0 * CRUDE_30_API_KG_PER_M3)
    upstream, downstream = plan.closures
    assert (upstream.side, upstream.remotely_operated, upstream.needs_crew) == (
        Side.UPSTREAM,
        False,
        True,
    )
    assert (downstream.side, downstream.remotely_operated, downstream.needs_crew) == (
        Side.DOWNSTREAM,
        True,
        False,
    )
    assert "crew" in upstream.instruction
    assert any("P1-V2 is manual" in note for note in plan.notes)


def test_site_is_accepted_in_place_of_the_graph() -> None:
    assert (
        isolation_plan(WANLI, "P2", 1500.0).to_json_dict()
        == isolation_plan(GRAPH, "P2", 1500.0).to_json_dict()
    )


def test_leak_exactly_at_a_valve_uses_the_next_valves_out() -> None:
    plan = isolation_plan(GRAPH, "P1", 1700.0)  # at P1-V2
    (section,) = plan.sections
    assert section.segment_ids == ("P1-S2", "P1-S3")
    assert section.leak_range_valve_ids == ("P1-V2",)
    assert plan.valves_to_close == ("P1-V1", "P1-V3")
    assert section.length_m == pytest.approx(2950.0 - 450.0)
    assert any("P1-V2 lies within the credible leak range" in note for note in plan.notes)


def test_range_spanning_several_segments() -> None:
    plan = isolation_plan(GRAPH, "P2", 1000.0, 2500.0)
    (section,) = plan.sections
    assert section.segment_ids == ("P2-S2", "P2-S3", "P2-S4")
    assert section.leak_range_valve_ids == ("P2-V2", "P2-V3")
    assert plan.valves_to_close == ("P2-V1", "P2-V4")
    assert section.line_fill_m3 == pytest.approx(P2_AREA_M2 * 2600.0)
    assert section.line_fill_m3 == pytest.approx(488.29, abs=0.01)


def test_leak_before_the_first_valve_is_only_partly_isolable() -> None:
    plan = isolation_plan(GRAPH, "P1", 100.0)
    assert plan.status is IsolationStatus.PARTIAL
    (section,) = plan.sections
    assert not section.complete
    (end,) = section.open_ends
    assert (end.node_id, end.side, end.chainage_m) == ("P1:start", Side.UPSTREAM, 0.0)
    assert plan.valves_to_close == ("P1-V1",)
    assert section.isolated_after_s is None
    # flow from the upstream station is not stopped by any valve in the site model
    assert section.release.total_upper_m3 is None
    assert plan.worst_case_release_m3 is None
    assert any("station or end valve outside the site model" in note for note in plan.notes)
    assert any("cannot be bounded" in note for note in plan.notes)
    # once the pumps' shutdown time is known the release is bounded
    bounded = isolation_plan(
        GRAPH, "P1", 100.0, assumptions=IsolationAssumptions(pump_shutdown_time_s=300.0)
    )
    flow = 1.5 * P1_AREA_M2
    assert bounded.sections[0].release.pumped_volume_upper_m3 == pytest.approx(
        flow * (600.0 + 300.0)
    )


def test_leak_after_the_last_valve_has_an_open_downstream_end() -> None:
    plan = isolation_plan(GRAPH, "P1", 3200.0)
    (section,) = plan.sections
    assert [(end.node_id, end.side) for end in section.open_ends] == [("P1:end", Side.DOWNSTREAM)]
    assert plan.valves_to_close == ("P1-V3",)
    assert section.release.supply_stopped_after_s == pytest.approx(180.0)  # remote P1-V3
    assert section.release.total_upper_m3 is not None
    assert not section.release.drain_down_bounded


def test_out_of_service_valve_is_replaced_by_the_next_one_out() -> None:
    plan = isolation_plan(GRAPH, "P2", 1500.0, valves_out_of_service=["P2-V3"])
    (section,) = plan.sections
    assert section.segment_ids == ("P2-S3", "P2-S4")
    assert section.bypassed_valve_ids == ("P2-V3",)
    assert plan.valves_to_close == ("P2-V2", "P2-V4")
    downstream = plan.closures[1]
    assert downstream.replaces_valve_ids == ("P2-V3",)
    assert any("P2-V3 out of service" in note for note in plan.notes)


def test_two_out_of_service_valves_in_a_row() -> None:
    plan = isolation_plan(GRAPH, "P2", 2500.0, valves_out_of_service=["P2-V3", "P2-V2"])
    assert plan.valves_to_close == ("P2-V1", "P2-V4")
    assert plan.closures[0].replaces_valve_ids == ("P2-V3", "P2-V2")  # from the leak outwards


def test_no_valve_beyond_an_out_of_service_one_leaves_the_side_open() -> None:
    plan = isolation_plan(GRAPH, "P1", 2236.0, valves_out_of_service=["P1-V3"])
    assert plan.status is IsolationStatus.PARTIAL
    assert [end.node_id for end in plan.sections[0].open_ends] == ["P1:end"]
    assert plan.valves_to_close == ("P1-V2",)


def test_line_without_a_usable_valve_is_not_isolable() -> None:
    plan = isolation_plan(LAKESIDE, "L1", 300.0)  # at the site's only valve
    assert plan.status is IsolationStatus.NOT_ISOLABLE
    assert plan.closures == ()
    assert {end.side for end in plan.sections[0].open_ends} == {Side.UPSTREAM, Side.DOWNSTREAM}
    assert any("no block valve can isolate" in note for note in plan.notes)


def test_out_of_service_valve_at_a_line_end_is_an_open_end() -> None:
    site = line_site(((0.0, True), (500.0, True)))
    plan = isolation_plan(site, "L", 200.0, valves_out_of_service=["L-V1"])
    assert [(end.node_id, end.side) for end in plan.sections[0].open_ends] == [
        ("L-V1", Side.UPSTREAM)
    ]
    assert plan.status is IsolationStatus.PARTIAL


def test_reverse_flow_swaps_upstream_and_downstream() -> None:
    assumptions = IsolationAssumptions(reverse_flow_pipeline_ids=frozenset({"P1"}))
    plan = isolation_plan(GRAPH, "P1", 2236.0, assumptions=assumptions)
    assert plan.valves_to_close == ("P1-V3", "P1-V2")
    assert plan.closures[0].side is Side.UPSTREAM


# --- Release estimates --------------------------------------------------------------------------


def test_release_hand_worked() -> None:
    assumptions = IsolationAssumptions(
        flow_rates_m3_per_s={"P1": 0.2},
        detection_time_s=600.0,
        remote_valve_closure_time_s=180.0,
        manual_valve_closure_time_s=2700.0,
        leak_rate_m3_per_s=0.05,
        drain_down_fraction=0.5,
    )
    plan = isolation_plan(GRAPH, "P1", 2236.0, assumptions=assumptions)
    release = plan.sections[0].release
    fill = P1_AREA_M2 * 1250.0
    # supply stops when the manual upstream valve P1-V2 closes, 2700 s after confirmation
    assert release.supply_stopped_after_s == pytest.approx(2700.0)
    assert release.release_time_s == pytest.approx(3300.0)
    assert release.pumped_volume_upper_m3 == pytest.approx(0.2 * 3300.0)
    assert release.pumped_volume_best_m3 == pytest.approx(0.05 * 3300.0)
    assert release.drain_down_upper_m3 == pytest.approx(fill)
    assert release.drain_down_best_m3 == pytest.approx(0.5 * fill)
    assert release.total_upper_m3 == pytest.approx(660.0 + fill)
    assert release.total_best_kg == pytest.approx((165.0 + 0.5 * fill) * CRUDE_30_API_KG_PER_M3)
    assert plan.worst_case_release_m3 == pytest.approx(660.0 + fill)
    # the remote downstream valve waits for the supply to be cut
    assert plan.closures[1].closed_after_s == pytest.approx(2700.0)
    assert plan.sections[0].isolated_after_s == pytest.approx(2700.0)


def test_pump_shutdown_cuts_the_supply_first() -> None:
    assumptions = IsolationAssumptions(flow_rates_m3_per_s={"P1": 0.2}, pump_shutdown_time_s=300.0)
    plan = isolation_plan(GRAPH, "P1", 2236.0, assumptions=assumptions)
    release = plan.sections[0].release
    assert release.pumped_volume_upper_m3 == pytest.approx(0.2 * (600.0 + 300.0))
    assert plan.closures[1].closed_after_s == pytest.approx(300.0)  # remote P1-V3 after the pumps
    assert plan.sections[0].isolated_after_s == pytest.approx(2700.0)  # the manual P1-V2


def test_default_flow_is_velocity_times_area() -> None:
    release = isolation_plan(GRAPH, "P2", 1500.0).sections[0].release
    assert release.flow_rate_m3_per_s == pytest.approx(1.5 * P2_AREA_M2)
    assert "site model has no flow rate" in release.flow_rate_source


def test_associated_gas_from_the_gas_oil_ratio() -> None:
    plan = isolation_plan(GRAPH, "P1", 2236.0)
    assert plan.sections[0].release.associated_gas_upper_sm3 is None
    assert any("no gas-oil ratio" in note for note in plan.notes)
    with_gas = isolation_plan(
        GRAPH, "P1", 2236.0, assumptions=IsolationAssumptions(gas_oil_ratio_sm3_per_m3=10.0)
    )
    release = with_gas.sections[0].release
    assert release.total_upper_m3 is not None
    assert release.associated_gas_upper_sm3 == pytest.approx(10.0 * release.total_upper_m3)
    assert release.associated_gas_upper_kg == pytest.approx(
        10.0 * release.total_upper_m3 * METHANE_STANDARD_KG_PER_M3, rel=1e-4
    )


def test_non_crude_line_has_no_mass() -> None:
    plan = isolation_plan(
        line_site(((300.0, True), (700.0, True)), product=Product.WATER), "L", 500.0
    )
    assert plan.sections[0].line_fill_kg is None
    assert plan.sections[0].release.total_upper_kg is None
    assert any("not crude oil" in note for note in plan.notes)


# --- Credible ranges from the localiser ----------------------------------------------------------


def test_segments_by_credible_mass() -> None:
    probabilities = {"P1-S3": 0.7, "P1-S2": 0.2, "P2-S3": 0.1}
    plan = isolation_plan_for_segments(GRAPH, probabilities, credible_mass=0.85)
    assert [section.segment_ids for section in plan.sections] == [("P1-S3",), ("P1-S2",)]
    assert [section.leak_probability for section in plan.sections] == pytest.approx([0.7, 0.2])
    # P1-V2 closes both; upstream valves first in flow order, then the downstream one
    assert plan.valves_to_close == ("P1-V1", "P1-V2", "P1-V3")
    fills = [section.release.total_upper_m3 for section in plan.sections]
    assert plan.worst_case_release_m3 == pytest.approx(
        max(value for value in fills if value is not None)
    )
    assert plan.best_estimate_release_m3 == plan.sections[0].release.total_best_m3
    wider = isolation_plan_for_segments(GRAPH, probabilities, credible_mass=0.95)
    assert {segment for section in wider.sections for segment in section.segment_ids} == {
        "P1-S2",
        "P1-S3",
        "P2-S3",
    }


def test_segments_from_the_localiser_type_and_order_independence() -> None:
    items = [
        SegmentProbability("P2-S3", "P2", 0.6, "P2-V2", "P2-V3"),
        SegmentProbability("P2-S4", "P2", 0.4, "P2-V3", "P2-V4"),
    ]
    plan = isolation_plan_for_segments(GRAPH, items, credible_mass=0.99)
    reversed_plan = isolation_plan_for_segments(GRAPH, items[::-1], credible_mass=0.99)
    assert plan.to_json_dict() == reversed_plan.to_json_dict()
    assert plan.valves_to_close == ("P2-V2", "P2-V3", "P2-V4")


def test_intervals_on_two_pipelines() -> None:
    intervals = [
        ChainageInterval("P1", 2200.0, 2260.0, 0.55),
        ChainageInterval("P2", 2150.0, 2210.0, 0.35),
    ]
    plan = isolation_plan_for_intervals(GRAPH, intervals)
    assert [section.segment_ids for section in plan.sections] == [("P1-S3",), ("P2-S4",)]
    assert plan.valves_to_close == ("P1-V2", "P2-V3", "P1-V3", "P2-V4")
    assert plan.status is IsolationStatus.ISOLATED


def test_overlapping_intervals_share_one_section() -> None:
    intervals = [
        ChainageInterval("P1", 1600.0, 1700.0, 0.5),
        ChainageInterval("P1", 1750.0, 1800.0, 0.3),
    ]
    plan = isolation_plan_for_intervals(GRAPH, intervals)
    (section,) = plan.sections
    assert section.candidate_indices == (0, 1)
    assert section.leak_probability == pytest.approx(0.8)


# --- Validation and output -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pipeline_id", "low", "high", "error"),
    [
        ("P1", -1.0, None, ValueError),
        ("P1", 4000.0, None, ValueError),
        ("P1", 2000.0, 1000.0, ValueError),
        ("P9", 10.0, None, KeyError),
    ],
)
def test_bad_requests(
    pipeline_id: str, low: float, high: float | None, error: type[Exception]
) -> None:
    with pytest.raises(error):
        isolation_plan(GRAPH, pipeline_id, low, high)


def test_bad_inputs() -> None:
    with pytest.raises(KeyError, match="P1-V9"):
        isolation_plan(GRAPH, "P1", 100.0, valves_out_of_service=["P1-V9"])
    with pytest.raises(KeyError, match="P1-S9"):
        isolation_plan_for_segments(GRAPH, {"P1-S9": 1.0})
    with pytest.raises(ValueError, match="nothing to isolate"):
        isolation_plan_for_segments(GRAPH, {"P1-S1": 0.0})
    with pytest.raises(ValueError, match="probability"):
        isolation_plan_for_intervals(GRAPH, [ChainageInterval("P1", 10.0, 20.0, 1.5)])
    with pytest.raises(ValueError, match="drain_down_fraction"):
        IsolationAssumptions(drain_down_fraction=1.5)
    with pytest.raises(ValueError, match="detection_time_s"):
        IsolationAssumptions(detection_time_s=-1.0)
    with pytest.raises(ValueError, match="flow_rates"):
        IsolationAssumptions(flow_rates_m3_per_s={"P1": math.nan})


def test_json_is_plain_and_deterministic() -> None:
    plan = isolation_plan(GRAPH, "P2", 1000.0, 2500.0, valves_out_of_service=["P2-V4"])
    text = json.dumps(plan.to_json_dict(), allow_nan=False, sort_keys=True)
    assert json.loads(text) == plan.to_json_dict()
    again = isolation_plan(
        pipeline_graph(WANLI), "P2", 1000.0, 2500.0, valves_out_of_service=["P2-V4"]
    )
    assert json.dumps(again.to_json_dict(), sort_keys=True) == text
    decoded = json.loads(text)
    assert decoded["assumptions"]["crude_density_kg_per_m3"] == pytest.approx(
        CRUDE_30_API_KG_PER_M3
    )
    assert decoded["valves_to_close"] == ["P2-V1"]


# --- Properties ----------------------------------------------------------------------------------

VALVE_IDS = sorted(node for node, data in GRAPH.nodes(data=True) if data["kind"] is NodeKind.VALVE)


@settings(max_examples=150, deadline=None)
@given(
    pipeline_index=st.integers(0, 1),
    low_fraction=st.floats(0.0, 1.0),
    width_fraction=st.floats(0.0, 0.5),
    out_of_service=st.sets(st.sampled_from(VALVE_IDS), max_size=3),
)
def test_isolation_invariants(
    pipeline_index: int, low_fraction: float, width_fraction: float, out_of_service: set[str]
) -> None:
    pipeline = WANLI.pipelines[pipeline_index]
    low = low_fraction * pipeline.length_m
    high = min(low + width_fraction * pipeline.length_m, pipeline.length_m)
    plan = isolation_plan(GRAPH, pipeline.id, low, high, valves_out_of_service=out_of_service)
    (section,) = plan.sections  # one interval on one line: one section
    edges = [GRAPH.edges[GRAPH.graph["segment_edges"][sid]] for sid in section.segment_ids]
    # contiguous, and covers the leak interval
    starts = [edge["start_chainage_m"] for edge in edges]
    ends = [edge["end_chainage_m"] for edge in edges]
    assert starts == sorted(starts)
    assert all(np.isclose(a, b) for a, b in zip(ends[:-1], starts[1:], strict=True))
    assert starts[0] <= low <= high <= ends[-1]
    # the closed valves are in service, outside the leak interval and at the section's ends
    for closure in plan.closures:
        assert closure.valve_id not in out_of_service
        assert not low <= closure.chainage_m <= high
        assert closure.chainage_m in (pytest.approx(starts[0]), pytest.approx(ends[-1]))
    # no usable valve inside the section
    for valve in VALVE_IDS:
        chainage = GRAPH.nodes[valve]["chainage_m"]
        if GRAPH.nodes[valve]["pipeline_id"] == pipeline.id and starts[0] < chainage < ends[-1]:
            assert valve in out_of_service or low <= chainage <= high
    assert section.line_fill_m3 == pytest.approx(sum(edge["volume_m3"] for edge in edges))
    assert section.length_m == pytest.approx(ends[-1] - starts[0])
    sides_closed = len(plan.closures) + len(section.open_ends)
    assert sides_closed == 2
    expected = IsolationStatus.ISOLATED if not section.open_ends else IsolationStatus.PARTIAL
    if not plan.closures:
        expected = IsolationStatus.NOT_ISOLABLE
    assert plan.status is expected
    release = section.release
    if release.total_upper_m3 is not None and release.total_best_m3 is not None:
        assert 0.0 <= release.total_best_m3 <= release.total_upper_m3


def localisation_result(
    intervals: tuple[ChainageInterval, ...], segments: tuple[SegmentProbability, ...]
) -> LocalisationResult:
    """A hand-built localisation: only the fields the isolation planner reads matter."""
    return LocalisationResult(
        mode=LocalisationMode.PIPELINES,
        gas=Gas.METHANE,
        lel_basis=LelBasis.IEC_60079_20_1,
        time_s=0.0,
        candidates_m=np.zeros((1, 2)),
        probability=np.ones(1),
        map_position_m=np.zeros(2),
        mean_position_m=np.zeros(2),
        map_pipeline_id="P1",
        map_chainage_m=2236.0,
        pipeline_probabilities={"P1": 1.0},
        segments=segments,
        credible_mass=0.9,
        credible_intervals=intervals,
        credible_area_m2=0.0,
        credible_length_m=0.0,
        rate=RateEstimate(1.0, 0.5, 2.0, 0.9, at_prior_bound=False),
        observations_used={},
        detections={},
        peak_fraction_of_lel=0.0,
        wind=None,
        flags=frozenset(),
    )


def test_plan_from_a_localisation_prefers_intervals() -> None:
    segments = (
        SegmentProbability("P1-S3", "P1", 0.8, "P1-V2", "P1-V3"),
        SegmentProbability("P1-S2", "P1", 0.2, "P1-V1", "P1-V2"),
    )
    intervals = (ChainageInterval("P1", 2230.0, 2240.0, 0.9),)
    from_intervals = isolation_plan_for_localisation(
        GRAPH, localisation_result(intervals, segments)
    )
    assert from_intervals.valves_to_close == ("P1-V2", "P1-V3")
    assert from_intervals.candidates[0].start_chainage_m == 2230.0
    from_segments = isolation_plan_for_localisation(GRAPH, localisation_result((), segments))
    # credible mass 0.9 needs both segments
    assert [section.segment_ids for section in from_segments.sections] == [("P1-S3",), ("P1-S2",)]
    with pytest.raises(ValueError, match="no pipeline segment"):
        isolation_plan_for_localisation(GRAPH, localisation_result((), ()))
