"""Physical constants and documented model limits used by the dispersion core, each with its source.

Gas properties live in :mod:`pipesentinel.detection.gases`, Briggs dispersion coefficients in
:mod:`pipesentinel.detection.briggs`, stability tables in :mod:`pipesentinel.detection.stability`.
"""

from __future__ import annotations

import math

# --- Physical constants -------------------------------------------------------------------------

MOLAR_GAS_CONSTANT_J_PER_MOL_K = 8.314462618
"""Molar gas constant R [J mol-1 K-1]. CODATA 2018 (Tiesinga et al., Rev. Mod. Phys. 93, 025010,
2021); exact since the 2019 SI redefinition (R = N_A k, both exact), quoted to 10 digits."""

STANDARD_GRAVITY_M_PER_S2 = 9.80665
"""Standard acceleration of gravity g_n [m s-2]. 3rd CGPM (1901); BIPM SI Brochure, 9th ed. 2019."""

MOLAR_MASS_DRY_AIR_KG_PER_MOL = 0.0289644
"""Mean molar mass of dry air M_0 [kg mol-1]. U.S. Standard Atmosphere, 1976 (NOAA/NASA/USAF,
NOAA-S/T 76-1562), sea-level value 28.9644 kg kmol-1."""

# --- Wind measurement and the steady-state model's wind limits ----------------------------------

STANDARD_ANEMOMETER_HEIGHT_M = 10.0
"""Standard exposure height of surface wind instruments [m]: 10 m over open terrain. WMO Guide to
Instruments and Methods of Observation (WMO-No. 8), Vol. I, ch. 5; also the height of the 10-m
wind speed in US EPA EPA-454/R-99-005 (2000) Table 6-8."""

PROFILE_MINIMUM_HEIGHT_M = 10.0
"""Heights below this are treated as this height in the power-law wind profile [m]. The ISC3 models
hold the wind speed constant below 10 m (ISCST3 subroutine WSADJ; US EPA, User's Guide for the
Industrial Source Complex (ISC3) Dispersion Models, Vol. II, EPA-454/B-95-003b, 1995, sec. 1.1.5):
the power law is an approximation for roughly 10-200 m above ground and is not extrapolated into
the surface layer."""

MINIMUM_WIND_SPEED_M_PER_S = 1.0
"""Transport wind speeds below this are raised to it in the steady-state plume [m s-1]. US EPA,
Meteorological Monitoring Guidance for Regulatory Modeling Applications, EPA-454/R-99-005 (2000),
sec. 6.9: "EPA recommends that wind speeds less than 1 m/s be reset to 1 m/s for use in
steady-state dispersion models" (about the lowest speed in the models' validation data); the same
floor is applied to the stack-height wind speed in ISC3 (EPA-454/B-95-003b, sec. 1.1.5)."""

LOW_WIND_SPEED_M_PER_S = 3.0 * 0.44704
"""Below this wind speed (3 mph = 1.341 m s-1) a Gaussian model's estimates become unreliable: the
cloud does not mix quickly and concentrations may stay higher than predicted, especially near the
source. NOAA Office of Response and Restoration, "ALOHA's Limitations" (web page of the ALOHA
model, section "Conditions that Reduce Atmospheric Mixing"). 1 mph = 0.44704 m s-1 exactly."""

# --- Range of the Briggs (1973) dispersion curves -----------------------------------------------

BRIGGS_MINIMUM_DISTANCE_M = 100.0
"""Lower end of the downwind range of the Briggs (1973) sigma formulas [m]. Hanna, Briggs & Hosker
(1982), Handbook on Atmospheric Diffusion, DOE/TIC-11223, Table 4.5, and Seinfeld & Pandis,
Atmospheric Chemistry and Physics, Table 18.3: "for 10^2 < x < 10^4 m". Closer in, the curves are
extrapolations with no supporting data."""

BRIGGS_MAXIMUM_DISTANCE_M = 10_000.0
"""Upper end of the downwind range of the Briggs (1973) sigma formulas [m] (same sources)."""

# --- Numerical constants (not physics) --------------------------------------------------------

TWO_PI = 2.0 * math.pi
