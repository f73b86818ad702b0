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


def accessor_array(document: dict, binary: bytes, index: int) -> np.ndarray:
    """A float VEC2 accessor's values as (count, 2)."""
    accessor = document["accessors"][index]
    assert accessor["componentType"] == 5126 and accessor["type"] == "VEC2"  # FLOAT
    data = buffer_view_bytes(document, binary, accessor["bufferView"])[accessor.get("byteOffset", 0) :]
    return np.frombuffer(data, np.float32, count=2 * accessor["count"]).reshape(-1, 2)
