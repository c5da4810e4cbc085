"""The gas cloud in 3D: a concentration grid over time and its 10 % and 60 % LEL isosurfaces.

For a leak estimate and a steady wind, the cloud of a release that starts at ``t = 0`` is the
steady Gaussian plume of :mod:`pipesentinel.detection.plume` (Briggs sigmas, ISC3 wind profile,
the 1 m s-1 floor, ground reflection) times the along-wind arrival factor of Palazzi et al.
(1982)'s transient model, in which the release is a train of puffs (sigma_x = sigma_y) and, for
a release of duration ``T`` observed at time ``t``::

    C(x, y, z, t) = C_steady(x, y, z) / 2 [erf((x - u (t - T)) / (sqrt(2) sigma_x))
                                           - erf((x - u t) / (sqrt(2) sigma_x))]

with ``T = t`` while the release goes on (the first term is then ``erf(x / (sqrt(2) sigma_x))``),
``x`` the downwind distance and ``u`` the plume's transport speed. Source: E. Palazzi, M. De
Faveri, G. Fumarola, G. Ferraiolo, "Diffusion from a steady source of short duration",
Atmospheric Environment 16 (1982) 2785-2790; reproduced as the "Palazzi short duration puff
model" in D. A. Crowl and J. F. Louvar, Chemical Process Safety (chapter 5, equation numbers not
checked here). The steady field does not change with time and the factor depends on ``x`` only,
so a time step costs one multiplication over the grid and the contouring.

Each level has its own grid, aligned with the wind (x downwind from the source, y crosswind to
the left, z up) and sized so that the level's surface fits inside it at the high end of the
estimate: the 60 % LEL cloud is a few metres across where the 10 % LEL cloud is hundreds.
The isosurfaces are contoured by flying edges (VTK), decimated to at most
``max_triangles_per_surface`` triangles, and returned as site east-north-up meshes for the scene
(:class:`~pipesentinel.simulation.scene.PlumeSurface`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

import numpy as np
import pyvista as pv
from numpy.typing import NDArray
from scipy import special

from pipesentinel.detection.briggs import sigma_m
from pipesentinel.detection.constants import (
    BRIGGS_MAXIMUM_DISTANCE_M,
    MINIMUM_WIND_SPEED_M_PER_S,
    STANDARD_ANEMOMETER_HEIGHT_M,
)
from pipesentinel.detection.gases import (
    LelBasis,
    kg_per_m3_to_mole_fraction,
    percent_lel_to_mole_fraction,
)
from pipesentinel.detection.plume import (
    plume_concentration_kg_per_m3,
    transport_wind_speed_m_per_s,
)
from pipesentinel.detection.stability import StabilityClass
from pipesentinel.plans.response import LeakEstimate
from pipesentinel.plans.zones import LEVELS_OF_CONCERN_PERCENT_LEL, ZoneLevel
from pipesentinel.simulation.scene import JsonValue, Mesh, PlumeSurface
from pipesentinel.site import Gas

FloatArray = NDArray[np.float64]

__all__ = [
    "GRID_SHAPE",
    "PlumeLevelGrid",
    "PlumeModel",
    "PlumeRelease",
    "arrival_factor",
    "plume_data",
    "plume_model",
    "plume_surfaces",
]

STANDARD_TEMPERATURE_K: Final = 288.15  # ISO 2533 standard atmosphere, sea level [K]
STANDARD_PRESSURE_PA: Final = 101_325.0  # ISO 2533 standard atmosphere, sea level [Pa]

GRID_SHAPE: Final = (112, 44, 22)
"""Grid points (downwind, crosswind, vertical) of each level's grid: about 108 000 points, a
resolution choice (a step in ``bench/scene.py`` stays well under the 300 ms goal)."""
DEFAULT_MAX_TRIANGLES_PER_SURFACE: Final = 3000
"""Triangles per isosurface after decimation: ten steps of two levels plus the site stay
within :data:`~pipesentinel.simulation.scene.TRIANGLE_BUDGET` and the 3 MB GLB goal."""
COARSENING_STRIDES: Final = ((1, 1, 1), (2, 1, 1), (2, 2, 1), (2, 2, 2), (4, 2, 2), (4, 4, 2))
"""Subsampling of a grid (downwind, crosswind, vertical), tried in turn until an isosurface fits
its triangle cap: cheaper than decimating a fine surface (10 ms against 170 ms, measured)."""
DOMAIN_MARGIN_FRACTION: Final = 0.15  # grid beyond the level's extent, of that extent [-]
MINIMUM_DOMAIN_M: Final = 5.0  # smallest grid half-size in any direction [m]
_AXIS_SAMPLES: Final = 400  # log-spaced on-axis distances searched for a level's extent
_NEAREST_AXIS_M: Final = 0.5  # first on-axis distance searched [m]
_LEVELS: Final = (ZoneLevel.YELLOW, ZoneLevel.RED)


@dataclass(frozen=True)
class PlumeRelease:
    """What is released, where and in which wind.

    Attributes
    ----------
    gas
        The released gas.
    source_m
        Release point (east, north, height >= 0) [m].
    rate_kg_per_s
        Release rate the cloud is drawn for [kg s-1].
    extent_rate_kg_per_s
        Rate the grid is sized for (the high end of the estimate, >= ``rate_kg_per_s``) [kg s-1].
    wind_speed_m_per_s
        Wind at ``anemometer_height_m`` [m s-1].
    wind_from_deg
        Direction the wind blows from, clockwise from north [deg].
    stability_class
        Pasquill-Gifford class.
    lel_basis
        Basis of the %LEL levels.
    urban
        Briggs urban curves (as the localiser and the response use) [1].
    anemometer_height_m
        Height of the wind measurement [m].
    release_duration_s
        Duration of the release [s]; None while it goes on.
    temperature_k, pressure_pa
        Ambient air, for the conversion to mole fraction [K], [Pa].
    """

    gas: Gas
    source_m: tuple[float, float, float]
    rate_kg_per_s: float
    wind_speed_m_per_s: float
    wind_from_deg: float
    stability_class: StabilityClass
    lel_basis: LelBasis
    extent_rate_kg_per_s: float | None = None
    urban: bool = True
    anemometer_height_m: float = STANDARD_ANEMOMETER_HEIGHT_M
    release_duration_s: float | None = None
    temperature_k: float = STANDARD_TEMPERATURE_K
    pressure_pa: float = STANDARD_PRESSURE_PA

    def __post_init__(self) -> None:
        if not (math.isfinite(self.rate_kg_per_s) and self.rate_kg_per_s > 0.0):
            raise ValueError(f"rate_kg_per_s must be > 0, got {self.rate_kg_per_s}")
        extent = self.extent_rate_kg_per_s
        if extent is None:
            object.__setattr__(self, "extent_rate_kg_per_s", self.rate_kg_per_s)
        elif not (math.isfinite(extent) and extent >= self.rate_kg_per_s):
            raise ValueError(f"extent_rate_kg_per_s must be >= rate_kg_per_s, got {extent}")
        if not (math.isfinite(self.wind_speed_m_per_s) and self.wind_speed_m_per_s >= 0.0):
            raise ValueError(f"wind_speed_m_per_s must be >= 0, got {self.wind_speed_m_per_s}")
        source = tuple(float(v) for v in self.source_m)
        if len(source) != 3 or not all(map(math.isfinite, source)) or source[2] < 0.0:
            raise ValueError(f"source_m must be (east, north, height >= 0), got {self.source_m}")
        object.__setattr__(self, "source_m", source)
        duration = self.release_duration_s
        if duration is not None and not (math.isfinite(duration) and duration > 0.0):
            raise ValueError(f"release_duration_s must be > 0 or None, got {duration}")

    @classmethod
    def from_leak_estimate(
        cls, estimate: LeakEstimate, *, urban: bool = True, release_duration_s: float | None = None
    ) -> PlumeRelease:
        """The cloud of a leak estimate at its median rate (grid sized for its high rate)."""
        return cls(
            gas=estimate.gas,
            source_m=(estimate.position_m[0], estimate.position_m[1], 0.0),
            rate_kg_per_s=estimate.rate_median_kg_per_s,
            extent_rate_kg_per_s=estimate.rate_high_kg_per_s,
            wind_speed_m_per_s=estimate.wind_speed_m_per_s,
            wind_from_deg=estimate.wind_from_deg,
            stability_class=estimate.stability_class,
            lel_basis=estimate.lel_basis,
            urban=urban,
            release_duration_s=release_duration_s,
        )

    @property
    def downwind_unit(self) -> FloatArray:
        """Unit vector (east, north) the wind blows towards [1]."""
        towards = math.radians(self.wind_from_deg)
        return np.array([-math.sin(towards), -math.cos(towards)])


def arrival_factor(
    distance_m: FloatArray,
    sigma_x_m: FloatArray,
    transport_speed_m_per_s: float,
    time_s: float,
    release_duration_s: float | None = None,
) -> FloatArray:
    """Palazzi et al. (1982)'s fraction of the steady concentration reached at time ``time_s``.

    Parameters
    ----------
    distance_m
        Downwind distance from the source, >= 0 [m].
    sigma_x_m
        Along-wind spread at that distance (sigma_y, as Palazzi et al. assume), > 0 [m].
    transport_speed_m_per_s
        Transport speed of the plume, > 0 [m s-1].
    time_s
        Time since the release started [s]; 0 or less gives 0.
    release_duration_s
        Duration of the release [s]; None while it goes on.

    Returns
    -------
    FloatArray
        Factor in [0, 1]: 1 once the steady state has arrived, 0 before the cloud [1].
    """
    if time_s <= 0.0:
        return np.zeros_like(np.asarray(distance_m, dtype=np.float64))
    scale = math.sqrt(2.0) * np.maximum(np.asarray(sigma_x_m, dtype=np.float64), 1e-9)
    x = np.asarray(distance_m, dtype=np.float64)
    started = time_s if release_duration_s is None else min(time_s, release_duration_s)
    tail = x - transport_speed_m_per_s * (time_s - started)
    front = x - transport_speed_m_per_s * time_s
    factor: FloatArray = 0.5 * (special.erf(tail / scale) - special.erf(front / scale))
    return np.clip(factor, 0.0, 1.0)


@dataclass(frozen=True)
class PlumeLevelGrid:
    """The steady mole fraction on one level's wind-aligned grid.

    ``x_m`` (nx,) downwind, ``y_m`` (ny,) crosswind (to the left of downwind), ``z_m`` (nz,) up,
    all from the source [m]; ``steady_mole_fraction`` has shape (nx, ny, nz) [mol mol-1];
    ``sigma_x_m`` (nx,) is the along-wind spread at each x [m]. ``z_m`` starts one step below
    the ground, where the field is 0, so that the surfaces close at the ground.
    """

    level: ZoneLevel
    percent_lel: float
    mole_fraction: float
    x_m: FloatArray
    y_m: FloatArray
    z_m: FloatArray
    steady_mole_fraction: FloatArray
    sigma_x_m: FloatArray


@dataclass(frozen=True)
class PlumeModel:
    """A release and the steady fields of its levels, ready to be stepped in time."""

    release: PlumeRelease
    transport_speed_m_per_s: float
    grids: tuple[PlumeLevelGrid, ...]

    def grid(self, level: ZoneLevel) -> PlumeLevelGrid:
        """The grid of one level."""
        for grid in self.grids:
            if grid.level is level:
                return grid
        raise KeyError(f"no grid for level {level!r}")

    def mole_fraction(self, level: ZoneLevel, time_s: float) -> FloatArray:
        """Mole fraction on the level's grid at ``time_s`` after the start [mol mol-1]."""
        grid = self.grid(level)
        factor = arrival_factor(
            grid.x_m,
            grid.sigma_x_m,
            self.transport_speed_m_per_s,
            time_s,
            self.release.release_duration_s,
        )
        result: FloatArray = grid.steady_mole_fraction * factor[:, np.newaxis, np.newaxis]
        return result

    def points_m(self, level: ZoneLevel) -> FloatArray:
        """Site east-north-up positions of the level's grid points, shape (nx, ny, nz, 3) [m]."""
        grid = self.grid(level)
        x, y, z = np.meshgrid(grid.x_m, grid.y_m, grid.z_m, indexing="ij")
        return _to_site(np.stack([x, y, z], axis=-1), self.release)


def _rotate(vectors: FloatArray, release: PlumeRelease) -> FloatArray:
    """Wind-frame (downwind, crosswind-left, up) vectors to site east-north-up [1]."""
    downwind = release.downwind_unit
    left = np.array([-downwind[1], downwind[0]])  # downwind turned 90 degrees anticlockwise
    rotation = np.array([[downwind[0], left[0], 0.0], [downwind[1], left[1], 0.0], [0.0, 0.0, 1.0]])
    result: FloatArray = vectors @ rotation.T
    return result


def _to_site(local_m: FloatArray, release: PlumeRelease) -> FloatArray:
    """Site east-north-up [m] of wind-frame points (from the source; height above ground) [m]."""
    offset = np.array([release.source_m[0], release.source_m[1], 0.0])
    result: FloatArray = _rotate(local_m, release) + offset
    return result


def _steady_mole_fraction(points_m: FloatArray, release: PlumeRelease, rate: float) -> FloatArray:
    concentration = plume_concentration_kg_per_m3(
        np.where(points_m[..., 2:3] < 0.0, points_m * [1.0, 1.0, 0.0], points_m),
        np.asarray(release.source_m),
        emission_rate_kg_per_s=rate,
        wind_speed_m_per_s=release.wind_speed_m_per_s,
        wind_direction_rad=math.radians(release.wind_from_deg),
        stability_class=int(release.stability_class),
        urban=release.urban,
        anemometer_height_m=release.anemometer_height_m,
    )
    fraction: FloatArray = kg_per_m3_to_mole_fraction(
        concentration,
        release.gas,
        temperature_k=release.temperature_k,
        pressure_pa=release.pressure_pa,
    )
    return np.where(points_m[..., 2] < 0.0, 0.0, fraction)


def _level_extent(release: PlumeRelease, threshold: float) -> tuple[float, float, float]:
    """Downwind reach, crosswind half-width and height where the steady field exceeds ``threshold``.

    At the rate the grid is sized for (``extent_rate_kg_per_s``), from a ground-level search along
    the axis and the Gaussian crosswind and vertical profiles [m].
    """
    rate = release.extent_rate_kg_per_s or release.rate_kg_per_s
    distances = np.geomspace(_NEAREST_AXIS_M, BRIGGS_MAXIMUM_DISTANCE_M, _AXIS_SAMPLES)
    downwind = release.downwind_unit
    source = np.asarray(release.source_m)
    axis = np.column_stack(
        [
            source[0] + distances * downwind[0],
            source[1] + distances * downwind[1],
            np.full(_AXIS_SAMPLES, source[2]),
        ]
    )
    on_axis = _steady_mole_fraction(axis, release, rate)
    above = on_axis > threshold
    if not np.any(above):
        return (MINIMUM_DOMAIN_M, MINIMUM_DOMAIN_M, MINIMUM_DOMAIN_M)
    last = int(np.flatnonzero(above)[-1])
    reach = float(distances[min(last + 1, _AXIS_SAMPLES - 1)])
    ratio = np.log(np.where(above, on_axis / threshold, 1.0))
    code = int(release.stability_class)
    sigma_y = sigma_m(distances, code, urban=release.urban, vertical=False)
    sigma_z = sigma_m(distances, code, urban=release.urban, vertical=True)
    half_width = float(np.max(sigma_y * np.sqrt(2.0 * ratio)))
    height = float(source[2] + np.max(sigma_z * np.sqrt(2.0 * ratio)))
    return (
        max(reach, MINIMUM_DOMAIN_M),
        max(half_width, MINIMUM_DOMAIN_M),
        max(height, MINIMUM_DOMAIN_M),
    )


def plume_model(
    release: PlumeRelease, *, grid_shape: tuple[int, int, int] = GRID_SHAPE
) -> PlumeModel:
    """The steady fields of the 10 % and 60 % LEL levels of ``release`` on their grids."""
    if min(grid_shape) < 4:
        raise ValueError(f"grid_shape needs at least 4 points per axis, got {grid_shape}")
    nx, ny, nz = grid_shape
    speed = float(
        np.maximum(
            transport_wind_speed_m_per_s(
                release.wind_speed_m_per_s,
                release.source_m[2],
                int(release.stability_class),
                urban=release.urban,
                anemometer_height_m=release.anemometer_height_m,
            ),
            MINIMUM_WIND_SPEED_M_PER_S,
        )
    )
    grids: list[PlumeLevelGrid] = []
    for level in _LEVELS:
        percent = LEVELS_OF_CONCERN_PERCENT_LEL[level]
        threshold = float(
            percent_lel_to_mole_fraction(percent, release.gas, basis=release.lel_basis)
        )
        reach, half_width, height = _level_extent(release, threshold)
        margin = 1.0 + DOMAIN_MARGIN_FRACTION
        x_step = reach * margin / (nx - 3)
        x = np.linspace(-2.0 * x_step, reach * margin, nx)  # two cells upwind: the cloud closes
        y = np.linspace(-half_width * margin, half_width * margin, ny)
        z_top = height * margin
        z_step = z_top / (nz - 2)
        z = np.linspace(-z_step, z_top, nz)  # one cell below ground: the cloud closes there
        xx, yy, zz = np.meshgrid(x, y, z, indexing="ij")
        points = _to_site(np.stack([xx, yy, zz], axis=-1), release)
        steady = _steady_mole_fraction(points, release, release.rate_kg_per_s)
        sigma_x = sigma_m(
            np.maximum(x, 0.0), int(release.stability_class), urban=release.urban, vertical=False
        )
        grids.append(
            PlumeLevelGrid(
                level=level,
                percent_lel=percent,
                mole_fraction=threshold,
                x_m=x,
                y_m=y,
                z_m=z,
                steady_mole_fraction=steady,
                sigma_x_m=sigma_x,
            )
        )
    return PlumeModel(release=release, transport_speed_m_per_s=speed, grids=tuple(grids))


def _contour(grid: PlumeLevelGrid, field: FloatArray, stride: tuple[int, int, int]) -> pv.PolyData:
    """Flying-edges isosurface of ``field`` subsampled by ``stride``, in wind-frame metres."""
    sub = field[:: stride[0], :: stride[1], :: stride[2]]
    steps = (grid.x_m[1] - grid.x_m[0], grid.y_m[1] - grid.y_m[0], grid.z_m[1] - grid.z_m[0])
    image = pv.ImageData(
        dimensions=sub.shape,
        spacing=tuple(step * factor for step, factor in zip(steps, stride, strict=True)),
        origin=(grid.x_m[0], grid.y_m[0], grid.z_m[0]),
    )
    image.point_data["mole_fraction"] = sub.ravel(order="F")
    surface: pv.PolyData = image.contour(
        [grid.mole_fraction], scalars="mole_fraction", method="flying_edges"
    )
    return surface


def _isosurface(
    grid: PlumeLevelGrid, field: FloatArray, release: PlumeRelease, max_triangles: int
) -> Mesh:
    """The level's isosurface of ``field`` as a site-frame mesh with outward normals.

    The grid is subsampled (:data:`COARSENING_STRIDES`) until the surface has at most
    ``max_triangles`` triangles; quadric decimation is the last resort (it costs about ten
    contourings).
    """
    if not np.any(field >= grid.mole_fraction):
        return Mesh.empty()
    for stride in COARSENING_STRIDES:
        surface = _contour(grid, field, stride)
        if surface.n_cells <= max_triangles:
            break
    else:
        surface = surface.decimate(1.0 - max_triangles / surface.n_cells)
    if surface.n_cells == 0:
        return Mesh.empty()
    surface = surface.compute_normals(
        cell_normals=False,
        point_normals=True,
        split_vertices=False,
        consistent_normals=True,
        auto_orient_normals=True,
    )
    faces = np.asarray(surface.faces, dtype=np.int64).reshape(-1, 4)
    if not np.all(faces[:, 0] == 3):
        raise RuntimeError("isosurface: the contour filter returned polygons other than triangles")
    local = np.asarray(surface.points, dtype=np.float64)
    normals = np.asarray(surface.point_data["Normals"], dtype=np.float64)
    return Mesh(_to_site(local, release), _rotate(normals, release), faces[:, 1:])


def plume_surfaces(
    model: PlumeModel,
    times_s: FloatArray | list[float] | tuple[float, ...],
    *,
    max_triangles_per_surface: int = DEFAULT_MAX_TRIANGLES_PER_SURFACE,
) -> tuple[PlumeSurface, ...]:
    """The 10 % and 60 % LEL isosurfaces at each time since the start of the release [s].

    A level the cloud does not reach at a time gives a surface with an empty mesh, so that every
    step has both levels.
    """
    if max_triangles_per_surface < 4:
        raise ValueError(f"max_triangles_per_surface must be >= 4, got {max_triangles_per_surface}")
    surfaces: list[PlumeSurface] = []
    for time_s in np.asarray(times_s, dtype=np.float64).reshape(-1):
        for grid in model.grids:
            field = model.mole_fraction(grid.level, float(time_s))
            surfaces.append(
                PlumeSurface(
                    time_s=float(time_s),
                    level=grid.level.value,
                    percent_lel=grid.percent_lel,
                    mole_fraction=grid.mole_fraction,
                    mesh=_isosurface(grid, field, model.release, max_triangles_per_surface),
                )
            )
    return tuple(surfaces)


def plume_data(model: PlumeModel) -> dict[str, JsonValue]:
    """What the plume objects of a scene say about the release (SI, units in the keys)."""
    release = model.release
    return {
        "model": "steady Gaussian plume x Palazzi et al. (1982) arrival factor",
        "gas": release.gas.value,
        "lel_basis": release.lel_basis.value,
        "source_m": [round(v, 2) for v in release.source_m],
        "rate_kg_per_s": release.rate_kg_per_s,
        "wind_speed_m_per_s": release.wind_speed_m_per_s,
        "wind_from_deg": release.wind_from_deg,
        "stability_class": release.stability_class.name,
        "transport_speed_m_per_s": round(model.transport_speed_m_per_s, 3),
        "release_duration_s": release.release_duration_s,
    }
