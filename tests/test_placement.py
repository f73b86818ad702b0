"""Where a mesh goes in Blender (blender/placement.py): orientation, origin and size, in pure numpy."""

import numpy as np
import pytest
from shapes import TETRAHEDRON

from triposr_blender.blender import placement


@pytest.mark.parametrize(
    ("front_axis", "photo_side"),
    [("NEG_Y", (0, -1, 0)), ("POS_Y", (0, 1, 0)), ("POS_X", (1, 0, 0)), ("NEG_X", (-1, 0, 0))],
)
def test_the_photographed_side_turns_to_the_front_axis_and_up_stays_up(front_axis, photo_side):
    rotation = placement.model_to_blender_rotation(front_axis)

    np.testing.assert_allclose(rotation @ (1, 0, 0), photo_side, atol=1e-12)
    np.testing.assert_allclose(rotation @ (0, 0, 1), (0, 0, 1), atol=1e-12)
    assert np.linalg.det(rotation) == pytest.approx(1.0)  # a turn, never a mirror: normals stay outward


def test_front_view_shows_the_photo_unmirrored():
    """Blender's Front view looks along +Y with +X to the right; the photo's right is TripoSR's +Y."""
    rotation = placement.model_to_blender_rotation("NEG_Y")

    np.testing.assert_allclose(rotation @ (0, 1, 0), (1, 0, 0), atol=1e-12)


def test_placed_vertices_stand_on_the_origin_with_the_longest_side_at_the_target_size():
    placed = placement.place_vertices(TETRAHEDRON.vertices, np.eye(3), 3.0)

    low, high = placed.min(axis=0), placed.max(axis=0)
    assert low[2] == pytest.approx(0.0)
    np.testing.assert_allclose((low[:2] + high[:2]) / 2, 0.0, atol=1e-6)
    assert (high - low).max() == pytest.approx(3.0)
    assert placed.dtype == np.float32


def test_an_image_empty_frame_is_centred_on_its_picture_and_as_large():
    empty = np.eye(4)
    empty[:3, 3] = (1.0, 2.0, 3.0)
    empty[:3, :3] *= 2.0  # scaled twice as large

    frame = placement.image_empty_frame(empty, 1.5, (-0.5, -0.5), image_width=200, image_height=100)

    np.testing.assert_allclose(frame.centre, (1.0, 2.0, 3.0))
    assert frame.size == pytest.approx(3.0)
    # An unrotated image empty shows its picture to a viewer above it (+Z), picture-up along +Y.
    np.testing.assert_allclose(frame.rotation @ (0, -1, 0), (0, 0, 1), atol=1e-12)
    np.testing.assert_allclose(frame.rotation @ (0, 0, 1), (0, 1, 0), atol=1e-12)


def test_an_offset_picture_moves_the_frame_centre_with_it():
    frame = placement.image_empty_frame(np.eye(4), 2.0, (0.0, -1.0), image_width=100, image_height=100)

    np.testing.assert_allclose(frame.centre, (1.0, -1.0, 0.0))


def test_the_object_matrix_centres_the_mesh_height_on_the_picture():
    frame = placement.PictureFrame(rotation=np.eye(3), centre=np.array([0.0, 0.0, 5.0]), size=1.0)

    np.testing.assert_allclose(frame.object_matrix(mesh_height=2.0)[:3, 3], (0.0, 0.0, 4.0))
