"""GLB writer (simulation/gltf.py): layout, node contract, round trip, Khronos validator.

The validator is the Khronos glTF validator from npm (``gltf-validator``, pinned in
api/console/package-lock.json, installed by ``make node``), run through
api/console/validate_gltf.mjs. Without node_modules the test skips, unless
``PIPESENTINEL_REQUIRE_SERVICES=1`` (CI), where it fails.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.testing import assert_allclose
from shapely.geometry import box

from pipesentinel.detection.gases import LelBasis
from pipesentinel.detection.stability import StabilityClass
from pipesentinel.simulation.gltf import (
    ENU_TO_GLTF,
    accessor_array,
    read_glb,
    scene_to_glb,
    srgb_to_linear,
)
from pipesentinel.simulation.plume3d import (
    PlumeRelease,
    plume_data,
    plume_model,
    plume_surfaces,
)
from pipesentinel.simulation.scene import (
    Layer,
    PipeState,
    Scene,
    SceneLayers,
    Wind,
    build_scene,
)
from pipesentinel.site import Gas, Site
from pipesentinel.site_loader import load_site

REPO_ROOT = Path(__file__).resolve().parents[2]
SITE_DIR = REPO_ROOT / "sites" / "wanli"
CONSOLE_DIR = REPO_ROOT / "api" / "console"
VALIDATOR_SCRIPT = CONSOLE_DIR / "validate_gltf.mjs"
REQUIRE_VARIABLE = "PIPESENTINEL_REQUIRE_SERVICES"


@pytest.fixture(scope="module")
def site() -> Site:
    return load_site(SITE_DIR)


@pytest.fixture(scope="module")
def scene(site: Site) -> Scene:
    pipeline = site.pipelines[0]
    leak = pipeline.point_at_chainage(1200.0)
    release = PlumeRelease(
        gas=Gas.METHANE,
        source_m=(float(leak[0]), float(leak[1]), 0.0),
        rate_kg_per_s=1.0,
        extent_rate_kg_per_s=2.0,
        wind_speed_m_per_s=2.5,
        wind_from_deg=200.0,
        stability_class=StabilityClass.D,
        lel_basis=LelBasis.IEC_60079_20_1,
    )
    model = plume_model(release)
    return build_scene(
        site,
        SceneLayers(
            segment_states={pipeline.segment_at_chainage(1200.0).id: PipeState.LEAK},
            wind={station.id: Wind(2.5, 200.0) for station in site.wind_stations},
            zones_m={
                "red": box(*(leak - 30), *(leak + 30)),
                "yellow": box(*(leak - 90), *(leak + 90)),
            },
            leak_position_m=(float(leak[0]), float(leak[1])),
            plume=plume_surfaces(model, [0.0, 30.0, 120.0]),
            plume_data=plume_data(model),
        ),
    )


@pytest.fixture(scope="module")
def glb(scene: Scene) -> bytes:
    return scene_to_glb(scene)


def test_glb_header_and_chunks_follow_the_binary_layout(glb: bytes) -> None:
    magic, version, length = struct.unpack_from("<III", glb, 0)
    assert (magic, version, length) == (0x46546C67, 2, len(glb))
    json_length, json_kind = struct.unpack_from("<II", glb, 12)
    assert json_kind == 0x4E4F534A
    assert json_length % 4 == 0
    bin_length, bin_kind = struct.unpack_from("<II", glb, 20 + json_length)
    assert bin_kind == 0x004E4942
    assert bin_length % 4 == 0
    assert 20 + json_length + 8 + bin_length == len(glb)


def test_srgb_to_linear_matches_the_transfer_function() -> None:
    # IEC 61966-2-1: 0.5 -> ((0.5 + 0.055) / 1.055) ** 2.4 = 0.21404; 0.04 is on the linear part.
    assert_allclose(
        srgb_to_linear([0.0, 0.04, 0.5, 1.0]), [0.0, 0.04 / 12.92, 0.214041, 1.0], atol=1e-6
    )


def test_nodes_carry_the_object_ids_and_data(scene: Scene, glb: bytes) -> None:
    document, _ = read_glb(glb)
    nodes = document["nodes"]
    roots = [nodes[i] for i in document["scenes"][0]["nodes"]]
    assert [node["name"] for node in roots] == [
        f"layer/{layer.value}" for layer in Layer if scene.layer(layer)
    ]
    by_name = {node["name"]: node for node in nodes}
    for item in scene.objects:
        node = by_name[item.id]
        assert node["extras"] == json.loads(
            json.dumps({"id": item.id, "layer": item.layer.value, **item.data})
        )
        assert ("mesh" in node) == (item.mesh.triangle_count > 0)
    children = {i for root in roots for i in root["children"]}
    assert children == {i for i, node in enumerate(nodes) if not node["name"].startswith("layer/")}
    segment = scene.layer(Layer.PIPELINES)[0]
    extras = by_name[segment.id]["extras"]
    for key in ("diameter_m", "depth_of_cover_m", "operating_pressure_pa", "product", "valves"):
        assert key in extras
    assert document["scenes"][0]["extras"]["plume_times_s"] == [0.0, 30.0, 120.0]


def test_plume_steps_are_nodes_named_by_time_and_level(scene: Scene, glb: bytes) -> None:
    document, _ = read_glb(glb)
    names = [node["name"] for node in document["nodes"]]
    for time_s in ("0", "30", "120"):
        for level in ("yellow", "red"):
            assert f"plume/{time_s}/{level}" in names
    by_name = {node["name"]: node for node in document["nodes"]}
    assert "mesh" not in by_name["plume/0/yellow"]  # nothing released yet
    assert "mesh" in by_name["plume/120/yellow"]
    assert by_name["plume/120/red"]["extras"]["gas"] == "methane"


def test_positions_round_trip_rotated_to_y_up(scene: Scene, glb: bytes) -> None:
    document, binary = read_glb(glb)
    by_name = {node["name"]: node for node in document["nodes"]}
    for item in scene.objects:
        if not item.mesh.triangle_count:
            continue
        primitive = document["meshes"][by_name[item.id]["mesh"]]["primitives"][0]
        positions = accessor_array(document, binary, primitive["attributes"]["POSITION"])
        expected = item.mesh.positions_m @ ENU_TO_GLTF.T
        # float32 keeps about 7 digits: 0.5 mm is ample on a site a few kilometres across.
        assert_allclose(positions, expected, rtol=0.0, atol=5e-4)
        spec = document["accessors"][primitive["attributes"]["POSITION"]]
        assert spec["min"] == [float(v) for v in positions.min(axis=0)]
        assert spec["max"] == [float(v) for v in positions.max(axis=0)]
        indices = accessor_array(document, binary, primitive["indices"])
        assert_allclose(indices.reshape(-1, 3), item.mesh.triangles)
        normals = accessor_array(document, binary, primitive["attributes"]["NORMAL"])
        assert_allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-6)
    # Up is y: the buried pipes have negative y, the buildings positive.
    pipe = scene.layer(Layer.PIPELINES)[0].id
    primitive = document["meshes"][by_name[pipe]["mesh"]]["primitives"][0]
    assert document["accessors"][primitive["attributes"]["POSITION"]]["max"][1] < 0.0


def test_translucent_objects_blend(scene: Scene, glb: bytes) -> None:
    document, _ = read_glb(glb)
    by_name = {node["name"]: node for node in document["nodes"]}
    for item in scene.objects:
        if not item.mesh.triangle_count:
            continue
        mesh = document["meshes"][by_name[item.id]["mesh"]]
        material = document["materials"][mesh["primitives"][0]["material"]]
        factor = material["pbrMetallicRoughness"]["baseColorFactor"]
        assert factor[3] == pytest.approx(item.colour_rgba[3], abs=1e-4)
        assert (material.get("alphaMode") == "BLEND") == item.translucent


def test_glb_is_deterministic(scene: Scene, glb: bytes) -> None:
    assert scene_to_glb(scene) == glb


def test_read_glb_refuses_other_bytes() -> None:
    with pytest.raises(ValueError, match="GLB"):
        read_glb(b"not a glb file at all")


def _validator() -> list[str]:
    node = shutil.which("node")
    reason = ""
    if node is None:
        reason = "node is not installed (make node installs nodejs and npm)"
    elif not (CONSOLE_DIR / "node_modules" / "gltf-validator").is_dir():
        reason = "api/console/node_modules is missing: run `make node` (npm ci)"
    if reason:
        if os.environ.get(REQUIRE_VARIABLE, "") == "1":
            pytest.fail(f"{reason}; {REQUIRE_VARIABLE}=1 requires the Khronos glTF validator")
        pytest.skip(f"{reason} (set {REQUIRE_VARIABLE}=1 to make this a failure)")
    assert node is not None
    return [node, str(VALIDATOR_SCRIPT)]


def _validate(path: Path) -> dict[str, Any]:
    result = subprocess.run(
        [*_validator(), str(path)], capture_output=True, text=True, check=False, timeout=120
    )
    assert result.returncode in {0, 1}, result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def test_khronos_validator_finds_no_issue(glb: bytes, tmp_path: Path) -> None:
    path = tmp_path / "scene.glb"
    path.write_bytes(glb)
    report = _validate(path)
    assert report["issues"]["numErrors"] == 0, report["issues"]["messages"]
    assert report["issues"]["numWarnings"] == 0, report["issues"]["messages"]
    document, _ = read_glb(glb)
    assert report["info"]["totalTriangleCount"] == sum(
        document["accessors"][m["primitives"][0]["indices"]]["count"] // 3
        for m in document["meshes"]
    )


def test_khronos_validator_reports_a_broken_file(glb: bytes, tmp_path: Path) -> None:
    # The validator is really looking: a GLB whose first POSITION max is wrong is an error.
    document, binary = read_glb(glb)
    position = document["meshes"][0]["primitives"][0]["attributes"]["POSITION"]
    document["accessors"][position]["max"] = [1e9, 1e9, 1e9]
    text = json.dumps(document).encode()
    text += b" " * ((-len(text)) % 4)
    body = struct.pack("<II", len(text), 0x4E4F534A) + text
    body += struct.pack("<II", len(binary), 0x004E4942) + binary
    path = tmp_path / "broken.glb"
    path.write_bytes(struct.pack("<III", 0x46546C67, 2, 12 + len(body)) + body)
    report = _validate(path)
    codes = {message["code"] for message in report["issues"]["messages"]}
    assert report["issues"]["numErrors"] > 0
    assert "ACCESSOR_MAX_MISMATCH" in codes
