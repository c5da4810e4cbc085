"""Tests of the camera analytics, on frames from the simulator's own renderer.

The scenario tests render one camera's frames with :class:`CameraRenderer` from the scenario's
own leaks and intrusions (the same objects :class:`SiteSimulation` draws), every 5 s as the site's
cameras send them, through a JPEG round trip for the visible channel.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose

from pipesentinel.detection.camera_analytics import (
    AMBIENT_METHANE_MOLE_FRACTION,
    BlobTracker,
    CameraAnalytics,
    CameraAnalyticsConfig,
    CameraDetection,
    DetectionChannel,
    DetectionKind,
    SiteCameraAnalytics,
    blob_statistics,
    box_overlap,
    camera_coverage,
    cameras_covering_zone,
    decode_frame,
    detection_confidence,
    ground_contacts,
    laser_threshold_mole_fraction_m,
    robust_offset_and_noise,
    segment_distance_m,
    site_camera_coverage,
    update_background,
)
from pipesentinel.hardware.camera_model import (
    CameraPose,
    CameraRenderer,
    ColdPlume,
    HotSpot,
    IntrusionKind,
    SceneObject,
    encode_jpeg,
    encode_thermal_png,
)
from pipesentinel.hardware.offline import scenario_records
from pipesentinel.hardware.scenario import Scenario, load_scenario
from pipesentinel.hardware.world import SiteSimulation
from pipesentinel.ingest.records import CameraChannel, CameraFrame, DeviceStatus
from pipesentinel.site import Camera, Site
from pipesentinel.site_loader import load_site

SITE_DIR = Path(__file__).resolve().parents[2] / "sites" / "wanli"
FRAME_PERIOD_S = 5.0
ORIGIN_EPOCH_S = 1.8e9
DAY = 1.0
NIGHT = 0.25  # hardware.world.NIGHT_ILLUMINATION


@pytest.fixture(scope="module")
def site() -> Site:
    return load_site(SITE_DIR)


def scenario(site: Site, name: str) -> Scenario:
    return load_scenario(SITE_DIR / "scenarios" / f"{name}.toml", site)


def camera(site: Site, camera_id: str) -> Camera:
    return next(c for c in site.cameras if c.id == camera_id)


_RENDERERS: dict[str, CameraRenderer] = {}


def renderer(site: Site, camera_id: str) -> CameraRenderer:
    if camera_id not in _RENDERERS:
        _RENDERERS[camera_id] = CameraRenderer(
            CameraPose.from_camera(camera(site, camera_id)), site
        )
    return _RENDERERS[camera_id]


def play(
    site: Site,
    analytics: CameraAnalytics,
    times_s: Sequence[float],
    *,
    objects: Sequence[Sequence[SceneObject]] | None = None,
    plumes: Sequence[Sequence[ColdPlume]] | None = None,
    hot_spots: Sequence[HotSpot] = (),
    illumination: Sequence[float] | float = DAY,
    ambient_temperature_k: float = 288.15,
    seed: int = 0,
) -> Iterator[tuple[float, list[CameraDetection]]]:
    """Render and analyse one camera's frames at ``times_s``; yield each time's detections."""
    render = renderer(site, analytics.camera.id)
    rng = np.random.default_rng(seed)
    lights = (
        [illumination] * len(times_s) if isinstance(illumination, float) else list(illumination)
    )
    for index, time_s in enumerate(times_s):
        in_view = objects[index] if objects is not None else ()
        leaks = plumes[index] if plumes is not None else ()
        visible = render.visible_frame(
            rng=rng,
            objects=in_view,
            hot_spots=hot_spots,
            illumination=lights[index],
            timestamp_text=f"{analytics.camera.id} t={time_s:.0f}",
        )
        decoded = cv2.imdecode(np.frombuffer(encode_jpeg(visible), np.uint8), cv2.IMREAD_COLOR)
        assert decoded is not None
        thermal = render.thermal_frame(
            ambient_temperature_k=ambient_temperature_k,
            rng=rng,
            objects=in_view,
            plumes=leaks,
            hot_spots=hot_spots,
        )
        detections = analytics.process_visible(np.asarray(decoded, dtype=np.uint8), time_s)
        detections += analytics.process_thermal(thermal.astype(np.float64) / 100.0, time_s)
        yield time_s, detections


def scenario_objects(plan: Scenario, times_s: Sequence[float]) -> list[list[SceneObject]]:
    return [[i.scene_object() for i in plan.active_intrusions(t)] for t in times_s]


def scenario_plumes(
    plan: Scenario, times_s: Sequence[float], wind_from_rad: float
) -> list[list[ColdPlume]]:
    plumes = []
    for time_s in times_s:
        rates = plan.emission_rates_kg_per_s(time_s)
        plumes.append(
            [
                ColdPlume(leak.position_m[:2], float(np.sum(rates[i])), wind_from_rad)
                for i, leak in enumerate(plan.leaks)
                if rates.size and float(np.sum(rates[i])) > 0.0
            ]
        )
    return plumes


def of_kind(
    detections: Sequence[CameraDetection], kind: DetectionKind, channel: DetectionChannel
) -> list[CameraDetection]:
    return [d for d in detections if d.kind is kind and d.channel is channel]


# -------------------------------------------------------------------------------------------
# Pure core


def test_confidence_hand_worked_values() -> None:
    # Hand-worked: r = r0, A = A0, n = n_full / 2 -> (1 - 1/e)^2 / 2 = 0.19978.
    value = detection_confidence(
        10.0, 50.0, 3, contrast_to_noise_scale=10.0, area_scale_px=50.0, full_confidence_frames=6
    )
    assert_allclose(value, (1.0 - math.exp(-1.0)) ** 2 / 2.0)
    # No area factor (laser): inf area.
    laser = detection_confidence(
        1.0, np.inf, 6, contrast_to_noise_scale=1.0, area_scale_px=50.0, full_confidence_frames=6
    )
    assert_allclose(laser, 1.0 - math.exp(-1.0))


@settings(max_examples=100, deadline=None)
@given(
    ratio=st.floats(0.0, 1e3),
    area=st.floats(0.0, 1e6),
    frames=st.integers(0, 100),
    extra=st.floats(0.0, 10.0),
)
def test_confidence_is_bounded_and_monotonic(
    ratio: float, area: float, frames: int, extra: float
) -> None:
    def conf(r: float, a: float, n: float) -> float:
        return float(
            detection_confidence(
                r, a, n, contrast_to_noise_scale=10.0, area_scale_px=50.0, full_confidence_frames=6
            )
        )

    base = conf(ratio, area, frames)
    assert 0.0 <= base <= 1.0
    assert conf(ratio + extra, area, frames) >= base
    assert conf(ratio, area + extra, frames) >= base
    assert conf(ratio, area, frames + 1) >= base


def test_robust_noise_recovers_the_standard_deviation_despite_outliers() -> None:
    rng = np.random.default_rng(1)
    image = (0.3 + 0.05 * rng.standard_normal((512, 640))).astype(np.float32)
    image[100:200, 100:200] = -4.0  # a plume covering 3 % of the frame does not bias it much
    offset, noise = robust_offset_and_noise(image)
    assert_allclose(offset, 0.3, atol=0.01)
    assert_allclose(noise, 0.05, rtol=0.08)


def test_background_update_is_selective() -> None:
    background = np.zeros((2, 2), dtype=np.float32)
    frame = np.full((2, 2), 10.0, dtype=np.float32)
    foreground = np.array([[True, False], [False, False]])
    update_background(
        background, frame, foreground, learning_rate=0.1, foreground_learning_rate=0.001
    )
    assert_allclose(background, [[0.01, 1.0], [1.0, 1.0]], rtol=1e-6)  # hand-worked: rate x 10
    colour = np.zeros((2, 2, 3), dtype=np.float32)
    update_background(
        colour,
        np.ones((2, 2, 3), np.float32),
        foreground,
        learning_rate=0.5,
        foreground_learning_rate=0.0,
    )
    assert_allclose(colour[0, 0], 0.0)
    assert_allclose(colour[1, 1], 0.5)


def test_box_overlap_hand_worked() -> None:
    # Two 10x10 boxes offset by 5 px: intersection 50, union 150.
    overlap = box_overlap(np.array([[0, 0, 10, 10]]), np.array([[5, 0, 10, 10], [50, 50, 2, 2]]))
    assert_allclose(overlap, [[1.0 / 3.0, 0.0]])


def test_tracker_counts_persistence_and_tolerates_one_missed_frame() -> None:
    tracker = BlobTracker(max_missed_frames=1)
    box = np.array([[10, 10, 20, 20]])
    ids, frames, first = tracker.update(box, 0.0)
    assert frames.tolist() == [1]
    ids2, frames2, _ = tracker.update(box + np.array([2, 0, 0, 0]), 5.0)
    assert ids2.tolist() == ids.tolist()
    assert frames2.tolist() == [2]
    tracker.update(np.zeros((0, 4), dtype=np.int64), 10.0)  # one frame missed: kept
    ids3, frames3, first3 = tracker.update(box, 15.0)
    assert ids3.tolist() == ids.tolist()
    assert frames3.tolist() == [3]
    assert first3.tolist() == first.tolist()
    tracker.update(np.zeros((0, 4), dtype=np.int64), 20.0)
    tracker.update(np.zeros((0, 4), dtype=np.int64), 25.0)  # two missed: dropped
    ids4, frames4, _ = tracker.update(box, 30.0)
    assert ids4.tolist() != ids.tolist()
    assert frames4.tolist() == [1]


def test_blob_statistics_and_ground_contacts() -> None:
    mask = np.zeros((20, 30), dtype=np.bool_)
    mask[2:6, 2:8] = True  # 24 px
    mask[10:18, 10:12] = True  # 16 px
    mask[0, 29] = True  # 1 px: below the minimum area
    difference = np.where(mask, -2.0, 0.0).astype(np.float32)
    difference[3, 3] = -5.0
    area = np.full(mask.shape, 0.5)
    east = np.tile(np.arange(30.0), (20, 1))
    north = np.tile(np.arange(20.0)[:, np.newaxis], (1, 30))
    stats = blob_statistics(mask, difference, area, east, north, min_area_px=4)
    assert stats.area_px.tolist() == [24, 16]
    assert stats.bbox_px.tolist() == [[2, 2, 6, 4], [10, 10, 2, 8]]
    assert_allclose(stats.mean_difference, [(-2.0 * 23 - 5.0) / 24, -2.0])
    assert_allclose(stats.peak_difference, [-5.0, -2.0])
    assert_allclose(stats.area_m2, [12.0, 8.0])
    assert_allclose(stats.ground_centroid_m, [[4.5, 3.5], [10.5, 13.5]])
    # Bottom edges: row 5 for columns 2..7 and row 17 for columns 10, 11.
    right_of_way = np.zeros(mask.shape, dtype=np.bool_)
    right_of_way[5, 2:4] = True
    contacts = ground_contacts(stats.labels, stats.label_ids, right_of_way)
    assert contacts.contact_px.tolist() == [6, 2]
    assert contacts.inside_px.tolist() == [2, 0]
    assert_allclose(contacts.column_px, [2.5, 10.5])
    assert_allclose(contacts.row_px, [5.0, 17.0])


def test_laser_threshold_is_ambient_column_plus_margin() -> None:
    # Hand-worked: 1.922 ppm x 100 m + 100 ppm m = 292.2 ppm m.
    assert_allclose(laser_threshold_mole_fraction_m(100.0), 292.2e-6)
    assert AMBIENT_METHANE_MOLE_FRACTION == 1.922e-6


def test_config_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="learning_rate"):
        CameraAnalyticsConfig(learning_rate=1.5)
    with pytest.raises(ValueError, match="confirm_frames"):
        CameraAnalyticsConfig(confirm_frames=0)
    with pytest.raises(ValueError, match="noise_sigmas"):
        CameraAnalyticsConfig(noise_sigmas=float("nan"))
    with pytest.raises(ValueError, match="hot_spot_min_excess_k"):
        CameraAnalyticsConfig(warm_min_contrast_k=200.0)


# -------------------------------------------------------------------------------------------
# Laser


def test_laser_gas_needs_two_readings_and_a_fault_is_a_blocked_beam(site: Site) -> None:
    analytics = CameraAnalytics(camera(site, "CAM5"), site)
    threshold = analytics.laser_threshold_mole_fraction_m
    ambient = AMBIENT_METHANE_MOLE_FRACTION * analytics.beam_length_m
    assert_allclose(threshold, ambient + 100e-6)
    assert analytics.process_laser(ambient, DeviceStatus.OK, 0.0) == []
    assert analytics.process_laser(threshold + 300e-6, DeviceStatus.OK, 1.0) == []  # 1 of 2
    (gas,) = analytics.process_laser(threshold + 300e-6, DeviceStatus.OK, 2.0)
    assert gas.kind is DetectionKind.LASER_GAS
    assert gas.channel is DetectionChannel.LASER
    assert gas.persistence_frames == 2
    assert gas.persistence_s == 1.0
    assert gas.path_integral_excess_mole_fraction_m is not None
    assert_allclose(gas.path_integral_excess_mole_fraction_m, 400e-6, rtol=1e-9)
    # Hand-worked: r = 400/100 - 1 = 3, n = 2 of 6 -> (1 - e^-3) / 3.
    assert_allclose(gas.confidence, (1.0 - math.exp(-3.0)) / 3.0)
    (blocked,) = analytics.process_laser(0.0, DeviceStatus.FAULT, 3.0)
    assert blocked.kind is DetectionKind.BEAM_BLOCKED
    assert blocked.confidence == 1.0
    assert analytics.process_laser(threshold + 1e-3, DeviceStatus.WARMUP, 4.0) == []
    # The run restarts after a fault: one reading is not enough again.
    assert analytics.process_laser(threshold + 1e-3, DeviceStatus.OK, 5.0) == []
    with pytest.raises(ValueError, match="CAM5"):
        analytics.process_laser(float("nan"), DeviceStatus.OK, 6.0)


def test_laser_records_of_a_leak_scenario_follow_the_true_column(site: Site) -> None:
    # p1_associated_gas_leak: the leak starts at 300 s; the wind carries the gas along P1 and
    # across some cameras' beams. Detections must match what the beams really held.
    plan = scenario(site, "p1_associated_gas_leak")
    analytics = SiteCameraAnalytics(site)
    simulation = SiteSimulation(site, plan, frames=False)
    laser_gas: dict[str, list[float]] = {}
    clear_above: list[tuple[str, float]] = []
    margin = CameraAnalyticsConfig().laser_margin_mole_fraction_m
    for step, records in scenario_records(simulation, origin_epoch_s=ORIGIN_EPOCH_S, until_s=480):
        truth = step.truth.beam_path_integral_mole_fraction_m
        for detection in analytics.process_all(records):
            assert detection.kind is DetectionKind.LASER_GAS  # no frames, no faults here
            index = [c.id for c in site.cameras].index(detection.camera_id)
            laser_gas.setdefault(detection.camera_id, []).append(detection.time_s)
            # 5 sigma of the simulated 5 ppm m noise below the margin: never a false alarm.
            assert truth[index] > margin - 25e-6
        clear_above += [(c.id, float(t)) for c, t in zip(site.cameras, truth, strict=True)]
    assert laser_gas, "the leak's gas crossed no beam"
    assert min(min(times) for times in laser_gas.values()) > ORIGIN_EPOCH_S + 300.0
    strongly = {camera_id for camera_id, column in clear_above if column > 3 * margin}
    assert strongly <= set(laser_gas)


# -------------------------------------------------------------------------------------------
# Scenarios through the renderer


def test_leak_scenario_gives_a_cold_plume_at_the_leak(site: Site) -> None:
    # p1_associated_gas_leak: 1 kg/s on P1 at chainage 2236 m from t = 300 s, wind from 80 deg,
    # in view of CAM5.
    plan = scenario(site, "p1_associated_gas_leak")
    times = list(np.arange(240.0, 360.0, FRAME_PERIOD_S))
    analytics = CameraAnalytics(camera(site, "CAM5"), site)
    plumes = scenario_plumes(plan, times, 80.0 * math.pi / 180.0)
    found: list[CameraDetection] = []
    for time_s, detections in play(
        site,
        analytics,
        times,
        plumes=plumes,
        ambient_temperature_k=plan.ambient_temperature_k,
    ):
        cold = of_kind(detections, DetectionKind.COLD_PLUME, DetectionChannel.THERMAL)
        if time_s < 300.0:
            assert detections == []
        found += cold
        assert not of_kind(detections, DetectionKind.INTRUSION, DetectionChannel.VISIBLE)
    assert found, "no cold plume"
    first = found[0]
    assert first.time_s == 310.0  # third frame with the plume: 300, 305, 310
    assert first.persistence_frames == 3
    last = found[-1]
    assert last.confidence > 0.9
    assert last.temperature_difference_k is not None
    assert -4.0 < last.temperature_difference_k < -0.5  # the simulator's 4 K deficit at source
    assert last.location is not None
    assert last.location.pipeline_id == "P1"
    assert abs(last.location.chainage_m - 2236.0) < 15.0
    assert last.blob is not None
    assert last.blob.ground_position_m is not None
    leak = plan.leaks[0].position_m[:2]
    assert float(np.hypot(*(np.array(last.blob.ground_position_m) - leak))) < 25.0
    assert last.blob.area_m2 > 10.0
    # The camera's coverage says it watches that chainage and the zone of GD07 next to it.
    coverage = camera_coverage(site, camera(site, "CAM5"))
    assert coverage.covers_chainage("P1", 2236.0)
    assert coverage.covers_chainage("P1", 2236.0, laser=True)
    gd07 = next(d for d in site.gas_detectors if d.id == "GD07")
    assert gd07.zone in coverage.zones


def test_quiet_day_gives_nothing(site: Site) -> None:
    times = list(np.arange(0.0, 150.0, FRAME_PERIOD_S))
    for camera_id in ("CAM5", "CAM6"):
        analytics = CameraAnalytics(camera(site, camera_id), site)
        for _, detections in play(site, analytics, times, ambient_temperature_k=289.15, seed=4):
            assert detections == []


def test_excavation_scenario_gives_an_intrusion_in_the_right_of_way(site: Site) -> None:
    # excavation_intrusion: a pick-up parks 14 m off P2 at 120 s (outside the 10 m strip), a
    # banksman 8 m off at 240 s, an excavator 5 m off at chainage 2760 m at 300 s; CAM6 watches.
    plan = scenario(site, "excavation_intrusion")
    times = list(np.arange(60.0, 345.0, FRAME_PERIOD_S))
    analytics = CameraAnalytics(camera(site, "CAM6"), site)
    seen = dict(
        play(
            site,
            analytics,
            times,
            objects=scenario_objects(plan, times),
            ambient_temperature_k=plan.ambient_temperature_k,
        )
    )
    # The pick-up alone (120-235 s) is outside the strip: nothing.
    assert all(seen[t] == [] for t in times if t < 240.0)
    late = seen[times[-1]]
    visible = of_kind(late, DetectionKind.INTRUSION, DetectionChannel.VISIBLE)
    thermal = of_kind(late, DetectionKind.INTRUSION, DetectionChannel.THERMAL)
    assert len(visible) == 2  # the banksman and the excavator (merged with the pick-up)
    assert len(thermal) == 2
    for detection in visible + thermal:
        assert detection.location is not None
        assert detection.location.pipeline_id == "P2"
        assert detection.location.in_right_of_way
        assert detection.confidence > 0.9
    excavator = max(visible, key=lambda d: d.blob.area_px if d.blob else 0)
    assert excavator.location is not None
    assert abs(excavator.location.chainage_m - 2760.0) < 8.0
    assert abs(excavator.location.distance_m - 5.0) < 3.0
    assert excavator.persistence_s == 40.0  # first seen at 300 s, now 340 s
    assert excavator.blob is not None
    # CAM6 covers the excavation.
    assert camera_coverage(site, camera(site, "CAM6")).covers_chainage("P2", 2760.0)


def test_an_object_outside_the_right_of_way_is_ignored(site: Site) -> None:
    cam = camera(site, "CAM6")
    pipeline = site.pipeline("P2")
    point = pipeline.point_at_chainage(2760.0)
    direction = pipeline.direction_at_chainage(2760.0)
    normal = np.array([direction[1], -direction[0]])  # to the right of increasing chainage
    heading = math.atan2(direction[0], direction[1])
    times = list(np.arange(0.0, 80.0, FRAME_PERIOD_S))
    for offset_m, expected in ((30.0, 0), (0.0, 1)):
        excavator = SceneObject(IntrusionKind.EXCAVATOR, point + offset_m * normal, heading)
        objects = [[excavator] if t >= 30.0 else [] for t in times]
        analytics = CameraAnalytics(cam, site)
        last: list[CameraDetection] = []
        for _, detections in play(site, analytics, times, objects=objects):
            last = detections
        visible = of_kind(last, DetectionKind.INTRUSION, DetectionChannel.VISIBLE)
        assert len(visible) == expected, offset_m


def test_intrusion_at_night_and_a_dark_visible_channel(site: Site) -> None:
    cam = camera(site, "CAM6")
    pipeline = site.pipeline("P2")
    excavator = SceneObject(IntrusionKind.EXCAVATOR, pipeline.point_at_chainage(2760.0), 0.3)
    times = list(np.arange(0.0, 60.0, FRAME_PERIOD_S))
    objects = [[excavator] if t >= 30.0 else [] for t in times]
    # Street-lit night (the simulator's 0.25): the visible channel still sees it.
    night = CameraAnalytics(cam, site)
    for _, detections in play(site, night, times, objects=objects, illumination=NIGHT):
        last = detections
    assert not night.visible_dark
    assert_allclose(night.visible_gain, 1.0, atol=0.02)  # learnt at night: gain 1 relative
    assert len(of_kind(last, DetectionKind.INTRUSION, DetectionChannel.VISIBLE)) == 1
    # Pitch dark after a day: the visible channel says so and reports nothing; thermal sees it.
    lights = [DAY if t < 20.0 else 0.02 for t in times]
    dark = CameraAnalytics(cam, site)
    for _, detections in play(site, dark, times, objects=objects, illumination=lights):
        last = detections
    assert dark.visible_dark
    assert of_kind(last, DetectionKind.INTRUSION, DetectionChannel.VISIBLE) == []
    assert len(of_kind(last, DetectionKind.INTRUSION, DetectionChannel.THERMAL)) == 1


def test_dusk_is_not_an_intrusion(site: Site) -> None:
    # The background is learnt by day; the light drops to the night level: no detection.
    analytics = CameraAnalytics(camera(site, "CAM5"), site)
    times = list(np.arange(0.0, 80.0, FRAME_PERIOD_S))
    lights = [DAY if t < 40.0 else NIGHT for t in times]
    for _, detections in play(site, analytics, times, illumination=lights, seed=2):
        assert detections == []
    assert_allclose(analytics.visible_gain, NIGHT, rtol=0.05)


def test_fire_is_a_hot_spot(site: Site) -> None:
    cam = camera(site, "CAM5")
    pipeline = site.pipeline("P1")
    fire = HotSpot(pipeline.point_at_chainage(2236.0), radius_m=2.0, temperature_excess_k=350.0)
    analytics = CameraAnalytics(cam, site)
    times = list(np.arange(0.0, 60.0, FRAME_PERIOD_S))
    last: list[CameraDetection] = []
    burning = [[fire] if t >= 30.0 else [] for t in times]
    for index, time_s in enumerate(times):
        (_, last) = next(play(site, analytics, [time_s], hot_spots=burning[index], seed=index))
    hot = of_kind(last, DetectionKind.HOT_SPOT, DetectionChannel.THERMAL)
    assert len(hot) == 1
    assert hot[0].temperature_difference_k is not None
    assert hot[0].temperature_difference_k > 100.0
    assert hot[0].location is not None
    assert abs(hot[0].location.chainage_m - 2236.0) < 10.0
    assert of_kind(last, DetectionKind.COLD_PLUME, DetectionChannel.THERMAL) == []


# -------------------------------------------------------------------------------------------
# Records, decoding and bad input


def frame_record(
    camera_id: str, channel: CameraChannel, image: bytes, width: int = 640, height: int = 512
) -> CameraFrame:
    return CameraFrame(
        site_id="wanli",
        device_id=camera_id,
        channel=channel,
        time_s=ORIGIN_EPOCH_S,
        seq=7,
        width_px=width,
        height_px=height,
        image=image,
        received_time_s=ORIGIN_EPOCH_S,
    )


def test_decode_frame_and_its_errors() -> None:
    thermal = np.full((512, 640), 28815, dtype=np.uint16)
    kelvin = decode_frame(frame_record("CAM5", CameraChannel.THERMAL, encode_thermal_png(thermal)))
    assert_allclose(kelvin, 288.15)
    visible = np.full((512, 640, 3), 100, dtype=np.uint8)
    pixels = decode_frame(frame_record("CAM5", CameraChannel.VISIBLE, encode_jpeg(visible)))
    assert pixels.shape == (512, 640, 3)
    assert pixels.dtype == np.uint8
    with pytest.raises(ValueError, match=r"CAM5 thermal frame .*seq 7.*16-bit"):
        decode_frame(frame_record("CAM5", CameraChannel.THERMAL, encode_jpeg(visible)))
    with pytest.raises(ValueError, match="JPEG does not decode"):
        decode_frame(frame_record("CAM5", CameraChannel.VISIBLE, b"\xff\xd8garbage"))
    with pytest.raises(ValueError, match="640x512 px, the frame says 320x256"):
        decode_frame(frame_record("CAM5", CameraChannel.VISIBLE, encode_jpeg(visible), 320, 256))


def test_records_are_routed_to_their_camera_and_bad_ones_named(site: Site) -> None:
    analytics = SiteCameraAnalytics(site)
    thermal = np.full((512, 640), 28815, dtype=np.uint16)
    record = frame_record("CAM5", CameraChannel.THERMAL, encode_thermal_png(thermal))
    assert analytics.process(record) == []  # the first frame initialises the background
    with pytest.raises(ValueError, match="no camera 'CAM9'"):
        analytics.process(frame_record("CAM9", CameraChannel.THERMAL, record.image))
    with pytest.raises(ValueError, match="shape"):
        analytics.cameras["CAM5"].process_thermal(np.zeros((10, 10)), 0.0)
    with pytest.raises(ValueError, match="non-finite"):
        analytics.cameras["CAM5"].process_thermal(np.full((512, 640), np.nan), 0.0)
    with pytest.raises(ValueError, match="uint8"):
        analytics.cameras["CAM5"].process_visible(np.zeros((512, 640, 3), np.float32), 0.0)


@pytest.mark.slow
def test_quiet_day_records_through_the_site_analytics(site: Site) -> None:
    # End to end from the simulator's records (all 8 cameras render: a few seconds per frame).
    simulation = SiteSimulation(site, scenario(site, "quiet_day"), frames=True)
    analytics = SiteCameraAnalytics(site)
    frames = 0
    for _, records in scenario_records(simulation, origin_epoch_s=ORIGIN_EPOCH_S, until_s=60):
        frames += sum(isinstance(r, CameraFrame) for r in records)
        assert analytics.process_all(records) == []
    assert frames == 2 * 8 * 12


def test_coverage_of_the_reference_site(site: Site) -> None:
    coverages = site_camera_coverage(site)
    assert set(coverages) == {c.id for c in site.cameras}
    # Hand-checked against the site file: CAM5 watches the Hexi Road crossing of P1 and P2 over
    # UT1 (GD07, GD17, UD06-UD08); CAM6 watches P2 near P2-V4 (GD18, chainage 2792 m).
    assert set(cameras_covering_zone(coverages, "UT1-X")) == {"CAM5"}
    assert "CAM6" in cameras_covering_zone(coverages, "P2-S4")
    assert "CAM5" in cameras_covering_zone(coverages, "P1-S3", laser=True)
    for coverage in coverages.values():
        for intervals in coverage.pipeline_chainages_m.values():
            for start, end in intervals:
                assert 0.0 <= start <= end
    with pytest.raises(ValueError, match="range"):
        camera_coverage(site, site.cameras[0], range_m=0.0)


def test_a_camera_watching_a_segment_covers_its_zone(site: Site) -> None:
    # CAM1 (west valve station) looks at P1 chainage ~280-320 m and its beam crosses P1 at
    # ~286-307 m: inside segment P1-S1 (0-450 m, valve P1-V1), the zone of GD01 (chainage 50 m)
    # and GD02 (442 m), though ~150 m from either (beyond the 50 m zone radius). It watches
    # the zone (seed 202 case 12 of the leak-point validation: it used to cover none).
    coverage = camera_coverage(site, camera(site, "CAM1"))
    assert coverage.covers_chainage("P1", 296.0, laser=True)
    assert site.pipeline("P1").segment_at_chainage(296.0).id == "P1-S1"
    assert coverage.zones == ("P1-S1",)
    assert coverage.laser_zones == ("P1-S1",)
    # A narrower zone radius leaves the segment rule in force; no camera covers nothing.
    assert camera_coverage(site, camera(site, "CAM1"), zone_radius_m=1.0).zones == ("P1-S1",)
    coverages = site_camera_coverage(site)
    assert all(coverage.zones and coverage.laser_zones for coverage in coverages.values())
    # Every zone a camera sees a pipeline segment of is covered: the segment of each seen chainage.
    for coverage in coverages.values():
        for pipeline_id, intervals in coverage.pipeline_chainages_m.items():
            pipeline = site.pipeline(pipeline_id)
            for start, end in intervals:
                segment = pipeline.segment_at_chainage(0.5 * (start + end)).id
                assert segment in coverage.zones


def test_segment_distance() -> None:
    points = np.array([[0.0, 5.0], [-3.0, 4.0], [12.0, 0.0]])
    start = np.array([[0.0, 0.0], [1.0, 1.0]])
    end = np.array([[10.0, 0.0], [1.0, 1.0]])  # the second segment is a point
    distance = segment_distance_m(points, start, end)
    assert distance.shape == (3, 2)
    np.testing.assert_allclose(distance[:, 0], [5.0, 5.0, 2.0])
    np.testing.assert_allclose(distance[:, 1], [math.hypot(1, 4), 5.0, math.hypot(11, 1)])
