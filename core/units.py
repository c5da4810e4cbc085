"""The one declarative table of unit conversions between device/user units and SI.

The core works in SI (m, s, kg, K, Pa, rad, mol mol-1). Device and user units are converted at
the edges (``ingest``, ``api``, ``hardware``) through this table and nowhere else. Percent of the
lower explosive limit (%LEL) depends on the gas and on the LEL basis, so it lives in
:mod:`pipesentinel.detection.gases`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
from numpy.typing import NDArray

ValueT = TypeVar("ValueT", float, NDArray[np.float64])


@dataclass(frozen=True)
class Conversion:
    """Affine conversion ``si = value * scale + offset`` from ``unit`` to ``si_unit``."""

    unit: str
    si_unit: str
    scale: float
    offset: float = 0.0

    def to_si(self, value: ValueT) -> ValueT:
        """Convert from ``unit`` to ``si_unit``."""
        return value * self.scale + self.offset

    def from_si(self, value: ValueT) -> ValueT:
        """Convert from ``si_unit`` to ``unit``."""
        return (value - self.offset) / self.scale


# Exact by definition (BIPM SI Brochure, 9th ed., 2019; ppm = 1e-6 mole fraction for gases, as
# used by gas detectors calibrated in ppm(vol); 0 degC = 273.15 K; 1 hPa = 100 Pa).
PPM = Conversion("ppm", "mol mol-1", 1e-6)
PPM_M = Conversion("ppm m", "mol mol-1 m", 1e-6)
PERCENT_VOL = Conversion("%vol", "mol mol-1", 1e-2)
DEGREE = Conversion("deg", "rad", math.pi / 180.0)
DEGREE_CELSIUS = Conversion("degC", "K", 1.0, 273.15)
CENTIKELVIN = Conversion("cK", "K", 1e-2)
HECTOPASCAL = Conversion("hPa", "Pa", 100.0)
MILLISECOND = Conversion("ms", "s", 1e-3)
KILOMETRE_PER_HOUR = Conversion("km h-1", "m s-1", 1000.0 / 3600.0)
GRAM_PER_SECOND = Conversion("g s-1", "kg s-1", 1e-3)
GRAM_PER_CUBIC_METRE = Conversion("g m-3", "kg m-3", 1e-3)

TABLE: dict[str, Conversion] = {
    conversion.unit: conversion
    for conversion in (
        PPM,
        PPM_M,
        PERCENT_VOL,
        DEGREE,
        DEGREE_CELSIUS,
        CENTIKELVIN,
        HECTOPASCAL,
        MILLISECOND,
        KILOMETRE_PER_HOUR,
        GRAM_PER_SECOND,
        GRAM_PER_CUBIC_METRE,
    )
}
