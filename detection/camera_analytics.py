"""Camera analytics: cold plumes, hot spots and intrusions in frames, gas on the laser beam.

A tri-spectrum camera gives three channels; each has a small per-camera state and a pure core:

* **thermal** (kelvin): a per-pixel running-average background with selective update, a global
  offset correction and a robust per-frame noise estimate; pixels colder than the background
  by more than ``max(k sigma, cold_min_contrast_k)`` are a **cold plume** (gas expanding from a
  pressurised line cools), pixels hotter by more than ``hot_spot_min_excess_k`` a **hot spot**
  (fire), and warm pixels in between whose ground footprint is in the right-of-way an
  **intrusion** (engines and bodies, which the thermal channel sees day and night);
* **visible** (8-bit BGR): the same background model with a global gain (the scene brightness
  changes between day and night), foreground by colour distance, morphology, connected
  components; a blob whose ground footprint lies in the pipeline right-of-way is an
  **intrusion**; when the frame is too dark (gain below ``min_visible_gain``) the channel
  reports nothing and says so (:attr:`CameraAnalytics.visible_dark`);
* **laser** (mol mol-1 m): a reading above the ambient methane column along the beam plus a
  margin is **laser_gas**; a reading with status ``fault`` is **beam_blocked**, a fault, not gas.

Blobs are tracked from frame to frame by bounding-box overlap; a detection is reported once it
has persisted ``confirm_frames`` frames (no flicker), with a confidence in [0, 1]:

``confidence = (1 - exp(-r / r0)) (1 - exp(-A / A0)) min(1, n / n_full)``

with ``r`` the contrast-to-noise ratio (mean |difference| over the blob / per-frame noise),
``A`` the area [px] and ``n`` the persistence [frames]; for the laser ``r`` is the excess column
over the margin and the area factor is 1. ``r0``, ``A0`` and ``n_full`` are in
:class:`CameraAnalyticsConfig`. :func:`camera_coverage` says which pipeline chainages and gas
zones a camera watches, so that a camera detection can confirm a suspected leak in a zone.

Nothing here touches MQTT or files; :func:`decode_frame` is the one thin edge that turns a
:class:`~pipesentinel.ingest.records.CameraFrame`'s bytes into an array (``cv2.imdecode``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

import cv2
import numpy as np
import numpy.typing as npt
from numpy.typing import NDArray

from pipesentinel.camera_geometry import (
    CameraPose,
    distance_to_polylines_m,
    laser_beam_m,
    pixel_ground_area_m2,
    pixel_ground_m,
    pixels_to_ground_m,
    project_points,
)
from pipesentinel.ingest.records import CameraChannel, CameraFrame, DeviceStatus, LaserReading
from pipesentinel.site import Camera, DetectorPlacement, Site
from pipesentinel.units import CENTIKELVIN, PPM_M

FloatArray = NDArray[np.float64]
Float32Array = NDArray[np.float32]
BoolArray = NDArray[np.bool_]
IntArray = NDArray[np.int64]
ImageU8 = NDArray[np.uint8]

# --- Cited constants and documented choices ----------------------------------------------------

AMBIENT_METHANE_MOLE_FRACTION: Final = 1.922e-6
"""Background methane the laser reads along its whole beam [mol mol-1]: NOAA Global Monitoring
Laboratory, global mean marine surface CH4 for 2023, about 1922 ppb (gml.noaa.gov/ccgg/trends_ch4).
Open-path detectors read this column too (Heath Consultants RMLD user manual, ch. IV: "There is
always a small amount of methane in the air ... also measured")."""

DEFAULT_LASER_MARGIN_MOLE_FRACTION_M: Final = PPM_M.to_si(100.0)
"""Excess column over the ambient one before the laser channel reports gas [mol mol-1 m]. A
choice, not a cited figure: urban air is often a few hundred ppb above the global background, and
0.5 ppm over a 200 m beam is 100 ppm m; it is also 20 times the simulated 5 ppm m noise."""

DEFAULT_RIGHT_OF_WAY_HALF_WIDTH_M: Final = 10.0
"""Half-width of the strip watched for intrusions, each side of a pipeline's centreline [m].
The permanent right-of-way of a transmission pipeline is "usually about 50 feet wide" (FERC,
"An Interstate Natural Gas Facility on My Land?", landowner guide), i.e. 7.6 m each side; the
PRC Oil and Gas Pipeline Protection Law (2010), art. 30, forbids mechanical digging within 5 m
each side of the centreline. 10 m covers the 7.6 m strip plus a margin for the ground-location
error of a blob seen from 100-150 m (a choice)."""

DEFAULT_HOT_SPOT_MIN_EXCESS_K: Final = 100.0
"""A thermal blob this much hotter than its background is a fire, not a warm body or engine [K].
Flames and embers are hundreds of kelvin above ambient (luminous flames around 1000-1500 K,
Drysdale, An Introduction to Fire Dynamics, 3rd ed., 2011, ch. 10); skin, engines and sun-warmed
surfaces seen by a thermal camera are tens of kelvin above it. The threshold is a choice between."""

DEFAULT_THERMAL_LAYER_HEIGHT_M: Final = 1.0
"""Height of the plane on which thermal blobs (cold gas, hot spots) are located [m]: a cold cloud
from a ground-level release is seen in its lowest metres. A choice; 0 locates them on the ground."""

ROBUST_SIGMA_PER_MAD: Final = 1.4826
"""Standard deviation per median absolute deviation of a normal distribution, 1 / Phi^-1(3/4)
(Rousseeuw & Croux, J. Am. Stat. Assoc. 88, 1273, 1993)."""

NOISE_SUBSAMPLE_STRIDE_PX: Final = 4
"""Every 4th pixel in both directions is enough for the per-frame median and MAD (1/16 of a
640 x 512 frame is 20 480 pixels); not physics, a speed choice."""


class DetectionChannel(StrEnum):
    """Which channel of a tri-spectrum camera saw it."""

    VISIBLE = "visible"
    THERMAL = "thermal"
    LASER = "laser"


class DetectionKind(StrEnum):
    """What a camera detection is."""

    COLD_PLUME = "cold_plume"  # thermal: cold gas cloud, a suspected leak
    HOT_SPOT = "hot_spot"  # thermal: fire
    INTRUSION = "intrusion"  # visible or thermal: an object in the right-of-way
    LASER_GAS = "laser_gas"  # laser: methane column above ambient + margin
    BEAM_BLOCKED = "beam_blocked"  # laser: device fault (an obstacle in the beam), not gas


@dataclass(frozen=True)
class CameraAnalyticsConfig:
    """Thresholds, learning rates and confidence scales of the camera analytics.

    Attributes
    ----------
    learning_rate
        Weight of a new frame in the running-average background, per frame [1].
    foreground_learning_rate
        The same where something was detected (selective update): a parked excavator or a
        steady plume stays detected for ~1 / rate frames; a ghost left behind heals as slowly [1].
    warmup_frames
        Frames learnt before a channel reports anything [1].
    noise_sigmas
        Foreground threshold in units of the per-frame robust noise [1].
    min_noise_k, min_noise_dn
        Floors of the per-frame noise estimate [K], [DN].
    cold_min_contrast_k
        Smallest temperature deficit that counts as cold [K].
    warm_min_contrast_k
        Smallest excess that counts as a warm object (thermal intrusion) [K].
    hot_spot_min_excess_k
        Smallest excess that counts as a fire [K].
    visible_min_contrast_dn
        Smallest colour distance that counts as foreground, at full daylight gain [DN].
    min_visible_gain
        Below this scene gain (frame / background brightness) the visible channel is too dark to
        use and reports nothing [1].
    min_area_px
        Smallest blob [px].
    confirm_frames
        Consecutive frames a blob must persist before it is reported [1].
    max_missed_frames
        Frames a track may be missed without losing its persistence [1].
    right_of_way_half_width_m
        Half-width of the watched strip each side of a pipeline [m].
    min_contact_fraction
        Fraction of a blob's bottom edge (where it stands on the ground) that must lie in the
        right-of-way for it to be an intrusion [1].
    thermal_layer_height_m
        Height of the plane thermal blobs are located on [m].
    laser_margin_mole_fraction_m
        Excess over the ambient column before the laser reports gas [mol mol-1 m].
    laser_confirm_readings
        Consecutive readings above threshold before the laser reports gas [1].
    ambient_methane_mole_fraction
        Background methane along the beam [mol mol-1].
    contrast_to_noise_scale
        ``r0`` of the confidence formula [1].
    area_scale_px
        ``A0`` of the confidence formula [px].
    full_confidence_frames
        ``n_full`` of the confidence formula (frames or laser readings) [1].
    """

    learning_rate: float = 0.05
    foreground_learning_rate: float = 0.0005
    warmup_frames: int = 6
    noise_sigmas: float = 5.0
    min_noise_k: float = 0.02
    min_noise_dn: float = 1.0
    cold_min_contrast_k: float = 0.5
    warm_min_contrast_k: float = 3.0
    hot_spot_min_excess_k: float = DEFAULT_HOT_SPOT_MIN_EXCESS_K
    visible_min_contrast_dn: float = 12.0
    min_visible_gain: float = 0.05
    min_area_px: int = 12
    confirm_frames: int = 3
    max_missed_frames: int = 1
    right_of_way_half_width_m: float = DEFAULT_RIGHT_OF_WAY_HALF_WIDTH_M
    min_contact_fraction: float = 0.2
    thermal_layer_height_m: float = DEFAULT_THERMAL_LAYER_HEIGHT_M
    laser_margin_mole_fraction_m: float = DEFAULT_LASER_MARGIN_MOLE_FRACTION_M
    laser_confirm_readings: int = 2
    ambient_methane_mole_fraction: float = AMBIENT_METHANE_MOLE_FRACTION
    contrast_to_noise_scale: float = 10.0
    area_scale_px: float = 50.0
    full_confidence_frames: int = 6

    def __post_init__(self) -> None:
        for name in ("learning_rate", "foreground_learning_rate", "min_contact_fraction"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"CameraAnalyticsConfig.{name} must be in [0, 1], got {value!r}")
        positive = (
            "noise_sigmas",
            "min_noise_k",
            "min_noise_dn",
            "cold_min_contrast_k",
            "warm_min_contrast_k",
            "hot_spot_min_excess_k",
            "visible_min_contrast_dn",
            "min_visible_gain",
            "right_of_way_half_width_m",
            "laser_margin_mole_fraction_m",
            "contrast_to_noise_scale",
            "area_scale_px",
        )
        for name in positive:
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0.0):
                raise ValueError(
                    f"CameraAnalyticsConfig.{name} must be finite and > 0, got {value!r}"
                )
        counts = (
            "warmup_frames",
            "min_area_px",
            "confirm_frames",
            "laser_confirm_readings",
            "full_confidence_frames",
        )
        for name in counts:
            if getattr(self, name) < 1:
                raise ValueError(
                    f"CameraAnalyticsConfig.{name} must be >= 1, got {getattr(self, name)!r}"
                )
        if self.max_missed_frames < 0:
            raise ValueError(
                "CameraAnalyticsConfig.max_missed_frames must be >= 0, "
                f"got {self.max_missed_frames!r}"
            )
        if not self.warm_min_contrast_k < self.hot_spot_min_excess_k:
            raise ValueError(
                "CameraAnalyticsConfig: warm_min_contrast_k must be < hot_spot_min_excess_k"
            )
        if not (
            math.isfinite(self.ambient_methane_mole_fraction)
            and self.ambient_methane_mole_fraction >= 0.0
        ):
            raise ValueError(
                "CameraAnalyticsConfig.ambient_methane_mole_fraction must be finite and >= 0"
            )
        if not (math.isfinite(self.thermal_layer_height_m) and self.thermal_layer_height_m >= 0.0):
            raise ValueError("CameraAnalyticsConfig.thermal_layer_height_m must be finite and >= 0")


# ---------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Blob:
    """An image region and where it is on the ground.

    Attributes
    ----------
    area_px
        Pixels in the region [px].
    area_m2
        Approximate area on the locating plane (sum of the pixels' footprints; a standing object
        is treated as if it lay flat, so this over-states it) [m2].
    bbox_px
        Column, row of the top-left corner, width, height [px].
    centroid_px
        Column, row of the centroid [px].
    ground_position_m
        East, north: the area-weighted centroid on the locating plane for a plume; for an
        intrusion, the mean ground point of its bottom edge in the right-of-way; for a hot spot,
        the bottom centre of its box; ``None`` above the horizon [m].
    mean_difference
        Mean difference from the background over the region [K] or [DN].
    peak_difference
        Largest |difference| over the region, with its sign [K] or [DN].
    """

    area_px: int
    area_m2: float
    bbox_px: tuple[int, int, int, int]
    centroid_px: tuple[float, float]
    ground_position_m: tuple[float, float] | None
    mean_difference: float
    peak_difference: float


@dataclass(frozen=True, slots=True)
class PipelineLocation:
    """Nearest pipeline point to a detection.

    Attributes
    ----------
    pipeline_id
        The pipeline.
    chainage_m
        Chainage of the nearest centreline point [m].
    distance_m
        Horizontal distance to the centreline [m].
    in_right_of_way
        Whether the distance is within the watched half-width.
    """

    pipeline_id: str
    chainage_m: float
    distance_m: float
    in_right_of_way: bool


@dataclass(frozen=True, slots=True)
class CameraDetection:
    """One detection by one camera channel.

    Attributes
    ----------
    camera_id
        The camera.
    channel
        The channel that saw it.
    kind
        What it is.
    time_s
        Time of the frame or reading, seconds since the Unix epoch [s].
    confidence
        In [0, 1]; see the module docstring for the formula [1].
    track_id
        Stable id of the tracked blob (or of the laser episode) within the camera and kind.
    persistence_frames
        Consecutive frames (readings for the laser) it has been seen [1].
    persistence_s
        Time since it was first seen [s].
    blob
        Image region and ground position; ``None`` for the laser.
    location
        Nearest pipeline point; ``None`` when the site has no pipeline or it is above the horizon.
    temperature_difference_k
        Mean difference from the thermal background; ``None`` for other channels [K].
    path_integral_excess_mole_fraction_m
        Column above the ambient one (laser gas); ``None`` otherwise [mol mol-1 m].
    """

    camera_id: str
    channel: DetectionChannel
    kind: DetectionKind
    time_s: float
    confidence: float
    track_id: int
    persistence_frames: int
    persistence_s: float
    blob: Blob | None = None
    location: PipelineLocation | None = None
    temperature_difference_k: float | None = None
    path_integral_excess_mole_fraction_m: float | None = None


# ---------------------------------------------------------------------------------------------
# Pure core
# ---------------------------------------------------------------------------------------------


def detection_confidence(
    contrast_to_noise: npt.ArrayLike,
    area_px: npt.ArrayLike,
    persistence: npt.ArrayLike,
    *,
    contrast_to_noise_scale: float,
    area_scale_px: float,
    full_confidence_frames: int,
) -> FloatArray:
    """``(1 - exp(-r / r0)) (1 - exp(-A / A0)) min(1, n / n_full)``, in [0, 1].

    Parameters
    ----------
    contrast_to_noise
        Contrast-to-noise ratio ``r`` (>= 0) [1].
    area_px
        Area ``A`` (>= 0; ``inf`` for no area factor) [px].
    persistence
        Frames or readings seen ``n`` [1].
    contrast_to_noise_scale
        ``r0`` [1].
    area_scale_px
        ``A0`` [px].
    full_confidence_frames
        ``n_full`` [1].
    """
    ratio = np.maximum(np.asarray(contrast_to_noise, dtype=np.float64), 0.0)
    area = np.maximum(np.asarray(area_px, dtype=np.float64), 0.0)
    frames = np.maximum(np.asarray(persistence, dtype=np.float64), 0.0)
    value = (
        -np.expm1(-ratio / contrast_to_noise_scale)
        * -np.expm1(-area / area_scale_px)
        * np.minimum(1.0, frames / full_confidence_frames)
    )
    return np.asarray(np.clip(value, 0.0, 1.0), dtype=np.float64)


def robust_offset_and_noise(
    difference: Float32Array, *, stride_px: int = NOISE_SUBSAMPLE_STRIDE_PX
) -> tuple[float, float]:
    """Median and robust standard deviation (1.4826 MAD) of a difference image.

    Parameters
    ----------
    difference
        Frame minus background, shape (H, W) or (H, W, C) [K] or [DN].
    stride_px
        Subsampling step in both directions [px].

    Returns
    -------
    tuple of float
        Median (a global offset) and robust noise, in the input's unit.
    """
    sample = np.asarray(difference[::stride_px, ::stride_px], dtype=np.float32).ravel()
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        return 0.0, 0.0
    median = float(np.median(sample))
    mad = float(np.median(np.abs(sample - median)))
    return median, ROBUST_SIGMA_PER_MAD * mad


def update_background(
    background: Float32Array,
    frame: Float32Array,
    foreground: BoolArray,
    *,
    learning_rate: float,
    foreground_learning_rate: float,
) -> None:
    """Running average ``B += rate (F - B)`` in place, slower where ``foreground`` is set.

    Parameters
    ----------
    background
        The model, updated in place, shape (H, W) or (H, W, C) [K] or [DN].
    frame
        The new frame, same shape and unit.
    foreground
        Pixels where something was detected, shape (H, W).
    learning_rate, foreground_learning_rate
        Weights of the new frame outside and inside the foreground [1].
    """
    rate = np.where(foreground, np.float32(foreground_learning_rate), np.float32(learning_rate))
    if background.ndim == 3:
        rate = rate[..., np.newaxis]
    background += rate * (frame - background)


@dataclass(frozen=True)
class BlobStats:
    """Per-component statistics of a labelled mask (arrays over the components).

    Attributes
    ----------
    area_px
        Pixels per component [px].
    bbox_px
        Column, row, width, height per component, shape (n, 4) [px].
    centroid_px
        Column, row per component, shape (n, 2) [px].
    mean_difference, peak_difference
        Mean and signed largest-magnitude difference per component [K] or [DN].
    area_m2
        Footprint area per component [m2].
    ground_centroid_m
        Area-weighted east, north per component (NaN when no pixel reaches the plane), (n, 2) [m].
    label_ids
        Label of each kept component in ``labels`` [1].
    labels
        The label image (0 is background).
    """

    area_px: IntArray
    bbox_px: IntArray
    centroid_px: FloatArray
    mean_difference: FloatArray
    peak_difference: FloatArray
    area_m2: FloatArray
    ground_centroid_m: FloatArray
    label_ids: IntArray
    labels: NDArray[np.int32]


def _weighted_count(labels: NDArray[np.integer], weights: FloatArray, n: int) -> FloatArray:
    """Sum of ``weights`` per label (``np.bincount`` with weights, typed) [unit of weights]."""
    return np.asarray(np.bincount(labels, weights=weights, minlength=n), dtype=np.float64)


def blob_statistics(
    mask: BoolArray,
    difference: Float32Array,
    pixel_area_m2: FloatArray,
    ground_east_m: FloatArray,
    ground_north_m: FloatArray,
    *,
    min_area_px: int,
) -> BlobStats:
    """Connected components of ``mask`` (8-connected) of at least ``min_area_px``, with statistics.

    Parameters
    ----------
    mask
        Foreground, shape (H, W).
    difference
        Frame minus background (one channel), shape (H, W) [K] or [DN].
    pixel_area_m2
        Ground footprint of each pixel, 0 above the horizon, shape (H, W) [m2].
    ground_east_m, ground_north_m
        Where each pixel's ray meets the locating plane (NaN where it does not) [m].
    min_area_px
        Smallest component kept [px].
    """
    count, raw_labels, stats, centroids = cv2.connectedComponentsWithStats(
        mask.astype(np.uint8), connectivity=8, ltype=cv2.CV_32S
    )
    labels = np.asarray(raw_labels, dtype=np.int32)
    keep = np.flatnonzero(stats[1:, cv2.CC_STAT_AREA] >= min_area_px) + 1
    n_labels = int(count)
    flat_labels = labels.ravel()
    selected = flat_labels > 0
    label_of = flat_labels[selected]
    values = difference.ravel()[selected].astype(np.float64)
    weights = pixel_area_m2.ravel()[selected]
    east = np.nan_to_num(ground_east_m.ravel()[selected])
    north = np.nan_to_num(ground_north_m.ravel()[selected])
    sums = _weighted_count(label_of, values, n_labels)
    pixels = np.bincount(label_of, minlength=n_labels).astype(np.float64)
    area_m2 = _weighted_count(label_of, weights, n_labels)
    east_sum = _weighted_count(label_of, weights * east, n_labels)
    north_sum = _weighted_count(label_of, weights * north, n_labels)
    peak_magnitude = np.zeros(n_labels)
    np.maximum.at(peak_magnitude, label_of, np.abs(values))
    peak_signed = np.zeros(n_labels)
    at_peak = np.abs(values) >= peak_magnitude[label_of]
    peak_signed[label_of[at_peak]] = values[at_peak]
    with np.errstate(invalid="ignore", divide="ignore"):
        ground = np.column_stack(
            [
                np.where(area_m2 > 0, east_sum / area_m2, np.nan),
                np.where(area_m2 > 0, north_sum / area_m2, np.nan),
            ]
        )
    return BlobStats(
        area_px=stats[keep, cv2.CC_STAT_AREA].astype(np.int64),
        bbox_px=stats[keep, :4].astype(np.int64),
        centroid_px=np.asarray(centroids[keep], dtype=np.float64).reshape(-1, 2),
        mean_difference=sums[keep] / np.maximum(pixels[keep], 1.0),
        peak_difference=peak_signed[keep],
        area_m2=area_m2[keep],
        ground_centroid_m=ground[keep].reshape(-1, 2),
        label_ids=keep.astype(np.int64),
        labels=labels,
    )


@dataclass(frozen=True)
class GroundContacts:
    """Where blobs touch the ground: the lowest pixel of each of their columns.

    A standing object meets the ground along the bottom of its silhouette; when two objects
    merge into one blob (a truck in front of an excavator), each keeps its own bottom edge.

    Attributes
    ----------
    contact_px
        Bottom-edge pixels per blob [px].
    inside_px
        Those inside the mask [px].
    column_px, row_px
        Mean position of the inside pixels (of all of them when none is inside) [px].
    """

    contact_px: IntArray
    inside_px: IntArray
    column_px: FloatArray
    row_px: FloatArray


def ground_contacts(
    labels: NDArray[np.int32], label_ids: IntArray, mask: BoolArray
) -> GroundContacts:
    """Bottom-edge pixels of the blobs ``label_ids`` of ``labels`` and how many are in ``mask``.

    Parameters
    ----------
    labels
        Label image, shape (H, W).
    label_ids
        The blobs wanted, shape (n,).
    mask
        E.g. the right-of-way, shape (H, W).
    """
    ids = np.asarray(label_ids, dtype=np.int64)
    n = len(ids)
    width = labels.shape[1]
    wanted = np.zeros(int(labels.max(initial=0)) + 1, dtype=np.int64) - 1
    wanted[ids] = np.arange(n)
    flat = np.flatnonzero(labels.ravel())
    slot = wanted[labels.ravel()[flat]]
    flat, slot = flat[slot >= 0], slot[slot >= 0]
    rows, columns = np.divmod(flat, width)
    # Row-major order: the last pixel of each (blob, column) is its lowest.
    key = slot * width + columns
    _, last_reversed = np.unique(key[::-1], return_index=True)
    last = len(key) - 1 - last_reversed
    blob, row, column = slot[last], rows[last], columns[last]
    inside = mask[row, column]
    contact = np.bincount(blob, minlength=n)
    inside_count = np.bincount(blob, weights=inside, minlength=n)
    use = np.where(inside_count[blob] > 0, inside, True)
    weight = np.bincount(blob, weights=use, minlength=n)
    safe = np.maximum(weight, 1.0)
    return GroundContacts(
        contact_px=contact.astype(np.int64),
        inside_px=inside_count.astype(np.int64),
        column_px=np.bincount(blob, weights=use * column, minlength=n) / safe,
        row_px=np.bincount(blob, weights=use * row, minlength=n) / safe,
    )


def box_overlap(first_px: IntArray, second_px: IntArray) -> FloatArray:
    """Intersection over union of every pair of boxes (column, row, width, height), (n, m) [1]."""
    a = np.asarray(first_px, dtype=np.float64).reshape(-1, 1, 4)
    b = np.asarray(second_px, dtype=np.float64).reshape(1, -1, 4)
    left = np.maximum(a[..., 0], b[..., 0])
    top = np.maximum(a[..., 1], b[..., 1])
    right = np.minimum(a[..., 0] + a[..., 2], b[..., 0] + b[..., 2])
    bottom = np.minimum(a[..., 1] + a[..., 3], b[..., 1] + b[..., 3])
    inter = np.clip(right - left, 0.0, None) * np.clip(bottom - top, 0.0, None)
    union = a[..., 2] * a[..., 3] + b[..., 2] * b[..., 3] - inter
    return np.asarray(np.where(union > 0.0, inter / np.where(union > 0, union, 1.0), 0.0))


@dataclass
class BlobTracker:
    """Tracks boxes from frame to frame by overlap; counts how long each has persisted.

    A box continues the track it overlaps most (greedy, best overlap first); a track survives
    ``max_missed_frames`` frames without a box before it is dropped.
    """

    max_missed_frames: int = 1
    _boxes: IntArray = field(default_factory=lambda: np.zeros((0, 4), dtype=np.int64))
    _ids: IntArray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    _frames: IntArray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    _missed: IntArray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    _first_s: FloatArray = field(default_factory=lambda: np.zeros(0, dtype=np.float64))
    _next_id: int = 1

    def update(self, boxes_px: IntArray, time_s: float) -> tuple[IntArray, IntArray, FloatArray]:
        """Match this frame's boxes; their track ids, persistence [frames] and first time [s]."""
        boxes = np.asarray(boxes_px, dtype=np.int64).reshape(-1, 4)
        n_new, n_old = len(boxes), len(self._boxes)
        match = np.full(n_new, -1, dtype=np.int64)
        if n_new and n_old:
            overlap = box_overlap(boxes, self._boxes)
            order = np.argsort(-overlap, axis=None)
            used_new = np.zeros(n_new, dtype=np.bool_)
            used_old = np.zeros(n_old, dtype=np.bool_)
            for flat in order[: int(np.count_nonzero(overlap > 0.0))]:
                i, j = divmod(int(flat), n_old)
                if not used_new[i] and not used_old[j]:
                    match[i] = j
                    used_new[i] = used_old[j] = True
        matched = match >= 0
        ids = np.where(matched, self._ids[np.maximum(match, 0)] if n_old else 0, 0)
        new_ids = np.arange(self._next_id, self._next_id + int(np.count_nonzero(~matched)))
        ids[~matched] = new_ids
        self._next_id += len(new_ids)
        frames = np.where(matched, self._frames[np.maximum(match, 0)] + 1 if n_old else 1, 1)
        first = np.where(matched, self._first_s[np.maximum(match, 0)] if n_old else time_s, time_s)
        # Tracks not continued this frame: kept while they have missed few enough frames.
        continued = np.zeros(n_old, dtype=np.bool_)
        continued[match[matched]] = True
        missed = self._missed[~continued] + 1
        kept = missed <= self.max_missed_frames
        self._boxes = np.concatenate([boxes, self._boxes[~continued][kept]])
        self._ids = np.concatenate([ids, self._ids[~continued][kept]])
        self._frames = np.concatenate([frames, self._frames[~continued][kept]])
        self._missed = np.concatenate([np.zeros(n_new, dtype=np.int64), missed[kept]])
        self._first_s = np.concatenate([first.astype(np.float64), self._first_s[~continued][kept]])
        return ids.astype(np.int64), frames.astype(np.int64), first.astype(np.float64)


def pipeline_locations(
    site: Site, points_m: FloatArray, right_of_way_half_width_m: float
) -> list[PipelineLocation | None]:
    """Nearest pipeline point of each ground point (``None`` for NaN points or no pipeline).

    Parameters
    ----------
    site
        Its pipelines.
    points_m
        East, north, shape (n, 2) [m].
    right_of_way_half_width_m
        Watched half-width [m].
    """
    points = np.asarray(points_m, dtype=np.float64).reshape(-1, 2)
    if not site.pipelines or not len(points):
        return [None] * len(points)
    finite = np.all(np.isfinite(points), axis=1)
    safe = np.where(finite[:, np.newaxis], points, 0.0)
    located = [pipeline.locate(safe) for pipeline in site.pipelines]
    distance = np.stack([d for _, d in located])
    chainage = np.stack([c for c, _ in located])
    nearest = np.argmin(distance, axis=0)
    columns = np.arange(len(points))
    return [
        PipelineLocation(
            pipeline_id=site.pipelines[int(nearest[i])].id,
            chainage_m=float(chainage[nearest[i], i]),
            distance_m=float(distance[nearest[i], i]),
            in_right_of_way=bool(distance[nearest[i], i] <= right_of_way_half_width_m),
        )
        if finite[i]
        else None
        for i in columns
    ]


def right_of_way_mask(
    pose: CameraPose, site: Site, half_width_m: float, height_m: float = 0.0
) -> BoolArray:
    """Pixels whose ray meets the plane ``z = height_m`` within ``half_width_m`` of a pipeline.

    Parameters
    ----------
    pose
        The camera.
    site
        Its pipelines.
    half_width_m
        Half-width of the strip each side of a centreline [m].
    height_m
        Height of the plane [m].
    """
    hits = pixel_ground_m(pose, height_m)
    east = np.where(hits.hits, hits.east_m, 0.0)
    north = np.where(hits.hits, hits.north_m, 0.0)
    distance = distance_to_polylines_m(east, north, [p.vertices_m for p in site.pipelines])
    return np.asarray(hits.hits & (distance <= half_width_m), dtype=np.bool_)


def laser_threshold_mole_fraction_m(
    beam_length_m: float,
    *,
    ambient_methane_mole_fraction: float = AMBIENT_METHANE_MOLE_FRACTION,
    margin_mole_fraction_m: float = DEFAULT_LASER_MARGIN_MOLE_FRACTION_M,
) -> float:
    """Column above which the laser reports gas: ambient column + margin [mol mol-1 m].

    Parameters
    ----------
    beam_length_m
        Length of the beam [m].
    ambient_methane_mole_fraction
        Background methane [mol mol-1].
    margin_mole_fraction_m
        Excess over the ambient column [mol mol-1 m].
    """
    return ambient_methane_mole_fraction * beam_length_m + margin_mole_fraction_m


# ---------------------------------------------------------------------------------------------
# Edge: decoding
# ---------------------------------------------------------------------------------------------


def decode_frame(frame: CameraFrame) -> ImageU8 | FloatArray:
    """Pixels of a camera frame: uint8 BGR (H, W, 3) for visible, kelvin (H, W) for thermal.

    ``ValueError`` naming the device, channel and time when the bytes do not decode to the
    expected kind of image or to the size the frame declares.
    """
    where = (
        f"{frame.device_id} {frame.channel.value} frame at t={frame.time_s:.3f} s (seq {frame.seq})"
    )
    buffer = np.frombuffer(frame.image, dtype=np.uint8)
    if frame.channel is CameraChannel.VISIBLE:
        image = cv2.imdecode(buffer, cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError(f"{where}: the JPEG does not decode")
    else:
        image = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)
        if image is None or image.dtype != np.uint16 or image.ndim != 2:
            raise ValueError(f"{where}: not a 16-bit greyscale PNG")
    height, width = image.shape[:2]
    if (width, height) != (frame.width_px, frame.height_px):
        raise ValueError(
            f"{where}: image is {width}x{height} px, the frame says "
            f"{frame.width_px}x{frame.height_px}"
        )
    if frame.channel is CameraChannel.VISIBLE:
        return np.asarray(image, dtype=np.uint8)
    return np.asarray(CENTIKELVIN.to_si(image.astype(np.float64)), dtype=np.float64)


# ---------------------------------------------------------------------------------------------
# Per-camera state
# ---------------------------------------------------------------------------------------------

_OPEN_KERNEL = cv2.getStructuringElement(cv2.MORPH_RECT, (3, 3))
_CLOSE_KERNEL = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7))
_GUARD_KERNEL = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (9, 9))


def _clean(mask: BoolArray) -> BoolArray:
    """Opening (drop isolated noise pixels), then closing (join an object's parts)."""
    opened = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, _OPEN_KERNEL)
    closed = cv2.morphologyEx(np.asarray(opened, dtype=np.uint8), cv2.MORPH_CLOSE, _CLOSE_KERNEL)
    return np.asarray(closed, dtype=np.bool_)


def _dilate(mask: BoolArray) -> BoolArray:
    return np.asarray(cv2.dilate(mask.astype(np.uint8), _GUARD_KERNEL), dtype=np.bool_)


@dataclass
class _Background:
    """A running-average background and how many frames it has learnt."""

    image: Float32Array | None = None
    frames: int = 0


class CameraAnalytics:
    """Analytics of one tri-spectrum camera: background models, trackers, laser state.

    Parameters
    ----------
    camera
        The camera in the site model (pose, resolution, laser range).
    site
        The site (its pipelines define the right-of-way and the chainages reported).
    config
        Thresholds and rates.
    """

    def __init__(
        self, camera: Camera, site: Site, config: CameraAnalyticsConfig | None = None
    ) -> None:
        self.camera = camera
        self.site = site
        self.config = config or CameraAnalyticsConfig()
        self.pose = CameraPose.from_camera(camera)
        cfg = self.config
        start, end = laser_beam_m(self.pose, camera.laser_range_m)
        self.beam_length_m = float(np.linalg.norm(end - start))
        self.laser_threshold_mole_fraction_m = laser_threshold_mole_fraction_m(
            self.beam_length_m,
            ambient_methane_mole_fraction=cfg.ambient_methane_mole_fraction,
            margin_mole_fraction_m=cfg.laser_margin_mole_fraction_m,
        )
        self._thermal = _Background()
        self._visible = _Background()
        self._trackers = {
            (channel, kind): BlobTracker(cfg.max_missed_frames)
            for channel, kind in (
                (DetectionChannel.THERMAL, DetectionKind.COLD_PLUME),
                (DetectionChannel.THERMAL, DetectionKind.HOT_SPOT),
                (DetectionChannel.THERMAL, DetectionKind.INTRUSION),
                (DetectionChannel.VISIBLE, DetectionKind.INTRUSION),
            )
        }
        self._laser_run = 0
        self._laser_first_s = 0.0
        self._laser_episode = 0
        self._fault_run = 0
        self._fault_first_s = 0.0
        self.visible_dark = False
        self.visible_gain = 1.0
        self.thermal_noise_k = 0.0
        self.visible_noise_dn = 0.0

    # --- shape checks ------------------------------------------------------------------------

    # Per-pixel geometry (where each pixel of the thermal layer and of the ground lies, its
    # area, the right-of-way mask): ~0.7 s per 640x512 camera, so computed on the first frame
    # and not at all where only the laser is analysed (settings.detection.camera_analytics off).

    @functools.cached_property
    def _thermal_layer(self) -> tuple[FloatArray, FloatArray, FloatArray]:
        """(east, north, area) of each pixel on the thermal layer [m, m, m2]."""
        height_m = self.config.thermal_layer_height_m
        layer = pixel_ground_m(self.pose, height_m)
        return layer.east_m, layer.north_m, pixel_ground_area_m2(self.pose, height_m)

    @functools.cached_property
    def _ground(self) -> tuple[FloatArray, FloatArray, FloatArray]:
        """(east, north, area) of each pixel on the ground [m, m, m2]."""
        ground = pixel_ground_m(self.pose, 0.0)
        return ground.east_m, ground.north_m, pixel_ground_area_m2(self.pose, 0.0)

    @functools.cached_property
    def right_of_way(self) -> BoolArray:
        """Pixels whose ground lies in a pipeline's right-of-way."""
        return right_of_way_mask(self.pose, self.site, self.config.right_of_way_half_width_m)

    def _check_shape(self, image: NDArray[np.generic], channel: DetectionChannel) -> None:
        expected: tuple[int, ...] = (self.pose.height_px, self.pose.width_px)
        if channel is DetectionChannel.VISIBLE:
            expected = (*expected, 3)
        if image.shape != expected:
            raise ValueError(
                f"camera {self.camera.id}: {channel.value} frame has shape {image.shape}, "
                f"expected {expected}"
            )

    # --- thermal -----------------------------------------------------------------------------

    def process_thermal(
        self, temperature_k: NDArray[np.floating], time_s: float
    ) -> list[CameraDetection]:
        """Detections in one thermal frame.

        Parameters
        ----------
        temperature_k
            Scene temperature per pixel, shape (H, W) [K].
        time_s
            Frame time, seconds since the Unix epoch [s].
        """
        self._check_shape(temperature_k, DetectionChannel.THERMAL)
        frame = np.asarray(temperature_k, dtype=np.float32)
        if not np.all(np.isfinite(frame)):
            raise ValueError(
                f"camera {self.camera.id}: thermal frame at t={time_s} has non-finite pixels"
            )
        cfg = self.config
        state = self._thermal
        if state.image is None:
            state.image = frame.copy()
            state.frames = 1
            return []
        difference = frame - state.image
        offset, noise = robust_offset_and_noise(difference)
        difference -= np.float32(offset)
        noise = max(noise, cfg.min_noise_k)
        self.thermal_noise_k = noise
        cold = _clean(difference < -max(cfg.noise_sigmas * noise, cfg.cold_min_contrast_k))
        hot = _clean(difference > cfg.hot_spot_min_excess_k)
        warm = _clean(
            (difference > max(cfg.noise_sigmas * noise, cfg.warm_min_contrast_k)) & ~_dilate(hot)
        )
        learning = state.frames < cfg.warmup_frames
        update_background(
            state.image,
            frame - np.float32(offset),
            _dilate(cold | hot | warm),
            learning_rate=max(cfg.learning_rate, 1.0 / (state.frames + 1))
            if learning
            else cfg.learning_rate,
            foreground_learning_rate=cfg.foreground_learning_rate
            if not learning
            else cfg.learning_rate,
        )
        state.frames += 1
        if learning:
            return []
        detections: list[CameraDetection] = []
        for kind, mask in (
            (DetectionKind.COLD_PLUME, cold),
            (DetectionKind.HOT_SPOT, hot),
            (DetectionKind.INTRUSION, warm),
        ):
            stats = blob_statistics(
                mask,
                difference,
                self._thermal_layer[2],
                self._thermal_layer[0],
                self._thermal_layer[1],
                min_area_px=cfg.min_area_px,
            )
            detections += self._report(DetectionChannel.THERMAL, kind, stats, noise, time_s)
        return detections

    # --- visible -----------------------------------------------------------------------------

    def process_visible(self, image_bgr: ImageU8, time_s: float) -> list[CameraDetection]:
        """Intrusions in the right-of-way in one visible frame.

        Parameters
        ----------
        image_bgr
            8-bit BGR frame, shape (H, W, 3) [DN].
        time_s
            Frame time, seconds since the Unix epoch [s].
        """
        self._check_shape(image_bgr, DetectionChannel.VISIBLE)
        if image_bgr.dtype != np.uint8:
            raise ValueError(
                f"camera {self.camera.id}: visible frame must be uint8, got {image_bgr.dtype}"
            )
        cfg = self.config
        frame = image_bgr.astype(np.float32)
        state = self._visible
        if state.image is None:
            state.image = frame
            state.frames = 1
            return []
        gain = _scene_gain(frame, state.image)
        self.visible_gain = gain
        self.visible_dark = gain < cfg.min_visible_gain
        if self.visible_dark:
            return []  # too dark to see anything; the thermal channel still watches
        difference = frame / np.float32(gain) - state.image
        _, noise = robust_offset_and_noise(difference)
        noise = max(noise, cfg.min_noise_dn / gain)
        self.visible_noise_dn = noise * gain
        distance = np.max(np.abs(difference), axis=2)
        threshold = max(cfg.noise_sigmas * noise, cfg.visible_min_contrast_dn)
        foreground = _clean(distance > threshold)
        learning = state.frames < cfg.warmup_frames
        update_background(
            state.image,
            frame / np.float32(gain),
            _dilate(foreground),
            learning_rate=max(cfg.learning_rate, 1.0 / (state.frames + 1))
            if learning
            else cfg.learning_rate,
            foreground_learning_rate=cfg.foreground_learning_rate
            if not learning
            else cfg.learning_rate,
        )
        state.frames += 1
        if learning:
            return []
        stats = blob_statistics(
            foreground,
            distance,
            self._ground[2],
            self._ground[0],
            self._ground[1],
            min_area_px=cfg.min_area_px,
        )
        return self._report(DetectionChannel.VISIBLE, DetectionKind.INTRUSION, stats, noise, time_s)

    # --- shared reporting --------------------------------------------------------------------

    def _report(
        self,
        channel: DetectionChannel,
        kind: DetectionKind,
        stats: BlobStats,
        noise: float,
        time_s: float,
    ) -> list[CameraDetection]:
        cfg = self.config
        if kind is DetectionKind.INTRUSION:
            # Objects standing in the right-of-way: enough of their bottom edge in the mask.
            contacts = ground_contacts(stats.labels, stats.label_ids, self.right_of_way)
            inside = contacts.inside_px >= cfg.min_contact_fraction * contacts.contact_px
            inside &= contacts.inside_px > 0
            footprint = np.column_stack([contacts.column_px, contacts.row_px])
        else:
            inside = np.ones(len(stats.area_px), dtype=np.bool_)
            footprint = _footprints(stats.bbox_px)
        if kind is DetectionKind.COLD_PLUME:
            ground = stats.ground_centroid_m
        else:
            hits = pixels_to_ground_m(self.pose, footprint[:, 0], footprint[:, 1], 0.0)
            ground = np.column_stack([hits.east_m, hits.north_m])
        locations = pipeline_locations(self.site, ground, cfg.right_of_way_half_width_m)
        tracker = self._trackers[(channel, kind)]
        ids, frames, first = tracker.update(stats.bbox_px[inside], time_s)
        keep = np.flatnonzero(inside)
        contrast_to_noise = np.abs(stats.mean_difference[keep]) / noise
        confidence = detection_confidence(
            contrast_to_noise,
            stats.area_px[keep],
            frames,
            contrast_to_noise_scale=cfg.contrast_to_noise_scale,
            area_scale_px=cfg.area_scale_px,
            full_confidence_frames=cfg.full_confidence_frames,
        )
        detections = []
        for position, index in enumerate(keep):
            if frames[position] < cfg.confirm_frames:
                continue
            east, north = ground[index]
            blob = Blob(
                area_px=int(stats.area_px[index]),
                area_m2=float(stats.area_m2[index]),
                bbox_px=(
                    int(stats.bbox_px[index, 0]),
                    int(stats.bbox_px[index, 1]),
                    int(stats.bbox_px[index, 2]),
                    int(stats.bbox_px[index, 3]),
                ),
                centroid_px=(
                    float(stats.centroid_px[index, 0]),
                    float(stats.centroid_px[index, 1]),
                ),
                ground_position_m=(float(east), float(north)) if np.isfinite(east) else None,
                mean_difference=float(stats.mean_difference[index]),
                peak_difference=float(stats.peak_difference[index]),
            )
            detections.append(
                CameraDetection(
                    camera_id=self.camera.id,
                    channel=channel,
                    kind=kind,
                    time_s=time_s,
                    confidence=float(confidence[position]),
                    track_id=int(ids[position]),
                    persistence_frames=int(frames[position]),
                    persistence_s=float(time_s - first[position]),
                    blob=blob,
                    location=locations[index],
                    temperature_difference_k=(
                        blob.mean_difference if channel is DetectionChannel.THERMAL else None
                    ),
                )
            )
        return detections

    # --- laser -------------------------------------------------------------------------------

    def process_laser(
        self, path_integral_mole_fraction_m: float, status: DeviceStatus, time_s: float
    ) -> list[CameraDetection]:
        """Gas on the beam, or a blocked beam, from one laser reading.

        Parameters
        ----------
        path_integral_mole_fraction_m
            Reported column, ambient methane included [mol mol-1 m].
        status
            Self-reported status; ``fault`` is a blocked beam (the contract's laser reading has
            no fault code, and a blocked beam is the one fault the laser channel reports);
            ``warmup`` and ``calibration`` readings are ignored.
        time_s
            Reading time, seconds since the Unix epoch [s].
        """
        cfg = self.config
        if not math.isfinite(path_integral_mole_fraction_m):
            raise ValueError(
                f"camera {self.camera.id}: laser reading at t={time_s} is not finite: "
                f"{path_integral_mole_fraction_m!r}"
            )
        if status is DeviceStatus.FAULT:
            self._laser_run = 0
            if self._fault_run == 0:
                self._fault_first_s = time_s
                self._laser_episode += 1
            self._fault_run += 1
            return [
                CameraDetection(
                    camera_id=self.camera.id,
                    channel=DetectionChannel.LASER,
                    kind=DetectionKind.BEAM_BLOCKED,
                    time_s=time_s,
                    confidence=1.0,  # the device says so itself
                    track_id=self._laser_episode,
                    persistence_frames=self._fault_run,
                    persistence_s=time_s - self._fault_first_s,
                )
            ]
        self._fault_run = 0
        if status is not DeviceStatus.OK:
            self._laser_run = 0
            return []
        excess = path_integral_mole_fraction_m - (
            self.laser_threshold_mole_fraction_m - cfg.laser_margin_mole_fraction_m
        )
        if path_integral_mole_fraction_m <= self.laser_threshold_mole_fraction_m:
            self._laser_run = 0
            return []
        if self._laser_run == 0:
            self._laser_first_s = time_s
            self._laser_episode += 1
        self._laser_run += 1
        if self._laser_run < cfg.laser_confirm_readings:
            return []
        confidence = detection_confidence(
            excess / cfg.laser_margin_mole_fraction_m - 1.0,
            np.inf,
            self._laser_run,
            contrast_to_noise_scale=1.0,
            area_scale_px=cfg.area_scale_px,
            full_confidence_frames=cfg.full_confidence_frames,
        )
        return [
            CameraDetection(
                camera_id=self.camera.id,
                channel=DetectionChannel.LASER,
                kind=DetectionKind.LASER_GAS,
                time_s=time_s,
                confidence=float(confidence),
                track_id=self._laser_episode,
                persistence_frames=self._laser_run,
                persistence_s=time_s - self._laser_first_s,
                path_integral_excess_mole_fraction_m=excess,
            )
        ]

    # --- records -----------------------------------------------------------------------------

    def process(self, record: CameraFrame | LaserReading) -> list[CameraDetection]:
        """Detections from one validated record of this camera (frames are decoded here)."""
        if record.device_id != self.camera.id:
            raise ValueError(
                f"record of device {record.device_id!r} given to the analytics of camera "
                f"{self.camera.id!r}"
            )
        if isinstance(record, LaserReading):
            return self.process_laser(
                record.path_integral_mole_fraction_m, record.status, record.time_s
            )
        pixels = decode_frame(record)
        if record.channel is CameraChannel.VISIBLE:
            return self.process_visible(np.asarray(pixels, dtype=np.uint8), record.time_s)
        return self.process_thermal(np.asarray(pixels, dtype=np.float64), record.time_s)


def _scene_gain(frame: Float32Array, background: Float32Array) -> float:
    """Robust brightness ratio frame / background (median of per-pixel ratios) [1]."""
    stride = NOISE_SUBSAMPLE_STRIDE_PX
    sample_frame = frame[::stride, ::stride].sum(axis=2)
    sample_background = background[::stride, ::stride].sum(axis=2)
    lit = sample_background > 0.0
    if not np.any(lit):
        return 1.0
    return float(np.median(sample_frame[lit] / sample_background[lit]))


def _footprints(bbox_px: IntArray) -> FloatArray:
    """Bottom-centre pixel of each box (where a standing object meets the ground) [px]."""
    boxes = np.asarray(bbox_px, dtype=np.float64).reshape(-1, 4)
    return np.column_stack([boxes[:, 0] + 0.5 * (boxes[:, 2] - 1), boxes[:, 1] + boxes[:, 3] - 1])


class SiteCameraAnalytics:
    """The analytics of every camera of a site; routes records to their camera.

    Parameters
    ----------
    site
        The site.
    config
        Shared by all cameras.
    """

    def __init__(self, site: Site, config: CameraAnalyticsConfig | None = None) -> None:
        self.site = site
        self.cameras = {camera.id: CameraAnalytics(camera, site, config) for camera in site.cameras}

    def process(self, record: CameraFrame | LaserReading) -> list[CameraDetection]:
        """Detections from one record; ``ValueError`` naming it if it is not one of our cameras."""
        if record.site_id != self.site.id:
            raise ValueError(f"record of site {record.site_id!r} given to site {self.site.id!r}")
        analytics = self.cameras.get(record.device_id)
        if analytics is None:
            raise ValueError(f"site {self.site.id!r} has no camera {record.device_id!r}")
        return analytics.process(record)

    def process_all(self, records: Iterable[object]) -> list[CameraDetection]:
        """Detections from the camera records among ``records`` (other records are skipped)."""
        detections: list[CameraDetection] = []
        for record in records:
            if isinstance(record, CameraFrame | LaserReading):
                detections += self.process(record)
        return detections


# ---------------------------------------------------------------------------------------------
# Coverage: which chainages and gas zones a camera watches
# ---------------------------------------------------------------------------------------------

DEFAULT_ZONE_RADIUS_M: Final = 50.0
"""A camera covers a gas zone when it sees ground within this distance of one of the zone's
detectors [m]: a leak that trips a detector is most likely within tens of metres of it. A choice."""

COVERAGE_SAMPLE_SPACING_M: Final = 1.0
"""Spacing of the points sampled along pipelines for coverage [m]; sets the interval resolution."""


@dataclass(frozen=True)
class CameraCoverage:
    """What a camera watches on the ground.

    Attributes
    ----------
    camera_id
        The camera.
    range_m
        Largest ground distance from the pole counted as covered [m].
    pipeline_chainages_m
        Per pipeline id, chainage intervals (start, end) in the image within range [m].
    laser_chainages_m
        Per pipeline id, chainage intervals within the right-of-way half-width of the beam's
        ground track [m].
    zones
        Gas zones covered by the thermal and visible channels: a zone with a detector in view,
        or within the zone radius of a seen pipeline point, or whose pipeline segment (the
        segment its leak-point detectors sit in) is in view.
    laser_zones
        Gas zones with a detector within the zone radius of the beam's ground track, or whose
        pipeline segment the beam crosses (within the right-of-way half-width).
    """

    camera_id: str
    range_m: float
    pipeline_chainages_m: Mapping[str, tuple[tuple[float, float], ...]]
    laser_chainages_m: Mapping[str, tuple[tuple[float, float], ...]]
    zones: tuple[str, ...]
    laser_zones: tuple[str, ...]

    def covers_chainage(self, pipeline_id: str, chainage_m: float, *, laser: bool = False) -> bool:
        """Whether a chainage of a pipeline is in view (or, with ``laser``, on the beam) [m]."""
        table = self.laser_chainages_m if laser else self.pipeline_chainages_m
        return any(start <= chainage_m <= end for start, end in table.get(pipeline_id, ()))


def _intervals(chainage_m: FloatArray, inside: BoolArray) -> tuple[tuple[float, float], ...]:
    """Runs of ``inside`` along sorted chainages, as (start, end) pairs [m]."""
    if not np.any(inside):
        return ()
    padded = np.concatenate([[False], inside, [False]]).astype(np.int8)
    edges = np.diff(padded)
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1) - 1
    return tuple(
        (float(chainage_m[s]), float(chainage_m[e])) for s, e in zip(starts, ends, strict=True)
    )


def segment_distance_m(points_m: FloatArray, start_m: FloatArray, end_m: FloatArray) -> FloatArray:
    """Horizontal distance of each point (n, 2) to each segment (m, 2)-(m, 2): (n, m) [m].

    A segment whose ends coincide is a point.
    """
    step = end_m - start_m  # (m, 2)
    length_sq = np.sum(step * step, axis=1)  # (m,)
    offset = points_m[:, np.newaxis, :] - start_m[np.newaxis, :, :]  # (n, m, 2)
    along = np.sum(offset * step[np.newaxis, :, :], axis=2)
    fraction = np.clip(
        np.divide(along, length_sq, out=np.zeros_like(along), where=length_sq > 0), 0.0, 1.0
    )
    away = offset - fraction[:, :, np.newaxis] * step[np.newaxis, :, :]
    return np.asarray(np.hypot(away[..., 0], away[..., 1]), dtype=np.float64)


def camera_coverage(
    site: Site,
    camera: Camera,
    *,
    range_m: float | None = None,
    zone_radius_m: float = DEFAULT_ZONE_RADIUS_M,
    right_of_way_half_width_m: float = DEFAULT_RIGHT_OF_WAY_HALF_WIDTH_M,
    sample_spacing_m: float = COVERAGE_SAMPLE_SPACING_M,
) -> CameraCoverage:
    """Pipeline chainages and gas zones a camera watches (occlusion by buildings ignored).

    Parameters
    ----------
    site
        The site.
    camera
        One of its cameras.
    range_m
        Ground distance from the pole beyond which nothing counts; ``None``: the camera's laser
        range [m].
    zone_radius_m
        Distance from a zone's detector within which seen ground covers the zone [m].
    right_of_way_half_width_m
        Distance from the beam's ground track within which a chainage is on the beam [m].
    sample_spacing_m
        Spacing of the pipeline samples [m].
    """
    reach = camera.laser_range_m if range_m is None else range_m
    if not (math.isfinite(reach) and reach > 0.0):
        raise ValueError(
            f"camera {camera.id}: coverage range must be finite and > 0, got {reach!r}"
        )
    if not sample_spacing_m > 0.0:
        raise ValueError(f"sample_spacing_m must be > 0, got {sample_spacing_m!r}")
    pose = CameraPose.from_camera(camera)
    pole = np.asarray(camera.position_m, dtype=np.float64)
    start, end = laser_beam_m(pose, camera.laser_range_m)
    track_start, track_end = start[:2], end[:2]
    if float(np.hypot(*(track_end - track_start))) > reach:
        track_end = track_start + (track_end - track_start) * reach / float(
            np.hypot(*(track_end - track_start))
        )
    in_view: dict[str, tuple[tuple[float, float], ...]] = {}
    on_beam: dict[str, tuple[tuple[float, float], ...]] = {}
    seen_points: list[FloatArray] = []
    zones_in_view: set[str] = set()
    zones_on_beam: set[str] = set()
    segment_zones = _segment_zones(site)
    for pipeline in site.pipelines:
        count = max(2, math.ceil(pipeline.length_m / sample_spacing_m) + 1)
        chainage = np.linspace(0.0, pipeline.length_m, count)
        points = pipeline.point_at_chainage(chainage)
        projection = project_points(pose, np.column_stack([points, np.zeros(count)]))
        near = np.hypot(*(points - pole).T) <= reach
        visible = projection.visible & near
        beam = (
            segment_distance_m(points, track_start[np.newaxis], track_end[np.newaxis])[:, 0]
            <= right_of_way_half_width_m
        )
        if np.any(visible):
            in_view[pipeline.id] = _intervals(chainage, visible)
            seen_points.append(points[visible])
        if np.any(beam):
            on_beam[pipeline.id] = _intervals(chainage, beam)
        # Segment of every sample: the zone of a segment's leak-point detectors is the segment.
        bounds = np.array([segment.end_chainage_m for segment in pipeline.segments[:-1]])
        segment_of_sample = np.searchsorted(bounds, chainage, side="right")
        for index, segment in enumerate(pipeline.segments):
            zones_here = segment_zones.get(segment.id, ())
            in_segment = segment_of_sample == index
            if np.any(visible & in_segment):
                zones_in_view.update(zones_here)
            if np.any(beam & in_segment):
                zones_on_beam.update(zones_here)
    seen = np.concatenate(seen_points) if seen_points else np.zeros((0, 2))
    zones: list[str] = []
    laser_zones: list[str] = []
    for zone, detectors in site.zones.items():
        heads = np.array([d.position_m[:2] for d in detectors], dtype=np.float64).reshape(-1, 2)
        ground = np.column_stack([heads, np.zeros(len(heads))])
        head_visible = project_points(pose, ground).visible & (np.hypot(*(heads - pole).T) <= reach)
        near_seen = len(seen) > 0 and bool(
            np.any(
                np.hypot(*(heads[:, np.newaxis, :] - seen[np.newaxis]).transpose(2, 0, 1))
                <= zone_radius_m
            )
        )
        if np.any(head_visible) or near_seen or zone in zones_in_view:
            zones.append(zone)
        if (
            np.any(
                segment_distance_m(heads, track_start[np.newaxis], track_end[np.newaxis])[:, 0]
                <= zone_radius_m
            )
            or zone in zones_on_beam
        ):
            laser_zones.append(zone)
    return CameraCoverage(
        camera_id=camera.id,
        range_m=reach,
        pipeline_chainages_m=in_view,
        laser_chainages_m=on_beam,
        zones=tuple(zones),
        laser_zones=tuple(laser_zones),
    )


def _segment_zones(site: Site) -> dict[str, tuple[str, ...]]:
    """Voting zones of the leak-point detectors on each pipeline segment, by segment id.

    A leak-point detector votes, by default, in the zone named after the segment it sits on
    (``docs/site-model.md``); the zone stands for the whole segment between its block valves, so a
    camera that watches any part of the segment watches the zone.
    """
    zones: dict[str, dict[str, None]] = {}
    for detector in site.gas_detectors:
        if (
            detector.placement is not DetectorPlacement.PIPELINE
            or detector.pipeline_id is None
            or detector.chainage_m is None
        ):
            continue
        segment = site.pipeline(detector.pipeline_id).segment_at_chainage(detector.chainage_m)
        zones.setdefault(segment.id, {})[detector.zone] = None
    return {segment_id: tuple(found) for segment_id, found in zones.items()}


def site_camera_coverage(site: Site, **options: float) -> dict[str, CameraCoverage]:
    """:func:`camera_coverage` of every camera of the site, keyed by camera id."""
    return {camera.id: camera_coverage(site, camera, **options) for camera in site.cameras}


def cameras_covering_zone(
    coverages: Mapping[str, CameraCoverage], zone: str, *, laser: bool = False
) -> tuple[str, ...]:
    """Ids of the cameras whose view (or, with ``laser``, beam) covers a gas zone."""
    return tuple(
        camera_id
        for camera_id, coverage in coverages.items()
        if zone in (coverage.laser_zones if laser else coverage.zones)
    )
