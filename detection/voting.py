"""Zone voting: from per-detector alarm states to "suspected" and "confirmed" leaks.

Fire-and-gas practice (IEC 61511 application of voting; e.g. the ISA TR84.00.07 guidance on
gas-detection coverage): one detector at its LOW set point raises an alert ("1ooN alerts"), two
detectors of the same zone confirm ("2ooN confirms"). Here, per zone:

- a detector in fault never counts as gas (its gas state is not used at all);
- **suspected**: at least one healthy detector at LOW (or above), or a healthy camera's gas
  channel (laser path integral over its threshold, or thermal cold plume) sees gas in the zone:
  an open-path gas detector votes like a point detector (ISA TR84.00.07), and a camera that
  sees gas where no point detector has reached LOW yet is at least an alert;
- **confirmed**: at least ``required`` healthy detectors at LOW, where ``required`` is 2
  (2ooN) while every detector of the zone is healthy; or one healthy detector at HIGH together
  with a camera (thermal cold plume or laser path integral) seeing gas in the zone. A camera
  alone never confirms (its zone coverage is coarse, and a plume seen from a pole may come from
  a neighbouring zone);
- **degraded**: with F detectors of N in fault, the vote degrades to 1oo(N-F): a single healthy
  detector at LOW confirms (the usual fail-safe degradation of F&G voting, in which a faulty
  detector is counted as a vote); the zone says so in its ``reason``;
- **blind**: no healthy detector at all; the zone cannot vote and says so (a healthy camera
  that sees gas there still makes it suspected).

Everything is vectorized over detectors and zones (``numpy.bincount``); zones are few, detectors
may be thousands in a city deployment.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import NDArray

from pipesentinel.site import Site

BoolArray = NDArray[np.bool_]
IntArray = NDArray[np.int64]

CONFIRMING_DETECTORS: Final = 2
"""Healthy detectors at LOW that confirm a leak in a zone with no detector in fault (2ooN)."""

CAMERA_CLOUD_DISTANCE_M: Final = 300.0
"""A camera's gas sighting (laser beam, thermal plume) this close to a detector at HIGH confirms
the detector's zone, even when the camera watches a neighbouring zone [m]. The same design
distance as ``incidents.INCIDENT_MERGE_DISTANCE_M`` (gas seen this close together is almost
surely one cloud: a 1 kg/s cloud stays above 10 %LEL over ~1 km in neutral air); two independent
instruments of different principles then see the same cloud."""

DEGRADED_CONFIRMING_DETECTORS: Final = 1
"""Healthy detectors at LOW that confirm a leak while a detector of the zone is in fault:
2ooN degrades to 1oo(N-1)."""


@dataclass(frozen=True)
class ZoneIndex:
    """Which zone each gas detector votes in (detectors in ``site.gas_detectors`` order)."""

    zone_ids: tuple[str, ...]
    zone_of_detector: IntArray  # (n_detectors,) index into zone_ids
    detectors_per_zone: IntArray  # (n_zones,)

    @classmethod
    def for_site(cls, site: Site) -> ZoneIndex:
        """Zones of ``site`` in order of first appearance (``site.zones``)."""
        zone_ids = tuple(site.zones)
        position = {zone: index for index, zone in enumerate(zone_ids)}
        zone_of_detector = np.array(
            [position[detector.zone] for detector in site.gas_detectors], dtype=np.int64
        )
        return cls(
            zone_ids=zone_ids,
            zone_of_detector=zone_of_detector,
            detectors_per_zone=np.bincount(zone_of_detector, minlength=len(zone_ids)),
        )

    @property
    def n_zones(self) -> int:
        """Number of zones."""
        return len(self.zone_ids)

    def count(self, mask: BoolArray) -> IntArray:
        """Detectors per zone for which ``mask`` (n_detectors,) is True."""
        counts: IntArray = np.bincount(
            self.zone_of_detector, weights=mask.astype(np.float64), minlength=self.n_zones
        ).astype(np.int64)
        return counts


@dataclass(frozen=True)
class ZoneVote:
    """The vote of every zone at one moment; arrays are (n_zones,)."""

    zone_ids: tuple[str, ...]
    detectors: IntArray
    healthy: IntArray
    low_votes: IntArray  # healthy detectors at LOW or above
    high_votes: IntArray  # healthy detectors at HIGH
    camera_gas: BoolArray  # a healthy camera's thermal or laser channel sees gas in the zone
    required: IntArray  # LOW votes that confirm (2, or 1 when degraded)
    suspected: BoolArray
    confirmed: BoolArray
    degraded: BoolArray
    blind: BoolArray
    camera_sources: tuple[str, ...] = ()  # per zone, e.g. "CAM1 laser" ("" or empty: unnamed)
    # Per zone: a healthy detector of it at HIGH has a camera's gas sighting within
    # CAMERA_CLOUD_DISTANCE_M (one cloud), even where the camera watches another zone.
    camera_near_high: BoolArray | None = None

    def _cameras(self, zone: int) -> str:
        source = self.camera_sources[zone] if zone < len(self.camera_sources) else ""
        return source or "a camera"

    def reason(self, zone: int) -> str:
        """A sentence for the duty officer: why zone ``zone`` is in the state it is in."""
        n, healthy = int(self.detectors[zone]), int(self.healthy[zone])
        low, high = int(self.low_votes[zone]), int(self.high_votes[zone])
        parts: list[str] = []
        if self.blind[zone]:
            text = f"zone {self.zone_ids[zone]}: all {n} detectors in fault, the zone cannot vote"
            if self.suspected[zone]:
                text += f"; suspected: {self._cameras(zone)} sees gas"
            return text
        if self.degraded[zone]:
            parts.append(
                f"{n - healthy} of {n} detectors in fault: vote degraded from "
                f"{CONFIRMING_DETECTORS}oo{n} to {DEGRADED_CONFIRMING_DETECTORS}oo{healthy}"
            )
        if self.confirmed[zone]:
            if low >= self.required[zone]:
                parts.append(f"confirmed: {low} of {healthy} healthy detectors at LOW")
            elif self.camera_gas[zone]:
                parts.append(
                    f"confirmed: {high} detector(s) at HIGH and {self._cameras(zone)} sees gas"
                )
            else:
                parts.append(
                    f"confirmed: {high} detector(s) at HIGH and a camera sees gas within "
                    f"{CAMERA_CLOUD_DISTANCE_M:.0f} m of it (one cloud)"
                )
        elif self.suspected[zone]:
            text = (
                f"suspected: {low} of {healthy} healthy detectors at LOW "
                f"({int(self.required[zone])} confirm)"
            )
            if self.camera_gas[zone]:
                text += f"; {self._cameras(zone)} sees gas" + (
                    " (a camera alone never confirms)" if high == 0 else ""
                )
            parts.append(text)
        else:
            parts.append(f"normal: no healthy detector at LOW ({healthy} of {n} healthy)")
        return f"zone {self.zone_ids[zone]}: " + "; ".join(parts)


def vote(
    index: ZoneIndex,
    *,
    low_active: BoolArray,
    high_active: BoolArray,
    in_fault: BoolArray,
    camera_gas: BoolArray | None = None,
    camera_sources: Sequence[str] = (),
    camera_near: BoolArray | None = None,
) -> ZoneVote:
    """Vote every zone.

    Parameters
    ----------
    index
        Zone of each detector.
    low_active, high_active
        Per detector (any gas), whether its LOW / HIGH gas alarm condition is active [1].
    in_fault
        Per detector, whether it is in fault (any kind, including offline) [1].
    camera_gas
        Per zone, whether a healthy camera's thermal or laser channel sees gas in it [1];
        default none. Makes the zone suspected; with a HIGH, confirmed.
    camera_sources
        Per zone, which camera channels see gas, for the reason (``"CAM1 laser"``); optional.
    camera_near
        Per detector, whether a healthy camera sees gas within :data:`CAMERA_CLOUD_DISTANCE_M`
        of it [1]; default none. A detector at HIGH with a camera's gas that close confirms its
        zone even when the camera watches a neighbouring zone (the same cloud); it never makes a
        zone suspected by itself.
    """
    n_detectors = index.zone_of_detector.shape[0]
    for name, array in (("low_active", low_active), ("high_active", high_active)):
        if array.shape != (n_detectors,):
            raise ValueError(f"{name} must have shape ({n_detectors},), got {array.shape}")
    if in_fault.shape != (n_detectors,):
        raise ValueError(f"in_fault must have shape ({n_detectors},), got {in_fault.shape}")
    cameras = (
        np.zeros(index.n_zones, dtype=np.bool_)
        if camera_gas is None
        else np.asarray(camera_gas, dtype=np.bool_)
    )
    if cameras.shape != (index.n_zones,):
        raise ValueError(f"camera_gas must have shape ({index.n_zones},), got {cameras.shape}")
    if camera_sources and len(camera_sources) != index.n_zones:
        raise ValueError(
            f"camera_sources must name {index.n_zones} zones, got {len(camera_sources)}"
        )
    near = (
        np.zeros(n_detectors, dtype=np.bool_)
        if camera_near is None
        else np.asarray(camera_near, dtype=np.bool_)
    )
    if near.shape != (n_detectors,):
        raise ValueError(f"camera_near must have shape ({n_detectors},), got {near.shape}")
    healthy_detector = ~in_fault
    healthy = index.count(healthy_detector)
    low_votes = index.count((low_active | high_active) & healthy_detector)
    high_votes = index.count(high_active & healthy_detector)
    degraded = healthy < index.detectors_per_zone
    blind = healthy == 0
    required = np.where(degraded, DEGRADED_CONFIRMING_DETECTORS, CONFIRMING_DETECTORS)
    high_near = index.count(high_active & healthy_detector & near) >= 1
    confirmed = ~blind & ((low_votes >= required) | ((high_votes >= 1) & cameras) | high_near)
    suspected = (~blind & (low_votes >= 1)) | cameras
    return ZoneVote(
        zone_ids=index.zone_ids,
        detectors=index.detectors_per_zone,
        healthy=healthy,
        low_votes=low_votes,
        high_votes=high_votes,
        camera_gas=cameras,
        required=required.astype(np.int64),
        suspected=suspected | confirmed,
        confirmed=confirmed,
        degraded=degraded & ~blind,
        blind=blind,
        camera_sources=tuple(camera_sources),
        camera_near_high=high_near & ~blind,
    )


def zones_of(index: ZoneIndex, detector_indices: Sequence[int]) -> list[str]:
    """Zone ids of the given detectors (in ``site.gas_detectors`` order), without repeats."""
    seen: dict[str, None] = {}
    for detector in detector_indices:
        seen.setdefault(index.zone_ids[int(index.zone_of_detector[detector])])
    return list(seen)
