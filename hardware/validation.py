"""Validation of the leak localiser on simulated leaks.

Run ``python -m pipesentinel.hardware.validation --runs N --out FILE.json``.

Random leaks are placed on the site's pipelines (random line, chainage, rate, wind direction,
speed and stability), each scenario is played offline by the device simulators
(:func:`~pipesentinel.hardware.offline.scenario_records`: sensor noise, t90 lag, wind meander,
puff transport) and the localiser (:mod:`pipesentinel.detection.localisation`) is run on the
records of the last window after ``estimate_after_s`` of leak. The same records are scored under
several assumptions:

* ``estimated``: wind and stability class as the service would have them (sigma-theta method);
* ``true_class``: the stability class the simulator used (isolates the class estimate);
* ``wrong_class_d``: class D assumed when the truth is B or F (only those runs);
* ``one_station_dead``: the wind station nearest the leak is ignored.

Each run's records also go through a fresh :class:`~pipesentinel.detection.engine.DetectionEngine`
(:func:`incident_check`): the headline population is the runs in which the service would have
an open incident at the estimate (it localises for incidents only); runs in which the engine at
least suspected a zone (a suspected or confirmed zone alarm), and runs with anything above a
floor, are scored separately, and the undetected are counted. Nothing is tuned here: the
localiser's parameters are its cited defaults. The figures and the command are in
``docs/validation.md``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import pickle
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import numpy as np

from pipesentinel.alarm_config import load_alarm_config
from pipesentinel.detection.alarms import EventType, MemoryJournal
from pipesentinel.detection.engine import DetectionEngine, zone_alarm_id
from pipesentinel.detection.gases import DEFAULT_LEL_BASIS
from pipesentinel.detection.localisation import (
    Candidates,
    LocalisationConfig,
    LocalisationResult,
    Localiser,
    observations_from_records,
    pipeline_candidates,
    wind_from_records,
)
from pipesentinel.detection.stability import StabilityClass
from pipesentinel.hardware.offline import scenario_records
from pipesentinel.hardware.scenario import parse_scenario
from pipesentinel.hardware.world import SiteSimulation
from pipesentinel.ingest.records import Record
from pipesentinel.settings import DetectionSettings
from pipesentinel.site import Gas, Site
from pipesentinel.site_loader import load_site

DEFAULT_SITE_DIR: Final = Path(__file__).resolve().parent.parent / "sites" / "wanli"
ORIGIN_EPOCH_S: Final = 1.8e9
"""Epoch of scenario time 0 for the offline records [s] (any fixed value)."""
LEAK_START_S: Final = 150.0
"""The leak starts after the detectors' 120 s warm-up [s]."""
ESTIMATE_AFTER_S: Final = 600.0
"""The estimate is made this long after the leak starts [s] (issue: 5-10 minutes)."""
RATE_RANGE_KG_PER_S: Final = (0.2, 3.0)
"""Total gas release rate, log-uniform [kg s-1] (issue 3 section 9)."""
METHANE_MASS_FRACTION: Final = 0.75
"""Associated gas as in the reference scenario: 75 % methane, 25 % propane by mass [1]."""
WIND_SPEED_RANGE_M_PER_S: Final = (1.5, 6.0)
"""Mean wind speed, uniform [m s-1]."""
STABILITY_CLASSES: Final = ("B", "C", "D", "E", "F")
"""Classes drawn with equal probability (A is rare and very short-range; omitted)."""
WRONG_CLASS_TRUTHS: Final = frozenset({"B", "F"})
"""Runs with these true classes are re-scored assuming class D."""
FACTOR_OF_TWO: Final = 2.0
"""Rate target: the estimate within this factor of the truth [1]."""
SEGMENT_TARGET: Final = 0.95
POSITION_TARGET_M: Final = 20.0
PERCENTILE_90: Final = 90.0
POPULATIONS: Final = ("incident", "suspected_or_confirmed", "above_floor")
"""Scored populations: runs in which the detection engine had opened an incident by the time of
the estimate (the headline: the service localises for incidents only); runs in which it had at
least suspected a zone by then (a ``suspected_leak`` or ``confirmed_leak`` zone alarm: what an
operator would have seen flagged); and runs in which any device was above its floor in the
estimate's window."""
ZONE_ALARMS: Final = ("suspected_leak", "confirmed_leak")
"""Zone alarms of the engine (:func:`~pipesentinel.detection.engine.zone_alarm_id`) that count as
"the engine at least suspected a zone"."""
ENGINE_SETTINGS: Final = DetectionSettings(
    camera_analytics=False, expect_frames=False, localisation_interval_s=1e9
)
"""The engine as the service runs it, without camera frames (the offline records have none) and
without its own periodic localisation (not needed to know whether an incident is open)."""
_SIMULATION_VERSION: Final = 1
_STEP_SLACK_S: Final = 1e-6
"""Records sent at a step's end belong to that step [s]."""
"""Bumped when the scenario drawn from a case changes (invalidates cached records)."""
VARIANTS: Final = ("estimated", "true_class", "wrong_class_d", "one_station_dead")
LEAK_POPULATIONS: Final = ("uniform", "leak_points")
"""Where leaks are drawn: ``uniform`` along a random line; ``leak_points`` near a random pipeline
gas detector (the site places them where leaks are expected: valves, crossings, bends)."""
LEAK_POINT_RADIUS_M: Final = 50.0
"""Half-width of the chainage offset of a ``leak_points`` leak from its detector [m]. A design
choice, not a measured value: "at or near the expected leak point", wide enough that the leak is
not always at the detector's foot (a few tens of metres covers a valve pit or a crossing and the
pipe either side of it)."""


@dataclass(frozen=True)
class Case:
    """One random leak and wind."""

    index: int
    pipeline_id: str
    chainage_m: float
    rate_kg_per_s: float
    wind_direction_deg: float
    wind_speed_m_per_s: float
    stability_class: str
    seed: int


def pipeline_detectors(site: Site) -> list[tuple[str, float]]:
    """(pipeline id, chainage [m]) of every gas detector placed on a pipeline, in site order."""
    return [
        (detector.pipeline_id, detector.chainage_m)
        for detector in site.gas_detectors
        if detector.pipeline_id is not None and detector.chainage_m is not None
    ]


def _draw_position(
    site: Site, rng: np.random.Generator, population: str, detectors: Sequence[tuple[str, float]]
) -> tuple[str, float]:
    """Pipeline id and chainage [m] of one leak of ``population``."""
    if population == "uniform":
        pipeline = site.pipelines[int(rng.integers(len(site.pipelines)))]
        return pipeline.id, float(rng.uniform(0.0, pipeline.length_m))
    if population == "leak_points":
        pipeline_id, chainage_m = detectors[int(rng.integers(len(detectors)))]
        length_m = site.pipeline(pipeline_id).length_m
        offset_m = float(rng.uniform(-LEAK_POINT_RADIUS_M, LEAK_POINT_RADIUS_M))
        return pipeline_id, min(max(chainage_m + offset_m, 0.0), length_m)
    raise ValueError(f"population must be one of {LEAK_POPULATIONS}, got {population!r}")


def draw_cases(site: Site, runs: int, seed: int, population: str = "uniform") -> list[Case]:
    """``runs`` random cases of ``population`` (:data:`LEAK_POPULATIONS`) from ``seed``.

    ``uniform``: a random line, chainage uniform along it. ``leak_points``: a random pipeline
    gas detector, on its line at its chainage plus a uniform offset in
    [-:data:`LEAK_POINT_RADIUS_M`, +:data:`LEAK_POINT_RADIUS_M`] (clipped to the line). Rate,
    wind, class and hour are drawn the same way for both.
    """
    detectors = pipeline_detectors(site)
    if population == "leak_points" and not detectors:
        raise ValueError(f"site {site.id} has no gas detector on a pipeline")
    rng = np.random.default_rng(seed)
    cases = []
    for index in range(runs):
        pipeline_id, chainage_m = _draw_position(site, rng, population, detectors)
        low, high = RATE_RANGE_KG_PER_S
        cases.append(
            Case(
                index=index,
                pipeline_id=pipeline_id,
                chainage_m=chainage_m,
                rate_kg_per_s=float(math.exp(rng.uniform(math.log(low), math.log(high)))),
                wind_direction_deg=float(rng.uniform(0.0, 360.0)),
                wind_speed_m_per_s=float(rng.uniform(*WIND_SPEED_RANGE_M_PER_S)),
                stability_class=str(rng.choice(STABILITY_CLASSES)),
                seed=int(rng.integers(2**31)),
            )
        )
    return cases


def scenario_data(site: Site, case: Case) -> dict[str, Any]:
    """The scenario of ``case`` as the TOML tables :func:`parse_scenario` reads."""
    start = datetime(2024, 6, 12, 2, 0, tzinfo=UTC) + timedelta(hours=case.index % 24)
    return {
        "scenario": {
            "name": f"validation-{case.index}",
            "site_id": site.id,
            "start_time_utc": start,
            "duration_s": LEAK_START_S + ESTIMATE_AFTER_S,
            "seed": case.seed,
            "time_step_s": 1.0,
        },
        "wind": [
            {
                "time_s": 0.0,
                "speed_m_per_s": case.wind_speed_m_per_s,
                "direction_from_deg": case.wind_direction_deg % 360.0,
                "stability_class": case.stability_class,
            }
        ],
        "leaks": [
            {
                "id": f"LK-{case.index}",
                "pipeline_id": case.pipeline_id,
                "chainage_m": case.chainage_m,
                "mass_fractions": {
                    "methane": METHANE_MASS_FRACTION,
                    "propane": 1.0 - METHANE_MASS_FRACTION,
                },
                "emission_rate_kg_per_s": case.rate_kg_per_s,
                "start_s": LEAK_START_S,
            }
        ],
    }


def simulate(site: Site, case: Case, *, cache_dir: Path | None = None) -> list[Record]:
    """Play the case's scenario offline; all records (no camera frames).

    With ``cache_dir``, the records are kept there (pickled, named by the case's content) and
    read back on the next run of the same case: the simulation is the slow part, and the records
    do not depend on the localiser.
    """
    path = None
    if cache_dir is not None:
        digest = hashlib.sha256(repr((site.id, case, _SIMULATION_VERSION)).encode()).hexdigest()
        path = cache_dir / f"case-{digest[:20]}.pickle"
        if path.exists():
            cached: list[Record] = pickle.loads(path.read_bytes())  # noqa: S301 - our own cache
            return cached
    scenario = parse_scenario(
        scenario_data(site, case), site, source=f"validation case {case.index}"
    )
    simulation = SiteSimulation(site, scenario, frames=False)
    records: list[Record] = []
    for _, step_records in scenario_records(simulation, origin_epoch_s=ORIGIN_EPOCH_S):
        records.extend(step_records)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        temporary.write_bytes(pickle.dumps(records, protocol=pickle.HIGHEST_PROTOCOL))
        temporary.replace(path)
    return records


@dataclass(frozen=True)
class IncidentCheck:
    """What the detection engine made of a run's records by the time of the estimate."""

    opened: bool
    first_opened_s: float | None  # after the leak start [s]
    evidence_kinds: tuple[str, ...]  # e.g. "gas.low", "camera.laser_gas"
    suspected: bool = False  # a zone suspected or confirmed (an incident implies it)
    first_suspected_s: float | None = None  # after the leak start [s]


def incident_check(site: Site, records: Sequence[Record], *, site_dir: Path) -> IncidentCheck:
    """Feed ``records`` through a fresh :class:`DetectionEngine` as the service would.

    Batches are the simulator's 1 s steps (records grouped by the step they were sent in), each
    followed by the engine's tick at the step's end, as ``ingest/replay.py`` and the engine's
    tests do; stops at the estimate time. ``suspected``: a zone alarm of :data:`ZONE_ALARMS`
    was activated, or an incident opened, by then.
    """
    engine = DetectionEngine(
        site,
        alarm_config=load_alarm_config(site_dir, site),
        lel_basis=DEFAULT_LEL_BASIS,
        journal=MemoryJournal(),
        detection_settings=ENGINE_SETTINGS,
    )
    end_s = ORIGIN_EPOCH_S + LEAK_START_S + ESTIMATE_AFTER_S
    batches: dict[int, list[Record]] = {}
    for record in records:
        if record.received_time_s <= end_s:
            step = math.ceil(record.received_time_s - ORIGIN_EPOCH_S - _STEP_SLACK_S)
            batches.setdefault(step, []).append(record)
    zone_alarms = {
        zone_alarm_id(zone, what) for zone in engine.zones.zone_ids for what in ZONE_ALARMS
    }
    first: float | None = None
    first_suspected: float | None = None
    kinds: set[str] = set()
    for step in sorted(batches):
        output = engine.process(batches[step])
        ticked = engine.tick(ORIGIN_EPOCH_S + step)
        for incident in [*output.incidents, *ticked.incidents]:
            if first is None:
                first = incident.opened_time_s - ORIGIN_EPOCH_S - LEAK_START_S
            kinds.update(item.kind for item in incident.evidence)
        for event in [*output.alarm_events, *ticked.alarm_events]:
            if (
                first_suspected is None
                and event.event is EventType.ACTIVATED
                and event.alarm_id in zone_alarms
            ):
                first_suspected = event.time_s - ORIGIN_EPOCH_S - LEAK_START_S
    if first is not None:
        first_suspected = first if first_suspected is None else min(first_suspected, first)
    return IncidentCheck(
        opened=first is not None,
        first_opened_s=first,
        evidence_kinds=tuple(sorted(kinds)),
        suspected=first_suspected is not None,
        first_suspected_s=first_suspected,
    )


def _nearest_station(site: Site, position_m: np.ndarray) -> str:
    distances = [float(np.hypot(*(s.position_m - position_m))) for s in site.wind_stations]
    return site.wind_stations[int(np.argmin(distances))].id


def score(site: Site, case: Case, result: LocalisationResult, seconds: float) -> dict[str, object]:
    """How one estimate compares with the truth of ``case``."""
    pipeline = site.pipeline(case.pipeline_id)
    truth_m = pipeline.point_at_chainage(case.chainage_m)
    truth_segment = pipeline.segment_at_chainage(case.chainage_m).id
    segment = result.most_probable_segment
    true_rate = case.rate_kg_per_s * METHANE_MASS_FRACTION
    in_region = any(
        interval.pipeline_id == case.pipeline_id
        and interval.start_chainage_m <= case.chainage_m <= interval.end_chainage_m
        for interval in result.credible_intervals
    )
    rate = result.rate
    points_seen = sum(result.detections.get(kind, 0) for kind in ("point", "underground"))
    lasers_seen = result.detections.get("laser", 0)
    seen_by = "point" if points_seen else ("laser_only" if lasers_seen else "nothing")
    return {
        "detectable": bool(sum(result.detections.values()) > 0),
        "seen_by": seen_by,
        "detections": dict(result.detections),
        "saturated": dict(result.saturated),
        "segment": segment.segment_id if segment else None,
        "segment_probability": segment.probability if segment else 0.0,
        "true_segment": truth_segment,
        "segment_correct": bool(segment is not None and segment.segment_id == truth_segment),
        "true_pipeline_probability": float(
            result.pipeline_probabilities.get(case.pipeline_id, 0.0)
        ),
        "map_pipeline_id": result.map_pipeline_id,
        "map_chainage_m": result.map_chainage_m,
        "position_error_m": float(np.hypot(*(result.map_position_m - truth_m))),
        "credible_length_m": result.credible_length_m,
        "truth_in_credible_region": in_region,
        "rate_median_kg_per_s": rate.median_kg_per_s,
        "rate_interval_kg_per_s": [rate.lower_kg_per_s, rate.upper_kg_per_s],
        "true_methane_rate_kg_per_s": true_rate,
        "rate_ratio": rate.median_kg_per_s / true_rate,
        "truth_in_rate_interval": bool(rate.lower_kg_per_s <= true_rate <= rate.upper_kg_per_s),
        "stability_class_used": StabilityClass(result.wind.stability_class).name
        if result.wind
        else None,
        "flags": sorted(flag.value for flag in result.flags),
        "seconds": seconds,
    }


def estimate_variants(
    site: Site, case: Case, records: Sequence[Record], localiser: Localiser
) -> dict[str, dict[str, object]]:
    """Score the estimate under each assumption of :data:`VARIANTS` (where it applies)."""
    end_s = ORIGIN_EPOCH_S + LEAK_START_S + ESTIMATE_AFTER_S
    config = localiser.config
    observations = observations_from_records(
        site, records, end_time_s=end_s, gas=Gas.METHANE, config=config
    )
    true_code = int(StabilityClass[case.stability_class])
    pipeline = site.pipeline(case.pipeline_id)
    dead = _nearest_station(site, pipeline.point_at_chainage(case.chainage_m))
    winds = {
        "estimated": wind_from_records(site, records, end_time_s=end_s, window_s=config.window_s),
        "true_class": wind_from_records(
            site, records, end_time_s=end_s, window_s=config.window_s, stability_class=true_code
        ),
        "one_station_dead": wind_from_records(
            site, records, end_time_s=end_s, window_s=config.window_s, exclude_station_ids=[dead]
        ),
    }
    if case.stability_class in WRONG_CLASS_TRUTHS:
        winds["wrong_class_d"] = wind_from_records(
            site,
            records,
            end_time_s=end_s,
            window_s=config.window_s,
            stability_class=int(StabilityClass.D),
        )
    scored = {}
    for name, wind in winds.items():
        started = time.perf_counter()
        result = localiser.estimate(observations, wind)
        scored[name] = score(site, case, result, time.perf_counter() - started)
    return scored


def _mapping(value: object) -> dict[str, object]:
    """A scored mapping (``TypeError`` naming it otherwise)."""
    if isinstance(value, dict):
        return {str(key): item for key, item in value.items()}
    raise TypeError(f"expected a mapping in a scored row, got {value!r}")


def _number(value: object) -> float:
    """A scored figure as a float (``TypeError`` naming it otherwise)."""
    if isinstance(value, int | float):
        return float(value)
    raise TypeError(f"expected a number in a scored row, got {value!r}")


def summarise(rows: Sequence[dict[str, object]]) -> dict[str, object]:
    """Figures of one variant over the given runs (a population chosen by the caller)."""
    summary: dict[str, object] = {"runs": len(rows)}
    if not rows:
        return summary
    errors = [_number(row["position_error_m"]) for row in rows]
    saturated = [
        any(_number(count) > 0 for count in _mapping(row.get("saturated", {})).values())
        for row in rows
    ]
    ratios = [_number(row["rate_ratio"]) for row in rows]
    within = [1.0 / FACTOR_OF_TWO <= ratio <= FACTOR_OF_TWO for ratio in ratios]
    summary.update(
        {
            "segment_correct_fraction": statistics.fmean(
                float(bool(row["segment_correct"])) for row in rows
            ),
            "median_position_error_m": statistics.median(errors),
            "p90_position_error_m": float(np.percentile(errors, PERCENTILE_90)),
            "rate_within_factor_2_fraction": statistics.fmean(float(w) for w in within),
            "median_rate_ratio": statistics.median(ratios),
            "median_true_pipeline_probability": statistics.median(
                _number(row["true_pipeline_probability"]) for row in rows
            ),
            "truth_in_90_credible_region_fraction": statistics.fmean(
                float(bool(row["truth_in_credible_region"])) for row in rows
            ),
            "truth_in_90_rate_interval_fraction": statistics.fmean(
                float(bool(row["truth_in_rate_interval"])) for row in rows
            ),
            "median_credible_length_m": statistics.median(
                _number(row["credible_length_m"]) for row in rows
            ),
            "median_estimate_s": statistics.median(_number(row["seconds"]) for row in rows),
            "saturated_fraction": statistics.fmean(float(s) for s in saturated),
            "targets": {
                "segment_correct_fraction": SEGMENT_TARGET,
                "median_position_error_m": POSITION_TARGET_M,
                "rate_within_factor": FACTOR_OF_TWO,
            },
        }
    )
    return summary


def summarise_populations(rows: Sequence[dict[str, object]]) -> dict[str, object]:
    """One variant's figures on each of :data:`POPULATIONS`, and by what saw the leak.

    Each row must carry ``incident`` (the engine had an open incident at the estimate) and
    ``suspected`` (it had at least suspected a zone) besides the fields of :func:`score`.
    """
    incident = [row for row in rows if row["incident"]]
    suspected = [row for row in rows if row["suspected"] or row["incident"]]
    above = [row for row in rows if row["detectable"]]
    return {
        "runs": len(rows),
        "incident_runs": len(incident),
        "suspected_or_confirmed_runs": len(suspected),
        "above_floor_runs": len(above),
        "undetected_runs": sum(
            1
            for row in rows
            if not row["detectable"] and not row["incident"] and not row["suspected"]
        ),
        "incident": summarise(incident),
        "suspected_or_confirmed": summarise(suspected),
        "above_floor": summarise(above),
        "incident_by_seen": {
            seen: summarise([row for row in incident if row["seen_by"] == seen])
            for seen in ("point", "laser_only", "nothing")
        },
    }


def run(
    *,
    runs: int,
    seed: int = 20240612,
    site_dir: Path = DEFAULT_SITE_DIR,
    config: LocalisationConfig | None = None,
    candidates: Candidates | None = None,
    cache_dir: Path | None = None,
    population: str = "uniform",
) -> dict[str, object]:
    """Simulate ``runs`` random leaks and score the localiser; the report as a JSON-able dict.

    ``cache_dir``: keep (and reuse) the simulated records there (:func:`simulate`).
    ``population``: where the leaks are drawn (:func:`draw_cases`).
    """
    if runs < 1:
        raise ValueError(f"runs must be >= 1, got {runs}")
    site = load_site(site_dir)
    config = config or LocalisationConfig()
    localiser = Localiser(
        candidates or pipeline_candidates(site), lel_basis=DEFAULT_LEL_BASIS, config=config
    )
    started = time.perf_counter()
    per_run: list[dict[str, object]] = []
    by_variant: dict[str, list[dict[str, object]]] = {name: [] for name in VARIANTS}
    for case in draw_cases(site, runs, seed, population):
        records = simulate(site, case, cache_dir=cache_dir)
        check = incident_check(site, records, site_dir=site_dir)
        variants = estimate_variants(site, case, records, localiser)
        for name, row in variants.items():
            row["incident"] = check.opened
            row["suspected"] = check.suspected
            by_variant[name].append(row)
        per_run.append(
            {
                "case": {
                    "index": case.index,
                    "pipeline_id": case.pipeline_id,
                    "chainage_m": case.chainage_m,
                    "rate_kg_per_s": case.rate_kg_per_s,
                    "wind_direction_deg": case.wind_direction_deg,
                    "wind_speed_m_per_s": case.wind_speed_m_per_s,
                    "stability_class": case.stability_class,
                    "seed": case.seed,
                },
                "incident": {
                    "opened": check.opened,
                    "first_opened_after_leak_s": check.first_opened_s,
                    "evidence_kinds": list(check.evidence_kinds),
                    "suspected": check.suspected,
                    "first_suspected_after_leak_s": check.first_suspected_s,
                },
                "variants": variants,
            }
        )
    return {
        "site": site.id,
        "runs": runs,
        "seed": seed,
        "population": population,
        "leak_point_radius_m": LEAK_POINT_RADIUS_M if population == "leak_points" else None,
        "leak_start_s": LEAK_START_S,
        "estimate_after_s": ESTIMATE_AFTER_S,
        "window_s": config.window_s,
        "rate_range_kg_per_s": list(RATE_RANGE_KG_PER_S),
        "methane_mass_fraction": METHANE_MASS_FRACTION,
        "wind_speed_range_m_per_s": list(WIND_SPEED_RANGE_M_PER_S),
        "stability_classes": list(STABILITY_CLASSES),
        "candidates": localiser.candidates.count,
        "summary": {name: summarise_populations(rows) for name, rows in by_variant.items()},
        "per_run": per_run,
        "elapsed_s": time.perf_counter() - started,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: run the validation and write the JSON report."""
    parser = argparse.ArgumentParser(
        prog="python -m pipesentinel.hardware.validation", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--runs", type=int, default=50, help="number of random leaks")
    parser.add_argument("--seed", type=int, default=20240612, help="seed of the random cases")
    parser.add_argument("--site", type=Path, default=DEFAULT_SITE_DIR, help="site directory")
    parser.add_argument("--out", type=Path, required=True, help="JSON report to write")
    parser.add_argument(
        "--cache", type=Path, default=None, help="directory to keep simulated records in"
    )
    parser.add_argument(
        "--population",
        choices=LEAK_POPULATIONS,
        default="uniform",
        help="where leaks are drawn: uniform along a line, or near the pipeline detectors",
    )
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error(f"--runs must be >= 1, got {args.runs}")
    report = run(
        runs=args.runs,
        seed=args.seed,
        site_dir=args.site,
        cache_dir=args.cache,
        population=args.population,
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report["summary"], indent=2))  # noqa: T201 - this is the command line
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
