"""Sparse (coarse-to-fine) surface extraction gives the dense mesh while querying a fraction of the grid.

Its bookkeeping runs in torch on the device the density comes from; the CPU here computes what a GPU does,
and gives PyMCubes' dense mesh exactly."""

import logging

import numpy as np
import pytest
import torch
from bench_field import THRESHOLD, load_bench_field
from scipy.spatial import cKDTree

from triposr_blender.core import Cancelled, NoSurfaceError, sparse_isosurface
from triposr_blender.core.isosurface import extract_dense
from triposr_blender.core.sparse_isosurface import extract_sparse

RADIUS = 0.87


def solid(signed_distance):
    """An object-like density: 25 on the surface, rising steeply inside, falling to ~0 outside."""

    def density(points: torch.Tensor) -> torch.Tensor:
        return THRESHOLD * torch.exp(60.0 * signed_distance(points))

    return density


def ball(points, centre=(0.1, -0.05, 0.2), radius=0.5):
    return radius - (points - torch.tensor(centre)).norm(dim=1)


def torus(points):
    ring = torch.stack([points[:, :2].norm(dim=1) - 0.45, points[:, 2]], dim=1)
    return 0.15 - ring.norm(dim=1)


def ball_with_spike(points):
    """A ball with a rod along +x, one or two grid cells thick, passing between the coarse grid's vertices."""
    rod = 0.02 - (points[:, 1:] - 0.06).norm(dim=1)
    rod = torch.minimum(rod, 0.8 - points[:, 0])
    return torch.maximum(ball(points, centre=(-0.4, 0.0, 0.0), radius=0.3), rod)


def speck(points):
    """An object smaller than a block, placed between the coarse grid's vertices."""
    return ball(points, centre=(0.013, 0.017, 0.011), radius=0.02)


def assert_same_mesh(actual, expected, atol=1e-6):
    """The same vertices (to float rounding) joined by the same triangles with the same winding, in any order.

    Exact on this machine; the tolerance allows for matrix kernels that round differently by batch size."""
    (vertices, faces), (expected_vertices, expected_faces) = actual, expected
    assert vertices.shape == expected_vertices.shape and faces.shape == expected_faces.shape
    distance, match = cKDTree(expected_vertices).query(vertices)
    assert distance.max() <= atol
    assert len(set(match.tolist())) == len(match), "two vertices matched the same dense vertex"
    assert oriented_triangles(match[faces]) == oriented_triangles(expected_faces)


def oriented_triangles(faces):
    """Triangles as tuples rotated to start at their smallest index, which keeps their winding."""
    return {tuple(np.roll(face, -int(np.argmin(face)))) for face in faces.tolist()}


def counting(density_fn):
    calls = []

    def density(points):
        calls.append(len(points))
        return density_fn(points)

    return density, calls


@pytest.fixture(scope="module")
def bench_field():
    return load_bench_field()


@pytest.mark.parametrize(
    "shape", [ball, torus, ball_with_spike], ids=["ball", "torus", "ball with thin spike"]
)
@pytest.mark.parametrize("resolution", [48, 65])  # 47 and 64 cells: a thinner last block, and none
def test_sparse_extraction_gives_the_dense_mesh_on_solid_objects(shape, resolution):
    dense = extract_dense(solid(shape), resolution, RADIUS, THRESHOLD)
    assert_same_mesh(extract_sparse(solid(shape), resolution, RADIUS, THRESHOLD), dense)


def test_sparse_extraction_queries_a_fraction_of_the_grid():
    density, calls = counting(solid(torus))
    extract_sparse(density, 96, RADIUS, THRESHOLD)
    assert sum(calls) < 0.25 * 96**3


def test_an_object_smaller_than_a_block_is_still_found():
    fractions = []
    sparse = extract_sparse(solid(speck), 64, RADIUS, THRESHOLD, on_progress=fractions.append)
    assert_same_mesh(sparse, extract_dense(solid(speck), 64, RADIUS, THRESHOLD))
    assert fractions == sorted(fractions) and fractions[-1] == 1.0


def test_no_surface_gives_the_same_advice_as_the_dense_path():
    with pytest.raises(NoSurfaceError, match="Lower the threshold"):
        extract_sparse(solid(torus), 32, RADIUS, threshold=1e9)


def test_progress_rises_to_one_and_can_cancel():
    fractions = []
    extract_sparse(solid(torus), 48, RADIUS, THRESHOLD, on_progress=fractions.append)
    assert fractions == sorted(fractions) and fractions[-1] == 1.0

    def cancel(fraction):
        raise Cancelled("stopped by the user")

    with pytest.raises(Cancelled):
        extract_sparse(solid(torus), 48, RADIUS, THRESHOLD, on_progress=cancel)


def test_the_bench_field_gives_the_same_coloured_mesh_either_way(bench_field):
    model, scene = bench_field
    dense = model.extract_mesh(scene, resolution=80, threshold=THRESHOLD, method="dense")
    sparse = model.extract_mesh(scene, resolution=80, threshold=THRESHOLD, method="sparse")
    assert_same_mesh((sparse.vertices, sparse.faces), (dense.vertices, dense.faces))
    match = cKDTree(dense.vertices).query(sparse.vertices)[1]
    np.testing.assert_allclose(sparse.vertex_colors, dense.vertex_colors[match], atol=1e-6, rtol=0)


def test_the_default_extraction_is_sparse(bench_field, monkeypatch):
    model, scene = bench_field
    renderer, queried = model.network.renderer, []
    query = renderer.query

    def recording_query(decoder, points, *args, **kwargs):
        queried.append(len(points))
        return query(decoder, points, *args, **kwargs)

    monkeypatch.setattr(renderer, "query", recording_query)
    mesh = model.extract_mesh(scene, resolution=64, threshold=THRESHOLD)
    assert sum(queried) - len(mesh.vertices) < 0.5 * 64**3


def test_a_device_out_of_memory_extracts_again_with_the_values_on_the_cpu_and_says_so(monkeypatch, caplog):
    allocate, attempts = sparse_isosurface._BrickGrid._allocate, []

    def out_of_memory_the_first_time(grid, blocks):
        attempts.append(grid)
        if attempts[0] is grid:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        allocate(grid, blocks)

    monkeypatch.setattr(sparse_isosurface._BrickGrid, "_allocate", out_of_memory_the_first_time)
    with caplog.at_level(logging.WARNING, logger=sparse_isosurface.__name__):
        mesh = extract_sparse(solid(torus), 48, RADIUS, THRESHOLD)

    assert_same_mesh(mesh, extract_dense(solid(torus), 48, RADIUS, THRESHOLD))
    assert attempts[-1].device == torch.device("cpu")
    assert "ran out of GPU memory; extracting with the values on the CPU instead" in caplog.text
