"""The benchmark field (fixtures/bench-field): Suzanne as a full-size triplane and an official-shape decoder.

It costs per query what the real model costs, and unlike random weights it holds one object, so surface
extraction can be measured and compared on it. scripts/make_bench_field.py made it; its README says how.
"""

from pathlib import Path

import numpy as np
import torch

from triposr_blender.core import TripoSR
from triposr_blender.core.config import load_config
from triposr_blender.core.export import vertex_normals
from triposr_blender.core.model import build_network

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


def noisy_copy(scene: torch.Tensor, share: float = 0.5, seed: int = 0) -> torch.Tensor:
    """The scene codes with Gaussian noise of ``share`` of their standard deviation on every texel: the
    lumps TripoSR users see, on a field whose true shape is known."""
    noise = torch.randn(scene.shape, generator=torch.Generator().manual_seed(seed))
    return scene + share * scene.std() * noise
