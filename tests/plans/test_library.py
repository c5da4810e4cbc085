"""The plan library: the reference plans load; every kind of bad plan file fails, named."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from pipesentinel.plans.library import (
    Applicability,
    CloseValvesAction,
    PlanLibrary,
    PlanValidationError,
    Severity,
    TimeOfDay,
    TrafficControlAction,
    load_plan_library,
)
from pipesentinel.site import SENSITIVE_USES, Site
from pipesentinel.site_loader import load_site

SITE_DIR = Path(__file__).resolve().parents[2] / "sites" / "wanli"
PLANS_DIR = SITE_DIR / "plans"


@pytest.fixture(scope="module")
def site() -> Site:
    return load_site(SITE_DIR)


@pytest.fixture(scope="module")
def library(site: Site) -> PlanLibrary:
    return load_plan_library(PLANS_DIR, site)


GENERIC = """
id = "T-GEN"
title = "Generic"
version = 1
generic = true
description = "fallback"
responsible_roles = ["duty_officer"]

[[actions]]
kind = "notify"
roles = ["fire_rescue"]
instruction = "Call 119."
responsible = "duty_officer"
"""

SPECIFIC = """
id = "T-1"
title = "Specific"
version = 2
description = "a test plan"
responsible_roles = ["incident_commander"]

[applicability]
min_severity = "confirmed"
segments = ["P1-S2"]

[[actions]]
kind = "close_valves"
valves = ["P1-V1", "P1-V2"]
instruction = "Close them."
responsible = "pipeline_control_centre"
within_min = 10.0

[[actions]]
kind = "traffic_control"
roads = ["R29", "Wanli Road"]
instruction = "Close the roads."
responsible = "police"
"""


def write_library(directory: Path, *plans: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for index, text in enumerate(plans):
        (directory / f"plan-{index:02d}.toml").write_text(text, encoding="utf-8")
    return directory


# --- the reference library ------------------------------------------------------------------------


def test_reference_library_loads_with_at_least_six_plans_and_one_generic(
    library: PlanLibrary,
) -> None:
    assert len(library.plans) >= 6
    assert [plan.id for plan in library.plans] == sorted(plan.id for plan in library.plans)
    assert [plan.id for plan in library.plans if plan.generic] == [library.generic_plan.id]
    assert not library.generic_plan.applicability.restricted
    for plan in library.plans:
        assert plan.actions, plan.id
        assert plan.references, f"{plan.id} cites no practice"
        assert library.sources[plan.id].parent == PLANS_DIR


def test_reference_library_covers_the_situations_of_issue_4(library: PlanLibrary) -> None:
    rules = {plan.id: plan.applicability for plan in library.plans}
    assert any(rule.max_severity == Severity.SUSPECTED for rule in rules.values())
    assert any(rule.min_severity.rank >= Severity.MAJOR.rank for rule in rules.values())
    assert any(rule.underground.value == "required" for rule in rules.values())
    assert any(rule.time_of_day.value == "night" for rule in rules.values())
    assert any(rule.wind_from_sectors_deg for rule in rules.values())
    assert any(
        rule.sensitive is not None and set(rule.sensitive.uses) & SENSITIVE_USES
        for rule in rules.values()
    )


def test_reference_ids_exist_in_the_site(library: PlanLibrary, site: Site) -> None:
    valves = {valve.id for pipeline in site.pipelines for valve in pipeline.valves}
    roads = {road.id for road in site.roads} | {road.name for road in site.roads}
    for plan in library.plans:
        for action in plan.actions:
            if isinstance(action, CloseValvesAction):
                assert set(action.valves) <= valves
            if isinstance(action, TrafficControlAction):
                assert set(action.roads) <= roads


def test_plans_are_plain_json(library: PlanLibrary) -> None:
    for plan in library.plans:
        body = plan.to_json_dict()
        assert json.loads(json.dumps(body)) == body
        assert body["actions"][0]["kind"] == plan.actions[0].kind


def test_a_minimal_library_loads(tmp_path: Path, site: Site) -> None:
    library = load_plan_library(write_library(tmp_path / "plans", GENERIC, SPECIFIC), site)
    plan = library.plan("T-1")
    assert plan.version == 2
    assert plan.applicability.segments == ("P1-S2",)
    first = plan.actions[0]
    assert isinstance(first, CloseValvesAction)
    assert first.valves == ("P1-V1", "P1-V2")
    assert library.generic_plan.id == "T-GEN"
    with pytest.raises(KeyError, match="T-9"):
        library.plan("T-9")


# --- bad files: each kind names the file, the plan and the field ----------------------------------

BAD_CASES = {
    "unknown top-level field": (
        SPECIFIC.replace("version = 2\n", 'version = 2\ncolour = "red"\n'),
        "colour",
        "Extra inputs are not permitted",
    ),
    "unknown field in an action": (
        SPECIFIC.replace("within_min = 10.0\n", "within_min = 10.0\nspeed = 1\n"),
        "actions[0].speed",
        "Extra inputs are not permitted",
    ),
    "unknown field in applicability": (
        SPECIFIC.replace('segments = ["P1-S2"]', 'segment = ["P1-S2"]'),
        "applicability.segment",
        "Extra inputs are not permitted",
    ),
    "wrong type: version as a string": (
        SPECIFIC.replace("version = 2", 'version = "2"'),
        "version",
        "valid integer",
    ),
    "wrong type: target minutes as a string": (
        SPECIFIC.replace("within_min = 10.0", 'within_min = "10"'),
        "actions[0].within_min",
        "valid number",
    ),
    "wrong type: isolation_set as an integer": (
        SPECIFIC.replace('valves = ["P1-V1", "P1-V2"]', "isolation_set = 1"),
        "actions[0].isolation_set",
        "valid boolean",
    ),
    "unknown valve": (
        SPECIFIC.replace('"P1-V2"]', '"P1-V9"]'),
        "actions[0].valves[1]",
        "unknown valve 'P1-V9'",
    ),
    "unknown road": (
        SPECIFIC.replace('"Wanli Road"', '"Nowhere Road"'),
        "actions[1].roads[1]",
        "unknown road id or name 'Nowhere Road'",
    ),
    "unknown segment": (
        SPECIFIC.replace('segments = ["P1-S2"]', 'segments = ["P1-S9"]'),
        "applicability.segments[0]",
        "unknown segment 'P1-S9'",
    ),
    "segment not on the listed pipeline": (
        SPECIFIC.replace('segments = ["P1-S2"]', 'pipelines = ["P2"]\nsegments = ["P1-S2"]'),
        "applicability.segments[0]",
        "is on pipeline 'P1'",
    ),
    "empty actions": (
        SPECIFIC.split("[[actions]]", maxsplit=1)[0].replace(
            "[applicability]", "actions = []\n[applicability]"
        ),
        "actions",
        "at least 1 item",
    ),
    "unknown role": (
        SPECIFIC.replace('responsible = "police"', 'responsible = "mayor"'),
        "actions[1].responsible",
        "Input should be",
    ),
    "unknown action kind": (
        SPECIFIC.replace('kind = "traffic_control"', 'kind = "pray"'),
        "actions[1]",
        "does not match any of the expected tags",
    ),
    "unknown severity": (
        SPECIFIC.replace('min_severity = "confirmed"', 'min_severity = "bad"'),
        "applicability.min_severity",
        "Input should be",
    ),
    "inverted severity band": (
        SPECIFIC.replace(
            'min_severity = "confirmed"', 'min_severity = "major"\nmax_severity = "confirmed"'
        ),
        "applicability",
        "max_severity 'confirmed' is below min_severity 'major'",
    ),
    "valves step without valves": (
        SPECIFIC.replace('valves = ["P1-V1", "P1-V2"]\n', ""),
        "actions[0]",
        "isolation_set",
    ),
    "non-sensitive use in the sensitive criterion": (
        SPECIFIC.replace(
            'segments = ["P1-S2"]', 'segments = ["P1-S2"]\nsensitive = { uses = ["commercial"] }'
        ),
        "applicability.sensitive",
        "not sensitive uses",
    ),
    "sensitive building that is not sensitive": (
        SPECIFIC.replace(
            'segments = ["P1-S2"]', 'segments = ["P1-S2"]\nsensitive = { buildings = ["B22"] }'
        ),
        "applicability.sensitive.buildings[0]",
        "unknown sensitive building 'B22'",
    ),
    "unknown underground zone": (
        SPECIFIC.replace(
            'segments = ["P1-S2"]',
            'segments = ["P1-S2"]\nunderground = "required"\nunderground_zones = ["P1-S2"]',
        ),
        "applicability.underground_zones[0]",
        "unknown underground detection zone 'P1-S2'",
    ),
    "generic plan with restrictions": (
        GENERIC + '\n[applicability]\ngases = ["propane"]\n',
        "applicability",
        "a generic plan must have no applicability restriction",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_plan_file_names_file_plan_and_field(tmp_path: Path, site: Site, case: str) -> None:
    text, field, message = BAD_CASES[case]
    assert text not in (SPECIFIC, GENERIC), "the case must change the file"
    directory = write_library(tmp_path / "plans", GENERIC, text)
    bad_file = directory / "plan-01.toml"
    plan_id = "T-GEN" if "generic = true" in text else "T-1"
    if plan_id == "T-GEN":  # the generic case replaces the generic file
        (directory / "plan-00.toml").write_text(SPECIFIC, encoding="utf-8")
    with pytest.raises(PlanValidationError) as caught:
        load_plan_library(directory, site)
    error = caught.value
    assert error.path == bad_file
    assert error.plan_id == plan_id
    assert error.field == field
    assert message in str(error)
    assert str(bad_file) in str(error)
    assert f"plan {plan_id!r}" in str(error)


def test_duplicate_plan_id_names_both_files(tmp_path: Path, site: Site) -> None:
    directory = write_library(tmp_path / "plans", GENERIC, SPECIFIC, SPECIFIC.replace("2", "3"))
    with pytest.raises(PlanValidationError) as caught:
        load_plan_library(directory, site)
    assert caught.value.path == directory / "plan-02.toml"
    assert caught.value.plan_id == "T-1"
    assert caught.value.field == "id"
    assert "duplicate plan id" in str(caught.value)
    assert str(directory / "plan-01.toml") in str(caught.value)


def test_a_library_without_a_generic_plan_is_refused(tmp_path: Path, site: Site) -> None:
    directory = write_library(tmp_path / "plans", SPECIFIC)
    with pytest.raises(PlanValidationError, match="exactly one plan must be generic"):
        load_plan_library(directory, site)


def test_two_generic_plans_are_refused(tmp_path: Path, site: Site) -> None:
    directory = write_library(tmp_path / "plans", GENERIC, GENERIC.replace("T-GEN", "T-GEN2"))
    with pytest.raises(PlanValidationError, match=r"found \['T-GEN', 'T-GEN2'\]"):
        load_plan_library(directory, site)


def test_a_file_that_is_not_toml_is_named(tmp_path: Path, site: Site) -> None:
    directory = write_library(tmp_path / "plans", GENERIC, "id = \n")
    with pytest.raises(PlanValidationError, match="not valid TOML") as caught:
        load_plan_library(directory, site)
    assert caught.value.path == directory / "plan-01.toml"
    assert caught.value.plan_id is None


def test_an_empty_directory_is_refused(tmp_path: Path, site: Site) -> None:
    with pytest.raises(PlanValidationError, match="no plan files"):
        load_plan_library(tmp_path, site)


def test_a_reference_plan_broken_on_disk_is_caught(tmp_path: Path, site: Site) -> None:
    directory = tmp_path / "plans"
    shutil.copytree(PLANS_DIR, directory)
    broken = directory / "wl-07-major-fire.toml"
    broken.write_text(broken.read_text().replace('"R43"', '"R99"'), encoding="utf-8")
    with pytest.raises(PlanValidationError) as caught:
        load_plan_library(directory, site)
    assert caught.value.path == broken
    assert caught.value.plan_id == "WL-07"
    assert caught.value.field is not None
    assert caught.value.field.endswith(".roads[5]")


def test_a_library_built_in_code_keeps_the_same_rules(library: PlanLibrary) -> None:
    generic = library.generic_plan
    with pytest.raises(ValueError, match="duplicate plan ids"):
        replace(library, plans=(*library.plans, generic))
    with pytest.raises(ValueError, match="exactly one generic plan"):
        replace(library, plans=tuple(plan for plan in library.plans if not plan.generic))
    restricted = generic.model_copy(
        update={"applicability": Applicability(time_of_day=TimeOfDay.NIGHT)}
    )
    others = tuple(plan for plan in library.plans if not plan.generic)
    with pytest.raises(ValueError, match="must have no applicability restriction"):
        replace(library, plans=(*others, restricted))
