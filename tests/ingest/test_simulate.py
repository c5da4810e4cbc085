"""``pipesentinel simulate``: a scenario end to end, and a what-if."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pipesentinel.cli import main
from pipesentinel.hardware.scenario import load_scenario
from pipesentinel.ingest.simulate import (
    ALERT_NAME,
    GEOJSON_NAME,
    PLAN_DECISIONS_NAME,
    REPORT_NAME,
    simulate_scenario,
)
from pipesentinel.plans.cap import CapStatus, validate_cap
from pipesentinel.plans.response import ResponseContext
from pipesentinel.settings import Settings
from pipesentinel.site_loader import load_site

SITE_DIR = Path(__file__).resolve().parents[2] / "sites" / "wanli"
SCENARIO = SITE_DIR / "scenarios" / "p1_associated_gas_leak.toml"
UNTIL_S = 600.0  # the leak starts at 300 s; GD07 and a laser confirm it by ~460 s


@pytest.fixture(scope="module")
def scenario_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    site = load_site(SITE_DIR)
    base = Settings(environment="development")
    settings = base.model_copy(
        update={
            "detection": base.detection.model_copy(
                update={"camera_analytics": False, "expect_frames": False}
            )
        }
    )
    context = ResponseContext.for_site(site, SITE_DIR, cap_status=CapStatus.EXERCISE)
    out = tmp_path_factory.mktemp("simulate")
    report = simulate_scenario(
        load_scenario(SCENARIO, site),
        out_dir=out,
        settings=settings,
        site=site,
        context=context,
        until_s=UNTIL_S,
    )
    return out, report


def test_scenario_runs_from_devices_to_plan(scenario_run: tuple[Path, dict[str, Any]]) -> None:
    out, report = scenario_run
    assert report == json.loads((out / REPORT_NAME).read_text(encoding="utf-8"))
    assert report["kind"] == "scenario"
    # Every device message went through the (embedded) broker and came back unaltered.
    assert report["scenario"]["broker"] == "embedded"
    assert report["scenario"]["messages_through_broker"] == report["detection"]["messages"] > 0
    assert len(report["incidents"]) == 1
    response = report["response"]
    assert response is not None
    # The estimate is near the leak the scenario played (P1 at 2236 m, segment P1-S3).
    (accuracy,) = report["accuracy"]
    assert accuracy["true_segment"] == "P1-S3"
    assert accuracy["segment_probability"] > 0.5
    assert accuracy["position_error_m"] < 100.0
    assert response["isolation"]["valves_to_close"] == ["P1-V2", "P1-V3"]
    assert response["plan"]["plan_id"]
    assert response["plan"]["explanation"]
    # The plan selection is journaled, and the timeline says when it was chosen.
    assert report["plan_decisions"]
    assert report["plan_decisions"][0]["plan_id"] == response["plan"]["plan_id"]
    sources = [entry["source"] for entry in report["timeline"]]
    assert "plan" in sources
    assert "incident" in sources
    first_alarm = next(e for e in report["timeline"] if e["source"] == "alarm")
    first_incident = next(e for e in report["timeline"] if e["source"] == "incident")
    assert first_alarm["time_s"] <= first_incident["time_s"]
    # With frames off and analytics off, no camera is reported offline for want of frames.
    assert not [f for f in report["detection"]["faults"] if "CAM" in (f["alarm_id"] or "")]


def test_scenario_outputs_are_valid(scenario_run: tuple[Path, dict[str, Any]]) -> None:
    out, report = scenario_run
    validate_cap((out / ALERT_NAME).read_text(encoding="utf-8"))
    assert "<status>Exercise</status>" in (out / ALERT_NAME).read_text(encoding="utf-8")
    geojson = json.loads((out / GEOJSON_NAME).read_text(encoding="utf-8"))
    assert geojson["type"] == "FeatureCollection"
    levels = {
        f["properties"]["level"]
        for f in geojson["features"]
        if f["properties"]["layer"] == "threat_zone"
    }
    assert {"red", "yellow", "isolation"} <= levels
    for feature in geojson["features"]:
        lon, lat = _first_position(feature["geometry"])
        assert 113.0 < lon < 114.1
        assert 34.2 < lat < 35.3
    assert (out / PLAN_DECISIONS_NAME).is_file()
    for name in report["outputs"]:
        assert (out / name).is_file(), name


def _first_position(geometry: dict[str, Any]) -> tuple[float, float]:
    coordinates: Any = geometry["coordinates"]
    while isinstance(coordinates[0], list):
        coordinates = coordinates[0]
    return float(coordinates[0]), float(coordinates[1])


def test_cli_what_if(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "simulate",
            "--what-if",
            "--pipeline",
            "P1",
            "--chainage",
            "690",
            "--rate",
            "5",
            "--rate-factor",
            "2",
            "--wind-speed",
            "1.5",
            "--wind-from",
            "158",
            "--stability",
            "E",
            "--time",
            "2024-06-12T10:00",
            "--site",
            str(SITE_DIR),
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "WL-02" in printed  # the kindergarten plan, by day
    report = json.loads((tmp_path / REPORT_NAME).read_text(encoding="utf-8"))
    assert report["kind"] == "what_if"
    assert report["response"]["local_time"].startswith("2024-06-12T10:00:00+08:00")
    validate_cap((tmp_path / ALERT_NAME).read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--what-if", "--pipeline", "P1", "--chainage", "10"], "missing: --rate"),
        (
            [
                "--what-if",
                "--pipeline",
                "P9",
                "--chainage",
                "10",
                "--rate",
                "1",
                "--wind-speed",
                "2",
                "--wind-from",
                "0",
                "--stability",
                "D",
            ],
            "no pipeline 'P9'",
        ),
        (["no_such_scenario"], "no scenario 'no_such_scenario'"),
        ([], "give a scenario"),
    ],
)
def test_cli_simulate_bad_input_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], arguments: list[str], message: str
) -> None:
    code = main(["simulate", *arguments, "--site", str(SITE_DIR), "--out", str(tmp_path)])
    assert code == 2
    assert message in capsys.readouterr().err
