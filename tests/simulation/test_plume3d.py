"""3D gas cloud (simulation/plume3d.py): Palazzi arrival factor, isosurfaces, agreement with zones.

The steady 10 % and 60 % LEL surfaces are checked against plans/zones.py, which finds the
downwind end of the same steady plume's zones by root finding on the axis (no grid): the two must
agree to within a grid step. The arrival factor is checked against its limits (steady state far
behind the front, one half at the front, nothing after the tail has passed) and for its range.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose

from pipesentinel.detection.gases import LelBasis, kg_per_m3_to_mole_fraction
from pipesentinel.detection.plume import plume_concentration_kg_per_m3
from pipesentinel.detection.stability import StabilityClass
from pipesentinel.plans.response import LeakEstimate
from pipesentinel.plans.zones import ZoneLevel, threat_zones
from pipesentinel.simulation.plume3d import (
    PlumeRelease,
    arrival_factor,
    plume_data,
    plume_model,
    plume_surfaces,
)
from pipesentinel.simulation.scene import Mesh
from pipesentinel.site import Gas

BASIS = LelBasis.IEC_60079_20_1
STEADY_S = 1e6  # long after the start: the steady state everywhere on the grid [s]


def release(
    stability: StabilityClass = StabilityClass.D,
    *,
    wind_from_deg: float = 270.0,
    duration_s: float | None = None,
    source: tuple[float, float, float] = (0.0, 0.0, 0.0),
) -> PlumeRelease:
    return PlumeRelease(
        gas=Gas.METHANE,
        source_m=source,
        rate_kg_per_s=1.0,
        wind_speed_m_per_s=3.0,
        wind_from_deg=wind_from_deg,
        stability_class=stability,
        lel_basis=BASIS,
        release_duration_s=duration_s,
    )


def downwind_reach_m(mesh: Mesh, item: PlumeRelease) -> float:
    offsets = mesh.positions_m[:, :2] - np.asarray(item.source_m[:2])
    return float(np.max(offsets @ item.downwind_unit))


@settings(max_examples=200, deadline=None)
@given(
    distance=st.floats(0.0, 5000.0),
    sigma=st.floats(0.01, 500.0),
    speed=st.floats(0.5, 20.0),
    time=st.floats(-10.0, 5000.0),
    duration=st.one_of(st.none(), st.floats(1.0, 3000.0)),
)
def test_arrival_factor_is_a_fraction(
    distance: float, sigma: float, speed: float, time: float, duration: float | None
) -> None:
    factor = arrival_factor(np.array([distance]), np.array([sigma]), speed, time, duration)
    assert np.all((factor >= 0.0) & (factor <= 1.0))
    if time <= 0.0:
        assert factor[0] == 0.0


def test_arrival_factor_limits() -> None:
    x = np.array([100.0, 300.0, 900.0])
    sigma = np.array([5.0, 5.0, 5.0])
    # Ongoing release, front at u t = 300 m: steady far behind, one half at the front, 0 ahead.
    assert_allclose(arrival_factor(x, sigma, 3.0, 100.0), [1.0, 0.5, 0.0], atol=1e-12)
    # A 50 s release seen at 200 s: the cloud lies between u (t - T) = 450 m and u t = 600 m.
    assert_allclose(arrival_factor(x, sigma, 3.0, 200.0, 50.0), [0.0, 0.0, 0.0], atol=1e-12)
    middle = arrival_factor(np.array([525.0]), np.array([5.0]), 3.0, 200.0, 50.0)
    assert_allclose(middle, [1.0], atol=1e-12)


def test_arrival_factor_never_decreases_while_the_release_goes_on() -> None:
    x = np.linspace(0.0, 500.0, 51)
    sigma = 0.1 * x + 1.0
    factors = np.stack([arrival_factor(x, sigma, 2.0, t) for t in np.linspace(1.0, 400.0, 40)])
    assert np.all(np.diff(factors, axis=0) >= -1e-15)


@pytest.mark.parametrize("stability", [StabilityClass.B, StabilityClass.D, StabilityClass.F])
def test_steady_surfaces_end_where_the_zones_end(stability: StabilityClass) -> None:
    item = release(stability)
    model = plume_model(item)
    zones = threat_zones(
        source_m=item.source_m,
        gas=item.gas,
        rate_low_kg_per_s=1.0,
        rate_median_kg_per_s=1.0,
        rate_high_kg_per_s=1.0,
        wind_speed_m_per_s=item.wind_speed_m_per_s,
        wind_from_deg=item.wind_from_deg,
        sigma_theta_deg=0.0,
        stability_class=int(stability),
        lel_basis=BASIS,
        urban=item.urban,
    )
    for surface in plume_surfaces(model, [STEADY_S]):
        level = ZoneLevel(surface.level)
        step = float(np.diff(model.grid(level).x_m)[0])
        expected = zones.zone(level).max_downwind_extent_m
        assert downwind_reach_m(surface.mesh, item) == pytest.approx(expected, abs=step)


def test_surface_vertices_carry_the_level_concentration() -> None:
    item = release(StabilityClass.D, wind_from_deg=200.0, source=(50.0, -20.0, 0.0))
    model = plume_model(item)
    for surface in plume_surfaces(model, [STEADY_S]):
        grid = model.grid(ZoneLevel(surface.level))
        points = surface.mesh.positions_m
        downwind = (points[:, :2] - np.asarray(item.source_m[:2])) @ item.downwind_unit
        # Away from the closing cell below ground (zero padding) and from the first fifth of the
        # cloud, where the plume is narrower than a crosswind grid step (docs/scene.md).
        inside = (points[:, 2] > grid.z_m[2]) & (downwind > 0.2 * downwind.max())
        assert np.mean(inside) > 0.5
        concentration = plume_concentration_kg_per_m3(
            points[inside],
            np.asarray(item.source_m),
            emission_rate_kg_per_s=item.rate_kg_per_s,
            wind_speed_m_per_s=item.wind_speed_m_per_s,
            wind_direction_rad=math.radians(item.wind_from_deg),
            stability_class=int(item.stability_class),
            urban=item.urban,
        )
        fraction = kg_per_m3_to_mole_fraction(
            concentration, item.gas, temperature_k=item.temperature_k, pressure_pa=item.pressure_pa
        )
        # Linear interpolation of a Gaussian between grid points; measured |ratio - 1|: median
        # 0.1 % (yellow) and 0.3 % (red), 90th percentile 1 % and 4 %.
        error = np.abs(fraction / surface.mole_fraction - 1.0)
        assert np.median(error) < 0.02
        assert np.percentile(error, 90) < 0.10


def test_the_cloud_grows_downwind_with_time_and_closes_outward() -> None:
    item = release(StabilityClass.D, wind_from_deg=45.0)
    model = plume_model(item)
    times = [0.0, 2.0, 5.0, 10.0, 30.0, STEADY_S]
    surfaces = plume_surfaces(model, times, max_triangles_per_surface=2500)
    yellow = [s for s in surfaces if s.level == "yellow"]
    assert yellow[0].mesh.triangle_count == 0  # nothing released yet
    reaches = [downwind_reach_m(s.mesh, item) for s in yellow[1:]]
    assert all(b >= a - 1e-9 for a, b in itertools.pairwise(reaches))
    assert reaches[0] < reaches[-1]
    speed = model.transport_speed_m_per_s
    assert reaches[0] < speed * 2.0 + 5.0  # not far beyond the front at 2 s
    for surface in surfaces:
        mesh = surface.mesh
        assert mesh.triangle_count <= 2500
        if not mesh.triangle_count:
            continue
        centre = mesh.positions_m.mean(axis=0)
        outward = np.einsum("ij,ij->i", mesh.positions_m - centre, mesh.normals)
        assert np.mean(outward > 0.0) > 0.95
        assert float((centre[:2] - item.source_m[:2]) @ item.downwind_unit) > 0.0


def test_red_lies_inside_yellow() -> None:
    item = release(StabilityClass.C, wind_from_deg=120.0)
    red, yellow = (None, None)
    for surface in plume_surfaces(plume_model(item), [STEADY_S]):
        if surface.level == "red":
            red = surface.mesh.bounds_m
        else:
            yellow = surface.mesh.bounds_m
    assert red is not None
    assert yellow is not None
    assert np.all(red[0] >= yellow[0] - 0.5)
    assert np.all(red[1] <= yellow[1] + 0.5)


def test_a_finished_release_blows_away() -> None:
    item = release(StabilityClass.D, duration_s=10.0)
    model = plume_model(item)
    reach = float(model.grid(ZoneLevel.YELLOW).x_m[-1])
    late = 10.0 + 3.0 * reach / model.transport_speed_m_per_s
    assert all(s.mesh.triangle_count == 0 for s in plume_surfaces(model, [late]))
    assert all(s.mesh.triangle_count > 0 for s in plume_surfaces(model, [8.0]))


def test_release_from_a_leak_estimate_and_checks() -> None:
    estimate = LeakEstimate(
        gas=Gas.PROPANE,
        position_m=(120.0, -40.0),
        pipeline_id=None,
        chainage_m=None,
        rate_low_kg_per_s=0.2,
        rate_median_kg_per_s=0.5,
        rate_high_kg_per_s=1.5,
        rate_at_prior_bound=False,
        segment_probabilities={},
        credible_intervals=(),
        wind_speed_m_per_s=2.0,
        wind_from_deg=10.0,
        sigma_theta_deg=10.0,
        stability_class=StabilityClass.E,
        lel_basis=BASIS,
        origin="what_if",
    )
    item = PlumeRelease.from_leak_estimate(estimate)
    assert item.source_m == (120.0, -40.0, 0.0)
    assert (item.rate_kg_per_s, item.extent_rate_kg_per_s) == (0.5, 1.5)
    data = plume_data(plume_model(item, grid_shape=(20, 10, 8)))
    assert data["gas"] == "propane"
    assert data["stability_class"] == "E"
    with pytest.raises(ValueError, match="rate_kg_per_s"):
        release().__class__(**{**release().__dict__, "rate_kg_per_s": -1.0})
    with pytest.raises(ValueError, match="extent_rate"):
        release().__class__(**{**release().__dict__, "extent_rate_kg_per_s": 0.5})
