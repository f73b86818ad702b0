"""Reading binary glTF (.glb) files in tests: the document, its binary chunk and its accessors' arrays."""

import json
import struct
from pathlib import Path

import numpy as np

GLB_JSON_CHUNK = 0x4E4F534A
GLB_BINARY_CHUNK = 0x004E4942


def read_glb(path: Path) -> tuple[dict, bytes]:
    """A binary glTF's JSON and its binary chunk."""
    data = path.read_bytes()
    magic, _version, _length = struct.unpack_from("<4sII", data)
    assert magic == b"glTF"
    json_length, json_type = struct.unpack_from("<II", data, 12)
    assert json_type == GLB_JSON_CHUNK
    document = json.loads(data[20 : 20 + json_length])
    binary_start = 20 + json_length
    binary_length, binary_type = struct.unpack_from("<II", data, binary_start)
    assert binary_type == GLB_BINARY_CHUNK
    return document, data[binary_start + 8 : binary_start + 8 + binary_length]


def buffer_view_bytes(document: dict, binary: bytes, index: int) -> bytes:
    view = document["bufferViews"][index]
    start = view.get("byteOffset", 0)
    return binary[start : start + view["byteLength"]]


COMPONENT_TYPES = {5126: np.float32, 5125: np.uint32, 5123: np.uint16, 5121: np.uint8}
WIDTHS = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4}


def accessor_array(document: dict, binary: bytes, index: int) -> np.ndarray:
    """An accessor's values as (count, width), or (count,) for scalars; normalized integers as 0..1 floats."""
    accessor = document["accessors"][index]
    dtype, width = COMPONENT_TYPES[accessor["componentType"]], WIDTHS[accessor["type"]]
    data = buffer_view_bytes(document, binary, accessor["bufferView"])[accessor.get("byteOffset", 0) :]
    values = np.frombuffer(data, dtype, count=width * accessor["count"])
    if accessor.get("normalized"):
        values = values / np.iinfo(dtype).max
    return values if width == 1 else values.reshape(-1, width)


def primitive_arrays(path: Path) -> tuple[dict, bytes, dict[str, np.ndarray]]:
    """The document, the binary chunk and the arrays of a file's one primitive: its attributes and indices."""
    document, binary = read_glb(path)
    (primitive,) = [primitive for mesh in document["meshes"] for primitive in mesh["primitives"]]
    arrays = {
        name: accessor_array(document, binary, index) for name, index in primitive["attributes"].items()
    }
    arrays["indices"] = accessor_array(document, binary, primitive["indices"])
    return document, binary, arrays


def assert_same_coloured_mesh(ours: Path, theirs: Path) -> None:
    """Two GLBs hold the same coloured mesh: each vertex where the other's is, with its colour and normal,
    whatever order the writers put the vertices in."""
    from scipy.spatial import cKDTree

    _, _, mine = primitive_arrays(ours)
    _, _, other = primitive_arrays(theirs)
    distance, match = cKDTree(other["POSITION"]).query(mine["POSITION"])
    assert distance.max() < 1e-5 and len(mine["POSITION"]) == len(other["POSITION"])
    np.testing.assert_allclose(mine["COLOR_0"], other["COLOR_0"][match], atol=2e-3)
    assert len(mine["indices"]) == len(other["indices"])
    np.testing.assert_allclose(mine["NORMAL"], other["NORMAL"][match], atol=1e-3)
