"""The simulated world of a site: a scenario's leaks, wind and faults seen by every device.

:class:`SiteSimulation` advances a :class:`~pipesentinel.hardware.scenario.Scenario` step by step:
the wind model gives the true wind and what the stations report; each leak's gas is carried by
Gaussian puffs (:mod:`pipesentinel.detection.puff`, one puff set per gas) so transient releases
and wind shifts are followed; the true mole fraction at every detector head and the column along
every laser beam feed the device models (:mod:`~pipesentinel.hardware.gas_sensor`,
:mod:`~pipesentinel.hardware.camera_model`). Each step returns the :class:`DeviceOutput` items that
are due, in device units as the MQTT contract has them (``docs/mqtt.md``); the fleet
(:mod:`pipesentinel.hardware.fleet`) numbers, encodes and publishes them.

No sockets here: the simulation is deterministic for a scenario seed and can run on any clock.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

import numpy as np
from numpy.typing import NDArray

from pipesentinel.detection.gases import kg_per_m3_to_mole_fraction
from pipesentinel.detection.puff import (
    Puffs,
    puff_concentration_kg_per_m3,
    puff_path_integral_mole_fraction_m,
    step_puffs,
)
from pipesentinel.detection.stability import is_daytime
from pipesentinel.hardware.camera_model import (
    CameraPose,
    CameraRenderer,
    ColdPlume,
    beam_blocked_by,
    encode_jpeg,
    encode_thermal_png,
    laser_beam_m,
    laser_reading,
    objects_in_view,
)
from pipesentinel.hardware.gas_sensor import GASES, GasSensorArray
from pipesentinel.hardware.scenario import FaultKind, Scenario
from pipesentinel.hardware.wind_model import WindModel
from pipesentinel.ingest.topics import MessageKind
from pipesentinel.site import Gas, Site
from pipesentinel.units import DEGREE, DEGREE_CELSIUS, HECTOPASCAL, PPM_M

FloatArray = NDArray[np.float64]

# Background methane in clean air, added to what every detector head and laser beam sees:
# NOAA Global Monitoring Laboratory, globally averaged marine surface monthly mean CH4 for 2023,
# about 1922 ppb (gml.noaa.gov/ccgg/trends_ch4). Propane background is negligible (ppt level).
BACKGROUND_METHANE_MOLE_FRACTION: Final = 1.922e-6

# Fraction of the ground-level mole fraction above a manhole or tunnel hatch that reaches a
# detector inside it. A modelling ASSUMPTION of this simulator (no migration through soil or along
# the sewer is modelled; real ingress depends on cover vents, pressure and soil): chosen so that
# a cloud over a hatch is seen, weaker, underground. Not measured, not a cited figure.
UNDERGROUND_INGRESS_FRACTION: Final = 0.3

# The laser methane detector reports once a second: typical of TDLAS open-path and stand-off
# units (e.g. a 1 Hz output); the site model gives the frame period for images only.
LASER_SAMPLE_PERIOD_S: Final = 1.0

# Puffs farther than this beyond the site's infrastructure have left the monitored area [m].
PUFF_DOMAIN_MARGIN_M: Final = 1000.0

# Visible-light level by night relative to day (street lighting on a synthetic scene) [1].
NIGHT_ILLUMINATION: Final = 0.25

# Reading intervals are compared with this slack so that float accumulation never skips one [s].
_SCHEDULE_SLACK_S: Final = 1e-6


@dataclass(frozen=True, slots=True)
class DeviceOutput:
    """One message a device sends, before numbering and encoding.

    ``values`` are the contract's fields other than ``ts`` and ``seq``, in the contract's units
    (``ch4_ppm``, ``direction_deg``, ...). Camera frames carry the encoded ``image`` and its size.
    """

    kind: MessageKind
    device_id: str
    time_s: float  # since the scenario start [s]
    values: Mapping[str, float | str] = field(default_factory=dict)
    image: bytes | None = None
    width_px: int = 0
    height_px: int = 0


@dataclass(frozen=True)
class StepTruth:
    """What really happened in the last step: for tests, validation and the demo display."""

    time_s: float
    wind_speed_m_per_s: float
    wind_direction_from_rad: float
    stability_class_index: int
    detector_mole_fraction: FloatArray  # (n_detectors, n_gases), at the heads [mol mol-1]
    beam_path_integral_mole_fraction_m: FloatArray  # (n_cameras,), methane, leak only
    puff_count: int


class _Schedule:
    """When each of n devices is next due, vectorized: a device is due every ``period_s``."""

    def __init__(self, period_s: FloatArray) -> None:
        self.period_s = np.asarray(period_s, dtype=np.float64)
        self.next_s = self.period_s.copy()

    def due(self, time_s: float) -> NDArray[np.bool_]:
        due = self.next_s <= time_s + _SCHEDULE_SLACK_S
        self.next_s = np.where(due, self.next_s + self.period_s, self.next_s)
        return due


class SiteSimulation:
    """A scenario played on a site, one ``scenario.time_step_s`` per :meth:`step`.

    Parameters
    ----------
    site
        The site the scenario was validated against.
    scenario
        What happens.
    urban
        Urban (True) or open-country Briggs dispersion curves [1]. The reference site is a built-up
        subdistrict.
    frames
        Render camera frames (the dominant cost, 40-50 ms a frame); False leaves images out, e.g.
        for long accelerated runs that only need gas and wind.
    frame_period_factor
        Frames come every ``frame_period_s x frame_period_factor`` of scenario time [1]; an
        accelerated run passes its speed-up so that the wall-clock frame rate stays as in real time.
    """

    def __init__(
        self,
        site: Site,
        scenario: Scenario,
        *,
        urban: bool = True,
        frames: bool = True,
        frame_period_factor: float = 1.0,
    ) -> None:
        if not frame_period_factor >= 1.0:
            raise ValueError(f"frame_period_factor must be >= 1, got {frame_period_factor!r}")
        if scenario.site_id != site.id:
            raise ValueError(
                f"scenario {scenario.name!r} is for site {scenario.site_id!r}, not {site.id!r}"
            )
        self.site = site
        self.scenario = scenario
        self.urban = urban
        self.frames = frames
        self.time_s = 0.0
        self._rng = scenario.generators()
        self._gas = GasSensorArray.from_site(site)
        self._gas_faults = scenario.gas_fault_schedule(site)
        self._wind = WindModel.from_site(site, scenario.wind, rng=self._rng["wind"])
        self._puffs = {gas: Puffs.empty() for gas in GASES}
        self._detector_ids = [detector.id for detector in site.gas_detectors]
        self._station_ids = [station.id for station in site.wind_stations]
        self._camera_ids = [camera.id for camera in site.cameras]
        self._detector_schedule = _Schedule(
            np.array([detector.sample_period_s for detector in site.gas_detectors])
        )
        self._station_schedule = _Schedule(
            np.array([station.sample_period_s for station in site.wind_stations])
        )
        self._laser_schedule = _Schedule(np.full(len(site.cameras), LASER_SAMPLE_PERIOD_S))
        self._frame_schedule = _Schedule(
            np.array([camera.frame_period_s for camera in site.cameras]) * frame_period_factor
        )
        heads = np.array([detector.position_m for detector in site.gas_detectors]).reshape(-1, 3)
        underground = heads[:, 2] < 0.0
        # Underground heads sample the air at the hatch (ground level), scaled by the ingress.
        self._receptors_m = np.where(underground[:, np.newaxis], heads * [1.0, 1.0, 0.0], heads)
        self._ingress = np.where(underground, UNDERGROUND_INGRESS_FRACTION, 1.0)
        self._poses = [CameraPose.from_camera(camera) for camera in site.cameras]
        beams = [
            laser_beam_m(pose, camera.laser_range_m)
            for pose, camera in zip(self._poses, site.cameras, strict=True)
        ]
        self._beam_start_m = np.array([start for start, _ in beams]).reshape(-1, 3)
        self._beam_end_m = np.array([end for _, end in beams]).reshape(-1, 3)
        self._beam_length_m = np.linalg.norm(self._beam_end_m - self._beam_start_m, axis=-1)
        self._renderers: dict[str, CameraRenderer] = {}
        low, high = site.extent_m
        self._max_travel_m = float(np.hypot(*(high - low))) + PUFF_DOMAIN_MARGIN_M
        self._origin = site.origin
        self.truth: StepTruth | None = None

    @property
    def duration_s(self) -> float:
        """Length of the scenario [s]."""
        return self.scenario.duration_s

    @property
    def finished(self) -> bool:
        """Whether the scenario's duration has been played."""
        return self.time_s >= self.scenario.duration_s - _SCHEDULE_SLACK_S

    def _renderer(self, index: int) -> CameraRenderer:
        camera_id = self._camera_ids[index]
        if camera_id not in self._renderers:  # built on first use: 0.2 s each
            self._renderers[camera_id] = CameraRenderer(self._poses[index], self.site)
        return self._renderers[camera_id]

    def _daytime(self) -> bool:
        epoch_s = self.scenario.start_time_s + self.time_s
        return bool(
            is_daytime(
                epoch_s,
                latitude_rad=math.radians(self._origin.latitude_deg),
                longitude_rad=math.radians(self._origin.longitude_deg),
            )
        )

    def step(self) -> list[DeviceOutput]:
        """Advance one time step; the outputs of every device due at the new time."""
        scenario = self.scenario
        dt_s = scenario.time_step_s
        time_s = self.time_s + dt_s
        self._wind.advance_to(time_s)
        true_wind = self._wind.true_wind()
        wind_speed = float(true_wind.speed_m_per_s)
        wind_direction = float(true_wind.direction_from_rad)
        stability_index = int(self._wind.mean_wind().stability_class_index)
        # Emission over the step, taken at its middle.
        rates = scenario.emission_rates_kg_per_s(time_s - 0.5 * dt_s)
        temperature_k = scenario.ambient_temperature_k
        pressure_pa = scenario.ambient_pressure_pa
        true_fraction = np.zeros((len(self._detector_ids), len(GASES)))
        beam_column = np.zeros(len(self._camera_ids))
        for gas_index, gas in enumerate(GASES):
            puffs = self._puffs[gas]
            gas_rates = rates[:, gas_index] if rates.size else np.zeros(0)
            if len(puffs) or np.any(gas_rates > 0.0):
                puffs = step_puffs(
                    puffs,
                    sources_m=scenario.leak_positions_m,
                    emission_rate_kg_per_s=gas_rates,
                    duration_s=dt_s,
                    wind_speed_m_per_s=wind_speed,
                    wind_direction_rad=wind_direction,
                    stability_class=stability_index,
                    urban=self.urban,
                    max_travel_distance_m=self._max_travel_m,
                )
                self._puffs[gas] = puffs
            if not len(puffs):
                continue
            concentration = puff_concentration_kg_per_m3(self._receptors_m, puffs)
            true_fraction[:, gas_index] = self._ingress * kg_per_m3_to_mole_fraction(
                concentration, gas=gas, temperature_k=temperature_k, pressure_pa=pressure_pa
            )
            if gas is Gas.METHANE and len(self._camera_ids):
                beam_column = puff_path_integral_mole_fraction_m(
                    self._beam_start_m,
                    self._beam_end_m,
                    puffs,
                    gas=gas,
                    temperature_k=temperature_k,
                    pressure_pa=pressure_pa,
                )
        methane_index = GASES.index(Gas.METHANE)
        heads = true_fraction.copy()
        heads[:, methane_index] += BACKGROUND_METHANE_MOLE_FRACTION
        self.time_s = time_s
        self.truth = StepTruth(
            time_s=time_s,
            wind_speed_m_per_s=wind_speed,
            wind_direction_from_rad=wind_direction,
            stability_class_index=stability_index,
            detector_mole_fraction=heads,
            beam_path_integral_mole_fraction_m=beam_column,
            puff_count=sum(len(puffs) for puffs in self._puffs.values()),
        )
        outputs = self._gas_outputs(heads, dt_s)
        outputs += self._wind_outputs()
        outputs += self._laser_outputs(beam_column)
        if self.frames:
            outputs += self._frame_outputs(wind_direction, rates)
        return outputs

    def _gas_outputs(self, heads: FloatArray, dt_s: float) -> list[DeviceOutput]:
        # The sensor is stepped every time step (its response is continuous); a detector sends
        # when its sample period is due and it is not offline.
        output = self._gas.step(heads, dt_s, self._rng["gas"], self._gas_faults.at(self.time_s))
        due = self._detector_schedule.due(self.time_s) & output.publish
        outputs = []
        for index in np.flatnonzero(due):
            reading = output.reading_ppm(int(index))
            values: dict[str, float | str] = {
                "ch4_ppm": _finite_or_zero(reading.get(GASES[0], 0.0)),
                "c3h8_ppm": _finite_or_zero(reading.get(GASES[1], 0.0)),
                "status": output.status(int(index)).value,
            }
            fault_code = output.fault_code(int(index))
            if fault_code is not None:
                values["fault_code"] = str(fault_code.value)
            outputs.append(
                DeviceOutput(MessageKind.GAS, self._detector_ids[index], self.time_s, values)
            )
        return outputs

    def _wind_outputs(self) -> list[DeviceOutput]:
        due = self._station_schedule.due(self.time_s)
        if not due.any():
            return []
        ids = self._station_ids
        report = self._wind.report(
            offline=self.scenario.fault_mask(self.time_s, ids, FaultKind.OFFLINE),
            stuck=self.scenario.fault_mask(self.time_s, ids, FaultKind.STUCK),
        )
        temperature_c = float(DEGREE_CELSIUS.from_si(self.scenario.ambient_temperature_k))
        pressure_hpa = float(HECTOPASCAL.from_si(self.scenario.ambient_pressure_pa))
        outputs = []
        for index in np.flatnonzero(due & report.publish):
            direction_deg = float(DEGREE.from_si(float(report.direction_from_rad[index]))) % 360.0
            outputs.append(
                DeviceOutput(
                    MessageKind.WIND,
                    ids[index],
                    self.time_s,
                    {
                        "speed_m_per_s": round(float(report.speed_m_per_s[index]), 3),
                        "direction_deg": round(direction_deg, 2) % 360.0,
                        "sigma_theta_deg": round(
                            float(DEGREE.from_si(float(report.sigma_theta_rad[index]))), 3
                        ),
                        "temperature_c": round(temperature_c, 2),
                        "pressure_hpa": round(pressure_hpa, 2),
                    },
                )
            )
        return outputs

    def _laser_outputs(self, beam_column: FloatArray) -> list[DeviceOutput]:
        due = self._laser_schedule.due(self.time_s)
        if not due.any():
            return []
        objects = [
            intrusion.scene_object() for intrusion in self.scenario.active_intrusions(self.time_s)
        ]
        blocked = self.scenario.fault_mask(self.time_s, self._camera_ids, FaultKind.BEAM_BLOCKED)
        blocked |= np.array(
            [
                beam_blocked_by(start, end, objects)
                for start, end in zip(self._beam_start_m, self._beam_end_m, strict=True)
            ],
            dtype=np.bool_,
        )
        offline = self.scenario.fault_mask(self.time_s, self._camera_ids, FaultKind.OFFLINE)
        reading = laser_reading(
            beam_column, self._beam_length_m, self._rng["laser"], beam_blocked=blocked
        )
        return [
            DeviceOutput(
                MessageKind.LASER,
                self._camera_ids[index],
                self.time_s,
                {
                    "path_integral_ppm_m": round(
                        float(PPM_M.from_si(float(reading.path_integral_mole_fraction_m[index]))), 3
                    ),
                    "status": reading.status(int(index)).value,
                },
            )
            for index in np.flatnonzero(due & ~offline)
        ]

    def _frame_outputs(self, wind_direction_rad: float, rates: FloatArray) -> list[DeviceOutput]:
        due = self._frame_schedule.due(self.time_s)
        offline = self.scenario.fault_mask(self.time_s, self._camera_ids, FaultKind.OFFLINE)
        due &= ~offline
        if not due.any():
            return []
        objects = [
            intrusion.scene_object() for intrusion in self.scenario.active_intrusions(self.time_s)
        ]
        hot_spots = [fire.hot_spot() for fire in self.scenario.active_fires(self.time_s)]
        plumes = [
            ColdPlume(
                source_m=leak.position_m[:2],
                emission_rate_kg_per_s=float(np.sum(rates[index])),
                wind_direction_from_rad=wind_direction_rad,
            )
            for index, leak in enumerate(self.scenario.leaks)
            if rates.size and float(np.sum(rates[index])) > 0.0
        ]
        illumination = 1.0 if self._daytime() else NIGHT_ILLUMINATION
        stamp = datetime.fromtimestamp(self.scenario.start_time_s + self.time_s, tz=UTC)
        outputs = []
        for index in np.flatnonzero(due):
            renderer = self._renderer(int(index))
            in_view = [
                item
                for item, visible in zip(
                    objects, objects_in_view(self._poses[index], objects), strict=True
                )
                if visible
            ]
            visible = renderer.visible_frame(
                rng=self._rng["camera"],
                objects=in_view,
                hot_spots=hot_spots,
                illumination=illumination,
                timestamp_text=f"{self._camera_ids[index]} {stamp:%Y-%m-%d %H:%M:%S}Z",
            )
            thermal = renderer.thermal_frame(
                ambient_temperature_k=self.scenario.ambient_temperature_k,
                rng=self._rng["camera"],
                objects=in_view,
                plumes=plumes,
                hot_spots=hot_spots,
            )
            height_px, width_px = thermal.shape
            camera_id = self._camera_ids[index]
            outputs.append(
                DeviceOutput(
                    MessageKind.VISIBLE,
                    camera_id,
                    self.time_s,
                    image=encode_jpeg(visible),
                    width_px=width_px,
                    height_px=height_px,
                )
            )
            outputs.append(
                DeviceOutput(
                    MessageKind.THERMAL,
                    camera_id,
                    self.time_s,
                    image=encode_thermal_png(thermal),
                    width_px=width_px,
                    height_px=height_px,
                )
            )
        return outputs


def _finite_or_zero(value_ppm: float) -> float:
    """A channel a detector lacks is NaN in the model; the contract wants 0 for it."""
    return round(float(value_ppm), 2) if math.isfinite(value_ppm) else 0.0
