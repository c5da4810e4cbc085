"""The ``pipesentinel`` command: the demo end to end, broker config, site checks, bad input."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from pipesentinel.api.auth import Role as ApiRole
from pipesentinel.api.auth import TokenRegistry
from pipesentinel.cli import EXIT_BAD_INPUT, EXIT_OK, main
from pipesentinel.hardware.testbed import MosquittoProcess
from pipesentinel.ingest.storage.plan_decisions import SqlitePlanDecisionLog

REPO = Path(__file__).resolve().parents[1]
WANLI_DIR = REPO / "sites" / "wanli"


def test_demo_runs_the_whole_chain_without_rejections(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["demo", "--no-live", "--duration", "120", "--speed", "20", "--data-dir", str(tmp_path)]
    )
    assert code == EXIT_OK
    out = capsys.readouterr().out
    assert "0 rejected" in out
    with sqlite3.connect(tmp_path / "telemetry.sqlite3") as db:
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        counts = {
            table: db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] for table in tables
        }
    # 30 gas detectors over 120 s (2 s and 5 s periods): nearly all their readings are stored.
    assert sum(count for table, count in counts.items() if "gas" in table) >= 20 * 55 + 10 * 22
    assert any(count > 0 for table, count in counts.items() if "wind" in table)
    # Frames every 5 s x the speed-up 20 = 100 s of scenario time.
    assert list((tmp_path / "frames").rglob("*.jpg"))
    assert list((tmp_path / "frames").rglob("*.png"))


def test_check_site_lists_the_reference_site(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-site"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "site wanli: 2 pipelines" in out
    assert "30 gas detectors, 2 wind stations, 8 cameras" in out
    assert out.count("scenario ") == 4


def test_a_broken_site_is_a_clear_error_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "site.toml").write_text('[site]\nid = "x"\n')
    assert main(["check-site", "--site", str(tmp_path)]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "site.toml" in err
    assert "Traceback" not in err


def test_unknown_scenario_names_the_known_ones(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["demo", "--no-live", "--scenario", "no-such-thing"])
    assert code == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "no scenario 'no-such-thing'" in err
    assert "quiet_day" in err


def test_broker_config_needs_the_service_account(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["broker-config", "--out", str(tmp_path)]) == EXIT_BAD_INPUT
    assert "PIPESENTINEL_BROKER__USERNAME" in capsys.readouterr().err


def test_broker_config_writes_a_config_mosquitto_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PIPESENTINEL_BROKER__USERNAME", "pipesentinel-service")
    monkeypatch.setenv("PIPESENTINEL_BROKER__PASSWORD", "a-service-password")
    out = tmp_path / "broker"
    assert main(["broker-config", "--out", str(out)]) == EXIT_OK
    assert "41 users" in capsys.readouterr().out  # 40 devices and the service
    acl = (out / "acl").read_text()
    assert "topic write pipesentinel/v1/wanli/gas/GD01" in acl
    # The generated files are accepted by the real broker.
    with MosquittoProcess(password_file=out / "passwd", acl_file=out / "acl") as broker:
        assert broker.port > 0


def test_cli_plan_decisions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The duty officer overrides, confirms and releases a plan; every step is journaled."""
    journal = tmp_path / "plan_decisions.sqlite3"
    monkeypatch.setenv("PIPESENTINEL_RESPONSE__PLAN_DECISIONS_PATH", str(journal))
    with SqlitePlanDecisionLog(journal) as decisions:
        decisions.record_automatic(
            incident_id="INC-P",
            plan_id="WL-03",
            plan_version=1,
            time_s=time.time() - 60.0,
            reason="WL-03 v1 chosen",
        )
    site = ["--site", str(WANLI_DIR)]
    override = ["--plan", "WL-04", "--user", "alice", "--reason", "gas smelled in UT1"]
    assert main(["plan", "override", "INC-P", *override, *site]) == 0
    assert main(["plan", "confirm", "INC-P", "--user", "bob", *site]) == 0
    assert main(["plan", "show", "INC-P", *site]) == 0
    assert '"plan_id": "WL-04"' in capsys.readouterr().out
    release = ["--user", "alice", "--reason", "tunnel clear"]
    assert main(["plan", "release", "INC-P", *release, *site]) == 0
    with SqlitePlanDecisionLog(journal) as decisions:
        kinds = [(d.kind.value, d.actor) for d in decisions.decisions("INC-P")]
        current = decisions.current("INC-P")
    assert kinds == [
        ("automatic", "pipesentinel"),
        ("override", "alice"),
        ("confirmation", "bob"),
        ("release", "alice"),
    ]
    assert current is not None
    assert current.plan_id == "WL-03"
    capsys.readouterr()
    bad = ["--plan", "WL-99", "--reason", "x", *site]
    assert main(["plan", "override", "INC-P", *bad]) == 2
    assert "no plan 'WL-99'" in capsys.readouterr().err
    assert main(["plan", "override", "INC-P", "--plan", "WL-04", *site]) == 2
    assert "needs --plan and --reason" in capsys.readouterr().err


def test_token_mint_prints_the_token_once_and_keeps_only_its_hash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "tokens.json"
    monkeypatch.setenv("PIPESENTINEL_API__TOKENS_PATH", str(path))
    assert main(["token", "mint", "--name", "duty1", "--role", "duty_officer"]) == EXIT_OK
    token = capsys.readouterr().out.strip().splitlines()[-1]
    principal = TokenRegistry(path).authenticate(token)
    assert principal is not None
    assert (principal.name, principal.role) == ("duty1", ApiRole.DUTY_OFFICER)
    assert token not in path.read_text(encoding="utf-8")
    assert TokenRegistry(path).authenticate(token + "x") is None


def test_serve_without_a_broker_says_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("PIPESENTINEL_BROKER__URL", raising=False)
    assert main(["serve"]) == EXIT_BAD_INPUT
    assert "PIPESENTINEL_BROKER__URL" in capsys.readouterr().err
