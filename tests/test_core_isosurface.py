"""Dense mesh extraction on analytic density fields, where the right answer is known."""

import numpy as np
import pytest
import torch

from triposr_blender.core import NoSurfaceError, isosurface
from triposr_blender.core.isosurface import extract_dense, grid_points

RADIUS = 0.87
CENTRE = torch.tensor([0.1, -0.05, 0.2])


def ball_density(points: torch.Tensor) -> torch.Tensor:
    """Dense inside a ball of radius 0.5 around CENTRE, falling off outside (like a solid object)."""
    return 1.0 - ((points - CENTRE) ** 2).sum(dim=1) / 0.25


def test_the_surface_of_a_ball_lies_on_its_sphere():
    vertices, _ = extract_dense(ball_density, resolution=40, radius=RADIUS, threshold=0.0)
    distances = np.linalg.norm(vertices - CENTRE.numpy(), axis=1)
    np.testing.assert_allclose(distances, 0.5, atol=0.01)


def test_face_normals_point_out_of_the_object():
    vertices, faces = extract_dense(ball_density, resolution=40, radius=RADIUS, threshold=0.0)
    corners = vertices[faces]
    normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    outward = corners.mean(axis=1) - CENTRE.numpy()
    assert ((normals * outward).sum(axis=1) > 0).all()


def test_the_grid_is_queried_and_marched_slab_by_slab_with_the_same_mesh(monkeypatch):
    calls = []

    def recording_density(points):
        calls.append(len(points))
        return ball_density(points)

    whole = extract_dense(ball_density, resolution=20, radius=RADIUS, threshold=0.0)
    monkeypatch.setattr(isosurface, "POINTS_PER_CALL", 1000)  # 2 x-slices a call: 10 slabs
    fractions = []
    in_slabs = extract_dense(recording_density, 20, RADIUS, 0.0, on_progress=fractions.append)
    np.testing.assert_array_equal(in_slabs[0], whole[0])
    np.testing.assert_array_equal(in_slabs[1], whole[1])
    assert len(calls) > 1 and max(calls) <= 1000
    assert fractions == sorted(fractions) and fractions[-1] == 1.0


def test_grid_slabs_concatenate_to_the_whole_grid():
    slabs = [grid_points(9, RADIUS, start, start + 4) for start in range(0, 9, 4)]
    np.testing.assert_array_equal(torch.cat(slabs).numpy(), grid_points(9, RADIUS).numpy())


def test_a_threshold_above_every_density_asks_to_lower_it():
    with pytest.raises(NoSurfaceError, match="Lower the threshold"):
        extract_dense(ball_density, resolution=16, radius=RADIUS, threshold=25.0)


def test_a_threshold_below_every_density_asks_to_raise_it():
    with pytest.raises(NoSurfaceError, match="Raise the threshold"):
        extract_dense(ball_density, resolution=16, radius=RADIUS, threshold=-100.0)
