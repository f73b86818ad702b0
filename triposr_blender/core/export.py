"""Mesh files without Blender: GLB (binary glTF 2.0), OBJ and PLY, from the core's Mesh and BakedTexture.

The server and the batch on Ray write these. They hold what Blender's exporters write for the object the batch
makes: the mesh upright with the photographed side to the front, its origin at the bottom centre, its longest
side ``size`` long, in each format's own axes as Blender writes them (glTF and OBJ: +Y up and the front
towards +Z; PLY: Blender's own, +Z up and the front towards -Y). glTF colours are linear (COLOR_0, or a
baseColorTexture with TEXCOORD_0); OBJ and PLY carry the model's display (sRGB) colours per vertex.

numpy, zlib and struct only: Blender's own Python, which has no Pillow, runs it too.
"""

from __future__ import annotations

import json
import struct
import zlib

import numpy as np

from .color import srgb_to_linear
from .mesh import BakedTexture, Mesh
from .orientation import DEFAULT_FRONT_AXIS, model_to_blender_rotation, place_vertices
from .shading import corner_tangents, uv_vertices, vertex_normals

FORMATS = ("glb", "obj", "ply")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# glTF's componentType and target codes.
FLOAT, UNSIGNED_INT = 5126, 5125
ARRAY_BUFFER, ELEMENT_ARRAY_BUFFER = 34962, 34963
# Blender's default material: the roughness its Principled BSDF starts with.
ROUGHNESS = 0.5


def upright(mesh: Mesh, size: float) -> np.ndarray:
    """The vertices as the batch places them in Blender: photographed side towards -Y, origin at the bottom
    centre, longest side ``size`` (Blender's axes, +Z up)."""
    return place_vertices(mesh.vertices, model_to_blender_rotation(DEFAULT_FRONT_AXIS), size)


def blender_to_y_up(vertices: np.ndarray) -> np.ndarray:
    """Blender's (x, y, z) in glTF's and OBJ's axes, as Blender's exporters turn them: (x, z, -y)."""
    return np.stack([vertices[:, 0], vertices[:, 2], -vertices[:, 1]], axis=1).astype(np.float32)


def split_by_uv(faces: np.ndarray, corner_uvs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """glTF keeps one UV per vertex: vertices are split where the corners around them have different UVs.
    -> (the first corner of each new vertex, its UV, the faces over the new vertices)."""
    group, first = uv_vertices(faces, corner_uvs)
    return first, corner_uvs.reshape(-1, 2)[first].astype(np.float32), group


def glb_bytes(
    mesh: Mesh, texture: BakedTexture | None = None, size: float = 2.0, name: str = "TripoSR"
) -> bytes:
    """The mesh as a binary glTF 2.0 file: positions, smooth normals, and COLOR_0 or a baked texture (and its
    normal map, with the TANGENT frame it was baked in)."""
    vertices = blender_to_y_up(upright(mesh, size))
    normals = vertex_normals(vertices, mesh.faces)
    faces = mesh.faces
    attributes = {}
    if texture is None:
        attributes["COLOR_0"] = srgb_to_linear(mesh.vertex_colors)  # linear RGB, as Blender writes it
    else:
        first, uvs, faces = split_by_uv(mesh.faces, texture.corner_uvs)
        if texture.normal_image is not None:  # the frame the map was baked in, so viewers need not rebuild it
            tangents = corner_tangents(vertices, mesh.faces, texture.corner_uvs, normals)
            attributes["TANGENT"] = tangents.reshape(-1, 4)[first]
        source = mesh.faces.ravel()[first]
        vertices, normals = vertices[source], normals[source]
        attributes["TEXCOORD_0"] = uvs * (1, -1) + (0, 1)  # glTF's v runs downwards
    writer = GlbWriter()
    primitive = {
        "attributes": {
            "POSITION": writer.accessor(vertices, "VEC3", ARRAY_BUFFER, bounds=True),
            "NORMAL": writer.accessor(normals, "VEC3", ARRAY_BUFFER),
            **{
                key: writer.accessor(value, kind_of(value), ARRAY_BUFFER) for key, value in attributes.items()
            },
        },
        "indices": writer.accessor(faces.astype(np.uint32).ravel(), "SCALAR", ELEMENT_ARRAY_BUFFER),
        "material": 0,
    }
    material = {"name": name, "pbrMetallicRoughness": {"metallicFactor": 0.0, "roughnessFactor": ROUGHNESS}}
    document = {
        "asset": {"version": "2.0", "generator": "TripoSR for Blender"},
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"name": name, "mesh": 0}],
        "meshes": [{"name": name, "primitives": [primitive]}],
        "materials": [material],
    }
    if texture is not None:
        image = writer.buffer_view(png_bytes(texture.image[::-1]))  # PNG rows run top to bottom
        document["images"] = [{"bufferView": image, "mimeType": "image/png"}]
        document["textures"] = [{"source": 0}]
        material["pbrMetallicRoughness"]["baseColorTexture"] = {"index": 0}
        if texture.normal_image is not None:
            normal_map = writer.buffer_view(png_bytes(texture.normal_image[::-1]))
            document["images"].append({"bufferView": normal_map, "mimeType": "image/png"})
            document["textures"].append({"source": 1})
            material["normalTexture"] = {"index": 1}
    return writer.glb(document)


def kind_of(array: np.ndarray) -> str:
    return {1: "SCALAR", 2: "VEC2", 3: "VEC3", 4: "VEC4"}[1 if array.ndim == 1 else array.shape[1]]


class GlbWriter:
    """Collects the binary buffer and its views and accessors, then writes the two-chunk GLB container."""

    def __init__(self):
        self.binary = bytearray()
        self.views: list[dict] = []
        self.accessors: list[dict] = []

    def buffer_view(self, data: bytes, target: int | None = None) -> int:
        self.binary += bytes(-len(self.binary) % 4)  # every view starts 4-byte aligned
        view = {"buffer": 0, "byteOffset": len(self.binary), "byteLength": len(data)}
        if target is not None:
            view["target"] = target
        self.binary += data
        self.views.append(view)
        return len(self.views) - 1

    def accessor(self, array: np.ndarray, kind: str, target: int, bounds: bool = False) -> int:
        component = UNSIGNED_INT if array.dtype == np.uint32 else FLOAT
        data = np.ascontiguousarray(array, np.uint32 if component == UNSIGNED_INT else np.float32)
        accessor = {
            "bufferView": self.buffer_view(data.tobytes(), target),
            "componentType": component,
            "count": len(data),
            "type": kind,
        }
        if bounds:  # glTF requires them on POSITION
            accessor["min"], accessor["max"] = data.min(axis=0).tolist(), data.max(axis=0).tolist()
        self.accessors.append(accessor)
        return len(self.accessors) - 1

    def glb(self, document: dict) -> bytes:
        self.binary += bytes(-len(self.binary) % 4)
        document = {**document, "buffers": [{"byteLength": len(self.binary)}]}
        document.update(bufferViews=self.views, accessors=self.accessors)
        text = json.dumps(document, separators=(",", ":")).encode()
        text += b" " * (-len(text) % 4)
        chunks = struct.pack("<II", len(text), 0x4E4F534A) + text
        chunks += struct.pack("<II", len(self.binary), 0x004E4942) + bytes(self.binary)
        return struct.pack("<4sII", b"glTF", 2, 12 + len(chunks)) + chunks


def png_bytes(pixels: np.ndarray) -> bytes:
    """An 8-bit RGB or RGBA PNG of (H, W, 3|4) uint8 pixels, top row first: zlib and struct alone, so
    Blender's own Python (which has no Pillow) writes them too."""
    height, width, channels = pixels.shape
    return (
        PNG_SIGNATURE
        + png_chunk(b"IHDR", png_header(width, height, channels))
        + png_chunk(b"IDAT", png_data(pixels))
        + png_chunk(b"IEND", b"")
    )


def apng_bytes(frames: list[np.ndarray], frame_ms: int = 100) -> bytes:
    """An animated PNG (APNG, which every browser plays) of equal-sized (H, W, 3|4) uint8 frames, looping,
    each shown ``frame_ms``; viewers without APNG show the first frame."""
    height, width, channels = frames[0].shape
    chunks = [png_chunk(b"IHDR", png_header(width, height, channels))]
    chunks.append(png_chunk(b"acTL", struct.pack(">II", len(frames), 0)))  # 0: loop for ever
    sequence = 0
    for index, frame in enumerate(frames):
        # the whole canvas each time, replacing the last frame (dispose: none, blend: source)
        control = struct.pack(">IIIIIHHBB", sequence, width, height, 0, 0, frame_ms, 1000, 0, 0)
        chunks.append(png_chunk(b"fcTL", control))
        sequence += 1
        if index == 0:
            chunks.append(png_chunk(b"IDAT", png_data(frame)))
        else:
            chunks.append(png_chunk(b"fdAT", struct.pack(">I", sequence) + png_data(frame)))
            sequence += 1
    return PNG_SIGNATURE + b"".join(chunks) + png_chunk(b"IEND", b"")


def png_header(width: int, height: int, channels: int) -> bytes:
    return struct.pack(">IIBBBBB", width, height, 8, {3: 2, 4: 6}[channels], 0, 0, 0)


def png_data(pixels: np.ndarray) -> bytes:
    """The compressed rows of one image (filter 0 on each row)."""
    height, width, channels = pixels.shape
    rows = np.ascontiguousarray(pixels, np.uint8).reshape(height, width * channels)
    return zlib.compress(np.concatenate([np.zeros((height, 1), np.uint8), rows], axis=1).tobytes(), 6)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def obj_files(
    name: str, mesh: Mesh, texture: BakedTexture | None = None, size: float = 2.0
) -> dict[str, bytes]:
    """An OBJ file with vertex colours ("v x y z r g b"), or with a UV map and its texture: then an .mtl and a
    PNG beside it (and the normal map's), named after it. -> {file name: content}, the .obj last."""
    vertices = blender_to_y_up(upright(mesh, size))
    lines = [f"# {name}, made by TripoSR for Blender"]
    files = {}
    if texture is None:
        colored = np.concatenate([vertices, np.clip(mesh.vertex_colors, 0, 1)], axis=1)
        lines += [f"v {x:.6f} {y:.6f} {z:.6f} {r:.4f} {g:.4f} {b:.4f}" for x, y, z, r, g, b in colored]
        lines += [f"f {a} {b} {c}" for a, b, c in mesh.faces + 1]
    else:
        material, image = f"{name}.mtl", f"{name}.png"
        files[image] = png_bytes(texture.image[::-1])
        description = f"newmtl {name}\nKd 1 1 1\nmap_Kd {image}\n"
        if texture.normal_image is not None:  # map_Bump is where Blender's OBJ exporter puts a normal map
            normal_map = f"{name}_normal.png"
            files[normal_map] = png_bytes(texture.normal_image[::-1])
            description += f"map_Bump {normal_map}\n"
        files[material] = description.encode()
        lines += [f"mtllib {material}", f"usemtl {name}"]
        lines += [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in vertices]
        lines += [f"vt {u:.6f} {v:.6f}" for u, v in texture.corner_uvs.reshape(-1, 2)]
        corner = np.arange(1, 3 * len(mesh.faces) + 1).reshape(-1, 3)
        lines += [
            f"f {a}/{ta} {b}/{tb} {c}/{tc}"
            for (a, b, c), (ta, tb, tc) in zip(mesh.faces + 1, corner, strict=True)
        ]
    files[f"{name}.obj"] = ("\n".join(lines) + "\n").encode()
    return files


def ply_bytes(mesh: Mesh, size: float = 2.0) -> bytes:
    """A binary PLY with 8-bit sRGB vertex colours, in Blender's axes (as Blender's PLY exporter writes)."""
    vertices = upright(mesh, size)
    header = (
        "ply\nformat binary_little_endian 1.0\ncomment made by TripoSR for Blender\n"
        f"element vertex {len(vertices)}\nproperty float x\nproperty float y\nproperty float z\n"
        "property uchar red\nproperty uchar green\nproperty uchar blue\n"
        f"element face {len(mesh.faces)}\nproperty list uchar int vertex_indices\nend_header\n"
    ).encode()
    vertex = np.dtype([("position", "<f4", 3), ("color", "u1", 3)])
    points = np.empty(len(vertices), vertex)
    points["position"] = vertices
    points["color"] = np.rint(np.clip(mesh.vertex_colors, 0, 1) * 255)
    face = np.dtype([("count", "u1"), ("indices", "<i4", 3)])
    triangles = np.empty(len(mesh.faces), face)
    triangles["count"], triangles["indices"] = 3, mesh.faces
    return header + points.tobytes() + triangles.tobytes()


def files(
    name: str, file_format: str, mesh: Mesh, texture: BakedTexture | None = None, size: float = 2.0
) -> dict[str, bytes]:
    """``mesh`` as ``<name>.<file_format>`` (glb, obj or ply) and the files it refers to -> {file name:
    content}, the main file last: written in this order, a file that exists is one whose parts all do."""
    if file_format == "glb":
        return {f"{name}.glb": glb_bytes(mesh, texture, size, name=name)}
    if file_format == "obj":
        return obj_files(name, mesh, texture, size)
    if file_format == "ply":
        return {f"{name}.ply": ply_bytes(mesh, size)}
    raise ValueError(f"the core writes {', '.join(FORMATS)}, not {file_format or 'files without a suffix'}")
