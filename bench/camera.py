"""Per-frame cost of the camera analytics on 640 x 512 frames, against decoding the same frames.

Frames of the reference site are rendered once by the simulator (CAM5 with a leak's cold plume,
CAM6 with an excavator in the right-of-way), encoded as the cameras send them (JPEG, 16-bit PNG),
then analysed frame after frame by one :class:`CameraAnalytics` per channel after its warm-up.
The baseline, measured in the same run on the same frames, is ``cv2.imdecode`` of the encoded
frame (the work every consumer of a frame must do anyway); OpenCV's MOG2 background subtractor
on the visible frame is reported as a second reference. OpenCV runs on one thread so that the
figures are per core. The result of interest: the fraction of one core that the site's 8 cameras
need at their 5 s frame period (decode + analytics, both channels), and the analytics/decode
ratios. Run with ``python -m bench.camera``; it prints one JSON object.
"""

from __future__ import annotations

import functools
import json
import math
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from pipesentinel.detection.camera_analytics import CameraAnalytics, CameraDetection
from pipesentinel.hardware.camera_model import (
    CameraPose,
    CameraRenderer,
    ColdPlume,
    IntrusionKind,
    SceneObject,
    encode_jpeg,
    encode_thermal_png,
)
from pipesentinel.site import Site
from pipesentinel.site_loader import load_site

SITE_DIR = Path(__file__).resolve().parent.parent / "sites" / "wanli"
FRAMES = 40
WARMUP_FRAMES = 8
REPEATS = 3
AMBIENT_TEMPERATURE_K = 293.15
LEAK_RATE_KG_PER_S = 1.0
WIND_FROM_RAD = 80.0 * math.pi / 180.0
FRAME_PERIOD_S = 5.0  # the site cameras' frame period, for frame times only
GOAL_CORE_FRACTION = 0.25  # "comfortably on one core": at most a quarter of it


def _frames(
    site: Site, camera_id: str, count: int, *, leak: bool
) -> tuple[list[bytes], list[bytes]]:
    camera = next(c for c in site.cameras if c.id == camera_id)
    renderer = CameraRenderer(CameraPose.from_camera(camera), site)
    rng = np.random.default_rng(0)
    visible, thermal = [], []
    chainage = 2236.0 if leak else 2760.0
    pipeline = site.pipeline("P1" if leak else "P2")
    point = pipeline.point_at_chainage(chainage)
    for index in range(count):
        present = index >= count // 2
        plumes = [ColdPlume(point, LEAK_RATE_KG_PER_S, WIND_FROM_RAD)] if leak and present else []
        objects = [SceneObject(IntrusionKind.EXCAVATOR, point, 0.3)] if present and not leak else []
        image = renderer.visible_frame(rng=rng, objects=objects, timestamp_text=f"t={index}")
        visible.append(encode_jpeg(image))
        kelvin = renderer.thermal_frame(
            ambient_temperature_k=AMBIENT_TEMPERATURE_K, rng=rng, objects=objects, plumes=plumes
        )
        thermal.append(encode_thermal_png(kelvin))
    return visible, thermal


def _decode(data: bytes, flag: int) -> NDArray[Any]:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), flag)
    if image is None:
        raise ValueError("a rendered frame does not decode")
    return np.asarray(image)


def _decode_at(index: int, *, encoded: list[bytes], flag: int) -> NDArray[Any]:
    return _decode(encoded[WARMUP_FRAMES + index], flag)


def _subtract_at(
    index: int, *, subtractor: cv2.BackgroundSubtractorMOG2, images: list[NDArray[Any]]
) -> object:
    return subtractor.apply(images[WARMUP_FRAMES + index])


def _per_frame_ms(action: Callable[[int], object], count: int) -> tuple[float, float]:
    """Best-of-repeats wall and CPU time per call of ``action(i)`` for i in range(count) [ms]."""
    wall, cpu = math.inf, math.inf
    for _ in range(REPEATS):
        start_wall, start_cpu = time.perf_counter(), time.process_time()
        for index in range(count):
            action(index)
        wall = min(wall, (time.perf_counter() - start_wall) / count * 1e3)
        cpu = min(cpu, (time.process_time() - start_cpu) / count * 1e3)
    return wall, cpu


def run(frames: int = FRAMES) -> dict[str, object]:
    """Measure and return the JSON-serialisable result."""
    started = time.perf_counter()
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        site = load_site(SITE_DIR)
        total = frames + WARMUP_FRAMES
        channels: dict[str, dict[str, float]] = {}
        cases = {"thermal": ("CAM5", True), "visible": ("CAM6", False)}
        detections: dict[str, int] = {}
        for channel, (camera_id, leak) in cases.items():
            visible, thermal = _frames(site, camera_id, total, leak=leak)
            encoded = thermal if channel == "thermal" else visible
            flag = cv2.IMREAD_UNCHANGED if channel == "thermal" else cv2.IMREAD_COLOR
            decoded = [_decode(data, flag) for data in encoded]
            if channel == "thermal":
                decoded = [image.astype(np.float64) / 100.0 for image in decoded]
            camera = next(c for c in site.cameras if c.id == camera_id)
            wall, cpu, found = math.inf, math.inf, 0
            for _ in range(REPEATS):
                analytics = CameraAnalytics(camera, site)
                process: Callable[[Any, float], list[CameraDetection]] = (
                    analytics.process_thermal if channel == "thermal" else analytics.process_visible
                )
                for index in range(WARMUP_FRAMES):  # learn the background first
                    process(decoded[index], FRAME_PERIOD_S * index)
                found = 0
                start_wall, start_cpu = time.perf_counter(), time.process_time()
                for index in range(WARMUP_FRAMES, total):
                    found += len(process(decoded[index], FRAME_PERIOD_S * index))
                wall = min(wall, (time.perf_counter() - start_wall) / frames * 1e3)
                cpu = min(cpu, (time.process_time() - start_cpu) / frames * 1e3)
            detections[channel] = found
            decode_wall, decode_cpu = _per_frame_ms(
                functools.partial(_decode_at, encoded=encoded, flag=flag), frames
            )
            channels[channel] = {
                "analytics_ms": wall,
                "analytics_cpu_ms": cpu,
                "decode_ms": decode_wall,
                "decode_cpu_ms": decode_cpu,
                "ratio_analytics_to_decode": wall / decode_wall,
            }
            if channel == "visible":
                subtractor = cv2.createBackgroundSubtractorMOG2()
                mog2_wall, _ = _per_frame_ms(
                    functools.partial(_subtract_at, subtractor=subtractor, images=decoded), frames
                )
                channels[channel]["mog2_ms"] = mog2_wall
                channels[channel]["ratio_analytics_to_mog2"] = wall / mog2_wall
        camera_count = len(site.cameras)
        frame_period_s = statistics.median(c.frame_period_s for c in site.cameras)
        per_camera_cpu_ms = sum(
            c["analytics_cpu_ms"] + c["decode_cpu_ms"] for c in channels.values()
        )
        per_camera_ms = sum(c["analytics_ms"] + c["decode_ms"] for c in channels.values())
        core_fraction = camera_count * per_camera_cpu_ms * 1e-3 / frame_period_s
        return {
            "benchmark": "camera",
            "frames": frames,
            "warmup_frames": WARMUP_FRAMES,
            "repetitions": REPEATS,
            "image_px": [640, 512],
            "channels": channels,
            "detections": detections,
            "cameras": camera_count,
            "frame_period_s": frame_period_s,
            "per_camera_ms": per_camera_ms,
            "per_camera_cpu_ms": per_camera_cpu_ms,
            "core_fraction": core_fraction,
            "core_fraction_wall": camera_count * per_camera_ms * 1e-3 / frame_period_s,
            "goal": GOAL_CORE_FRACTION,
            "met": core_fraction <= GOAL_CORE_FRACTION,
            "method": (
                "one CameraAnalytics per channel after a warm-up, best of repetitions, OpenCV on "
                "one thread; baseline cv2.imdecode of the same encoded frames in the same run"
            ),
            "elapsed_s": time.perf_counter() - started,
            "opencv": cv2.__version__,
            "python": platform.python_version(),
            "machine": platform.machine(),
        }
    finally:
        cv2.setNumThreads(threads)


if __name__ == "__main__":
    print(json.dumps(run(), indent=2, sort_keys=True))
