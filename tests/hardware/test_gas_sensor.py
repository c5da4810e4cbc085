"""Tests of the gas detector physics: response, noise, clipping, faults, status, determinism."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal

from pipesentinel.hardware.gas_sensor import (
    FAULT_HIGH_LEVEL_FRACTION_OF_FULL_SCALE,
    FAULT_LOW_LEVEL_FRACTION_OF_FULL_SCALE,
    GASES,
    LOWER_SATURATION_FRACTION_OF_FULL_SCALE,
    GasChannelParameters,
    GasFault,
    GasFaultCode,
    GasFaultKind,
    GasFaultSchedule,
    GasFaultTable,
    GasSensorArray,
    GasSensorOutput,
    GasSensorParameters,
    first_order_response,
    quantise,
    time_constant_s,
)
from pipesentinel.ingest.records import DeviceStatus
from pipesentinel.site import DetectorPlacement, Gas, GasDetector, GeoOrigin, Site

FULL_SCALE = 0.05  # 50 000 ppm as a mole fraction
QUIET = GasChannelParameters(
    noise_std_fraction_of_full_scale=0.0,
    resolution_fraction_of_full_scale=0.0,
    zero_random_walk_fraction_of_full_scale_per_sqrt_s=0.0,
)


def make_array(
    n: int = 3,
    *,
    t90_s: float = 10.0,
    channel: GasChannelParameters = QUIET,
    warmup_s: float = 0.0,
    channel_present: np.ndarray | None = None,
) -> GasSensorArray:
    present = np.ones((n, len(GASES)), dtype=bool) if channel_present is None else channel_present
    return GasSensorArray(
        detector_ids=[f"GD{i:02d}" for i in range(n)],
        t90_s=np.full(n, t90_s),
        full_scale_mole_fraction=np.full(n, FULL_SCALE),
        channel_present=present,
        parameters=GasSensorParameters(channels=dict.fromkeys(GASES, channel), warmup_s=warmup_s),
    )


def run(
    sensors: GasSensorArray,
    true: np.ndarray,
    steps: int,
    *,
    dt_s: float = 1.0,
    faults: GasFaultTable | None = None,
    seed: int = 0,
) -> list[GasSensorOutput]:
    rng = np.random.default_rng(seed)
    return [sensors.step(true, dt_s, rng, faults) for _ in range(steps)]


def test_time_constant_from_t90() -> None:
    # Hand-worked: tau = t90 / ln(10) = 10 / 2.302585 = 4.342945 s.
    assert_allclose(time_constant_s(10.0), 4.342944819, rtol=1e-9)


def test_first_order_response_reaches_90_percent_at_t90() -> None:
    # A step input reaches exactly 90 % after t90 whatever the step size (exact ZOH update).
    sensors = make_array(1, t90_s=20.0)
    step = np.full((1, len(GASES)), 0.02)
    outputs = run(sensors, step, steps=8, dt_s=2.5)
    assert_allclose(outputs[-1].mole_fraction, 0.9 * step, rtol=1e-12)
    half_way = outputs[3].mole_fraction  # after 10 s: 1 - 10**-0.5
    assert_allclose(half_way, (1.0 - 10**-0.5) * step, rtol=1e-12)


def test_first_order_response_zero_t90_is_instantaneous() -> None:
    out = first_order_response(np.zeros(2), np.array([1.0, 2.0]), 1.0, np.zeros(2))
    assert_array_equal(out, [1.0, 2.0])


def test_quantise_rounds_to_resolution() -> None:
    values = np.array([0.00012, 0.00026, -0.00004])
    assert_allclose(quantise(values, np.full(3, 1e-4)), [1e-4, 3e-4, -0.0], atol=1e-15)
    assert_array_equal(quantise(values, np.zeros(3)), values)


def test_noise_has_the_configured_standard_deviation() -> None:
    channel = GasChannelParameters(
        noise_std_fraction_of_full_scale=0.005,
        resolution_fraction_of_full_scale=0.0,
        zero_random_walk_fraction_of_full_scale_per_sqrt_s=0.0,
    )
    sensors = make_array(50, channel=channel)
    readings = np.array(
        [out.mole_fraction for out in run(sensors, np.zeros((50, 2)), steps=200, seed=1)]
    )
    # Clean air reads around 0 with sigma = 0.5 % of 0.05 = 2.5e-4, clipped below at -1.25 % FS
    # (the NE 43 saturation), i.e. at -2.5 sigma: compare a robust estimate (MAD) away from it.
    sigma = 1.4826 * np.median(np.abs(readings - np.median(readings)))
    assert_allclose(sigma, 2.5e-4, rtol=0.03)
    assert readings.min() >= LOWER_SATURATION_FRACTION_OF_FULL_SCALE * FULL_SCALE


def test_readings_are_quantised_by_default() -> None:
    sensors = make_array(4, channel=GasChannelParameters())
    outputs = run(sensors, np.full((4, 2), 0.0123), steps=30)
    resolution = 0.001 * FULL_SCALE
    multiples = np.array([out.mole_fraction for out in outputs]) / resolution
    assert_allclose(multiples, np.round(multiples), atol=1e-9)


def test_above_full_scale_is_clipped_at_full_scale_and_ok() -> None:
    sensors = make_array(2, t90_s=0.0)
    out = run(sensors, np.full((2, 2), 0.2), steps=1)[0]
    assert_array_equal(out.mole_fraction, FULL_SCALE)
    assert out.status(0) is DeviceStatus.OK
    assert out.fault_code(0) is None


def test_absent_channel_reads_nan_and_ppm_dict_skips_it() -> None:
    present = np.array([[True, False], [True, True]])
    sensors = make_array(2, channel_present=present)
    out = run(sensors, np.full((2, 2), 1e-3), steps=3)[-1]
    assert math.isnan(out.mole_fraction[0, 1])
    assert not np.isnan(out.mole_fraction[1]).any()
    assert set(out.reading_ppm(0)) == {Gas.METHANE}
    assert out.reading_ppm(1)[Gas.PROPANE] == pytest.approx(out.mole_fraction[1, 1] * 1e6)


def test_warmup_then_ok() -> None:
    sensors = make_array(2, warmup_s=5.0)
    outputs = run(sensors, np.zeros((2, 2)), steps=7)
    statuses = [out.status(0) for out in outputs]
    assert statuses[:4] == [DeviceStatus.WARMUP] * 4  # elapsed 1..4 s < 5 s
    assert statuses[4:] == [DeviceStatus.OK] * 3


def faults_for(n: int, index: int, fault: GasFault) -> GasFaultTable:
    return GasFaultTable.from_faults(n, {index: fault})


def test_stuck_detector_holds_its_last_value_silently() -> None:
    sensors = make_array(2, t90_s=0.0)
    rng = np.random.default_rng(0)
    before = sensors.step(np.full((2, 2), 0.01), 1.0, rng)
    stuck = faults_for(2, 0, GasFault(GasFaultKind.STUCK))
    outputs = [sensors.step(np.full((2, 2), 0.03), 1.0, rng, stuck) for _ in range(5)]
    for out in outputs:
        assert_array_equal(out.mole_fraction[0], before.mole_fraction[0])
        assert out.status(0) is DeviceStatus.OK  # the detector does not notice
        assert_allclose(out.mole_fraction[1], 0.03)
    reported = faults_for(2, 0, GasFault(GasFaultKind.STUCK, self_reported=True))
    out = sensors.step(np.full((2, 2), 0.03), 1.0, rng, reported)
    assert out.status(0) is DeviceStatus.FAULT
    assert out.fault_code(0) is GasFaultCode.STUCK
    recovered = sensors.step(np.full((2, 2), 0.03), 1.0, rng)
    assert_allclose(recovered.mole_fraction[0], 0.03)


def test_offline_detector_does_not_publish() -> None:
    sensors = make_array(3)
    out = run(sensors, np.zeros((3, 2)), 1, faults=faults_for(3, 1, GasFault(GasFaultKind.OFFLINE)))
    assert_array_equal(out[0].publish, [True, False, True])


def test_spikes_occur_with_their_probability_and_size() -> None:
    n = 400
    sensors = make_array(n, t90_s=0.0)
    fault = GasFault(
        GasFaultKind.SPIKES, spike_probability=0.1, spike_amplitude_fraction_of_full_scale=0.4
    )
    table = GasFaultTable.from_faults(n, dict.fromkeys(range(n), fault))
    readings = np.array(
        [o.mole_fraction[:, 0] for o in run(sensors, np.zeros((n, 2)), 25, faults=table)]
    )
    spiked = readings > 0.0
    # 10 000 samples with p = 0.1: 1000 +- 30 expected; 5 sigma band.
    assert 850 < spiked.sum() < 1150
    # Each spike is 0.4 FS times a uniform factor in [0.5, 1.5).
    assert readings[spiked].min() >= 0.2 * FULL_SCALE - 1e-12
    assert readings[spiked].max() < 0.6 * FULL_SCALE


def test_under_range_reports_fault_low_level() -> None:
    sensors = make_array(2)
    out = run(
        sensors, np.zeros((2, 2)), 2, faults=faults_for(2, 0, GasFault(GasFaultKind.UNDER_RANGE))
    )[-1]
    assert_allclose(out.mole_fraction[0], FAULT_LOW_LEVEL_FRACTION_OF_FULL_SCALE * FULL_SCALE)
    assert out.status(0) is DeviceStatus.FAULT
    assert out.fault_code(0) is GasFaultCode.UNDER_RANGE
    assert out.status(1) is DeviceStatus.OK


def test_zero_suppressed_output_floors_readings_but_keeps_the_fault_status() -> None:
    sensors = GasSensorArray(
        detector_ids=["GD00", "GD01"],
        t90_s=np.zeros(2),
        full_scale_mole_fraction=np.full(2, FULL_SCALE),
        channel_present=np.ones((2, 2), dtype=bool),
        parameters=GasSensorParameters(
            channels=dict.fromkeys(GASES, GasChannelParameters()),
            warmup_s=0.0,
            report_negative_readings=False,
        ),
    )
    outputs = run(
        sensors, np.zeros((2, 2)), 50, faults=faults_for(2, 0, GasFault(GasFaultKind.UNDER_RANGE))
    )
    readings = np.array([out.mole_fraction for out in outputs])
    assert readings.min() == 0.0  # clean-air noise and the fault level are floored
    assert all(out.fault_code(0) is GasFaultCode.UNDER_RANGE for out in outputs)


def test_small_negative_offset_saturates_without_fault() -> None:
    # -2 % FS is below the -1.25 % saturation but above the -2.5 % failure limit (NAMUR NE 43).
    fault = GasFault(GasFaultKind.UNDER_RANGE, offset_fraction_of_full_scale=-0.02)
    out = run(make_array(1), np.zeros((1, 2)), 1, faults=faults_for(1, 0, fault))[0]
    assert_allclose(out.mole_fraction[0], LOWER_SATURATION_FRACTION_OF_FULL_SCALE * FULL_SCALE)
    assert out.status(0) is DeviceStatus.OK


def test_out_of_range_pegs_above_full_scale() -> None:
    out = run(
        make_array(1),
        np.zeros((1, 2)),
        1,
        faults=faults_for(1, 0, GasFault(GasFaultKind.OUT_OF_RANGE)),
    )[0]
    assert_allclose(out.mole_fraction[0], FAULT_HIGH_LEVEL_FRACTION_OF_FULL_SCALE * FULL_SCALE)
    assert pytest.approx(1.125) == FAULT_HIGH_LEVEL_FRACTION_OF_FULL_SCALE  # 22 mA on 4-20 mA
    assert out.fault_code(0) is GasFaultCode.OVER_RANGE


def test_drift_accumulates_persists_and_is_cleared_by_calibration() -> None:
    sensors = make_array(1, t90_s=0.0)
    rate = 1e-4  # fraction of FS per second
    drift = faults_for(
        1, 0, GasFault(GasFaultKind.DRIFT, drift_rate_fraction_of_full_scale_per_s=rate)
    )
    outputs = run(sensors, np.zeros((1, 2)), 100, faults=drift)
    # Hand-worked: 100 s x 1e-4 /s x 0.05 = 5e-4.
    assert_allclose(outputs[-1].mole_fraction[0], 5e-4, rtol=1e-9)
    assert outputs[-1].status(0) is DeviceStatus.OK
    after = run(sensors, np.zeros((1, 2)), 10)
    assert_allclose(after[-1].mole_fraction[0], 5e-4, rtol=1e-9)  # the offset stays
    calibration = faults_for(1, 0, GasFault(GasFaultKind.CALIBRATION))
    during = run(sensors, np.zeros((1, 2)), 3, faults=calibration)
    assert during[-1].status(0) is DeviceStatus.CALIBRATION
    assert_allclose(during[-1].mole_fraction[0], 0.5 * FULL_SCALE)  # span gas, t90 = 0
    assert_array_equal(sensors.zero_offset_mole_fraction, 0.0)
    assert_allclose(run(sensors, np.zeros((1, 2)), 1)[0].mole_fraction[0], 0.0)


def test_calibration_follows_span_gas_with_the_sensor_response() -> None:
    sensors = make_array(1, t90_s=10.0)
    calibration = faults_for(
        1, 0, GasFault(GasFaultKind.CALIBRATION, span_fraction_of_full_scale=0.4)
    )
    outputs = run(sensors, np.zeros((1, 2)), 10, faults=calibration)
    assert_allclose(outputs[-1].mole_fraction[0], 0.9 * 0.4 * FULL_SCALE, rtol=1e-12)
    assert all(out.status(0) is DeviceStatus.CALIBRATION for out in outputs)
    assert all(out.fault_code(0) is None for out in outputs)


def test_same_seed_gives_identical_outputs() -> None:
    def simulate() -> np.ndarray:
        sensors = make_array(5, channel=GasChannelParameters(), warmup_s=3.0)
        table = faults_for(5, 2, GasFault(GasFaultKind.SPIKES, spike_probability=0.3))
        outputs = run(sensors, np.full((5, 2), 2e-3), 50, faults=table, seed=42)
        return np.array([out.mole_fraction for out in outputs])

    assert_array_equal(simulate(), simulate())


def test_faults_do_not_change_other_detectors_noise() -> None:
    # Every step draws the same variates whatever the faults: detector 0 is unaffected.
    def detector_zero(table: GasFaultTable | None) -> np.ndarray:
        sensors = make_array(3, channel=GasChannelParameters())
        outputs = run(sensors, np.zeros((3, 2)), 20, faults=table, seed=7)
        return np.array([out.mole_fraction[0] for out in outputs])

    faulty = faults_for(3, 1, GasFault(GasFaultKind.SPIKES, spike_probability=0.5))
    assert_array_equal(detector_zero(None), detector_zero(faulty))


@settings(max_examples=50, deadline=None)
@given(
    true_ppm=st.lists(st.floats(0.0, 2e5), min_size=4, max_size=4),
    seed=st.integers(0, 2**32 - 1),
)
def test_healthy_readings_stay_within_the_valid_band(true_ppm: list[float], seed: int) -> None:
    sensors = make_array(2, t90_s=5.0, channel=GasChannelParameters(), warmup_s=0.0)
    true = np.array(true_ppm).reshape(2, 2) * 1e-6
    for out in run(sensors, true, 5, seed=seed):
        assert np.all(out.mole_fraction >= LOWER_SATURATION_FRACTION_OF_FULL_SCALE * FULL_SCALE)
        assert np.all(out.mole_fraction <= FULL_SCALE)
        assert out.publish.all()
        assert all(out.status(i) is DeviceStatus.OK for i in range(2))


def test_fault_schedule_is_active_on_half_open_interval() -> None:
    schedule = GasFaultSchedule(
        n_detectors=3,
        detector_index=np.array([0, 2]),
        start_s=np.array([10.0, 20.0]),
        end_s=np.array([20.0, 30.0]),
        faults=(GasFault(GasFaultKind.STUCK), GasFault(GasFaultKind.OFFLINE)),
    )
    assert_array_equal(schedule.at(5.0).kind, [0, 0, 0])
    assert_array_equal(schedule.at(10.0).kind, [GasFaultKind.STUCK, 0, 0])
    assert_array_equal(schedule.at(20.0).kind, [0, 0, GasFaultKind.OFFLINE])
    assert_array_equal(schedule.at(30.0).kind, [0, 0, 0])
    assert_array_equal(GasFaultSchedule.empty(2).at(0.0).kind, [0, 0])


def test_bad_parameters_are_refused_with_their_name() -> None:
    with pytest.raises(ValueError, match="spike_probability"):
        GasFault(GasFaultKind.SPIKES, spike_probability=1.5)
    with pytest.raises(ValueError, match="offset_fraction_of_full_scale"):
        GasFault(GasFaultKind.UNDER_RANGE, offset_fraction_of_full_scale=0.1)
    with pytest.raises(ValueError, match="noise_std_fraction_of_full_scale"):
        GasChannelParameters(noise_std_fraction_of_full_scale=-1.0)
    sensors = make_array(2)
    with pytest.raises(ValueError, match="true_mole_fraction must have shape"):
        sensors.step(np.zeros((3, 2)), 1.0, np.random.default_rng(0))
    with pytest.raises(ValueError, match="dt_s"):
        sensors.step(np.zeros((2, 2)), 0.0, np.random.default_rng(0))
    with pytest.raises(ValueError, match="fault table"):
        sensors.step(np.zeros((2, 2)), 1.0, np.random.default_rng(0), GasFaultTable.none(3))


def test_from_site_uses_the_site_order_and_converts_ppm() -> None:
    detectors = tuple(
        GasDetector(
            id=detector_id,
            placement=DetectorPlacement.UNDERGROUND,
            position_m=np.array([0.0, 0.0, -1.0]),
            gases=gases,
            full_scale_ppm=full_scale_ppm,
            t90_s=t90,
            sample_period_s=2.0,
        )
        for detector_id, gases, full_scale_ppm, t90 in (
            ("UD02", (Gas.PROPANE,), 20_000.0, 30.0),
            ("UD01", (Gas.METHANE, Gas.PROPANE), 50_000.0, 20.0),
        )
    )
    site = Site(
        id="s",
        name="s",
        origin=GeoOrigin(0.0, 0.0, 0.0),
        pipelines=(),
        municipal_pipes=(),
        manholes=(),
        utility_tunnels=(),
        buildings=(),
        road_nodes=(),
        roads=(),
        assembly_points=(),
        gas_detectors=detectors,
        wind_stations=(),
        cameras=(),
    )
    sensors = GasSensorArray.from_site(site)
    assert sensors.detector_ids == ("UD02", "UD01")
    assert_allclose(sensors.full_scale_mole_fraction, [0.02, 0.05])
    assert_array_equal(sensors.t90_s, [30.0, 20.0])
    assert_array_equal(sensors.channel_present, [[False, True], [True, True]])
