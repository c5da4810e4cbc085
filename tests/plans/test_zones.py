import dataclasses
import itertools
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose
from shapely import affinity
from shapely.geometry import Point, Polygon, shape

from pipesentinel.detection.gases import LelBasis
from pipesentinel.detection.localisation import (
    LocalisationMode,
    LocalisationResult,
    RateEstimate,
    WindState,
)
from pipesentinel.detection.stability import StabilityClass
from pipesentinel.geo import geodetic_to_enu
from pipesentinel.plans import zones as zones_module
from pipesentinel.plans.zones import (
    ThreatZones,
    ZoneFlag,
    ZoneLevel,
    dense_gas_distance_m,
    threat_zones,
    threat_zones_for_localisation,
    zones_to_geojson,
)
from pipesentinel.site import Gas, Product
from pipesentinel.site_loader import load_site

SITE_DIR = Path(__file__).resolve().parents[2] / "sites" / "wanli"
AMBIENT = {"temperature_k": 288.15, "pressure_pa": 101_325.0}
IEC = LelBasis.IEC_60079_20_1


def zones_for(**overrides: Any) -> ThreatZones:
    arguments: dict[str, Any] = {
        "source_m": (120.0, -40.0),
        "gas": Gas.METHANE,
        "rate_low_kg_per_s": 0.5,
        "rate_median_kg_per_s": 1.5,
        "rate_high_kg_per_s": 4.0,
        "wind_speed_m_per_s": 3.0,
        "wind_from_deg": 250.0,
        "sigma_theta_deg": 8.0,
        "stability_class": StabilityClass.D,
        "lel_basis": IEC,
        **AMBIENT,
    }
    arguments.update(overrides)
    return threat_zones(**arguments)


def single_rate(rate: float, **overrides: Any) -> ThreatZones:
    return zones_for(
        rate_low_kg_per_s=rate, rate_median_kg_per_s=rate, rate_high_kg_per_s=rate, **overrides
    )


def covers(outer: Any, inner: Any, tolerance_m: float) -> bool:
    return bool(outer.buffer(tolerance_m).covers(inner))


# --- Pinned values ------------------------------------------------------------------------------


def test_gaussian_downwind_distance_hand_worked() -> None:
    # Methane, class D open country, 5 m/s at 10 m, ground-level source and receptors.
    # Red level: 60 % of the IEC LEL 4.4 % = 0.0264 mol/mol; rho_CH4 = p M / (R T)
    # = 101325 * 0.016043 / (8.314462618 * 288.15) = 0.678499 kg/m3 -> C = 0.0179124 kg/m3.
    # At x = 300 m: sigma_y = 0.08 * 300 / sqrt(1.03) = 23.6479 m, sigma_z = 0.06 * 300 /
    # sqrt(1.45) = 14.9482 m; the centre line C = Q / (pi u sigma_y sigma_z) reaches the level at
    # 300 m for Q = pi * 5 * 23.6479 * 14.9482 * 0.0179124 = 99.4613 kg/s.
    rate = 99.4613
    result = single_rate(
        rate, wind_speed_m_per_s=5.0, wind_from_deg=270.0, sigma_theta_deg=0.0, source_m=(0, 0)
    )
    red = result.zone(ZoneLevel.RED)
    assert_allclose(red.max_downwind_extent_m, 300.0, rtol=2e-5)
    assert_allclose(red.median_max_downwind_extent_m, 300.0, rtol=2e-5)
    # Wind from the west: the zone's far end is due east of the source.
    assert isinstance(red.polygon_m, Polygon)
    east, north = np.asarray(red.polygon_m.exterior.coords).T
    far = int(np.argmax(np.hypot(east, north)))
    assert_allclose([east[far], north[far]], [300.0, 0.0], atol=0.01)
    assert red.flags == frozenset()  # 5 m/s, class D, 300 m: within every limit


def test_dense_gas_distance_flat_part_hand_worked() -> None:
    # Propane 0.05 kg/s, U10 = 5 m/s: rho = 1.864974 kg/m3, g0' = 5.123535 m/s2,
    # q0 = 0.0268100 m3/s, alpha = 0.2 log10(g0'^2 q0 / U^5) = -0.72948 (flat part of every curve),
    # D = (q0 / U)^0.5 = 0.0732257 m; Cm/C0 = 0.01 -> beta = 2.25 -> x = D 10^2.25 = 13.0216 m.
    distance, extrapolated = dense_gas_distance_m(
        emission_rate_kg_per_s=0.05,
        wind_speed_10m_m_per_s=5.0,
        gas=Gas.PROPANE,
        mole_fraction=0.01,
        **AMBIENT,
    )
    assert_allclose(distance, 13.0216, rtol=1e-4)
    assert not extrapolated


def test_dense_gas_distance_sloped_part_hand_worked() -> None:
    # Propane 2 kg/s, U10 = 2 m/s: q0 = 1.072401 m3/s, alpha = -0.0111307, D = 0.732257 m.
    # Cm/C0 = 0.01, alpha > -0.20: beta = -0.52 alpha + 2.35 = 2.355788, x = 166.131 m.
    # Cm/C0 = 0.0141421 (geometric mean of 0.01 and 0.02): beta halfway between 2.355788 and
    # -0.54 alpha + 2.16 = 2.166011 (interpolation in log C): 2.260899, x = 133.525 m.
    common: dict[str, Any] = {
        "emission_rate_kg_per_s": 2.0,
        "wind_speed_10m_m_per_s": 2.0,
        "gas": Gas.PROPANE,
        **AMBIENT,
    }
    assert_allclose(dense_gas_distance_m(mole_fraction=0.01, **common)[0], 166.131, rtol=1e-5)
    middle = math.sqrt(0.01 * 0.02)
    assert_allclose(dense_gas_distance_m(mole_fraction=middle, **common)[0], 133.525, rtol=1e-5)
    # Below the lowest curve (0.002) the correlation is extrapolated and says so.
    assert dense_gas_distance_m(mole_fraction=0.0017, **common)[1]


def test_dense_gas_curves_are_continuous() -> None:
    for level, pieces in zones_module._BM_CURVES:
        for (bound, slope, intercept), (_, next_slope, next_intercept) in itertools.pairwise(
            pieces
        ):
            left = slope * bound + intercept
            right = next_slope * bound + next_intercept
            assert abs(left - right) < 0.006, (level, bound)  # digitisation rounding
    # Lower concentrations are reached farther: beta decreases with Cm/C0 at every alpha.
    for alpha in np.linspace(-1.0, 1.0, 41):
        betas = zones_module._bm_beta(float(alpha))
        assert np.all(np.diff(betas) > 0.0), alpha


def test_dense_gas_distance_refuses_a_buoyant_gas() -> None:
    with pytest.raises(ValueError, match="not denser than air"):
        dense_gas_distance_m(
            emission_rate_kg_per_s=1.0,
            wind_speed_10m_m_per_s=3.0,
            gas=Gas.METHANE,
            mole_fraction=0.01,
            **AMBIENT,
        )


# --- Invariants ---------------------------------------------------------------------------------


@pytest.mark.parametrize("gas", [Gas.METHANE, Gas.PROPANE])
@pytest.mark.parametrize("stability_class", [StabilityClass.A, StabilityClass.D, StabilityClass.F])
@pytest.mark.parametrize("basis", [LelBasis.IEC_60079_20_1, LelBasis.NFPA_497])
def test_red_inside_yellow(gas: Gas, stability_class: StabilityClass, basis: LelBasis) -> None:
    result = zones_for(gas=gas, stability_class=stability_class, lel_basis=basis)
    red, yellow = result.zone(ZoneLevel.RED), result.zone(ZoneLevel.YELLOW)
    assert red.area_m2 > 0.0
    assert yellow.area_m2 > red.area_m2
    assert covers(yellow.polygon_m, red.polygon_m, 1e-6)
    assert covers(yellow.median_polygon_m, red.median_polygon_m, 1e-3)
    # The envelope contains the median-rate zone at the mean direction.
    assert covers(red.polygon_m, red.median_polygon_m, 1e-3)
    assert red.polygon_m.is_valid
    assert yellow.polygon_m.is_valid


@pytest.mark.parametrize("gas", [Gas.METHANE, Gas.PROPANE])
def test_zones_grow_with_rate(gas: Gas) -> None:
    previous = None
    for rate in (0.1, 0.5, 2.0, 8.0):
        zone = single_rate(rate, gas=gas).zone(ZoneLevel.RED)
        if previous is not None:
            assert zone.area_m2 > previous.area_m2
            assert zone.max_downwind_extent_m > previous.max_downwind_extent_m
            assert covers(zone.polygon_m, previous.polygon_m, 0.05 * zone.max_downwind_extent_m)
        previous = zone


def test_gaussian_zones_shrink_with_wind_speed() -> None:
    areas = []
    extents = []
    for speed in (2.0, 4.0, 8.0):
        zone = single_rate(3.0, wind_speed_m_per_s=speed).zone(ZoneLevel.YELLOW)
        assert not zone.dense_gas
        areas.append(zone.area_m2)
        extents.append(zone.max_downwind_extent_m)
    assert areas[0] > areas[1] > areas[2]
    assert extents[0] > extents[1] > extents[2]


def test_zones_rotate_with_wind_direction() -> None:
    source = (120.0, -40.0)
    first = zones_for(wind_from_deg=250.0, source_m=source)
    turned = zones_for(wind_from_deg=340.0, source_m=source)
    for level in (ZoneLevel.RED, ZoneLevel.YELLOW):
        a, b = first.zone(level), turned.zone(level)
        # Wind 90 deg further clockwise: the zone turns 90 deg clockwise about the source.
        rotated = affinity.rotate(a.polygon_m, -90.0, origin=source)
        assert rotated.symmetric_difference(b.polygon_m).area < 1e-6 * b.area_m2
        assert_allclose(b.area_m2, a.area_m2, rtol=1e-9)
        # And it lies downwind: its centroid is on the side the wind blows to (340 -> 160 deg).
        centroid = b.median_polygon_m.centroid
        bearing = math.degrees(math.atan2(centroid.x - source[0], centroid.y - source[1])) % 360
        assert abs(bearing - 160.0) < 1.0


def test_union_over_direction_spread_contains_each_member() -> None:
    sigma_theta = 10.0
    rates = {"rate_low_kg_per_s": 0.5, "rate_median_kg_per_s": 1.5, "rate_high_kg_per_s": 4.0}
    envelope = zones_for(sigma_theta_deg=sigma_theta, **rates)
    assert_allclose(envelope.direction_spread_deg, 2.0 * sigma_theta)
    for level in (ZoneLevel.RED, ZoneLevel.YELLOW):
        outer = envelope.zone(level)
        tolerance = 2e-3 * outer.max_downwind_extent_m
        for offset in (-20.0, -12.5, -5.0, 0.0, 7.5, 20.0):
            for rate in rates.values():
                member = single_rate(rate, wind_from_deg=250.0 + offset, sigma_theta_deg=0.0)
                assert covers(outer.polygon_m, member.zone(level).polygon_m, tolerance), (
                    level,
                    offset,
                    rate,
                )
        # Beyond the spread the zone does not reach: a member turned 35 deg sticks out.
        outside = single_rate(4.0, wind_from_deg=250.0 + 35.0, sigma_theta_deg=0.0)
        assert not covers(outer.polygon_m, outside.zone(level).polygon_m, tolerance)


def test_rate_union_takes_the_high_end_and_keeps_the_median() -> None:
    result = zones_for()
    high = single_rate(4.0).zone(ZoneLevel.RED)
    median = single_rate(1.5, sigma_theta_deg=0.0).zone(ZoneLevel.RED)
    red = result.zone(ZoneLevel.RED)
    assert red.rate_kg_per_s == 4.0
    assert_allclose(red.area_m2, high.area_m2, rtol=1e-5)  # other rates add grid radii
    assert_allclose(red.median_area_m2, median.area_m2, rtol=1e-5)


# --- Dense gas, flags, isolation ---------------------------------------------------------------


def test_propane_is_dense_and_reaches_the_britter_mcquaid_distance() -> None:
    result = single_rate(3.0, gas=Gas.PROPANE, wind_speed_m_per_s=2.0, sigma_theta_deg=0.0)
    red = result.zone(ZoneLevel.RED)
    assert result.dense_gas_parameter[2] >= 0.15
    assert red.dense_gas
    assert ZoneFlag.DENSE_GAS in red.flags
    distance, extrapolated = dense_gas_distance_m(
        emission_rate_kg_per_s=3.0,
        wind_speed_10m_m_per_s=2.0,
        gas=Gas.PROPANE,
        mole_fraction=0.6 * 0.017,
        **AMBIENT,
    )
    assert not extrapolated
    assert red.max_downwind_extent_m >= distance - 1e-6
    # The dense outline spreads upwind of the source as well (Britter & McQuaid's L_U).
    source = Point(result.source_m[:2])
    upwind = affinity.translate(source, xoff=-0.5, yoff=0.0)  # wind from 250 deg: upwind ~ west
    assert red.polygon_m.covers(upwind)
    # 10 % LEL of propane (0.17 %) is below the correlation's lowest curve: flagged approximate.
    assert ZoneFlag.DENSE_GAS_APPROXIMATE in result.zone(ZoneLevel.YELLOW).flags


def test_methane_is_never_dense() -> None:
    result = zones_for(gas=Gas.METHANE, wind_speed_m_per_s=1.5)
    assert max(result.dense_gas_parameter) < 0.0
    assert ZoneFlag.DENSE_GAS not in result.flags


def test_calm_draws_zones_in_all_directions() -> None:
    result = single_rate(2.0, wind_speed_m_per_s=0.5)
    red = result.zone(ZoneLevel.RED)
    assert {ZoneFlag.CALM, ZoneFlag.LOW_WIND} <= red.flags
    assert_allclose(result.direction_spread_deg, 180.0)
    # A disc of the downwind extent (the 0.25 deg bearings make it a 1440-gon).
    disc_area = math.pi * red.max_downwind_extent_m**2
    assert_allclose(red.area_m2, disc_area, rtol=1e-4)


def test_limit_flags() -> None:
    assert ZoneFlag.LOW_WIND in zones_for(wind_speed_m_per_s=1.2).flags
    assert ZoneFlag.LOW_WIND not in zones_for(wind_speed_m_per_s=1.4).flags
    assert ZoneFlag.VERY_STABLE in zones_for(stability_class=StabilityClass.F).flags
    assert ZoneFlag.VERY_STABLE not in zones_for(stability_class=StabilityClass.E).flags
    assert ZoneFlag.RATE_AT_PRIOR_BOUND in zones_for(rate_at_prior_bound=True).flags
    assert ZoneFlag.WIDE_RATE_INTERVAL in zones_for(rate_low_kg_per_s=0.1).flags
    assert ZoneFlag.WIDE_RATE_INTERVAL not in zones_for().flags
    tiny = single_rate(0.01).zone(ZoneLevel.RED)
    assert 0.0 < tiny.max_downwind_extent_m < 100.0
    assert ZoneFlag.NEAR_SOURCE in tiny.flags
    huge = single_rate(500.0, stability_class=StabilityClass.F, max_distance_m=5000.0)
    yellow = huge.zone(ZoneLevel.YELLOW)
    assert ZoneFlag.TRUNCATED in yellow.flags
    assert_allclose(yellow.max_downwind_extent_m, 5000.0, rtol=1e-9)
    far = single_rate(500.0, stability_class=StabilityClass.F).zone(ZoneLevel.YELLOW)
    assert far.max_downwind_extent_m > 10_000.0
    assert ZoneFlag.BEYOND_RANGE in far.flags


def test_isolation_circle_from_the_erg() -> None:
    result = zones_for()
    circle = result.zone(ZoneLevel.ISOLATION)
    assert result.isolation_guide == ("115",)
    assert circle.max_downwind_extent_m == 100.0
    assert circle.polygon_m.covers(Point(result.source_m[:2]).buffer(100.0))
    assert_allclose(circle.area_m2, math.pi * 100.0**2, rtol=1e-3)
    crude = zones_for(gas=Gas.PROPANE, product=Product.CRUDE_OIL)
    assert crude.isolation_guide == ("115", "128")
    assert crude.zone(ZoneLevel.ISOLATION).max_downwind_extent_m == 100.0  # the larger one


def test_nothing_reaches_the_level() -> None:
    # A release from 30 m height with little gas: the ground never sees 10 % LEL.
    result = single_rate(1e-3, source_m=(0.0, 0.0, 30.0))
    for level in (ZoneLevel.RED, ZoneLevel.YELLOW):
        zone = result.zone(level)
        assert zone.polygon_m.is_empty
        assert zone.area_m2 == 0.0
        assert zone.max_downwind_extent_m == 0.0


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"rate_low_kg_per_s": 2.0}, "low <= median"),
        ({"rate_low_kg_per_s": 0.0}, "low <= median"),
        ({"wind_speed_m_per_s": -1.0}, "wind_speed_m_per_s"),
        ({"sigma_theta_deg": math.nan}, "sigma_theta_deg"),
        ({"source_m": (1.0, 2.0, -3.0)}, "height"),
        ({"source_m": (1.0,)}, "source_m"),
    ],
)
def test_bad_input_is_named(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        zones_for(**overrides)


def test_deterministic() -> None:
    first, second = zones_for(gas=Gas.PROPANE), zones_for(gas=Gas.PROPANE)
    assert first.to_json_dict() == second.to_json_dict()


# --- Output --------------------------------------------------------------------------------------


def test_to_json_dict_is_plain_json() -> None:
    result = zones_for(gas=Gas.PROPANE)
    data = result.to_json_dict()
    text = json.dumps(data)
    again = json.loads(text)
    assert again["gas"] == "propane"
    assert again["lel_basis"] == "IEC 60079-20-1"
    levels = [zone["level"] for zone in again["zones"]]
    assert levels == ["red", "yellow", "isolation"]
    red = again["zones"][0]
    assert red["area_m2"] == result.zone(ZoneLevel.RED).area_m2
    assert red["percent_lel"] == 60.0
    for key, polygon in (("outline_m", "polygon_m"), ("median_outline_m", "median_polygon_m")):
        exact = getattr(result.zone(ZoneLevel.RED), polygon)
        outline = Polygon(red[key][0])
        assert outline.covers(exact)  # simplified, but never cutting into the zone
        assert outline.area - exact.area < 0.65 * exact.length  # grown by 0.6 m at most


def test_geojson_round_trip() -> None:
    site = load_site(SITE_DIR)
    result = zones_for(gas=Gas.PROPANE, source_m=(260.0, 40.0))
    collection = zones_to_geojson(site, result)
    collection = json.loads(json.dumps(collection))
    assert collection["type"] == "FeatureCollection"
    features = {feature["id"]: feature for feature in collection["features"]}
    assert set(features) == {
        "red-envelope",
        "red-median",
        "yellow-envelope",
        "yellow-median",
        "isolation-envelope",
    }
    areas = [feature["properties"]["area_m2"] for feature in collection["features"]]
    assert areas == sorted(areas, reverse=True)  # largest first, red drawn on top
    west, south, east, north = collection["bbox"]
    for feature in collection["features"]:
        properties = feature["properties"]
        assert properties["layer"] == "threat_zone"
        assert properties["gas"] == "propane"
        assert properties["lel_basis"] == "IEC 60079-20-1"
        assert properties["wind_from_deg"] == 250.0
        ring = np.asarray(feature["geometry"]["coordinates"][0])
        assert np.array_equal(ring[0], ring[-1])  # closed
        lon, lat = ring[:, 0], ring[:, 1]
        # RFC 7946: exterior rings counter-clockwise (positive shoelace area in lon/lat).
        assert np.dot(lon[:-1], lat[1:]) - np.dot(lat[:-1], lon[1:]) > 0.0
        assert west <= lon.min()
        assert lon.max() <= east
        assert south <= lat.min()
        assert lat.max() <= north
    for level in (ZoneLevel.RED, ZoneLevel.YELLOW, ZoneLevel.ISOLATION):
        zone = result.zone(level)
        geometry = shape(features[f"{level.value}-envelope"]["geometry"])
        assert isinstance(geometry, Polygon)
        lon, lat = np.asarray(geometry.exterior.coords).T
        east_m, north_m, _ = geodetic_to_enu(lat, lon, site.origin.altitude_m, site.origin)
        back = Polygon(np.column_stack((east_m, north_m)))
        # 1e-7 deg rounding is about 1 cm: the areas agree to a few cm times the perimeter.
        difference = back.symmetric_difference(zone.polygon_m).area
        assert difference < 0.02 * zone.polygon_m.length
        assert features[f"{level.value}-envelope"]["properties"]["area_m2"] == zone.area_m2


def test_zones_for_a_localisation_result() -> None:
    wind = WindState(
        speed_m_per_s=2.5,
        direction_from_rad=math.radians(200.0),
        sigma_theta_rad=math.radians(6.0),
        stability_class=int(StabilityClass.E),
        anemometer_height_m=10.0,
    )
    rate = RateEstimate(
        median_kg_per_s=0.8,
        lower_kg_per_s=0.3,
        upper_kg_per_s=2.0,
        credible_mass=0.9,
        at_prior_bound=True,
    )
    result = LocalisationResult(
        mode=LocalisationMode.PIPELINES,
        gas=Gas.PROPANE,
        lel_basis=LelBasis.NFPA_497,
        time_s=0.0,
        candidates_m=np.array([[10.0, 20.0], [15.0, 20.0]]),
        probability=np.array([0.7, 0.3]),
        map_position_m=np.array([10.0, 20.0]),
        mean_position_m=np.array([11.5, 20.0]),
        map_pipeline_id="P1",
        map_chainage_m=100.0,
        pipeline_probabilities={"P1": 1.0},
        segments=(),
        credible_mass=0.9,
        credible_intervals=(),
        credible_area_m2=0.0,
        credible_length_m=0.0,
        rate=rate,
        observations_used={},
        detections={},
        peak_fraction_of_lel=0.2,
        wind=wind,
        flags=frozenset(),
    )
    zones = threat_zones_for_localisation(result, product=Product.CRUDE_OIL)
    direct = threat_zones(
        source_m=(10.0, 20.0),
        gas=Gas.PROPANE,
        rate_low_kg_per_s=0.3,
        rate_median_kg_per_s=0.8,
        rate_high_kg_per_s=2.0,
        wind_speed_m_per_s=2.5,
        wind_from_deg=math.degrees(math.radians(200.0)),  # the same float as from the result
        sigma_theta_deg=math.degrees(math.radians(6.0)),
        stability_class=StabilityClass.E,
        lel_basis=LelBasis.NFPA_497,
        product=Product.CRUDE_OIL,
        rate_at_prior_bound=True,
    )
    assert zones.to_json_dict() == direct.to_json_dict()
    assert ZoneFlag.RATE_AT_PRIOR_BOUND in zones.flags
    with pytest.raises(ValueError, match="no wind"):
        threat_zones_for_localisation(dataclasses.replace(result, wind=None))


def test_dense_outline_half_angles_match_brute_force() -> None:
    outline = zones_module._dense_outline(
        rate=3.0,
        wind_10m=2.0,
        gas=Gas.PROPANE,
        mole_fraction=0.0102,
        temperature=288.15,
        pressure=101_325.0,
    )
    radii = np.geomspace(0.05, 1.2 * outline.reach_m, 300)
    angles = np.linspace(0.0, np.pi, 20_001)
    along = radii[:, np.newaxis] * np.cos(angles)
    across = radii[:, np.newaxis] * np.sin(angles)
    half_width = outline.half_width_m + outline.width_growth_m * np.cbrt(
        np.square(np.maximum(along, 0.0))
    )
    inside = (along >= -outline.upwind_m) & (along <= outline.distance_m) & (across <= half_width)
    last = angles.size - 1 - np.argmax(inside[:, ::-1], axis=1)
    expected = np.where(np.any(inside, axis=1), angles[last], -np.inf)
    computed = outline.half_angles(radii)
    assert np.array_equal(np.isfinite(computed), np.isfinite(expected))
    finite = np.isfinite(expected)
    assert_allclose(computed[finite], expected[finite], atol=2e-3)


@settings(max_examples=25, deadline=None)
@given(
    gas=st.sampled_from(list(Gas)),
    stability_class=st.sampled_from(list(StabilityClass)),
    urban=st.booleans(),
    low=st.floats(1e-3, 20.0),
    spread_factors=st.tuples(st.floats(1.0, 5.0), st.floats(1.0, 5.0)),
    wind_speed=st.floats(0.3, 12.0),
    wind_from=st.floats(0.0, 360.0),
    sigma_theta=st.floats(0.0, 30.0),
)
def test_invariants_hold_for_any_release(
    *,
    gas: Gas,
    stability_class: StabilityClass,
    urban: bool,
    low: float,
    spread_factors: tuple[float, float],
    wind_speed: float,
    wind_from: float,
    sigma_theta: float,
) -> None:
    median = low * spread_factors[0]
    high = median * spread_factors[1]
    result = zones_for(
        gas=gas,
        stability_class=stability_class,
        urban=urban,
        rate_low_kg_per_s=low,
        rate_median_kg_per_s=median,
        rate_high_kg_per_s=high,
        wind_speed_m_per_s=wind_speed,
        wind_from_deg=wind_from,
        sigma_theta_deg=sigma_theta,
    )
    red, yellow = result.zone(ZoneLevel.RED), result.zone(ZoneLevel.YELLOW)
    source = Point(result.source_m[:2])
    for zone in (red, yellow):
        assert zone.polygon_m.is_valid
        assert zone.area_m2 >= zone.median_area_m2 * (1.0 - 1e-9)
        assert zone.max_downwind_extent_m >= zone.median_max_downwind_extent_m - 1e-6
        assert covers(zone.polygon_m, zone.median_polygon_m, 1e-3)
        if zone.area_m2 > 0.0:
            assert zone.polygon_m.buffer(1e-6).covers(source)  # star-shaped around the source
    assert covers(yellow.polygon_m, red.polygon_m, 1e-6)
    assert yellow.max_downwind_extent_m >= red.max_downwind_extent_m
