"""Alarm set point files: layering, unit conversion, and errors naming the file and field."""

from __future__ import annotations

from pathlib import Path

import pytest
from numpy.testing import assert_allclose

from pipesentinel.alarm_config import (
    AlarmConfig,
    AlarmConfigValidationError,
    GasSetpoints,
    load_alarm_config,
    parse_alarm_config,
)
from pipesentinel.detection.gases import LelBasis
from pipesentinel.site import Gas, Site
from pipesentinel.site_loader import load_site

REPO_ROOT = Path(__file__).resolve().parents[1]
SOURCE = Path("sites/test/alarms.toml")


@pytest.fixture(scope="module")
def wanli() -> Site:
    return load_site(REPO_ROOT / "sites" / "wanli")


def parse(text: str, site: Site) -> AlarmConfig:
    return parse_alarm_config(text, source=SOURCE, site=site)


def test_defaults_in_si() -> None:
    default = GasSetpoints()
    assert_allclose(
        [default.low_fraction_lel, default.high_fraction_lel, default.deadband_fraction_lel],
        [0.20, 0.40, 0.02],
    )
    assert_allclose(default.rate_of_rise_fraction_lel_per_s, 0.10 / 60.0)  # 10 %LEL min-1
    assert (default.on_delay_s, default.off_delay_s) == (1.0, 10.0)
    assert default.noise_std_fraction_of_full_scale == 0.005


def test_reference_file_loads(wanli: Site) -> None:
    config = load_alarm_config(REPO_ROOT / "sites" / "wanli", wanli)
    assert config.lel_basis is LelBasis.IEC_60079_20_1
    assert config.source == REPO_ROOT / "sites" / "wanli" / "alarms.toml"
    assert set(config.setpoints) == {detector.id for detector in wanli.gas_detectors}
    assert config.for_detector("GD07", Gas.METHANE) == GasSetpoints()
    underground = config.for_detector("UD08", Gas.PROPANE)
    assert_allclose([underground.low_fraction_lel, underground.high_fraction_lel], [0.1, 0.2])
    with pytest.raises(KeyError, match="'XX'"):
        config.for_detector("XX", Gas.METHANE)


def test_site_without_a_file_gets_defaults() -> None:
    lakeside_dir = REPO_ROOT / "tests" / "site_fixtures" / "lakeside"
    lakeside = load_site(lakeside_dir)
    config = load_alarm_config(lakeside_dir, lakeside)
    assert config.source is None
    assert config.lel_basis is None
    assert config == AlarmConfig.defaults_for(lakeside)
    assert config.for_detector("D2", Gas.PROPANE) == GasSetpoints()


def test_layers_later_wins(wanli: Site) -> None:
    config = parse(
        """
        [defaults]
        low_percent_lel = 15
        off_delay_s = 20
        [defaults.propane]
        low_percent_lel = 12
        [zones.P1-S2]
        high_percent_lel = 30
        on_delay_s = 4
        [zones.P1-S2.methane]
        high_percent_lel = 35
        [devices.GD05]
        on_delay_s = 0
        [devices.GD05.propane]
        rate_of_rise_percent_lel_per_min = 6
        """,
        wanli,
    )
    gd05_methane = config.for_detector("GD05", Gas.METHANE)
    gd05_propane = config.for_detector("GD05", Gas.PROPANE)
    gd04_methane = config.for_detector("GD04", Gas.METHANE)
    gd01_propane = config.for_detector("GD01", Gas.PROPANE)
    assert_allclose(gd05_methane.low_fraction_lel, 0.15)
    assert_allclose(gd05_methane.high_fraction_lel, 0.35)  # zone gas table over zone table
    assert gd05_methane.on_delay_s == 0.0  # device over zone
    assert_allclose(gd05_propane.low_fraction_lel, 0.12)
    assert_allclose(gd05_propane.high_fraction_lel, 0.30)
    assert_allclose(gd05_propane.rate_of_rise_fraction_lel_per_s, 0.06 / 60.0)
    assert gd04_methane.on_delay_s == 4.0
    assert gd04_methane.off_delay_s == 20.0
    assert_allclose(gd01_propane.high_fraction_lel, 0.40)  # untouched default


def test_every_problem_is_reported_at_once(wanli: Site) -> None:
    text = """
        lel_basis = "ATEX"
        colour = "red"
        [defaults]
        low_percent_lel = "twenty"
        on_delay_s = -1
        [defaults.butane]
        low_percent_lel = 10
        [defaults.methane]
        hihg_percent_lel = 30
        [zones.P9-S1]
        low_percent_lel = 10
        [devices.GD99]
        low_percent_lel = 10
        [devices.GD03.propane]
        low_percent_lel = 50
        high_percent_lel = 120
        """
    with pytest.raises(AlarmConfigValidationError) as caught:
        parse(text, wanli)
    paths = [issue.path for issue in caught.value.issues]
    assert paths == [
        "colour",
        "lel_basis",
        "defaults.low_percent_lel",
        "defaults.on_delay_s",
        "defaults.butane",
        "defaults.methane.hihg_percent_lel",
        "zones.P9-S1",
        "devices.GD99",
        "devices.GD03.propane.high_percent_lel",
        "devices.GD03.propane.low_percent_lel",
    ]
    message = str(caught.value)
    assert message.startswith(f"{SOURCE}: 10 problems in the alarms file")
    assert f"{SOURCE}: zones.P9-S1: unknown zone 'P9-S1'" in message
    assert "unknown gas detector 'GD99'" in message
    assert "120 is outside (0, 100]" in message
    assert "-1 is outside [0, inf)" in message
    # low 50 >= the default high 40, named with the detector since a device table set it
    assert (
        "devices.GD03.propane.low_percent_lel: detector 'GD03' propane: low_percent_lel = 50 "
        "must be below high_percent_lel = 40 (set by high_percent_lel)"
    ) in message


def test_a_bad_default_is_reported_once(wanli: Site) -> None:
    with pytest.raises(AlarmConfigValidationError) as caught:
        parse("[defaults]\nlow_percent_lel = 45\n", wanli)
    assert [str(issue) for issue in caught.value.issues] == [
        "defaults.low_percent_lel: methane: low_percent_lel = 45 must be below "
        "high_percent_lel = 40 (set by high_percent_lel)",
        "defaults.low_percent_lel: propane: low_percent_lel = 45 must be below "
        "high_percent_lel = 40 (set by high_percent_lel)",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[defaults\n", "<toml>: syntax error"),
        (b"\xff\xfe", "<file>: not UTF-8"),
        ("defaults = 3\n", "defaults: expected a table"),
        ("[defaults]\nlow_percent_lel = true\n", "expected a number, got bool"),
        ("[defaults]\ndeadband_percent_lel = 25\n", "must be below low_percent_lel"),
        (
            "[defaults]\nrate_of_rise_deadband_percent_lel_per_min = 10\n",
            "must be below rate_of_rise_percent_lel_per_min",
        ),
        ("[defaults]\nrate_of_rise_window_s = 0\n", r"0 is outside \(0, inf\)"),
    ],
)
def test_bad_files(wanli: Site, text: str | bytes, expected: str) -> None:
    with pytest.raises(AlarmConfigValidationError, match=expected):
        parse_alarm_config(text, source=SOURCE, site=wanli)


def test_an_explicit_missing_file_is_an_error(wanli: Site, tmp_path: Path) -> None:
    with pytest.raises(AlarmConfigValidationError, match="cannot read"):
        load_alarm_config(tmp_path / "alarms.toml", wanli)
