"""Loading and validating site files (core/site_loader.py).

Both sites load: the reference site ``sites/wanli`` and the small fixture
``tests/site_fixtures/lakeside`` (hand-worked figures pinned below). Every validation rule has a
test that writes a deliberately broken copy of the fixture to ``tmp_path`` and checks that the
error names the file and the field.
"""

import copy
import json
import math
import tomllib
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.testing import assert_allclose

from pipesentinel.site import (
    BuildingUse,
    DetectorPlacement,
    DeviceKind,
    Gas,
    NetworkKind,
    Product,
    Site,
)
from pipesentinel.site_loader import (
    DEFAULT_DEVICE_MARGIN_M,
    SiteIssue,
    SiteValidationError,
    load_site,
    parse_site,
)

REPO = Path(__file__).resolve().parent.parent
WANLI_DIR = REPO / "sites" / "wanli"
LAKESIDE_DIR = REPO / "tests" / "site_fixtures" / "lakeside"
LAKESIDE = tomllib.loads((LAKESIDE_DIR / "site.toml").read_text(encoding="utf-8"))

Document = dict[str, Any]


# --------------------------------------------------------------------------------------------
# A minimal TOML writer for the broken copies (tomllib only reads).


def _toml_value(value: object) -> str:  # noqa: PLR0911 - one return per TOML type
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # JSON string escapes are valid TOML basic-string escapes
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key} = {_toml_value(item)}" for key, item in value.items()) + "}"
    raise TypeError(f"cannot write {value!r} as TOML")


def _is_table_array(value: object) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def dump_toml(document: Document, prefix: str = "") -> str:
    """TOML text for ``document``: scalars and arrays first, then tables, then arrays of tables."""
    lines = [
        f"{key} = {_toml_value(value)}"
        for key, value in document.items()
        if not isinstance(value, dict) and not _is_table_array(value)
    ]
    for key, value in document.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            lines += ["", f"[{name}]", dump_toml(value, f"{name}.")]
        elif _is_table_array(value):
            for item in value:
                lines += ["", f"[[{name}]]", dump_toml(item, f"{name}.")]
    return "\n".join(lines)


def write_site(tmp_path: Path, document: Document) -> Path:
    path = tmp_path / "site.toml"
    path.write_text(dump_toml(document) + "\n", encoding="utf-8")
    return path


def broken(
    tmp_path: Path, mutate: Callable[[Document], object]
) -> tuple[Path, SiteValidationError]:
    """Write the fixture changed by ``mutate``; return the file and the error loading it."""
    document = copy.deepcopy(LAKESIDE)
    mutate(document)
    path = write_site(tmp_path, document)
    with pytest.raises(SiteValidationError) as caught:
        load_site(tmp_path)
    return path, caught.value


def assert_issue(path: Path, error: SiteValidationError, field: str, fragment: str) -> None:
    """One message line is ``<file>: <field>: ...fragment...``."""
    prefix = f"{path}: {field}: "
    matching = [line for line in error.messages if line.startswith(prefix) and fragment in line]
    assert matching, f"no line starting {prefix!r} containing {fragment!r} in:\n{error}"
    assert all(line in str(error) for line in matching)


# --------------------------------------------------------------------------------------------
# The two sites load


@pytest.fixture(scope="module")
def wanli() -> Site:
    return load_site(WANLI_DIR)


@pytest.fixture(scope="module")
def lakeside() -> Site:
    return load_site(LAKESIDE_DIR)


def test_the_dumper_round_trips_the_fixture(tmp_path: Path) -> None:
    write_site(tmp_path, LAKESIDE)
    assert tomllib.loads((tmp_path / "site.toml").read_text()) == LAKESIDE


def test_lakeside_counts_and_hand_worked_figures(lakeside: Site) -> None:
    assert lakeside.id == "lakeside"
    assert (lakeside.origin.latitude_deg, lakeside.origin.longitude_deg) == (-27.5, -48.6)
    assert len(lakeside.pipelines) == 1
    pipeline = lakeside.pipelines[0]
    assert pipeline.length_m == pytest.approx(700.0)  # 300 m east + 400 m north
    assert pipeline.operating_pressure_pa == 3.5e6
    assert [s.id for s in pipeline.segments] == ["L1-S1", "L1-S2"]
    assert [(s.start_chainage_m, s.end_chainage_m) for s in pipeline.segments] == [
        (0.0, 300.0),
        (300.0, 700.0),
    ]
    assert (len(lakeside.gas_detectors), len(lakeside.wind_stations), len(lakeside.cameras)) == (
        3,
        1,
        1,
    )
    assert (len(lakeside.buildings), len(lakeside.road_nodes), len(lakeside.roads)) == (2, 3, 2)
    assert lakeside.manholes == ()
    assert lakeside.municipal_pipes == ()
    assert lakeside.utility_tunnels == ()
    # Detector heads: chainage 100 -> (100, 0); 250 with 2 m to the left of east -> (250, 2);
    # 500 -> 200 m up the northward stretch -> (300, 200); all 0.5 m above ground.
    positions = np.array([detector.position_m for detector in lakeside.gas_detectors])
    assert_allclose(positions, [[100, 0, 0.5], [250, 2, 0.5], [300, 200, 0.5]])
    assert [d.chainage_m for d in lakeside.gas_detectors] == [100.0, 250.0, 500.0]
    assert all(d.gases == (Gas.METHANE,) and d.zone == "L1" for d in lakeside.gas_detectors)
    road = lakeside.roads[1]
    assert_allclose(road.vertices_m, [[200, 50], [250, 175], [200, 300]])  # from, via, to
    camera = lakeside.cameras[0]
    assert camera.resolution_px == (640, 512)
    assert camera.kind is DeviceKind.CAMERA


def test_wanli_counts(wanli: Site) -> None:
    assert wanli.id == "wanli"
    assert len(wanli.pipelines) == 2
    pipeline_detectors = [
        d for d in wanli.gas_detectors if d.placement is DetectorPlacement.PIPELINE
    ]
    underground = [d for d in wanli.gas_detectors if d.placement is DetectorPlacement.UNDERGROUND]
    assert len(pipeline_detectors) == 20
    assert len(underground) == 10
    assert len(wanli.wind_stations) == 2
    assert len(wanli.cameras) == 8
    assert len(wanli.devices) == 40
    assert len(wanli.buildings) >= 25
    uses = [building.use for building in wanli.buildings]
    assert uses.count(BuildingUse.SCHOOL) >= 2
    assert BuildingUse.HOSPITAL in uses
    assert {BuildingUse.RESIDENTIAL, BuildingUse.COMMERCIAL, BuildingUse.INDUSTRIAL} <= set(uses)
    assert len(wanli.assembly_points) >= 3
    assert {pipe.network for pipe in wanli.municipal_pipes} == set(NetworkKind)
    assert len(wanli.utility_tunnels) == 1


def test_wanli_pipelines(wanli: Site) -> None:
    for pipeline in wanli.pipelines:
        assert pipeline.product is Product.CRUDE_OIL
        assert 2000.0 <= pipeline.length_m <= 4000.0
        assert 0.3 <= pipeline.diameter_m <= 0.55  # DN 300-500 (outside diameter)
        assert 1.2 <= pipeline.depth_of_cover_m <= 2.0
        assert 3e6 <= pipeline.operating_pressure_pa <= 6e6
        assert 3 <= len(pipeline.valves) <= 5
        assert any(valve.remotely_operated for valve in pipeline.valves)
        assert all(0.0 < valve.chainage_m < pipeline.length_m for valve in pipeline.valves)
        # Barlow hoop stress P D / (2 t) well below the 359 MPa SMYS of API 5L X52.
        hoop_stress_pa = (
            pipeline.operating_pressure_pa * pipeline.diameter_m / (2 * pipeline.wall_thickness_m)
        )
        assert hoop_stress_pa < 0.5 * 359e6
    # Hand-worked: P1's first stretch runs from (-1700, -420) to (-1150, -330).
    assert wanli.pipeline("P1").vertex_chainages_m[1] == pytest.approx(math.hypot(550.0, 90.0))


def test_wanli_detectors_follow_their_references(wanli: Site) -> None:
    for detector in wanli.gas_detectors:
        if detector.placement is DetectorPlacement.PIPELINE:
            assert detector.pipeline_id is not None
            assert detector.chainage_m is not None
            pipeline = wanli.pipeline(detector.pipeline_id)
            assert 0.0 <= detector.chainage_m <= pipeline.length_m
            ground = pipeline.point_at_chainage(detector.chainage_m)
            _, distance = pipeline.locate(detector.position_m[:2])
            assert np.hypot(*(detector.position_m[:2] - ground)) <= 2.0  # lateral offsets
            assert float(distance) <= 2.0
            assert 0.3 <= detector.position_m[2] <= 0.5
            assert detector.manhole_id is None
        else:
            assert detector.manhole_id is not None
            manhole = wanli.manhole(detector.manhole_id)
            assert_allclose(detector.position_m[:2], manhole.position_m)
            assert -manhole.depth_m <= detector.position_m[2] < 0.0
            assert detector.pipeline_id is None
    for zone, detectors in wanli.zones.items():
        assert len(detectors) >= 2, zone
    # Leak-point zones default to the segment each detector is in.
    for detector in wanli.gas_detectors:
        if detector.placement is DetectorPlacement.PIPELINE:
            assert detector.pipeline_id is not None
            assert detector.chainage_m is not None
            pipeline = wanli.pipeline(detector.pipeline_id)
            assert detector.zone == pipeline.segment_at_chainage(detector.chainage_m).id


def test_wanli_devices_have_sensible_settings(wanli: Site) -> None:
    assert all(1.0 <= d.sample_period_s <= 5.0 for d in wanli.gas_detectors)
    for station in wanli.wind_stations:
        assert station.mast_height_m == 10.0
        assert 10.0 <= station.averaging_period_s <= 60.0
    for camera in wanli.cameras:
        assert camera.resolution_px == (640, 512)
        assert 100.0 <= camera.laser_range_m <= 200.0
        assert 0.0 < camera.tilt_deg < 90.0
        assert camera.frame_period_s <= 10.0


def test_wanli_people_by_day_and_night(wanli: Site) -> None:
    for building in wanli.buildings:
        if building.use is BuildingUse.SCHOOL:
            assert building.occupants_day > 50 * max(building.occupants_night, 1)
        if building.use is BuildingUse.RESIDENTIAL:
            assert building.occupants_night > building.occupants_day
        if building.use is BuildingUse.HOSPITAL:
            assert building.occupants_night > 0


def test_wanli_road_graph_is_connected(wanli: Site) -> None:
    neighbours: dict[str, set[str]] = {node.id: set() for node in wanli.road_nodes}
    for road in wanli.roads:
        neighbours[road.from_node].add(road.to_node)
        neighbours[road.to_node].add(road.from_node)
    seen = {wanli.road_nodes[0].id}
    queue = deque(seen)
    while queue:
        for other in neighbours[queue.popleft()] - seen:
            seen.add(other)
            queue.append(other)
    assert seen == set(neighbours)
    for road in wanli.roads:
        assert_allclose(road.vertices_m[0], wanli.road_node(road.from_node).position_m)
        assert_allclose(road.vertices_m[-1], wanli.road_node(road.to_node).position_m)


def test_wanli_municipal_networks_cross_the_oil_lines(wanli: Site) -> None:
    crossing: set[str] = set()
    for pipe in wanli.municipal_pipes:
        samples = np.linspace(0.0, 1.0, 2001)[:, np.newaxis]
        for start, end in zip(pipe.vertices_m, pipe.vertices_m[1:], strict=False):
            points = start + samples * (end - start)
            for pipeline in wanli.pipelines:
                if float(np.min(pipeline.locate(points)[1])) < 1.0:
                    crossing.add(pipe.id)
    assert {"DRN-1", "DRN-2", "SEW-1", "SEW-2", "GAS-MP1"} <= crossing


def test_ids_are_unique_across_the_site(wanli: Site) -> None:
    ids = [
        *(p.id for p in wanli.pipelines),
        *(v.id for p in wanli.pipelines for v in p.valves),
        *(s.id for s in wanli.segments),
        *(p.id for p in wanli.municipal_pipes),
        *(m.id for m in wanli.manholes),
        *(t.id for t in wanli.utility_tunnels),
        *(b.id for b in wanli.buildings),
        *(n.id for n in wanli.road_nodes),
        *(r.id for r in wanli.roads),
        *(a.id for a in wanli.assembly_points),
        *(d.id for d in wanli.devices),
    ]
    assert len(ids) == len(set(ids))


def test_a_path_to_the_file_itself_is_accepted() -> None:
    assert load_site(LAKESIDE_DIR / "site.toml").id == "lakeside"


def test_parse_site_names_the_given_source() -> None:
    text = (LAKESIDE_DIR / "site.toml").read_text()
    with pytest.raises(SiteValidationError) as caught:
        parse_site(text.replace('id = "D1"', 'id = "D 1"'), source=Path("uploaded.toml"))
    assert caught.value.messages[0].startswith("uploaded.toml: gas_detectors[0].id: invalid id")


# --------------------------------------------------------------------------------------------
# Errors: reading


def test_missing_file_is_a_file_not_found_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"site\.toml"):
        load_site(tmp_path)


def test_toml_syntax_error_names_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "site.toml"
    path.write_text('[site]\nid = "x"\nname = \n')
    with pytest.raises(SiteValidationError) as caught:
        load_site(tmp_path)
    assert_issue(path, caught.value, "<toml>", "line 3")


def test_non_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "site.toml"
    path.write_bytes(b'[site]\nname = "\xff"\n')
    with pytest.raises(SiteValidationError) as caught:
        load_site(tmp_path)
    assert_issue(path, caught.value, "<file>", "not UTF-8")


def test_all_problems_are_collected(tmp_path: Path) -> None:
    def mutate(document: Document) -> None:
        document["pipelines"][0]["diameter_m"] = -0.3
        document["buildings"][1]["occupants_night"] = -1
        document["cameras"][0]["horizontal_fov_deg"] = 200.0

    path, error = broken(tmp_path, mutate)
    assert len(error.issues) == 3
    assert error.issues[0] == SiteIssue(
        "pipelines[0].diameter_m", "must be > 0, got -0.3 (entry 'L1')"
    )
    assert str(error).splitlines()[0] == f"{path}: 3 problems in the site file"
    assert all(line.startswith(f"{path}: ") for line in str(error).splitlines())
    assert isinstance(error, ValueError)


# --------------------------------------------------------------------------------------------
# Errors: structure, keys, types


def test_unknown_section_or_device_kind(tmp_path: Path) -> None:
    path, error = broken(tmp_path, lambda d: d.update(lidars=[{"id": "X1"}]))
    assert_issue(path, error, "lidars", "unknown section or key '[[lidars]]'")


def test_unknown_key_in_an_entry(tmp_path: Path) -> None:
    path, error = broken(tmp_path, lambda d: d["cameras"][0].update(zoom_factor=2.0))
    assert_issue(path, error, "cameras[0].zoom_factor", "unknown key 'zoom_factor'")
    assert_issue(path, error, "cameras[0].zoom_factor", "(entry 'C1')")


def test_device_kind_is_not_a_key(tmp_path: Path) -> None:
    path, error = broken(tmp_path, lambda d: d["wind_stations"][0].update(kind="gas"))
    assert_issue(path, error, "wind_stations[0].kind", "unknown key 'kind'")


def test_missing_required_key(tmp_path: Path) -> None:
    path, error = broken(tmp_path, lambda d: d["pipelines"][0].pop("diameter_m"))
    assert_issue(path, error, "pipelines[0].diameter_m", "missing required key")


def test_missing_site_table(tmp_path: Path) -> None:
    path, error = broken(tmp_path, lambda d: d.pop("site"))
    assert_issue(path, error, "site", "expected a [site] table")


def test_missing_pipelines(tmp_path: Path) -> None:
    def mutate(document: Document) -> None:
        for key in ("pipelines", "valves", "gas_detectors", "defaults"):
            document.pop(key)

    path, error = broken(tmp_path, mutate)
    assert_issue(path, error, "pipelines", "missing required section [[pipelines]]")


def test_table_instead_of_array_of_tables(tmp_path: Path) -> None:
    path, error = broken(tmp_path, lambda d: d.update(assembly_points={"id": "AP9"}))
    assert_issue(path, error, "assembly_points", "expected an array of tables")


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("tall", "expected a number, got string 'tall'"),
        (True, "expected a number, got boolean True"),
        ([6.0], "expected a number, got array"),
    ],
)
def test_wrong_type_of_number(tmp_path: Path, value: object, fragment: str) -> None:
    path, error = broken(tmp_path, lambda d: d["buildings"][0].update(height_m=value))
    assert_issue(path, error, "buildings[0].height_m", fragment)


def test_integer_fields_refuse_floats(tmp_path: Path) -> None:
    path, error = broken(tmp_path, lambda d: d["buildings"][0].update(occupants_day=2.5))
    assert_issue(path, error, "buildings[0].occupants_day", "expected an integer, got float 2.5")


def test_boolean_field_refuses_strings(tmp_path: Path) -> None:
    path, error = broken(tmp_path, lambda d: d["valves"][0].update(remotely_operated="yes"))
    assert_issue(path, error, "valves[0].remotely_operated", "expected true or false")


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_numbers(tmp_path: Path, value: float) -> None:
    path, error = broken(tmp_path, lambda d: d["wind_stations"][0].update(mast_height_m=value))
    assert_issue(path, error, "wind_stations[0].mast_height_m", "must be finite")


def test_unknown_enumeration_value(tmp_path: Path) -> None:
    path, error = broken(tmp_path, lambda d: d["buildings"][0].update(use="office"))
    assert_issue(path, error, "buildings[0].use", "unknown value 'office' (expected one of:")


@pytest.mark.parametrize(
    ("gases", "field", "fragment"),
    [
        (["methane", "hydrogen"], "gases[1]", "unknown value 'hydrogen'"),
        ([], "gases", "expected a non-empty array"),
        (["methane", "methane"], "gases", "more than once"),
    ],
)
def test_gases(tmp_path: Path, gases: list[str], field: str, fragment: str) -> None:
    path, error = broken(tmp_path, lambda d: d["gas_detectors"][0].update(gases=gases))
    assert_issue(path, error, f"gas_detectors[0].{field}", fragment)


@pytest.mark.parametrize("bad_id", ["D 1", "a/b", "site/#", "", "-lead"])
def test_invalid_ids(tmp_path: Path, bad_id: str) -> None:
    path, error = broken(tmp_path, lambda d: d["gas_detectors"][0].update(id=bad_id))
    assert_issue(path, error, "gas_detectors[0].id", "")


# --------------------------------------------------------------------------------------------
# Errors: sizes and ranges


@pytest.mark.parametrize(
    ("section", "key", "value", "fragment"),
    [
        ("pipelines", "diameter_m", -0.3, "must be > 0, got -0.3"),
        ("pipelines", "depth_of_cover_m", 0.0, "must be > 0, got 0"),
        ("pipelines", "operating_pressure_pa", -1.0, "must be > 0"),
        ("buildings", "height_m", 0.0, "must be > 0"),
        ("wind_stations", "sample_period_s", -10.0, "must be > 0"),
        ("cameras", "laser_range_m", 0.0, "must be > 0"),
        ("cameras", "mounting_height_m", -8.0, "must be > 0"),
        ("gas_detectors", "t90_s", 0.0, "must be > 0"),
        ("gas_detectors", "full_scale_ppm", 2e6, "must be in (0, 1e+06]"),
        ("assembly_points", "capacity_persons", 0, "must be >= 1"),
    ],
)
def test_negative_or_zero_sizes(
    tmp_path: Path, section: str, key: str, value: float, fragment: str
) -> None:
    path, error = broken(tmp_path, lambda d: d[section][0].update({key: value}))
    assert_issue(path, error, f"{section}[0].{key}", fragment)


def test_negative_occupants(tmp_path: Path) -> None:
    path, error = broken(tmp_path, lambda d: d["buildings"][1].update(occupants_night=-1))
    assert_issue(path, error, "buildings[1].occupants_night", "must be >= 0, got -1")


def test_wall_thicker_than_the_radius(tmp_path: Path) -> None:
    path, error = broken(tmp_path, lambda d: d["pipelines"][0].update(wall_thickness_m=0.2))
    assert_issue(path, error, "pipelines[0].wall_thickness_m", "less than half the outside")


@pytest.mark.parametrize("fov_deg", [0.0, 180.0, -5.0, 270.0])
def test_camera_field_of_view_outside_0_180(tmp_path: Path, fov_deg: float) -> None:
    path, error = broken(tmp_path, lambda d: d["cameras"][0].update(vertical_fov_deg=fov_deg))
    assert_issue(path, error, "cameras[0].vertical_fov_deg", "must be in (0, 180)")


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        ("heading_deg", 360.0, "must be in [0, 360)"),
        ("heading_deg", -1.0, "must be in [0, 360)"),
        ("tilt_deg", 95.0, "must be in [-90, 90]"),
        ("resolution_px", [640], "expected [width, height]"),
        ("resolution_px", [640, 0], "must be > 0"),
        ("resolution_px", [640.0, 512.0], "expected [width, height]"),
    ],
)
def test_camera_angles_and_resolution(
    tmp_path: Path, key: str, value: object, fragment: str
) -> None:
    path, error = broken(tmp_path, lambda d: d["cameras"][0].update({key: value}))
    assert_issue(path, error, f"cameras[0].{key}", fragment)


def test_time_zone_is_read_and_checked(tmp_path: Path) -> None:
    assert load_site(WANLI_DIR).time_zone == "Asia/Shanghai"
    path, error = broken(tmp_path, lambda d: d["site"].update(time_zone="Mars/Olympus_Mons"))
    assert_issue(path, error, "site.time_zone", "unknown IANA time zone 'Mars/Olympus_Mons'")


def test_origin_latitude_out_of_range(tmp_path: Path) -> None:
    path, error = broken(tmp_path, lambda d: d["site"]["origin"].update(latitude_deg=95.0))
    assert_issue(path, error, "site.origin.latitude_deg", "must be in [-90, 90], got 95")


# --------------------------------------------------------------------------------------------
# Errors: geometry


def test_polyline_with_fewer_than_two_vertices(tmp_path: Path) -> None:
    def mutate(document: Document) -> None:
        document["pipelines"][0]["vertices_m"] = [[0.0, 0.0]]

    path, error = broken(tmp_path, mutate)
    assert_issue(path, error, "pipelines[0].vertices_m", "needs at least 2 vertices, got 1")


def test_polyline_with_a_repeated_vertex(tmp_path: Path) -> None:
    def mutate(document: Document) -> None:
        document["pipelines"][0]["vertices_m"] = [[0.0, 0.0], [300.0, 0.0], [300.0, 0.0]]

    path, error = broken(tmp_path, mutate)
    assert_issue(path, error, "pipelines[0].vertices_m", "vertex 2 repeats vertex 1")


def test_malformed_vertex(tmp_path: Path) -> None:
    def mutate(document: Document) -> None:
        document["pipelines"][0]["vertices_m"] = [[0.0, 0.0], [300.0, 0.0, 5.0]]

    path, error = broken(tmp_path, mutate)
    assert_issue(path, error, "pipelines[0].vertices_m[1]", "expected an [east, north] pair")


def test_footprint_with_fewer_than_three_vertices(tmp_path: Path) -> None:
    def mutate(document: Document) -> None:
        document["buildings"][0]["footprint_m"] = [[0.0, 0.0], [10.0, 0.0]]

    path, error = broken(tmp_path, mutate)
    assert_issue(path, error, "buildings[0].footprint_m", "needs at least 3 vertices, got 2")


def test_self_intersecting_footprint(tmp_path: Path) -> None:
    def mutate(document: Document) -> None:  # a bow tie: edges 0 and 2 cross
        document["buildings"][0]["footprint_m"] = [[0, 0], [10, 10], [10, 0], [0, 10]]

    path, error = broken(tmp_path, mutate)
    assert_issue(path, error, "buildings[0].footprint_m", "self-intersecting: edges 0-2")


def test_footprint_touching_itself(tmp_path: Path) -> None:
    def mutate(document: Document) -> None:  # vertex 3 lies on edge 0
        document["buildings"][0]["footprint_m"] = [[0, 0], [10, 0], [10, 10], [5, 0], [0, 10]]

    path, error = broken(tmp_path, mutate)
    assert_issue(path, error, "buildings[0].footprint_m", "self-intersecting")


def test_zero_area_footprint(tmp_path: Path) -> None:
    def mutate(document: Document) -> None:
        document["buildings"][0]["footprint_m"] = [[0.0, 0.0], [10.0, 0.0], [20.0, 0.0]]

    path, error = broken(tmp_path, mutate)
    assert_issue(path, error, "buildings[0].footprint_m", "zero or negligible area")


def test_closed_ring_footprint(tmp_path: Path) -> None:
    def mutate(document: Document) -> None:
        document["buildings"][0]["footprint_m"] = [[0, 0], [10, 0], [10, 10], [0, 0]]

    path, error = broken(tmp_path, mutate)
    assert_issue(path, error, "buildings[0].footprint_m", "last vertex repeats the first")


# --------------------------------------------------------------------------------------------
# Errors: identities and references


def test_duplicate_ids_across_kinds_of_object(tmp_path: Path) -> None:
    path, error = broken(tmp_path, lambda d: d["cameras"][0].update(id="H1"))
    assert_issue(path, error, "cameras[0].id", "duplicate id 'H1' (first used by buildings[0])")


def test_id_clashing_with_a_derived_segment_id(tmp_path: Path) -> None:
    path, error = broken(tmp_path, lambda d: d["buildings"][0].update(id="L1-S2"))
    assert_issue(path, error, "buildings[0].id", "duplicate id 'L1-S2'")


def test_unknown_pipeline_reference(tmp_path: Path) -> None:
    path, error = broken(tmp_path, lambda d: d["gas_detectors"][0].update(pipeline_id="P9"))
    assert f"{path}: gas_detectors[0].pipeline_id: unknown pipeline 'P9' (entry 'D1')" in (
        error.messages
    )


def test_unknown_pipeline_reference_through_defaults(tmp_path: Path) -> None:
    _, error = broken(tmp_path, lambda d: d["defaults"]["gas_detectors"].update(pipeline_id="P9"))
    assert error.issues == (
        SiteIssue("defaults.gas_detectors.pipeline_id", "unknown pipeline 'P9'"),
    )  # once, not once per detector relying on the default


def test_valve_of_an_unknown_pipeline(tmp_path: Path) -> None:
    path, error = broken(tmp_path, lambda d: d["valves"][0].update(pipeline_id="P9"))
    assert_issue(path, error, "valves[0].pipeline_id", "unknown pipeline 'P9'")


def test_invalid_referenced_entry_is_not_reported_twice(tmp_path: Path) -> None:
    _, error = broken(tmp_path, lambda d: d["pipelines"][0].update(diameter_m="big"))
    assert [issue.path for issue in error.issues] == ["pipelines[0].diameter_m"]


@pytest.mark.parametrize("chainage_m", [-1.0, 700.5])
def test_valve_not_on_its_pipeline(tmp_path: Path, chainage_m: float) -> None:
    path, error = broken(tmp_path, lambda d: d["valves"][0].update(chainage_m=chainage_m))
    assert_issue(path, error, "valves[0].chainage_m", "valve not on pipeline 'L1'")


def test_two_valves_at_one_chainage(tmp_path: Path) -> None:
    def mutate(document: Document) -> None:
        document["valves"].append({**document["valves"][0], "id": "L1-V2"})

    path, error = broken(tmp_path, mutate)
    assert_issue(path, error, "valves[1].chainage_m", "another valve (valves[0])")


@pytest.mark.parametrize("chainage_m", [-0.1, 700.1])
def test_detector_chainage_outside_its_pipeline(tmp_path: Path, chainage_m: float) -> None:
    path, error = broken(tmp_path, lambda d: d["gas_detectors"][1].update(chainage_m=chainage_m))
    assert_issue(path, error, "gas_detectors[1].chainage_m", "outside pipeline 'L1'")


def _add_manhole(document: Document, **overrides: object) -> None:
    document["manholes"] = [
        {"id": "M1", "network": "sewer", "position_m": [100.0, 20.0], "depth_m": 3.0, **overrides}
    ]


def _add_underground_detectors(document: Document, manhole_id: str, height_m: float) -> None:
    document["gas_detectors"] += [
        {
            "id": f"U{index}",
            "placement": "underground",
            "manhole_id": manhole_id,
            "height_m": height_m,
            "zone": "SEWER",
        }
        for index in (1, 2)
    ]


def test_underground_detectors_load(tmp_path: Path) -> None:
    document = copy.deepcopy(LAKESIDE)
    _add_manhole(document)
    _add_underground_detectors(document, "M1", -1.0)
    write_site(tmp_path, document)
    site = load_site(tmp_path)
    detector = site.gas_detectors[3]
    assert detector.placement is DetectorPlacement.UNDERGROUND
    assert_allclose(detector.position_m, [100.0, 20.0, -1.0])
    assert detector.pipeline_id is None
    assert detector.chainage_m is None


def test_unknown_manhole_reference(tmp_path: Path) -> None:
    def mutate(document: Document) -> None:
        _add_manhole(document)
        _add_underground_detectors(document, "M9", -1.0)

    path, error = broken(tmp_path, mutate)
    assert_issue(path, error, "gas_detectors[3].manhole_id", "unknown manhole 'M9'")


@pytest.mark.parametrize(
    ("height_m", "fragment"), [(0.5, "must be < 0"), (-3.5, "below the bottom of manhole 'M1'")]
)
def test_underground_detector_height(tmp_path: Path, height_m: float, fragment: str) -> None:
    def mutate(document: Document) -> None:
        _add_manhole(document)
        _add_underground_detectors(document, "M1", height_m)

    path, error = broken(tmp_path, mutate)
    assert_issue(path, error, "gas_detectors[3].height_m", fragment)


def test_underground_detector_needs_a_zone_and_no_chainage(tmp_path: Path) -> None:
    def mutate(document: Document) -> None:
        _add_manhole(document)
        _add_underground_detectors(document, "M1", -1.0)
        document["gas_detectors"][3].pop("zone")
        document["gas_detectors"][3]["chainage_m"] = 10.0
        document["defaults"]["gas_detectors"].pop("zone")

    path, error = broken(tmp_path, mutate)
    assert_issue(path, error, "gas_detectors[3].zone", "missing required key")
    assert_issue(path, error, "gas_detectors[3].chainage_m", "not allowed for placement")


def test_pipeline_detector_with_a_manhole(tmp_path: Path) -> None:
    def mutate(document: Document) -> None:
        _add_manhole(document)
        document["gas_detectors"][0]["manhole_id"] = "M1"

    path, error = broken(tmp_path, mutate)
    assert_issue(path, error, "gas_detectors[0].manhole_id", "not allowed for placement")


def test_unknown_road_node_reference(tmp_path: Path) -> None:
    path, error = broken(tmp_path, lambda d: d["roads"][1].update(to_node="Z"))
    assert_issue(path, error, "roads[1].to_node", "unknown road node 'Z'")


def test_road_joining_a_node_to_itself(tmp_path: Path) -> None:
    path, error = broken(tmp_path, lambda d: d["roads"][0].update(to_node="A"))
    assert_issue(path, error, "roads[0].to_node", "two different nodes")


def test_road_graph_not_connected(tmp_path: Path) -> None:
    def mutate(document: Document) -> None:
        document["road_nodes"].append({"id": "D", "position_m": [0.0, 400.0]})

    path, error = broken(tmp_path, mutate)
    assert_issue(path, error, "roads", "road graph is not connected: 1 node(s)")
    assert_issue(path, error, "roads", "from 'A': D")


def test_manhole_hatch_into_an_unknown_or_distant_tunnel(tmp_path: Path) -> None:
    tunnel = {
        "id": "T1",
        "vertices_m": [[0.0, 100.0], [200.0, 100.0]],
        "width_m": 4.0,
        "height_m": 3.0,
        "depth_of_cover_m": 2.5,
    }

    def mutate(document: Document) -> None:
        document["utility_tunnels"] = [tunnel]
        document["manholes"] = [
            {"id": "M1", "network": "gas", "position_m": [50.0, 100.0], "depth_m": 5.5,
             "tunnel_id": "T9"},
            {"id": "M2", "network": "gas", "position_m": [50.0, 110.0], "depth_m": 2.0,
             "tunnel_id": "T1"},
        ]  # fmt: skip

    path, error = broken(tmp_path, mutate)
    assert_issue(path, error, "manholes[0].tunnel_id", "unknown utility tunnel 'T9'")
    assert_issue(path, error, "manholes[1].position_m", "10.0 m from the axis of tunnel 'T1'")
    assert_issue(path, error, "manholes[1].depth_m", "must reach tunnel 'T1'")


def test_municipal_pipe_not_underground(tmp_path: Path) -> None:
    def mutate(document: Document) -> None:
        document["municipal_pipes"] = [
            {"id": "W1-PIPE", "network": "water", "vertices_m": [[0, 10], [50, 10]],
             "diameter_m": 1.2, "depth_m": 0.5},
        ]  # fmt: skip

    path, error = broken(tmp_path, mutate)
    assert_issue(path, error, "municipal_pipes[0].depth_m", "deeper than its radius (0.6 m)")


# --------------------------------------------------------------------------------------------
# Errors: site-wide rules


def test_device_far_off_the_site_extent(tmp_path: Path) -> None:
    path, error = broken(tmp_path, lambda d: d["wind_stations"][0].update(position_m=[5000, 0]))
    assert_issue(path, error, "wind_stations[0].position_m", "device 'W1' at (5000.0, 0.0) m")
    assert_issue(path, error, "wind_stations[0].position_m", "more than 200 m outside")


def test_device_margin_is_configurable(tmp_path: Path) -> None:
    document = copy.deepcopy(LAKESIDE)
    document["wind_stations"][0]["position_m"] = [700.0, 0.0]  # 400 m east of the extent
    write_site(tmp_path, document)
    with pytest.raises(SiteValidationError, match="outside the site extent"):
        load_site(tmp_path)
    assert DEFAULT_DEVICE_MARGIN_M < 400.0
    assert load_site(tmp_path, device_margin_m=500.0).wind_stations[0].position_m[0] == 700.0
    with pytest.raises(ValueError, match="device_margin_m"):
        load_site(tmp_path, device_margin_m=-1.0)


def test_pipeline_detector_pushed_off_the_extent_by_its_offset(tmp_path: Path) -> None:
    path, error = broken(tmp_path, lambda d: d["gas_detectors"][0].update(lateral_offset_m=-900))
    assert_issue(path, error, "gas_detectors[0]", "outside the site extent")


def test_zone_with_a_single_detector(tmp_path: Path) -> None:
    path, error = broken(tmp_path, lambda d: d["gas_detectors"][2].update(zone="LONE"))
    assert_issue(path, error, "gas_detectors[2].zone", "zone 'LONE' has 1 detector (D3)")


def test_zone_mixing_placements(tmp_path: Path) -> None:
    def mutate(document: Document) -> None:
        _add_manhole(document)
        _add_underground_detectors(document, "M1", -1.0)
        for detector in document["gas_detectors"][3:]:
            detector["zone"] = "L1"

    path, error = broken(tmp_path, mutate)
    assert_issue(path, error, "gas_detectors[0].zone", "zone 'L1' mixes detectors")


# --------------------------------------------------------------------------------------------
# Defaults


def test_unknown_key_or_section_in_defaults(tmp_path: Path) -> None:
    def mutate(document: Document) -> None:
        document["defaults"]["cameras"] = {"zoom": 2.0}
        document["defaults"]["lidars"] = {"range_m": 100.0}

    path, error = broken(tmp_path, mutate)
    assert_issue(path, error, "defaults.cameras.zoom", "unknown key 'zoom'")
    assert_issue(path, error, "defaults.lidars", "unknown section 'lidars'")


def test_defaults_may_not_set_ids(tmp_path: Path) -> None:
    path, error = broken(tmp_path, lambda d: d["defaults"]["gas_detectors"].update(id="D0"))
    assert_issue(path, error, "defaults.gas_detectors.id", "unknown key 'id'")


def test_bad_default_is_reported_at_the_default(tmp_path: Path) -> None:
    path, error = broken(tmp_path, lambda d: d["defaults"]["gas_detectors"].update(t90_s=-1.0))
    assert error.messages == (f"{path}: defaults.gas_detectors.t90_s: must be > 0, got -1",)


def test_entries_override_defaults(tmp_path: Path) -> None:
    document = copy.deepcopy(LAKESIDE)
    document["gas_detectors"][0]["t90_s"] = 30.0
    write_site(tmp_path, document)
    t90s = [detector.t90_s for detector in load_site(tmp_path).gas_detectors]
    assert t90s == [30.0, 15.0, 15.0]
