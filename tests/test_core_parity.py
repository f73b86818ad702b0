"""The core reproduces the reference TripoSR implementation, stage by stage, on the tiny parity fixture.

tests/fixtures/triposr-tiny-a holds a random-weight model in the official checkpoint format and the outputs
the reference code computed from it; its README gives the tolerances used here.
"""

import json

import numpy as np
import pytest
import torch
from fixture_model import FIXTURE

from triposr_blender.core.isosurface import grid_points

EXPECTED = np.load(FIXTURE / "expected.npz")
META = json.loads((FIXTURE / "meta.json").read_text())
TOLERANCE = {"atol": 1e-5, "rtol": 1e-4}
RADIUS = META["renderer"]["radius"]


@pytest.fixture(scope="module")
def rgb_cond(model, image):
    return model.prepare_images([image])


@pytest.fixture(scope="module")
def mesh(model, scene):
    settings = META["mesh"]
    # The reference queries every grid point: its mesh is what the dense method must reproduce.
    return model.extract_mesh(
        scene, resolution=settings["resolution"], threshold=settings["threshold"], method="dense"
    )


@pytest.fixture(scope="module")
def vertex_match(mesh):
    """For each of our vertices, the index of the nearest reference vertex."""
    distances = np.linalg.norm(mesh.vertices[:, None, :] - EXPECTED["mesh_vertices"][None, :, :], axis=2)
    return distances.argmin(axis=1)


def test_the_input_image_is_resized_like_the_reference(rgb_cond):
    np.testing.assert_allclose(rgb_cond.numpy(), EXPECTED["rgb_cond"], atol=1e-6, rtol=0)


def test_image_tokens_match(model, rgb_cond):
    with torch.inference_mode():
        tokens = model.network.tokenize_image(rgb_cond)
    np.testing.assert_allclose(tokens.numpy(), EXPECTED["image_tokens"], **TOLERANCE)


def test_backbone_tokens_match(model):
    image_tokens = torch.from_numpy(EXPECTED["image_tokens"])
    with torch.inference_mode():
        tokens = model.network.triplane_tokens(image_tokens)
    np.testing.assert_allclose(tokens.numpy(), EXPECTED["backbone_tokens"], **TOLERANCE)


def test_scene_codes_match(scene):
    np.testing.assert_allclose(scene.numpy(), EXPECTED["scene_codes"], **TOLERANCE)


def test_queried_densities_and_colours_match(model, scene):
    fields = model.query(scene, torch.from_numpy(EXPECTED["query_points"]))
    np.testing.assert_allclose(fields["density"].numpy(), EXPECTED["query_density_act"][:, 0], **TOLERANCE)
    np.testing.assert_allclose(fields["color"].numpy(), EXPECTED["query_color"], **TOLERANCE)


def test_the_marching_cubes_grid_is_laid_out_like_the_reference():
    np.testing.assert_array_equal(grid_points(32, RADIUS).numpy(), EXPECTED["grid32_points"])


def test_the_density_grid_matches(model, scene):
    densities = model.query(scene, grid_points(32, RADIUS))["density"]
    np.testing.assert_allclose(densities.numpy(), EXPECTED["grid32_density_act"], **TOLERANCE)


def test_the_mesh_has_the_reference_vertices_and_faces(mesh, vertex_match):
    assert mesh.vertices.shape == EXPECTED["mesh_vertices"].shape
    assert mesh.faces.shape == EXPECTED["mesh_faces"].shape
    distances = np.linalg.norm(mesh.vertices - EXPECTED["mesh_vertices"][vertex_match], axis=1)
    assert distances.max() <= 1e-4
    assert len(set(vertex_match)) == len(vertex_match), "two vertices matched the same reference vertex"
    assert triangle_set(vertex_match[mesh.faces]) == triangle_set(EXPECTED["mesh_faces"])


def test_the_mesh_has_the_reference_vertex_colours(mesh, vertex_match):
    expected = EXPECTED["mesh_vertex_colors"][vertex_match]
    np.testing.assert_allclose(mesh.vertex_colors, expected, atol=1e-5, rtol=0)
    rgba8 = EXPECTED["mesh_vertex_colors_rgba8"][vertex_match]
    assert np.abs(np.round(mesh.vertex_colors * 255) - rgba8[:, :3]).max() <= 1


def test_the_mesh_arrays_have_the_documented_types(mesh):
    assert mesh.vertices.dtype == np.float32
    assert mesh.faces.dtype == np.int64
    assert mesh.vertex_colors.dtype == np.float32


def test_renders_match(model, scene):
    settings = META["render"]
    images = model.render(scene, settings["n_views"], height=settings["height"], width=settings["width"])
    np.testing.assert_allclose(images[0].numpy(), EXPECTED["render"], **TOLERANCE)


def triangle_set(faces: np.ndarray) -> set[tuple[int, ...]]:
    """Faces as vertex sets: marching-cubes implementations may order and wind triangles differently."""
    return {tuple(sorted(face)) for face in faces.tolist()}
