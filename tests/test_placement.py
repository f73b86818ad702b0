"""Where a mesh goes in Blender (blender/placement.py): orientation, origin and size, in pure numpy."""

import numpy as np
import pytest

from triposr_blender.blender import placement


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
