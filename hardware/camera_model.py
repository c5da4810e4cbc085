"""Tri-spectrum camera model: pinhole projection, synthetic frames and the laser methane reading.

A tri-spectrum camera on a pole has a visible channel, a radiometric thermal channel and a laser
methane detector whose beam runs along the optical axis. This module renders deterministic
synthetic frames of the site as seen through the camera's pose (site model: position, mounting
height, heading clockwise from north, downward tilt, fields of view, resolution):

* :func:`project_points`: world ENU -> pixel, vectorized, with a visibility flag (the pinhole
  geometry lives in :mod:`pipesentinel.camera_geometry` and is re-exported here);
* :class:`CameraRenderer`: a static background computed once per camera (sky, ground, the
  pipeline right-of-way, roads, buildings), then per frame intrusions (excavator, vehicle,
  person) as boxes of plausible size, a fire as a hot spot, a leak as a cold plume, noise;
  visible frames are uint8 BGR (:func:`encode_jpeg`), thermal frames uint16 centi-kelvin
  (:func:`encode_thermal_png`);
* :func:`laser_reading`: what the laser detector reports for a path integral computed by the
  dispersion physics, with ambient methane, noise, offset, quantisation and a blocked beam.

The frames are synthetic renderings for exercising the pipeline (transport, storage, display,
simple detectors), not radiometric physics: the thermal contrasts below are illustrative.

Camera frame: ``right = (cos h, -sin h, 0)``, ``forward = (sin h cos t, cos h cos t, -sin t)``,
``up = right x forward`` for heading ``h`` and tilt ``t``; pixel columns grow to the right, rows
grow downward, the principal point is the image centre ``((W - 1) / 2, (H - 1) / 2)`` and the
focal lengths follow from the fields of view, ``f_x = (W / 2) / tan(hfov / 2)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import cv2
import numpy as np
from numpy.typing import NDArray

# The pinhole geometry lives in pipesentinel.camera_geometry (shared with the detection layer);
# it is re-exported here, explicitly ("X as X", for mypy --strict), for the simulator's users.
from pipesentinel.camera_geometry import NEAR_PLANE_M as NEAR_PLANE_M  # noqa: PLC0414 - re-export
from pipesentinel.camera_geometry import CameraPose as CameraPose  # noqa: PLC0414 - re-export
from pipesentinel.camera_geometry import Projection as Projection  # noqa: PLC0414 - re-export
from pipesentinel.camera_geometry import distance_to_polylines_m
from pipesentinel.camera_geometry import laser_beam_m as laser_beam_m  # noqa: PLC0414 - re-export
from pipesentinel.camera_geometry import (
    project_points as project_points,  # noqa: PLC0414 - re-export
)
from pipesentinel.ingest.records import DeviceStatus
from pipesentinel.site import Site
from pipesentinel.units import CENTIKELVIN, PPM_M

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]
ImageU8 = NDArray[np.uint8]
ImageU16 = NDArray[np.uint16]

# --- Scene geometry (illustrative choices of a plausible size, not survey data) -------------
RIGHT_OF_WAY_HALF_WIDTH_M = 7.5  # cleared strip over a buried line, 15 m wide
LANE_WIDTH_M = 3.5  # urban traffic lane, within the 3.0-3.6 m of AASHTO's "Green Book"
HAZE_VISIBILITY_M = 3000.0  # distance over which the scene fades to the horizon colour

# Intrusion boxes (length along heading, width, height) [m]. Excavator: transport dimensions of a
# 20 t class crawler excavator (manufacturers' spec sheets: ~9.5 x 3.0 x 3.0 m); vehicle: a
# pick-up truck; person: a standing adult.
EXCAVATOR_BOX_M = (9.5, 3.0, 3.0)
VEHICLE_BOX_M = (5.0, 1.9, 1.8)
PERSON_BOX_M = (0.5, 0.4, 1.75)

# --- Visible channel ---------------------------------------------------------------------------
DEFAULT_JPEG_QUALITY = 85
VISIBLE_NOISE_STD_DN = 2.0  # sensor noise in digital numbers (8-bit), illustrative
_SKY_ZENITH_BGR = (200.0, 140.0, 90.0)
_SKY_HORIZON_BGR = (235.0, 215.0, 195.0)
_GRASS_BGR = (70.0, 130.0, 85.0)
_RIGHT_OF_WAY_BGR = (120.0, 160.0, 185.0)  # bare soil / gravel
_ROAD_BGR = (105.0, 105.0, 110.0)
_WALL_BGR = (175.0, 185.0, 195.0)
_ROOF_BGR = (110.0, 115.0, 150.0)
_FIRE_BGR = (40.0, 140.0, 255.0)
_TEXTURE_AMPLITUDE_DN = 12.0
_TIMESTAMP_SCALE = 0.5
_TIMESTAMP_BGR = (255, 255, 255)
_TIMESTAMP_ORIGIN_PX = (8, 20)
_EDGE_SHADE = 0.7  # outline of an object's top face, relative to its colour
# Deterministic ground texture: (amplitude, east and north wavenumbers [rad m-1]) of a few
# products and sums of sines, an arbitrary pattern that gives the ground some structure.
_TEXTURE_PRODUCT = (0.45, 0.9, 1.1)
_TEXTURE_WAVES = ((0.35, 0.21, 0.17), (0.2, 0.05, -0.07))
# Excavator boom and stick, relative to the body box (length L, height H): elbow at 0.6 L ahead
# and 1.5 m above the cab roof, bucket on the ground 0.9 L ahead; 0.6 m thick.
_BOOM_ELBOW_FRACTION = 0.6
_BOOM_ELBOW_RISE_M = 1.5
_BOOM_REACH_FRACTION = 0.9
_BOOM_THICKNESS_M = 0.6

# --- Thermal channel ---------------------------------------------------------------------------
# Uncooled microbolometer cores are sold with a noise-equivalent temperature difference of
# <= 50 mK (manufacturers' datasheets); we use 50 mK as the pixel noise.
THERMAL_NETD_K = 0.05
SKY_TEMPERATURE_DEPRESSION_K = 20.0  # clear sky looks much colder than the air (illustrative)
GROUND_NEAR_WARMING_K = 1.5  # sunlit ground close to the pole, fading with distance ...
GROUND_WARMING_DECAY_PER_POLE_HEIGHT = 10.0  # ... over ten pole heights
SKY_HORIZON_FRACTION = 0.5  # the horizon sky shows half the zenith's temperature depression
BUILDING_WARMING_K = 1.0
# A saturated thermal pixel: the largest uint16, 655.35 K.
THERMAL_MAX_CENTIKELVIN = np.iinfo(np.uint16).max
# Leak: expanding (Joule-Thomson) and evaporating gas cools the cloud a few K below ambient; the
# visible extent grows with the release rate (length ~ sqrt(rate), illustrative).
DEFAULT_LEAK_COOLING_K = 4.0
LEAK_REFERENCE_RATE_KG_PER_S = 0.1
LEAK_REFERENCE_LENGTH_M = 8.0
LEAK_LENGTH_LIMITS_M = (1.0, 120.0)
LEAK_SPREAD = 0.3  # crosswind half-width growth per metre downwind
LEAK_MIN_HALF_WIDTH_M = 0.5  # crosswind half-width at the source, at least ...
LEAK_HALF_WIDTH_PER_LENGTH = 0.1  # ... and a tenth of the plume length
DEFAULT_PLUME_HEIGHT_M = 1.0
DEFAULT_FIRE_TEMPERATURE_EXCESS_K = 350.0  # flame/ember surface seen by the camera
DEFAULT_FIRE_RADIUS_M = 2.0
FIRE_HEIGHT_PER_RADIUS = 2.0

# --- Laser methane detector -------------------------------------------------------------------
# Open-path laser detectors read the whole methane column along the beam, ambient methane
# included ("there is always a small amount of methane in the air ... also measured", Heath
# Consultants RMLD user manual, section 4). Ambient methane: ~1.9 ppm, the NOAA GML global mean
# of 2021-2023.
AMBIENT_METHANE_MOLE_FRACTION = 1.9e-6
DEFAULT_LASER_NOISE_STD_MOLE_FRACTION_M = PPM_M.to_si(5.0)  # illustrative, a few ppm m
DEFAULT_LASER_RESOLUTION_MOLE_FRACTION_M = PPM_M.to_si(1.0)
DEFAULT_LASER_FULL_SCALE_MOLE_FRACTION_M = PPM_M.to_si(99_999.0)  # 5-digit ppm m display


class IntrusionKind(StrEnum):
    """What enters the right-of-way."""

    EXCAVATOR = "excavator"
    PERSON = "person"
    VEHICLE = "vehicle"


INTRUSION_BOX_M: dict[IntrusionKind, tuple[float, float, float]] = {
    IntrusionKind.EXCAVATOR: EXCAVATOR_BOX_M,
    IntrusionKind.VEHICLE: VEHICLE_BOX_M,
    IntrusionKind.PERSON: PERSON_BOX_M,
}
# Apparent warming of intrusions in the thermal channel (engine, exhaust, body heat) [K].
INTRUSION_WARMING_K: dict[IntrusionKind, float] = {
    IntrusionKind.EXCAVATOR: 25.0,
    IntrusionKind.VEHICLE: 15.0,
    IntrusionKind.PERSON: 12.0,
}
_INTRUSION_BGR: dict[IntrusionKind, tuple[float, float, float]] = {
    IntrusionKind.EXCAVATOR: (0.0, 200.0, 250.0),  # construction yellow
    IntrusionKind.VEHICLE: (220.0, 220.0, 225.0),
    IntrusionKind.PERSON: (40.0, 90.0, 230.0),  # high-visibility orange
}


class LaserFaultCode(StrEnum):
    """Fault code of the laser channel (MQTT ``fault_code``)."""

    BEAM_BLOCKED = "beam_blocked"


# ---------------------------------------------------------------------------------------------
# Scene content
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SceneObject:
    """An intrusion on the ground: a box of the kind's size at ``position_m`` (east, north).

    ``heading_rad`` is the direction of the box's length, clockwise from north [rad].
    """

    kind: IntrusionKind
    position_m: FloatArray
    heading_rad: float = 0.0


@dataclass(frozen=True)
class ColdPlume:
    """A leak seen by the thermal channel.

    Attributes
    ----------
    source_m
        East, north of the release point, shape (2,) [m].
    emission_rate_kg_per_s
        Total release rate; sets the visible length [kg s-1].
    wind_direction_from_rad
        Direction the wind blows from; the plume extends downwind [rad].
    cooling_k
        Temperature deficit at the source [K].
    height_m
        Height of the layer the plume is drawn on [m].
    """

    source_m: FloatArray
    emission_rate_kg_per_s: float
    wind_direction_from_rad: float
    cooling_k: float = DEFAULT_LEAK_COOLING_K
    height_m: float = DEFAULT_PLUME_HEIGHT_M


@dataclass(frozen=True)
class HotSpot:
    """A fire: a flame of ``radius_m`` and height ``2 radius_m`` on the ground.

    Attributes
    ----------
    position_m
        East, north, shape (2,) [m].
    radius_m
        Radius of the burning area [m].
    temperature_excess_k
        Apparent temperature above ambient [K].
    """

    position_m: FloatArray
    radius_m: float = DEFAULT_FIRE_RADIUS_M
    temperature_excess_k: float = DEFAULT_FIRE_TEMPERATURE_EXCESS_K


def object_corners_m(scene_object: SceneObject) -> FloatArray:
    """The 8 corners of an intrusion's box in ENU, shape (8, 3) [m]."""
    length, width, height = INTRUSION_BOX_M[scene_object.kind]
    along = np.array([math.sin(scene_object.heading_rad), math.cos(scene_object.heading_rad)])
    across = np.array([along[1], -along[0]])
    centre = np.asarray(scene_object.position_m, dtype=np.float64)[:2]
    corners = []
    for z in (0.0, height):
        for sign_along, sign_across in ((1, 1), (1, -1), (-1, -1), (-1, 1)):
            ground = centre + 0.5 * (sign_along * length * along + sign_across * width * across)
            corners.append([ground[0], ground[1], z])
    return np.array(corners, dtype=np.float64)


def objects_in_view(pose: CameraPose, objects: Sequence[SceneObject]) -> BoolArray:
    """Whether the centre of each object's box is visible to ``pose`` (occlusion ignored)."""
    if not objects:
        return np.zeros(0, dtype=np.bool_)
    centres = np.array(
        [
            [obj.position_m[0], obj.position_m[1], 0.5 * INTRUSION_BOX_M[obj.kind][2]]
            for obj in objects
        ]
    )
    return project_points(pose, centres).visible


def plume_length_m(emission_rate_kg_per_s: float) -> float:
    """Visible length of a cold plume: ``L_ref sqrt(rate / rate_ref)``, clipped [m]."""
    length = LEAK_REFERENCE_LENGTH_M * math.sqrt(
        max(emission_rate_kg_per_s, 0.0) / LEAK_REFERENCE_RATE_KG_PER_S
    )
    return min(max(length, LEAK_LENGTH_LIMITS_M[0]), LEAK_LENGTH_LIMITS_M[1])


def plume_cooling_k(plume: ColdPlume, east_m: FloatArray, north_m: FloatArray) -> FloatArray:
    """Temperature deficit of a cold plume at ground-plane points (>= 0) [K].

    ``cooling exp(-|s| / L) exp(-c**2 / (2 w(s)**2))`` with ``s`` the downwind and ``c`` the
    crosswind distance from the source, ``L`` from :func:`plume_length_m` and
    ``w(s) = w0 + LEAK_SPREAD max(s, 0)``; upwind (``s < 0``) it also falls off as a Gaussian of
    width ``w0``, so it is never colder upwind than downwind.
    """
    length = plume_length_m(plume.emission_rate_kg_per_s)
    initial_half_width = max(LEAK_MIN_HALF_WIDTH_M, LEAK_HALF_WIDTH_PER_LENGTH * length)
    downwind = np.array(
        [-math.sin(plume.wind_direction_from_rad), -math.cos(plume.wind_direction_from_rad)]
    )
    d_east = east_m - plume.source_m[0]
    d_north = north_m - plume.source_m[1]
    along = d_east * downwind[0] + d_north * downwind[1]
    across = d_east * downwind[1] - d_north * downwind[0]
    forward = np.maximum(along, 0.0)
    backward = np.minimum(along, 0.0)
    half_width = initial_half_width + LEAK_SPREAD * forward
    return np.asarray(
        plume.cooling_k
        * np.exp(-np.abs(along) / length)
        * np.exp(-0.5 * (across / half_width) ** 2)
        * np.exp(-0.5 * (backward / initial_half_width) ** 2),
        dtype=np.float64,
    )


def _texture(east_m: FloatArray, north_m: FloatArray) -> FloatArray:
    """Deterministic ground texture in [-1, 1] from the world position [1]."""
    amplitude, east_wavenumber, north_wavenumber = _TEXTURE_PRODUCT
    texture = amplitude * np.sin(east_wavenumber * east_m) * np.sin(north_wavenumber * north_m)
    for amplitude, east_wavenumber, north_wavenumber in _TEXTURE_WAVES:
        texture = texture + amplitude * np.sin(
            east_wavenumber * east_m + north_wavenumber * north_m
        )
    return np.asarray(texture, dtype=np.float64)


def _hull(points_px: FloatArray) -> NDArray[np.int32]:
    return np.asarray(cv2.convexHull(np.round(points_px).astype(np.int32)), dtype=np.int32)


# ---------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------


class CameraRenderer:
    """Synthetic visible and thermal frames of one camera.

    The static background (sky, ground, right-of-way, roads, buildings) and the per-pixel
    distance to it are computed once at construction; frames add the dynamic content.

    Parameters
    ----------
    pose
        The camera.
    site
        The site whose pipelines, roads and buildings appear; ``None`` for a bare field.
    """

    def __init__(self, pose: CameraPose, site: Site | None = None) -> None:
        self.pose = pose
        rays = pose.pixel_rays
        height_m = float(pose.position_m[2])
        down = rays[..., 2] < -1e-9
        distance = np.where(down, height_m / np.where(down, -rays[..., 2], 1.0), np.inf)
        ground_east = pose.position_m[0] + distance * rays[..., 0]
        ground_north = pose.position_m[1] + distance * rays[..., 1]
        ground_east = np.where(down, ground_east, 0.0)
        ground_north = np.where(down, ground_north, 0.0)

        # Sky: gradient from the horizon to the zenith.
        elevation = np.clip(rays[..., 2], 0.0, 1.0)[..., np.newaxis]
        sky = (1.0 - elevation) * np.array(_SKY_HORIZON_BGR) + elevation * np.array(_SKY_ZENITH_BGR)

        # Ground: grass, right-of-way strips over pipelines, roads; textured.
        ground = np.broadcast_to(np.array(_GRASS_BGR), (*down.shape, 3)).copy()
        if site is not None:
            pipelines = [pipeline.vertices_m for pipeline in site.pipelines]
            to_pipeline = distance_to_polylines_m(ground_east, ground_north, pipelines)
            ground[to_pipeline <= RIGHT_OF_WAY_HALF_WIDTH_M] = _RIGHT_OF_WAY_BGR
            for road in site.roads:
                to_road = distance_to_polylines_m(ground_east, ground_north, [road.vertices_m])
                ground[to_road <= 0.5 * LANE_WIDTH_M * max(road.lanes, 1)] = _ROAD_BGR
        ground += _TEXTURE_AMPLITUDE_DN * _texture(ground_east, ground_north)[..., np.newaxis]
        haze = (1.0 - np.exp(-distance / HAZE_VISIBILITY_M))[..., np.newaxis]
        ground = (1.0 - haze) * ground + haze * np.array(_SKY_HORIZON_BGR)
        visible = np.where(down[..., np.newaxis], ground, sky)

        # Thermal offsets from ambient: cold sky, ground warmer close to the pole.
        thermal = np.where(
            down,
            GROUND_NEAR_WARMING_K
            * np.exp(
                -np.where(down, distance, 0.0) / (GROUND_WARMING_DECAY_PER_POLE_HEIGHT * height_m)
            ),
            -SKY_TEMPERATURE_DEPRESSION_K
            * (
                SKY_HORIZON_FRACTION
                + (1.0 - SKY_HORIZON_FRACTION) * np.sqrt(np.clip(rays[..., 2], 0.0, 1.0))
            ),
        )
        depth = distance.copy()
        if site is not None:
            self._draw_buildings(site, visible, thermal, depth)
        self._visible_background = visible.astype(np.float32)
        self._thermal_offset_k = thermal.astype(np.float64)
        self._depth_m = depth  # distance along each pixel ray to the static scene

    def _draw_buildings(
        self, site: Site, visible: FloatArray, thermal: FloatArray, depth: FloatArray
    ) -> None:
        """Draw building boxes far to near (painter's algorithm) into the backgrounds."""
        pose = self.pose
        drawn = []
        for building in site.buildings:
            footprint = building.footprint_m
            bottom = np.column_stack([footprint, np.zeros(len(footprint))])
            top = np.column_stack([footprint, np.full(len(footprint), building.height_m)])
            projection = project_points(pose, np.concatenate([bottom, top]))
            if np.any(projection.depth_m <= NEAR_PLANE_M) or not np.any(projection.visible):
                continue
            centre = np.append(footprint.mean(axis=0), 0.5 * building.height_m)
            drawn.append((float(np.linalg.norm(centre - pose.position_m)), projection, len(top)))
        for distance, projection, n_top in sorted(drawn, key=lambda item: -item[0]):
            points = np.column_stack([projection.column_px, projection.row_px])
            mask = np.zeros(depth.shape, dtype=np.uint8)
            cv2.fillConvexPoly(mask, _hull(points), 1)
            roof = np.zeros(depth.shape, dtype=np.uint8)
            cv2.fillPoly(roof, [np.round(points[n_top:]).astype(np.int32)], 1)
            inside = mask.astype(bool)
            visible[inside] = _WALL_BGR
            visible[roof.astype(bool) & inside] = _ROOF_BGR
            thermal[inside] = BUILDING_WARMING_K
            depth[inside] = distance

    def _object_polygons(
        self, objects: Sequence[SceneObject]
    ) -> list[tuple[SceneObject, NDArray[np.int32], FloatArray]]:
        """Visible, unoccluded objects far to near: (object, hull, projected corners)."""
        pose = self.pose
        polygons = []
        for scene_object in objects:
            corners = object_corners_m(scene_object)
            projection = project_points(pose, corners)
            if np.any(projection.depth_m <= NEAR_PLANE_M):
                continue
            points = np.column_stack([projection.column_px, projection.row_px])
            centre = corners.mean(axis=0)
            centre_px = project_points(pose, centre)
            if not np.any(projection.visible) and not bool(centre_px.visible):
                continue
            distance = float(np.linalg.norm(centre - pose.position_m))
            if bool(centre_px.visible):
                column = int(np.clip(np.round(centre_px.column_px), 0, pose.width_px - 1))
                row = int(np.clip(np.round(centre_px.row_px), 0, pose.height_px - 1))
                if (
                    self._depth_m[row, column]
                    < distance - 0.5 * INTRUSION_BOX_M[scene_object.kind][0]
                ):
                    continue  # behind a building
            polygons.append((distance, scene_object, _hull(points), points))
        polygons.sort(key=lambda item: -item[0])
        return [(obj, hull, points) for _, obj, hull, points in polygons]

    def _fire_ellipse(self, hot_spot: HotSpot) -> tuple[tuple[int, int], tuple[int, int]] | None:
        """Centre and half-axes [px] of a fire's flame, or ``None`` when out of view."""
        base = np.array([hot_spot.position_m[0], hot_spot.position_m[1], 0.0])
        top = base + np.array([0.0, 0.0, FIRE_HEIGHT_PER_RADIUS * hot_spot.radius_m])
        projection = project_points(self.pose, np.stack([base, top, 0.5 * (base + top)]))
        if np.any(projection.depth_m <= NEAR_PLANE_M) or not np.any(projection.visible):
            return None
        focal_x, _ = self.pose.focal_length_px
        half_width = max(1, round(focal_x * hot_spot.radius_m / float(projection.depth_m[2])))
        half_height = max(1, round(0.5 * abs(float(projection.row_px[0] - projection.row_px[1]))))
        centre = (round(float(projection.column_px[2])), round(float(projection.row_px[2])))
        return centre, (half_width, half_height)

    def visible_frame(
        self,
        *,
        rng: np.random.Generator,
        objects: Sequence[SceneObject] = (),
        hot_spots: Sequence[HotSpot] = (),
        illumination: float = 1.0,
        timestamp_text: str | None = None,
        noise_std_dn: float = VISIBLE_NOISE_STD_DN,
    ) -> ImageU8:
        """A visible frame, uint8 BGR of shape (height, width, 3).

        Parameters
        ----------
        rng
            Source of the sensor noise.
        objects
            Intrusions on the ground.
        hot_spots
            Fires (drawn as flames).
        illumination
            Scene brightness factor, 1 by day, ~0.1 at night [1].
        timestamp_text
            Overlay text (top left), e.g. an ISO time; ``None`` for none.
        noise_std_dn
            Sensor noise [DN].
        """
        image = self._visible_background * np.float32(illumination)
        for scene_object, hull, points in self._object_polygons(objects):
            colour = tuple(illumination * c for c in _INTRUSION_BGR[scene_object.kind])
            cv2.fillConvexPoly(image, hull, colour)
            shade = tuple(_EDGE_SHADE * c for c in colour)
            cv2.polylines(image, [np.round(points[4:]).astype(np.int32)], True, shade, 1)
            if scene_object.kind is IntrusionKind.EXCAVATOR:
                self._draw_boom(image, scene_object, shade)
        for hot_spot in hot_spots:
            ellipse = self._fire_ellipse(hot_spot)
            if ellipse is not None:
                cv2.ellipse(image, ellipse[0], ellipse[1], 0.0, 0.0, 360.0, _FIRE_BGR, -1)
        image += rng.normal(0.0, noise_std_dn, image.shape).astype(np.float32)
        frame: ImageU8 = np.clip(np.round(image), 0, 255).astype(np.uint8)
        if timestamp_text is not None:
            cv2.putText(
                frame,
                timestamp_text,
                _TIMESTAMP_ORIGIN_PX,
                cv2.FONT_HERSHEY_SIMPLEX,
                _TIMESTAMP_SCALE,
                _TIMESTAMP_BGR,
                1,
                cv2.LINE_AA,
            )
        return frame

    def _draw_boom(
        self, image: NDArray[np.float32], excavator: SceneObject, colour: tuple[float, ...]
    ) -> None:
        """The excavator's boom and stick: from the cab roof forward down to the bucket."""
        length, _, height = EXCAVATOR_BOX_M
        along = np.array([math.sin(excavator.heading_rad), math.cos(excavator.heading_rad), 0.0])
        base = np.array([excavator.position_m[0], excavator.position_m[1], height])
        elbow = base + _BOOM_ELBOW_FRACTION * length * along + np.array([0, 0, _BOOM_ELBOW_RISE_M])
        bucket = base + _BOOM_REACH_FRACTION * length * along - np.array([0.0, 0.0, height])
        projection = project_points(self.pose, np.stack([base, elbow, bucket]))
        if np.any(projection.depth_m <= NEAR_PLANE_M):
            return
        focal_x, _ = self.pose.focal_length_px
        thickness = max(1, round(focal_x * _BOOM_THICKNESS_M / float(np.mean(projection.depth_m))))
        points = np.round(np.column_stack([projection.column_px, projection.row_px]))
        cv2.polylines(image, [points.astype(np.int32)], False, colour, thickness)

    def thermal_frame(
        self,
        *,
        ambient_temperature_k: float,
        rng: np.random.Generator,
        objects: Sequence[SceneObject] = (),
        plumes: Sequence[ColdPlume] = (),
        hot_spots: Sequence[HotSpot] = (),
        netd_k: float = THERMAL_NETD_K,
    ) -> ImageU16:
        """A radiometric thermal frame in centi-kelvin, uint16 of shape (height, width).

        Parameters
        ----------
        ambient_temperature_k
            Air temperature [K].
        rng
            Source of the pixel noise.
        objects
            Intrusions (warm: engines, bodies).
        plumes
            Leaks (cold plumes).
        hot_spots
            Fires (hot spots; pixels saturate at 655.35 K).
        netd_k
            Pixel noise standard deviation [K].
        """
        temperature = ambient_temperature_k + self._thermal_offset_k
        if plumes:
            temperature = temperature - self._plume_cooling_k(plumes)
        for scene_object, hull, _ in self._object_polygons(objects):
            warm = ambient_temperature_k + INTRUSION_WARMING_K[scene_object.kind]
            cv2.fillConvexPoly(temperature, hull, warm)
        for hot_spot in hot_spots:
            ellipse = self._fire_ellipse(hot_spot)
            if ellipse is not None:
                hot = ambient_temperature_k + hot_spot.temperature_excess_k
                cv2.ellipse(temperature, ellipse[0], ellipse[1], 0.0, 0.0, 360.0, hot, -1)
        temperature = temperature + rng.normal(0.0, netd_k, temperature.shape)
        centikelvin = np.round(CENTIKELVIN.from_si(temperature))
        return np.clip(centikelvin, 0, THERMAL_MAX_CENTIKELVIN).astype(np.uint16)

    def _plume_cooling_k(self, plumes: Sequence[ColdPlume]) -> FloatArray:
        """Deficit seen through each pixel: the plume layer where the ray crosses it [K]."""
        pose = self.pose
        rays = pose.pixel_rays
        cooling = np.zeros(rays.shape[:2])
        camera_height = float(pose.position_m[2])
        for plume in plumes:
            drop = plume.height_m - camera_height
            crossing = rays[..., 2] * drop > 0.0  # the ray reaches the layer's height
            distance = np.where(crossing, drop / np.where(crossing, rays[..., 2], 1.0), np.inf)
            in_front = crossing & (distance < self._depth_m)
            east = pose.position_m[0] + np.where(in_front, distance, 0.0) * rays[..., 0]
            north = pose.position_m[1] + np.where(in_front, distance, 0.0) * rays[..., 1]
            cooling = np.maximum(
                cooling, np.where(in_front, plume_cooling_k(plume, east, north), 0.0)
            )
        return cooling


def encode_jpeg(image_bgr: ImageU8, quality: int = DEFAULT_JPEG_QUALITY) -> bytes:
    """JPEG bytes of a uint8 BGR image (OpenCV ``imencode``)."""
    ok, buffer = cv2.imencode(".jpg", image_bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError(f"JPEG encoding failed for an image of shape {image_bgr.shape}")
    return bytes(buffer.tobytes())


def encode_thermal_png(image_centikelvin: ImageU16) -> bytes:
    """16-bit greyscale PNG bytes of a centi-kelvin image (lossless)."""
    if image_centikelvin.dtype != np.uint16 or image_centikelvin.ndim != 2:
        raise ValueError("thermal frames must be 2-D uint16 centi-kelvin images")
    ok, buffer = cv2.imencode(".png", image_centikelvin)
    if not ok:
        raise ValueError(f"PNG encoding failed for an image of shape {image_centikelvin.shape}")
    return bytes(buffer.tobytes())


def decode_thermal_png(data: bytes) -> FloatArray:
    """Temperatures [K] of a 16-bit centi-kelvin PNG (inverse of :func:`encode_thermal_png`)."""
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None or image.dtype != np.uint16 or image.ndim != 2:
        raise ValueError("not a 16-bit greyscale PNG")
    return np.asarray(CENTIKELVIN.to_si(image.astype(np.float64)), dtype=np.float64)


# ---------------------------------------------------------------------------------------------
# Laser methane detector
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LaserParameters:
    """Figures of the laser methane detector.

    Attributes
    ----------
    noise_std_mole_fraction_m
        White noise of a reading [mol mol-1 m].
    offset_mole_fraction_m
        Constant offset (zero error) [mol mol-1 m].
    resolution_mole_fraction_m
        Output resolution; 0 disables quantisation [mol mol-1 m].
    full_scale_mole_fraction_m
        Largest reading; larger values saturate [mol mol-1 m].
    ambient_methane_mole_fraction
        Background methane over the whole beam, included in the reading [mol mol-1].
    """

    noise_std_mole_fraction_m: float = DEFAULT_LASER_NOISE_STD_MOLE_FRACTION_M
    offset_mole_fraction_m: float = 0.0
    resolution_mole_fraction_m: float = DEFAULT_LASER_RESOLUTION_MOLE_FRACTION_M
    full_scale_mole_fraction_m: float = DEFAULT_LASER_FULL_SCALE_MOLE_FRACTION_M
    ambient_methane_mole_fraction: float = AMBIENT_METHANE_MOLE_FRACTION

    def __post_init__(self) -> None:
        for name in (
            "noise_std_mole_fraction_m",
            "resolution_mole_fraction_m",
            "ambient_methane_mole_fraction",
        ):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0.0):
                raise ValueError(f"LaserParameters.{name} must be finite and >= 0, got {value}")
        if not self.full_scale_mole_fraction_m > 0.0:
            raise ValueError("LaserParameters.full_scale_mole_fraction_m must be > 0")
        if not math.isfinite(self.offset_mole_fraction_m):
            raise ValueError("LaserParameters.offset_mole_fraction_m must be finite")


LASER_STATUSES: tuple[DeviceStatus, ...] = tuple(DeviceStatus)
LASER_FAULT_CODES: tuple[LaserFaultCode | None, ...] = (None, *LaserFaultCode)


@dataclass(frozen=True)
class LaserOutput:
    """What the laser detectors report (arrays of shape (n_cameras,)).

    Attributes
    ----------
    path_integral_mole_fraction_m
        Reported column, ambient methane included; 0 while the beam is blocked
        [mol mol-1 m].
    status_index
        Index into :data:`LASER_STATUSES`.
    fault_code_index
        Index into :data:`LASER_FAULT_CODES` (0: none).
    """

    path_integral_mole_fraction_m: FloatArray
    status_index: NDArray[np.int8]
    fault_code_index: NDArray[np.int8]

    def status(self, index: int) -> DeviceStatus:
        """Self-reported status of one laser."""
        return LASER_STATUSES[int(self.status_index[index])]

    def fault_code(self, index: int) -> LaserFaultCode | None:
        """Fault code of one laser."""
        return LASER_FAULT_CODES[int(self.fault_code_index[index])]


def beam_blocked_by(start_m: FloatArray, end_m: FloatArray, objects: Sequence[SceneObject]) -> bool:
    """Whether any object's box stands in the beam (box taken as its enclosing cylinder)."""
    for scene_object in objects:
        length, width, height = INTRUSION_BOX_M[scene_object.kind]
        radius = 0.5 * math.hypot(length, width)
        centre = np.asarray(scene_object.position_m, dtype=np.float64)[:2]
        # Closest approach in the ground plane, checked at the height the beam has there.
        step = end_m[:2] - start_m[:2]
        length_sq = float(step @ step)
        fraction = (
            0.0
            if length_sq == 0.0
            else float(np.clip((centre - start_m[:2]) @ step / length_sq, 0, 1))
        )
        nearest = start_m + fraction * (end_m - start_m)
        if float(np.hypot(*(nearest[:2] - centre))) <= radius and 0.0 <= nearest[2] <= height:
            return True
    return False


def laser_reading(
    plume_path_integral_mole_fraction_m: FloatArray,
    beam_length_m: FloatArray,
    rng: np.random.Generator,
    *,
    beam_blocked: BoolArray | None = None,
    parameters: LaserParameters | None = None,
) -> LaserOutput:
    """What the laser detectors report for the plume column along their beams.

    Parameters
    ----------
    plume_path_integral_mole_fraction_m
        Integral of the leak's mole fraction along each beam (dispersion physics), shape (n,)
        [mol mol-1 m].
    beam_length_m
        Length of each beam (:func:`laser_beam_m`), for the ambient column, shape (n,) [m].
    rng
        Source of noise; draws ``n`` variates per call whatever the state.
    beam_blocked
        Beams blocked by an obstacle or an injected fault, shape (n,).
    parameters
        Detector figures.

    Returns
    -------
    LaserOutput
        Reported column [mol mol-1 m], status and fault code per camera.
    """
    p = parameters if parameters is not None else LaserParameters()
    plume = np.asarray(plume_path_integral_mole_fraction_m, dtype=np.float64)
    length = np.broadcast_to(np.asarray(beam_length_m, dtype=np.float64), plume.shape)
    blocked = (
        np.zeros(plume.shape, dtype=np.bool_)
        if beam_blocked is None
        else np.broadcast_to(np.asarray(beam_blocked, dtype=np.bool_), plume.shape)
    )
    noise = rng.standard_normal(plume.shape)
    column = (
        np.maximum(plume, 0.0)
        + p.ambient_methane_mole_fraction * length
        + p.offset_mole_fraction_m
        + p.noise_std_mole_fraction_m * noise
    )
    column = np.clip(column, 0.0, p.full_scale_mole_fraction_m)
    if p.resolution_mole_fraction_m > 0.0:
        column = np.round(column / p.resolution_mole_fraction_m) * p.resolution_mole_fraction_m
    status = np.where(
        blocked,
        LASER_STATUSES.index(DeviceStatus.FAULT),
        LASER_STATUSES.index(DeviceStatus.OK),
    ).astype(np.int8)
    code = np.where(blocked, LASER_FAULT_CODES.index(LaserFaultCode.BEAM_BLOCKED), 0).astype(
        np.int8
    )
    return LaserOutput(
        path_integral_mole_fraction_m=np.where(blocked, 0.0, column),
        status_index=status,
        fault_code_index=code,
    )
