"""Tests of the localiser validation harness: a tiny run's report, and an easy leak is found."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipesentinel.detection.gases import DEFAULT_LEL_BASIS
from pipesentinel.detection.localisation import Localiser, pipeline_candidates
from pipesentinel.hardware.validation import (
    LEAK_POINT_RADIUS_M,
    VARIANTS,
    Case,
    draw_cases,
    estimate_variants,
    incident_check,
    main,
    pipeline_detectors,
    simulate,
    summarise,
    summarise_populations,
)
from pipesentinel.site import Site
from pipesentinel.site_loader import load_site

REPO_ROOT = Path(__file__).resolve().parents[2]
SUMMARY_KEYS = {
    "runs",
    "segment_correct_fraction",
    "median_position_error_m",
    "p90_position_error_m",
    "rate_within_factor_2_fraction",
    "median_rate_ratio",
    "median_true_pipeline_probability",
    "truth_in_90_credible_region_fraction",
    "truth_in_90_rate_interval_fraction",
    "median_credible_length_m",
    "median_estimate_s",
    "saturated_fraction",
    "targets",
}


@pytest.fixture(scope="module")
def site() -> Site:
    return load_site(REPO_ROOT / "sites" / "wanli")


def test_cases_are_reproducible_and_in_range(site: Site) -> None:
    cases = draw_cases(site, 20, seed=5)
    assert cases == draw_cases(site, 20, seed=5)
    assert cases != draw_cases(site, 20, seed=6)
    for case in cases:
        assert 0.2 <= case.rate_kg_per_s <= 3.0
        assert 0.0 <= case.chainage_m <= site.pipeline(case.pipeline_id).length_m
        assert case.stability_class in {"B", "C", "D", "E", "F"}


def test_leak_points_are_within_the_radius_of_a_detector_on_their_line(site: Site) -> None:
    detectors = [
        (detector.pipeline_id, detector.chainage_m)
        for detector in site.gas_detectors
        if detector.pipeline_id is not None and detector.chainage_m is not None
    ]
    assert len(detectors) == 20  # the reference site's pipeline detectors
    assert pipeline_detectors(site) == detectors
    cases = draw_cases(site, 200, seed=5, population="leak_points")
    assert cases == draw_cases(site, 200, seed=5, population="leak_points")
    uniform = draw_cases(site, 200, seed=5)
    offsets = []
    for case in cases:
        assert 0.0 <= case.chainage_m <= site.pipeline(case.pipeline_id).length_m
        nearest_m = min(
            abs(case.chainage_m - chainage_m)
            for pipeline_id, chainage_m in detectors
            if pipeline_id == case.pipeline_id
        )
        assert nearest_m <= LEAK_POINT_RADIUS_M
        offsets.append(nearest_m)
        assert 0.2 <= case.rate_kg_per_s <= 3.0
        assert case.stability_class in {"B", "C", "D", "E", "F"}
    # Offsets spread over the radius, not all at the detector's foot; both lines drawn.
    assert max(offsets) > 0.5 * LEAK_POINT_RADIUS_M
    assert {case.pipeline_id for case in cases} == {p.id for p in site.pipelines}
    # The uniform draw mostly lands far from every detector (the populations differ).
    far = [
        case
        for case in uniform
        if min(
            abs(case.chainage_m - chainage_m)
            for pipeline_id, chainage_m in detectors
            if pipeline_id == case.pipeline_id
        )
        > LEAK_POINT_RADIUS_M
    ]
    assert len(far) > len(uniform) // 2


def test_unknown_population_is_refused(site: Site, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="population"):
        draw_cases(site, 3, seed=5, population="everywhere")
    with pytest.raises(SystemExit):
        main(["--runs", "1", "--population", "everywhere", "--out", str(tmp_path / "x.json")])


def test_easy_leak_next_to_a_detector_is_found(site: Site, tmp_path: Path) -> None:
    """The reference scenario's geometry: P1 at 2236 m, 16 m from GD07, wind from 80 deg."""
    case = Case(
        index=0,
        pipeline_id="P1",
        chainage_m=2236.0,
        rate_kg_per_s=1.0,
        wind_direction_deg=80.0,
        wind_speed_m_per_s=3.5,
        stability_class="D",
        seed=7,
    )
    localiser = Localiser(pipeline_candidates(site), lel_basis=DEFAULT_LEL_BASIS)
    records = simulate(site, case, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("case-*.pickle"))) == 1
    assert simulate(site, case, cache_dir=tmp_path) == records  # read back from the cache
    scored = estimate_variants(site, case, records, localiser)
    assert set(scored) == {"estimated", "true_class", "one_station_dead"}  # D: no wrong class
    estimated = scored["estimated"]
    assert estimated["detectable"] is True
    assert estimated["segment_correct"] is True
    assert estimated["true_segment"] == "P1-S3"
    assert isinstance(estimated["position_error_m"], float)
    assert estimated["position_error_m"] < 30.0
    assert isinstance(estimated["rate_ratio"], float)
    assert 0.5 <= estimated["rate_ratio"] <= 2.0
    assert estimated["seen_by"] == "point"
    summary = summarise([estimated])
    assert set(summary) == SUMMARY_KEYS
    assert summary["segment_correct_fraction"] == 1.0
    # 16 m from GD07 at 1 kg/s: the engine raises GD07's LOW alarm and opens an incident.
    check = incident_check(site, records, site_dir=REPO_ROOT / "sites" / "wanli")
    assert check.opened
    assert check.first_opened_s is not None
    assert 0.0 < check.first_opened_s < 600.0  # before the estimate
    assert "gas.low" in check.evidence_kinds
    # An incident is a confirmed zone: the engine suspected or confirmed it no later.
    assert check.suspected
    assert check.first_suspected_s is not None
    assert 0.0 < check.first_suspected_s <= check.first_opened_s
    row = {**estimated, "incident": check.opened, "suspected": check.suspected}
    populations = summarise_populations([row])
    assert populations["incident_runs"] == populations["above_floor_runs"] == 1
    assert populations["suspected_or_confirmed_runs"] == 1
    assert populations["undetected_runs"] == 0
    # GD07 at 16 m from 1 kg/s stays within its range here: nothing censored.
    assert estimated["saturated"] == {"point": 0, "underground": 0, "laser": 0}
    assert summary["saturated_fraction"] == 0.0


def test_populations_nest_and_count_saturated_runs() -> None:
    """incident within suspected-or-confirmed; undetected is neither nor above a floor."""

    def row(
        *, incident: bool, suspected: bool, detectable: bool, saturated: int
    ) -> dict[str, object]:
        return {
            "incident": incident,
            "suspected": suspected,
            "detectable": detectable,
            "seen_by": "point" if detectable else "nothing",
            "saturated": {"point": saturated, "underground": 0, "laser": 0},
            "segment_correct": True,
            "position_error_m": 1.0,
            "rate_ratio": 1.0,
            "true_pipeline_probability": 1.0,
            "truth_in_credible_region": True,
            "truth_in_rate_interval": True,
            "credible_length_m": 5.0,
            "seconds": 0.1,
        }

    rows = [
        row(incident=True, suspected=True, detectable=True, saturated=1),
        row(incident=False, suspected=True, detectable=True, saturated=0),
        row(incident=False, suspected=True, detectable=False, saturated=0),
        row(incident=False, suspected=False, detectable=True, saturated=1),
        row(incident=False, suspected=False, detectable=False, saturated=0),
    ]
    populations = summarise_populations(rows)
    assert populations["incident_runs"] == 1
    assert populations["suspected_or_confirmed_runs"] == 3
    assert populations["above_floor_runs"] == 3
    assert populations["undetected_runs"] == 1
    suspected = populations["suspected_or_confirmed"]
    assert isinstance(suspected, dict)
    assert suspected["saturated_fraction"] == pytest.approx(1.0 / 3.0)
    above = populations["above_floor"]
    assert isinstance(above, dict)
    assert above["saturated_fraction"] == pytest.approx(2.0 / 3.0)


def test_tiny_run_writes_a_complete_report(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    assert main(["--runs", "2", "--seed", "11", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["runs"] == 2
    assert len(report["per_run"]) == 2
    assert set(report["summary"]) == set(VARIANTS)
    estimated = report["summary"]["estimated"]
    assert estimated["runs"] == 2
    assert (
        estimated["above_floor_runs"] + estimated["undetected_runs"]
        >= 2 - (estimated["incident_runs"])
    )
    for population in ("incident", "suspected_or_confirmed", "above_floor"):
        if estimated[f"{population}_runs"]:
            assert set(estimated[population]) == SUMMARY_KEYS
        else:
            assert estimated[population] == {"runs": 0}
    for run in report["per_run"]:
        assert {"case", "incident", "variants"} <= set(run)
        assert run["incident"]["suspected"] >= run["incident"]["opened"]
        assert run["variants"]["estimated"]["true_segment"].startswith(run["case"]["pipeline_id"])


def test_bad_run_count_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        main(["--runs", "0", "--out", str(tmp_path / "x.json")])
