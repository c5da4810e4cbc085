"""Replay: a recording through the live pipeline, deterministic, bad input counted not fatal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipesentinel.cli import main
from pipesentinel.hardware.offline import scenario_messages
from pipesentinel.hardware.scenario import load_scenario
from pipesentinel.hardware.world import SiteSimulation
from pipesentinel.ingest.recording import RecordingWriter
from pipesentinel.ingest.replay import REPORT_NAME, replay
from pipesentinel.settings import DetectionSettings, Settings
from pipesentinel.site_loader import load_site

SITE_DIR = Path(__file__).resolve().parents[2] / "sites" / "wanli"
ORIGIN_EPOCH_S = 1.8e9


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """420 s of the P1 leak scenario (leak from 300 s), plus one garbage message and line."""
    site = load_site(SITE_DIR)
    scenario = load_scenario(SITE_DIR / "scenarios" / "p1_associated_gas_leak.toml", site)
    path = tmp_path_factory.mktemp("recording") / "wanli.jsonl"
    with RecordingWriter(path) as writer:
        for step in scenario_messages(
            SiteSimulation(site, scenario, frames=False),
            origin_epoch_s=ORIGIN_EPOCH_S,
            until_s=420.0,
        ):
            for message in step.messages:
                writer.write(message.topic, message.payload, message.time_s)
            if step.time_s == ORIGIN_EPOCH_S + 10.0:
                writer.write("pipesentinel/v1/wanli/gas/GD01", b"{not json", step.time_s)
    with path.open("ab") as handle:
        handle.write(b'{"topic": 5}\n')
    return path


def _settings() -> Settings:
    return Settings(site_dir=SITE_DIR, detection=DetectionSettings(camera_analytics=False))


def test_replay_is_deterministic_and_finds_the_leak(recording: Path, tmp_path: Path) -> None:
    site = load_site(SITE_DIR)
    first = replay(recording, out_dir=tmp_path / "a", settings=_settings(), site=site)
    second = replay(recording, out_dir=tmp_path / "b", settings=_settings(), site=site)
    assert (tmp_path / "a" / REPORT_NAME).read_bytes() == (
        tmp_path / "b" / REPORT_NAME
    ).read_bytes()
    assert first == second
    assert first["rejections"] == {"bad_json": 1}
    assert len(first["bad_lines"]) == 1
    assert first["bad_lines"][0]["line"] > 1
    activated: dict[str, float] = {}  # first activation of each alarm
    for e in first["alarm_timeline"]:
        if e["event"] == "activated":
            activated.setdefault(e["alarm_id"], e["offset_s"])
    assert "zone.P1-S3.suspected_leak" in activated
    assert 300.0 < activated["zone.P1-S3.suspected_leak"] < 340.0
    assert first["faults"] == []
    assert first["records"]["GasReading"] > 0
    # A second replay into the same folder starts afresh (no journal left over).
    again = replay(recording, out_dir=tmp_path / "a", settings=_settings(), site=site)
    assert again == first


def test_cli_replay_writes_the_report(
    recording: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cli"
    code = main(
        ["replay", str(recording), "--out", str(out), "--site", str(SITE_DIR), "--no-frames"]
    )
    assert code == 0
    report = json.loads((out / REPORT_NAME).read_text(encoding="utf-8"))
    assert report["site_id"] == "wanli"
    assert "alarm activations" in capsys.readouterr().out


def test_cli_replay_of_a_missing_file_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "replay",
            str(tmp_path / "nope.jsonl"),
            "--out",
            str(tmp_path / "o"),
            "--site",
            str(SITE_DIR),
        ]
    )
    assert code != 0
    assert "nope.jsonl" in capsys.readouterr().err
