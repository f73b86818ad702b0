"""The benchmark field (fixtures/bench-field): Suzanne as a full-size triplane and an official-shape decoder.

It costs per query what the real model costs, and unlike random weights it holds one object, so surface
extraction can be measured and compared on it. scripts/make_bench_field.py made it; its README says how.
"""

from pathlib import Path

import numpy as np
import torch

from triposr_blender.core import TripoSR, texture
from triposr_blender.core.config import load_config
from triposr_blender.core.mesh import Mesh
from triposr_blender.core.model import build_network
from triposr_blender.core.shading import unit, vertex_normals

FIXTURES = Path(__file__).resolve().parent / "fixtures"
FIELD = FIXTURES / "bench-field" / "field.npz"
OFFICIAL_CONFIG = FIXTURES / "official-config.yaml"
THRESHOLD = 25.0  # the product's default iso-level; the field was fitted around it
OBJECT_HALF_EXTENT = 0.6  # Suzanne's largest half-extent after scaling, inside the 0.87 box


def load_bench_field(path: Path = FIELD) -> tuple[TripoSR, torch.Tensor]:
    """A TripoSR whose decoder is the fitted one, and the fitted scene codes [1, 3, 40, 64, 64] float32.

    Only the decoder holds weights: the rest of the network stays on the meta device (nothing allocated),
    so the model can query and extract meshes but not encode images.
    """
    arrays = np.load(path)
    network = build_network(load_config(OFFICIAL_CONFIG))
    decoder_weights = {
        key.removeprefix("decoder."): torch.from_numpy(value)
        for key, value in arrays.items()
        if key.startswith("decoder.")
    }
    network.decoder.load_state_dict(decoder_weights, assign=True)
    network.decoder.eval().requires_grad_(False)
    return TripoSR(network, torch.device("cpu")), torch.from_numpy(arrays["scene_codes"]).float()


def suzanne_triangles() -> np.ndarray:
    """Suzanne subdivided once, triangulated and scaled into the model box: (T, 3, 3) float64."""
    import bpy  # noqa: I001  (first: importing bpy makes bmesh and mathutils importable)
    import bmesh

    bpy.ops.mesh.primitive_monkey_add()
    mesh = bpy.context.active_object.data
    bm = bmesh.new()
    bm.from_mesh(mesh)
    bmesh.ops.subdivide_edges(bm, edges=bm.edges[:], cuts=1, use_grid_fill=True, smooth=1.0)
    bmesh.ops.triangulate(bm, faces=bm.faces[:])
    verts = np.array([v.co[:] for v in bm.verts])
    tris = np.array([[v.index for v in f.verts] for f in bm.faces])
    bm.free()
    verts -= (verts.max(0) + verts.min(0)) / 2
    verts *= OBJECT_HALF_EXTENT / np.abs(verts).max()
    return verts[tris]


class TrueSurface:
    """The field's true shape, Suzanne's triangles, for the nearest point's distance and normal (Blender's
    BVH tree: needs bpy)."""

    def __init__(self):
        vertices = suzanne_triangles().reshape(-1, 3)  # imports bpy, which makes mathutils importable
        from mathutils.bvhtree import BVHTree

        self.tree = BVHTree.FromPolygons(vertices.tolist(), np.arange(len(vertices)).reshape(-1, 3).tolist())

    def compare(self, mesh) -> tuple[np.ndarray, np.ndarray]:
        """Per vertex of ``mesh``: distance to the true surface, and the angle (degrees) between its normal
        and the true surface's at the nearest point."""
        normals = vertex_normals(mesh.vertices, mesh.faces)  # the normals Blender shades the mesh with
        distance, angle = np.empty(len(mesh.vertices)), np.empty(len(mesh.vertices))
        for n, (point, normal) in enumerate(zip(mesh.vertices.tolist(), normals, strict=True)):
            _, true_normal, _, distance[n] = self.tree.find_nearest(point)
            cosine = float(np.dot(normal, np.array(true_normal)))
            angle[n] = np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0)))
        return distance, angle


class DenseSurface:
    """A dense mesh's smooth shading normal at the nearest point of its surface: its vertex normals
    interpolated across the nearest triangle, as a renderer shades it (Blender's BVH tree: needs bpy)."""

    def __init__(self, dense):
        import bpy  # noqa: F401  (makes mathutils importable)
        from mathutils.bvhtree import BVHTree

        self.vertices, self.faces = dense.vertices.astype(np.float64), dense.faces
        self.normals = vertex_normals(dense.vertices, dense.faces).astype(np.float64)
        self.tree = BVHTree.FromPolygons(dense.vertices.tolist(), dense.faces.tolist())

    def normals_at(self, points: np.ndarray) -> np.ndarray:
        nearest = [self.tree.find_nearest(point) for point in points.tolist()]
        location = np.array([found[0] for found in nearest])
        faces = self.faces[[found[2] for found in nearest]]
        corners = self.vertices[faces]
        edges = np.stack([corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]], axis=2)
        edges_t = edges.transpose(0, 2, 1)  # barycentrics of the nearest point: edges @ b12 = offset
        offset = (location - corners[:, 0])[..., None]
        b12 = np.linalg.solve(edges_t @ edges, edges_t @ offset)[..., 0]
        weights = np.concatenate([1 - b12.sum(axis=1, keepdims=True), b12], axis=1)
        return unit(np.einsum("nk,nkj->nj", weights, self.normals[faces]))


def blender_tangents(mesh: Mesh, corner_uvs: np.ndarray) -> np.ndarray:
    """Blender's own MikkTSpace tangents and signs for the smooth-shaded mesh -> (F, 3, 4)."""
    import bpy

    data = bpy.data.meshes.new("tangents")
    try:
        data.from_pydata(mesh.vertices.tolist(), [], mesh.faces.tolist())
        data.shade_smooth()
        data.uv_layers.new(name="UVMap")
        data.attributes["UVMap"].data.foreach_set("vector", corner_uvs.ravel())
        data.calc_tangents()
        frames = np.empty((len(data.loops), 4), np.float32)
        tangents, signs = np.empty(3 * len(data.loops), np.float32), np.empty(len(data.loops), np.float32)
        data.loops.foreach_get("tangent", tangents)
        data.loops.foreach_get("bitangent_sign", signs)
        frames[:, :3], frames[:, 3] = tangents.reshape(-1, 3), signs
        return frames.reshape(-1, 3, 4)
    finally:
        bpy.data.meshes.remove(data)


def shading_errors(low, baked, dense: DenseSurface, tangents: np.ndarray, samples: int = 50_000):
    """At texel centres of ``baked``'s layout on the light mesh ``low``: the angle (degrees) between the dense
    surface's normal and the light mesh's shading normal, without the normal map and with it applied in the
    frame of ``tangents`` ((F, 3, 4) per corner: the core's, or Blender's MikkTSpace), as a Normal Map node
    does. -> (without, with), each (samples,)."""
    size = baked.image.shape[0]
    face_image = texture.rasterize_faces(baked.corner_uvs, size)
    rows, columns = np.nonzero(face_image != texture.NO_FACE)
    pick = np.random.default_rng(0).choice(len(rows), min(samples, len(rows)), replace=False)
    rows, columns = rows[pick], columns[pick]
    faces = face_image[rows, columns]
    weights = texture.texel_weights(baked.corner_uvs, faces, rows, columns, size)
    points = np.einsum("nk,nkj->nj", weights, low.vertices[low.faces[faces]].astype(np.float64))
    normal = unit(np.einsum("nk,nkj->nj", weights, vertex_normals(low.vertices, low.faces)[low.faces[faces]]))
    tangent = unit(np.einsum("nk,nkj->nj", weights, tangents[faces, :, :3].astype(np.float64)))
    tangent = unit(tangent - normal * (tangent * normal).sum(axis=1, keepdims=True))
    bitangent = tangents[faces, 0, 3:] * np.cross(normal, tangent)
    stored = baked.normal_image[rows, columns].astype(np.float64) / 255 * 2 - 1
    mapped = unit(stored[:, :1] * tangent + stored[:, 1:2] * bitangent + stored[:, 2:] * normal)
    truth = dense.normals_at(points)

    def angle(normals):
        return np.degrees(np.arccos(np.clip((normals * truth).sum(axis=1), -1.0, 1.0)))

    return angle(normal), angle(mapped)


def noisy_copy(scene: torch.Tensor, share: float = 0.5, seed: int = 0) -> torch.Tensor:
    """The scene codes with Gaussian noise of ``share`` of their standard deviation on every texel: the
    lumps TripoSR users see, on a field whose true shape is known."""
    noise = torch.randn(scene.shape, generator=torch.Generator().manual_seed(seed))
    return scene + share * scene.std() * noise
