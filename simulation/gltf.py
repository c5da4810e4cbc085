"""glTF 2.0 binary (GLB) of a :class:`~pipesentinel.simulation.scene.Scene`, written with numpy.

The file is what the browser viewer loads (three.js ``GLTFLoader``); docs/scene.md is the
contract. In short:

* glTF is y-up: a site point (east, north, up) [m] is written as ``(x, y, z) = (east, up,
  -north)`` metres from the site origin (a proper rotation, so triangle winding is kept). The
  origin's WGS84 position is in the scene's ``extras``.
* The scene's root nodes are one group per layer, named ``layer/<layer>`` (``layer/pipelines``,
  ``layer/plume``, ...), so that the viewer switches a layer by toggling one node. Their children
  are one node per object, named by the object's id (the asset id: ``P1-S2``, ``B07``, ``CAM3``;
  or a path: ``CAM3/fov``, ``zone/red``, ``route/B07``, ``plume/<time_s>/<level>``), with
  ``extras`` = ``{"id", "layer", **object data}`` (SI values, units in the keys).
* One mesh per object with one triangle primitive: float32 ``POSITION`` (with ``min``/``max``)
  and ``NORMAL``, uint32 indices, one material per distinct colour: ``baseColorFactor`` in linear
  RGB (converted from the scene's sRGB), ``alphaMode`` ``BLEND`` and double-sided where the
  object is translucent.
* Plume steps are sibling nodes under ``layer/plume``; the scene's ``extras.plume_times_s``
  lists the times, and each node's extras carry ``time_s``, ``step`` and ``level``.

The GLB layout follows the glTF 2.0 specification (Khronos, section 4.4 "Binary glTF layout"):
a 12-byte header, a JSON chunk padded with spaces and a BIN chunk padded with zeros, each to a
multiple of 4 bytes. The tests validate the output with the Khronos glTF validator.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from pipesentinel.simulation.scene import JsonValue, Layer, Rgba, Scene, SceneObject

__all__ = ["GLB_MIME_TYPE", "read_glb", "scene_to_glb", "srgb_to_linear"]

GLB_MIME_TYPE: Final = "model/gltf-binary"  # IANA registration of glTF binary
GENERATOR: Final = "PipeSentinel simulation.gltf"

# glTF 2.0 specification constants (sections 3.6.2 and 4.4).
_GLB_MAGIC: Final = 0x46546C67  # "glTF"
_GLB_VERSION: Final = 2
_CHUNK_JSON: Final = 0x4E4F534A  # "JSON"
_CHUNK_BIN: Final = 0x004E4942  # "BIN\0"
_FLOAT: Final = 5126
_UNSIGNED_INT: Final = 5125
_ARRAY_BUFFER: Final = 34962
_ELEMENT_ARRAY_BUFFER: Final = 34963
_TRIANGLES: Final = 4
_ALIGNMENT: Final = 4

# Material look (display choices): matte, non-metallic surfaces.
METALLIC_FACTOR: Final = 0.0
ROUGHNESS_FACTOR: Final = 0.85

# ENU (east, north, up) -> glTF (x, y, z) = (east, up, -north): a rotation (determinant +1).
ENU_TO_GLTF: Final = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])


def srgb_to_linear(components: Sequence[float]) -> list[float]:
    """Linear RGB of sRGB components 0..1 (the sRGB transfer function of IEC 61966-2-1)."""
    values = np.asarray(components, dtype=np.float64)
    linear = np.where(values <= 0.04045, values / 12.92, ((values + 0.055) / 1.055) ** 2.4)
    return [round(float(v), 6) for v in linear]


class _Buffer:
    """The BIN chunk being assembled, with its buffer views and accessors."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.length = 0
        self.views: list[dict[str, Any]] = []
        self.accessors: list[dict[str, Any]] = []

    def add(self, array: NDArray[Any], *, target: int, accessor: dict[str, Any]) -> int:
        data = np.ascontiguousarray(array).tobytes()
        self.views.append(
            {"buffer": 0, "byteOffset": self.length, "byteLength": len(data), "target": target}
        )
        padding = (-len(data)) % _ALIGNMENT
        self.parts.append(data + b"\0" * padding)
        self.length += len(data) + padding
        self.accessors.append({"bufferView": len(self.views) - 1, "byteOffset": 0, **accessor})
        return len(self.accessors) - 1

    def bytes(self) -> bytes:
        return b"".join(self.parts)


def _material_key(colour: Rgba) -> tuple[float, float, float, float]:
    return (round(colour[0], 4), round(colour[1], 4), round(colour[2], 4), round(colour[3], 4))


def _material(colour: Rgba, index: int) -> dict[str, Any]:
    translucent = colour[3] < 1.0
    material: dict[str, Any] = {
        "name": f"material/{index}",
        "pbrMetallicRoughness": {
            "baseColorFactor": [*srgb_to_linear(colour[:3]), round(float(colour[3]), 4)],
            "metallicFactor": METALLIC_FACTOR,
            "roughnessFactor": ROUGHNESS_FACTOR,
        },
    }
    if translucent:
        material["alphaMode"] = "BLEND"
        material["doubleSided"] = True
    return material


def _mesh(item: SceneObject, buffer: _Buffer, material: int) -> dict[str, Any]:
    mesh = item.mesh
    positions = (mesh.positions_m @ ENU_TO_GLTF.T).astype(np.float32)
    normals = (mesh.normals @ ENU_TO_GLTF.T).astype(np.float32)
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    position = buffer.add(
        positions,
        target=_ARRAY_BUFFER,
        accessor={
            "componentType": _FLOAT,
            "count": len(positions),
            "type": "VEC3",
            "min": [float(v) for v in positions.min(axis=0)],
            "max": [float(v) for v in positions.max(axis=0)],
        },
    )
    normal = buffer.add(
        normals,
        target=_ARRAY_BUFFER,
        accessor={"componentType": _FLOAT, "count": len(normals), "type": "VEC3"},
    )
    indices = buffer.add(
        mesh.triangles.astype(np.uint32).reshape(-1),
        target=_ELEMENT_ARRAY_BUFFER,
        accessor={"componentType": _UNSIGNED_INT, "count": mesh.triangles.size, "type": "SCALAR"},
    )
    return {
        "name": item.id,
        "primitives": [
            {
                "attributes": {"POSITION": position, "NORMAL": normal},
                "indices": indices,
                "material": material,
                "mode": _TRIANGLES,
            }
        ],
    }


def _document(scene: Scene) -> tuple[dict[str, Any], bytes]:
    buffer = _Buffer()
    materials: dict[tuple[float, float, float, float], int] = {}
    meshes: list[dict[str, Any]] = []
    nodes: list[dict[str, Any]] = []
    children: dict[Layer, list[int]] = {}
    for item in scene.objects:
        node: dict[str, Any] = {
            "name": item.id,
            "extras": {"id": item.id, "layer": item.layer.value, **item.data},
        }
        if item.mesh.triangle_count:
            key = _material_key(item.colour_rgba)
            material = materials.setdefault(key, len(materials))
            meshes.append(_mesh(item, buffer, material))
            node["mesh"] = len(meshes) - 1
        children.setdefault(item.layer, []).append(len(nodes))
        nodes.append(node)
    roots: list[int] = []
    for layer in Layer:
        if layer not in children:
            continue
        roots.append(len(nodes))
        nodes.append(
            {
                "name": f"layer/{layer.value}",
                "children": children[layer],
                "extras": {"layer": layer.value},
            }
        )
    latitude, longitude, altitude = scene.origin
    times = {item.data.get("time_s") for item in scene.layer(Layer.PLUME)}
    plume_times: list[JsonValue] = [*sorted(t for t in times if isinstance(t, int | float))]
    binary = buffer.bytes()
    document: dict[str, Any] = {
        "asset": {"version": "2.0", "generator": GENERATOR},
        "scene": 0,
        "scenes": [
            {
                "name": scene.site_id,
                "nodes": roots,
                "extras": {
                    "site_id": scene.site_id,
                    "site_name": scene.site_name,
                    "origin": {
                        "latitude_deg": latitude,
                        "longitude_deg": longitude,
                        "altitude_m": altitude,
                    },
                    "frame": "x east, y up, z south (-north), metres from the origin",
                    "layers": [layer.value for layer in Layer if layer in children],
                    "plume_times_s": plume_times,
                    "triangle_count": scene.triangle_count,
                },
            }
        ],
        "nodes": nodes,
    }
    if meshes:
        document["meshes"] = meshes
        document["materials"] = [_material(colour, index) for colour, index in materials.items()]
        document["accessors"] = buffer.accessors
        document["bufferViews"] = buffer.views
        document["buffers"] = [{"byteLength": len(binary)}]
    return document, binary


def _chunk(kind: int, data: bytes, pad: bytes) -> bytes:
    data += pad * ((-len(data)) % _ALIGNMENT)
    return struct.pack("<II", len(data), kind) + data


def scene_to_glb(scene: Scene) -> bytes:
    """The scene as glTF 2.0 binary (GLB) bytes; deterministic for a given scene."""
    document, binary = _document(scene)
    text = json.dumps(document, separators=(",", ":"), allow_nan=False).encode("utf-8")
    chunks = _chunk(_CHUNK_JSON, text, b" ")
    if binary:
        chunks += _chunk(_CHUNK_BIN, binary, b"\0")
    header = struct.pack("<III", _GLB_MAGIC, _GLB_VERSION, 12 + len(chunks))
    return header + chunks


def read_glb(data: bytes) -> tuple[dict[str, Any], bytes]:
    """The JSON document and the BIN chunk of GLB bytes (``ValueError`` if not GLB 2.0)."""
    if len(data) < 20:
        raise ValueError("not a GLB file: shorter than its header")
    magic, version, length = struct.unpack_from("<III", data, 0)
    if magic != _GLB_MAGIC or version != _GLB_VERSION or length != len(data):
        raise ValueError(f"not a GLB 2.0 file (magic {magic:#x}, version {version}, {length} B)")
    json_length, json_kind = struct.unpack_from("<II", data, 12)
    if json_kind != _CHUNK_JSON:
        raise ValueError("GLB: the first chunk is not JSON")
    document: dict[str, Any] = json.loads(data[20 : 20 + json_length])
    offset = 20 + json_length
    binary = b""
    if offset < len(data):
        bin_length, bin_kind = struct.unpack_from("<II", data, offset)
        if bin_kind != _CHUNK_BIN:
            raise ValueError("GLB: the second chunk is not BIN")
        binary = data[offset + 8 : offset + 8 + bin_length]
    return document, binary


def accessor_array(document: dict[str, Any], binary: bytes, accessor: int) -> NDArray[Any]:
    """The data of one accessor of a GLB read with :func:`read_glb` (float32 or uint32)."""
    spec = document["accessors"][accessor]
    view = document["bufferViews"][spec["bufferView"]]
    dtype = np.float32 if spec["componentType"] == _FLOAT else np.uint32
    width = {"SCALAR": 1, "VEC3": 3}[spec["type"]]
    start = view["byteOffset"] + spec.get("byteOffset", 0)
    flat = np.frombuffer(binary, dtype=dtype, count=spec["count"] * width, offset=start)
    return flat.reshape(-1, width) if width > 1 else flat
