"""TripoSR's model space turned upright (core/orientation.py): which way the photo faces, origin, size."""

import numpy as np
import pytest
from shapes import TETRAHEDRON

from triposr_blender.core import orientation


@pytest.mark.parametrize(
    ("front_axis", "photo_side"),
    [("NEG_Y", (0, -1, 0)), ("POS_Y", (0, 1, 0)), ("POS_X", (1, 0, 0)), ("NEG_X", (-1, 0, 0))],
)
def test_the_photographed_side_turns_to_the_front_axis_and_up_stays_up(front_axis, photo_side):
    rotation = orientation.model_to_blender_rotation(front_axis)

    np.testing.assert_allclose(rotation @ (1, 0, 0), photo_side, atol=1e-12)
    np.testing.assert_allclose(rotation @ (0, 0, 1), (0, 0, 1), atol=1e-12)
    assert np.linalg.det(rotation) == pytest.approx(1.0)  # a turn, never a mirror: normals stay outward


def test_front_view_shows_the_photo_unmirrored():
    """Blender's Front view looks along +Y with +X to the right; the photo's right is TripoSR's +Y."""
    rotation = orientation.model_to_blender_rotation("NEG_Y")

    np.testing.assert_allclose(rotation @ (0, 1, 0), (1, 0, 0), atol=1e-12)


def test_placed_vertices_stand_on_the_origin_with_the_longest_side_at_the_target_size():
    placed = orientation.place_vertices(TETRAHEDRON.vertices, np.eye(3), 3.0)

    low, high = placed.min(axis=0), placed.max(axis=0)
    assert low[2] == pytest.approx(0.0)
    np.testing.assert_allclose((low[:2] + high[:2]) / 2, 0.0, atol=1e-6)
    assert (high - low).max() == pytest.approx(3.0)
    assert placed.dtype == np.float32
