"""Time of the emergency response to one incident update on the reference site (issue 4 §7).

:func:`pipesentinel.plans.response.respond` on Wanli for four incident updates: a methane leak
in a steady easterly by day, a large methane release toward the kindergarten (E, light wind), a
propane (dense-gas) release at night and a methane release in very stable air (F, 1 m/s). For
each: the first call after the context is built (cold: graphs, schemas, caches) and the median
and 95th percentile of ``REPEATS`` warm calls, split into stages. The goal (< 200 ms) is for the
zones and plan selection after an update, i.e. every stage before the public alert (isolation,
zones, people, plan); the whole response with the CAP alert and GeoJSON is reported beside it.

As a load-independent figure, each time is also given in units of a reference workload measured
in the same run: one evaluation of the Gaussian plume core at 10^5 receptors
(:func:`pipesentinel.detection.plume.plume_concentration_kg_per_m3`). Run with
``python -m bench.response``; it prints one JSON object.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any, Final

import numpy as np

from pipesentinel.detection.gases import LelBasis
from pipesentinel.detection.plume import plume_concentration_kg_per_m3
from pipesentinel.detection.stability import StabilityClass
from pipesentinel.plans.cap import CapStatus
from pipesentinel.plans.library import Severity
from pipesentinel.plans.response import LeakEstimate, ResponseContext, respond
from pipesentinel.site import Gas, Site
from pipesentinel.site_loader import load_site

SITE_DIR: Final = Path(__file__).resolve().parents[1] / "sites" / "wanli"
GOAL_MS: Final = 200.0
REPEATS: Final = 20
REFERENCE_RECEPTORS: Final = 100_000
PLAN_STAGES: Final = ("isolation", "zones", "people", "plan")
LOCAL: Final = dt.timezone(dt.timedelta(hours=8))
# (name, gas, pipeline, chainage [m], rate [kg/s], wind speed [m/s], from [deg], class, time)
CASES: Final = (
    ("methane_day_D", Gas.METHANE, "P1", 2236.0, 1.0, 3.5, 80.0, StabilityClass.D, 10),
    ("methane_kindergarten_E", Gas.METHANE, "P1", 690.0, 10.0, 1.5, 158.0, StabilityClass.E, 10),
    ("propane_night_F", Gas.PROPANE, "P2", 1500.0, 2.0, 1.5, 200.0, StabilityClass.F, 23),
    ("methane_stable_F", Gas.METHANE, "P2", 2500.0, 3.0, 1.0, 270.0, StabilityClass.F, 3),
)


def _reference_s() -> float:
    """Median time of one plume evaluation at ``REFERENCE_RECEPTORS`` receptors [s]."""
    rng = np.random.default_rng(1)
    receptors = rng.uniform(-2000.0, 2000.0, size=(REFERENCE_RECEPTORS, 3))
    receptors[:, 2] = 1.5
    times: list[float] = []
    for _ in range(7):
        started = time.perf_counter()
        plume_concentration_kg_per_m3(
            receptors,
            np.zeros(3),
            emission_rate_kg_per_s=1.0,
            wind_speed_m_per_s=3.0,
            wind_direction_rad=0.0,
            stability_class=3,
            threads=1,
        )
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _estimate(site: Site, case: tuple[Any, ...]) -> tuple[LeakEstimate, float]:
    _, gas, pipeline, chainage, rate, speed, wind_from, stability, hour = case
    estimate = LeakEstimate.what_if(
        site,
        gas=gas,
        rate_kg_per_s=rate,
        wind_speed_m_per_s=speed,
        wind_from_deg=wind_from,
        stability_class=stability,
        lel_basis=LelBasis.IEC_60079_20_1,
        pipeline_id=pipeline,
        chainage_m=chainage,
        rate_factor=2.0,
    )
    when = dt.datetime(2024, 6, 12, hour, 0, tzinfo=LOCAL).timestamp()
    return estimate, when


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def run(repeats: int = REPEATS) -> dict[str, object]:
    """Measure the response; return the JSON-ready result."""
    site = load_site(SITE_DIR)
    started = time.perf_counter()
    context = ResponseContext.for_site(site, SITE_DIR, cap_status=CapStatus.EXERCISE)
    context_ms = (time.perf_counter() - started) * 1e3
    reference_ms = _reference_s() * 1e3
    cases: dict[str, object] = {}
    worst_plan_p95_ms = 0.0
    for index, case in enumerate(CASES):
        estimate, when = _estimate(site, case)
        totals: list[float] = []
        plan_parts: list[float] = []
        stages: dict[str, list[float]] = {}
        cold_ms = 0.0
        for repeat in range(repeats + 1):
            started = time.perf_counter()
            response = respond(
                context,
                incident_id=f"BENCH-{index}",
                incident_version=repeat + 1,
                time_s=when,
                severity=Severity.CONFIRMED,
                estimate=estimate,
            )
            total_ms = (time.perf_counter() - started) * 1e3
            if repeat == 0:
                cold_ms = total_ms
                continue
            totals.append(total_ms)
            plan_parts.append(sum(response.compute_time_s[s] for s in PLAN_STAGES) * 1e3)
            for stage, seconds in response.compute_time_s.items():
                stages.setdefault(stage, []).append(seconds * 1e3)
        plan_p95 = _percentile(plan_parts, 95)
        worst_plan_p95_ms = max(worst_plan_p95_ms, plan_p95)
        cases[case[0]] = {
            "cold_ms": round(cold_ms, 2),
            "zones_and_plan_median_ms": round(statistics.median(plan_parts), 2),
            "zones_and_plan_p95_ms": round(plan_p95, 2),
            "response_median_ms": round(statistics.median(totals), 2),
            "response_p95_ms": round(_percentile(totals, 95), 2),
            "stage_median_ms": {k: round(statistics.median(v), 2) for k, v in stages.items()},
            "zones_and_plan_in_reference_units": round(
                statistics.median(plan_parts) / reference_ms, 2
            ),
            "plan_id": response.selection.plan_id,
            "red_extent_m": round(response.zones.zones[0].max_downwind_extent_m, 1),
            "yellow_extent_m": round(response.zones.zones[1].max_downwind_extent_m, 1),
            "buildings": len(response.exposure.buildings),
            "routes": len(response.exposure.routes),
        }
    return {
        "benchmark": "response",
        "goal_ms": GOAL_MS,
        "goal_applies_to": "zones and plan selection (isolation, zones, people, plan), p95",
        "worst_zones_and_plan_p95_ms": round(worst_plan_p95_ms, 2),
        "goal_met": worst_plan_p95_ms < GOAL_MS,
        "context_build_ms": round(context_ms, 2),
        "reference_workload": f"plume core at {REFERENCE_RECEPTORS} receptors",
        "reference_ms": round(reference_ms, 3),
        "repeats": repeats,
        "cases": cases,
        "load_average_1min": os.getloadavg()[0],
        "cpus": os.cpu_count(),
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2, sort_keys=True))
