"""Decimation (core, no bpy): at most the target face count, the surface kept within a small distance of
the original (two-sided point-to-triangle distance of sampled points), colours queried at the new vertices."""

import numpy as np
import pytest
import torch
from shapes import enclosed_volume

from triposr_blender.core import Mesh, TripoSRError
from triposr_blender.core.decimate import decimate
from triposr_blender.core.marching_cubes import marching_cubes

SAMPLES = 1000


def sample_surface(mesh, count, seed):
    """Points spread uniformly over the surface (faces drawn by area, then a uniform point in each)."""
    rng = np.random.default_rng(seed)
    corners = mesh.vertices[mesh.faces].astype(np.float64)
    areas = np.linalg.norm(np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]), axis=1)
    faces = rng.choice(len(areas), count, p=areas / areas.sum())
    root, second = np.sqrt(rng.random(count)), rng.random(count)
    weights = np.stack([1 - root, root * (1 - second), root * second], axis=1)
    return np.einsum("nk,nkj->nj", weights, corners[faces])


def distance_to_surface(points, mesh, chunk=1024):
    """Exact distance from each point to the nearest triangle of ``mesh``: to the plane where the point
    projects inside the triangle, else to the nearest of its three edges. Dot products are matrix products,
    so no (points × triangles × 3) array is ever built."""
    a, b, c = torch.from_numpy(mesh.vertices[mesh.faces].astype(np.float64)).unbind(1)
    ab, ac, bc = b - a, c - a, c - b
    normal = torch.linalg.cross(ab, ac)
    normal = normal / normal.norm(dim=1, keepdim=True).clamp(min=1e-30)
    ab_ab, ab_ac, ac_ac, bc_bc = dot(ab, ab), dot(ab, ac), dot(ac, ac), dot(bc, bc)
    denominator = ab_ab * ac_ac - ab_ac**2
    flat = denominator > 1e-20  # a degenerate triangle is only its edges
    nearest = []
    for p in torch.from_numpy(points).split(chunk):
        along_ab = p @ ab.T - dot(a, ab)  # (p - a) · ab, one row per point
        along_ac = p @ ac.T - dot(a, ac)
        along_bc = p @ bc.T - dot(b, bc)
        squared_to_a = dot(p, p)[:, None] - 2 * p @ a.T + dot(a, a)
        squared_to_b = dot(p, p)[:, None] - 2 * p @ b.T + dot(b, b)
        height = (p @ normal.T - dot(a, normal)).abs()
        v = (ac_ac * along_ab - ab_ac * along_ac) / denominator.clamp(min=1e-30)
        w = (ab_ab * along_ac - ab_ac * along_ab) / denominator.clamp(min=1e-30)
        inside = flat & (v >= 0) & (w >= 0) & (v + w <= 1)
        to_edges = torch.minimum(
            torch.minimum(
                squared_segment_distance(squared_to_a, along_ab, ab_ab),
                squared_segment_distance(squared_to_a, along_ac, ac_ac),
            ),
            squared_segment_distance(squared_to_b, along_bc, bc_bc),
        )
        distance = torch.where(inside, height, to_edges.clamp(min=0).sqrt())
        nearest.append(distance.min(dim=1).values)
    return torch.cat(nearest).numpy()


def dot(u, v):
    return (u * v).sum(-1)


def squared_segment_distance(squared_to_start, along, length_squared):
    """|p - (start + t·d)|² at the t in [0, 1] nearest p, from |p - start|² and (p - start)·d."""
    t = (along / length_squared.clamp(min=1e-30)).clamp(0, 1)
    return squared_to_start - 2 * t * along + t**2 * length_squared


def two_sided_distance(first, second):
    """Largest distance from a sampled point of either surface to the other surface (Hausdorff, sampled)."""
    return max(
        distance_to_surface(sample_surface(first, SAMPLES, 0), second).max(),
        distance_to_surface(sample_surface(second, SAMPLES, 1), first).max(),
    )


def mean_edge_length(mesh):
    corners = mesh.vertices[mesh.faces]
    return float(np.linalg.norm(corners - np.roll(corners, 1, axis=1), axis=2).mean())


def sphere_mesh(resolution=32):
    """A closed, bumpy ball from the core's marching cubes, wound like its meshes (normals outward)."""
    axis = np.linspace(-1, 1, resolution)
    x, y, z = np.meshgrid(axis, axis, axis, indexing="ij")
    inside = 0.7 - np.sqrt(x**2 + y**2 + z**2) + 0.08 * np.sin(6 * x) * np.sin(5 * y) * np.sin(4 * z)
    vertices, faces = marching_cubes(inside)
    vertices = (vertices / (resolution - 1) * 2 - 1).astype(np.float32)
    return Mesh(vertices, faces, np.zeros_like(vertices))


def test_the_decimated_mesh_has_at_most_the_target_faces_and_keeps_its_shape(mesh, color_fn):
    target = len(mesh.faces) // 2
    decimated = decimate(mesh, target, color_fn)
    assert 0.9 * target <= len(decimated.faces) <= target
    # Within half an edge of the marching-cubes mesh (its own resolution), both ways (measured: 1/6 edge).
    assert two_sided_distance(mesh, decimated) < 0.5 * mean_edge_length(mesh)


def test_decimated_vertices_carry_the_model_colour_at_their_new_place(mesh, color_fn):
    decimated = decimate(mesh, len(mesh.faces) // 2, color_fn)
    assert decimated.vertices.dtype == np.float32 and decimated.faces.dtype == np.int64
    assert decimated.faces.max() < len(decimated.vertices)
    np.testing.assert_allclose(decimated.vertex_colors, color_fn(decimated.vertices), atol=1e-6)


def test_a_closed_surface_stays_closed_outward_and_keeps_its_volume():
    ball = sphere_mesh()
    decimated = decimate(ball, len(ball.faces) // 8, lambda points: np.zeros_like(points))
    assert enclosed_volume(ball) > 0
    assert enclosed_volume(decimated) == pytest.approx(enclosed_volume(ball), rel=0.01)
    assert two_sided_distance(ball, decimated) < 0.5 * mean_edge_length(ball)  # measured: 1/7 edge


def test_a_mesh_within_the_target_is_returned_unchanged(mesh, color_fn):
    assert decimate(mesh, len(mesh.faces), color_fn) is mesh


def test_a_target_below_a_tetrahedron_is_refused_with_advice(mesh, color_fn):
    with pytest.raises(TripoSRError, match="Set it higher"):
        decimate(mesh, 3, color_fn)
