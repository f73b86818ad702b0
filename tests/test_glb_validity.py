"""The core's GLB files are valid wherever Blender's are: Khronos' glTF-Validator finds no error and no
warning in any kind the server and the batch on Ray write, decimated ones included."""

import numpy as np
import pytest
from gltf_validator import assert_valid

from triposr_blender.core import export
from triposr_blender.core.decimate import decimate
from triposr_blender.core.texture import bake_texture


@pytest.mark.parametrize("kind", ["vertex colours", "baked texture", "decimated", "decimated and baked"])
def test_the_cores_glb_passes_the_khronos_validator_without_errors_or_warnings(mesh, color_fn, kind):
    if kind.startswith("decimated"):
        mesh = decimate(mesh, 500, color_fn)
    baked = bake_texture(mesh, color_fn, texture_size=128, padding=2) if "bake" in kind else None
    assert_valid(export.glb_bytes(mesh, baked))


def test_decimation_leaves_no_face_that_shades_wrongly(mesh, color_fn):
    """Edge collapses can leave a face naming a vertex twice, or two faces back to back whose normals cancel
    (the glTF validator's ACCESSOR_VECTOR3_NON_UNIT): none stays, and every normal is a unit vector."""
    decimated = decimate(mesh, 500, color_fn)
    faces = decimated.faces

    assert not (
        (faces[:, 0] == faces[:, 1]) | (faces[:, 1] == faces[:, 2]) | (faces[:, 0] == faces[:, 2])
    ).any()
    assert len(np.unique(np.sort(faces, axis=1), axis=0)) == len(faces)
    assert np.array_equal(np.unique(faces), np.arange(len(decimated.vertices))), "no vertex left unused"
    normals = export.vertex_normals(decimated.vertices, faces)
    np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-5)


def test_a_vertex_whose_face_normals_cancel_still_gets_a_unit_normal():
    vertices = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], np.float32)
    back_to_back = np.array([[0, 1, 2], [0, 2, 1]])
    normals = export.vertex_normals(vertices, back_to_back)
    np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-6)
