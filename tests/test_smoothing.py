"""Smoothing takes the lumps out of a noisy field without shrinking the object, measured on the benchmark
field, whose true shape (Suzanne) is known, and on a copy of it with noise on every triplane texel."""

import numpy as np
import pytest
import torch
from bench_field import THRESHOLD, TrueSurface, load_bench_field, noisy_copy
from shapes import enclosed_volume

from triposr_blender.core.progress import ignore
from triposr_blender.core.smoothing import smoothed_triplane
from triposr_blender.options import MeshOptions
from triposr_blender.worker.pipeline import mesh_from_scene

RESOLUTION = 96
SMOOTHING = 0.5


@pytest.fixture(scope="module")
def field():
    return load_bench_field()


@pytest.fixture(scope="module")
def truth():
    return TrueSurface()


def normal_error(truth, mesh) -> float:
    return truth.compare(mesh)[1].mean()


def extracted(model, scene, smoothing=0.0):
    return model.extract_mesh(scene, resolution=RESOLUTION, threshold=THRESHOLD, smoothing=smoothing)


def test_on_a_noisy_field_the_normals_come_a_fifth_closer_to_the_true_shape_at_the_same_volume(field, truth):
    model, scene = field
    noisy = noisy_copy(scene)

    lumpy, smoothed = extracted(model, noisy), extracted(model, noisy, SMOOTHING)

    assert normal_error(truth, smoothed) <= 0.8 * normal_error(truth, lumpy)
    assert enclosed_volume(smoothed) == pytest.approx(enclosed_volume(lumpy), rel=0.02)


def test_on_the_clean_field_the_shape_is_no_worse(field, truth):
    model, scene = field

    raw, smoothed = extracted(model, scene), extracted(model, scene, SMOOTHING)

    assert normal_error(truth, smoothed) <= 1.05 * normal_error(truth, raw)
    assert enclosed_volume(smoothed) == pytest.approx(enclosed_volume(raw), rel=0.02)


def test_the_colors_come_from_the_unsmoothed_field(field):
    model, scene = field
    noisy = noisy_copy(scene)

    mesh = extracted(model, noisy, SMOOTHING)

    expected = model.query(noisy, mesh.vertices)["color"].numpy()
    np.testing.assert_allclose(mesh.vertex_colors, expected, atol=1e-6)


def test_no_smoothing_is_the_raw_surface(field):
    model, scene = field
    raw = model.extract_mesh(scene, resolution=48, threshold=THRESHOLD)
    off = model.extract_mesh(scene, resolution=48, threshold=THRESHOLD, smoothing=0.0)
    assert np.array_equal(off.vertices, raw.vertices) and np.array_equal(off.faces, raw.faces)


def test_the_blur_spreads_a_texel_and_keeps_the_planes_level():
    impulse = torch.zeros(3, 2, 16, 16)
    impulse[:, :, 8, 8] = 1.0
    level = torch.full((3, 2, 16, 16), 0.7)

    spread = smoothed_triplane(impulse, 0.75)

    assert spread.sum().item() == pytest.approx(impulse.sum().item(), rel=1e-5)
    assert spread[0, 0, 8, 8] < 0.5 and spread[0, 0, 8, 9] > 0.05 and spread[0, 0, 0, 0] == 0
    torch.testing.assert_close(smoothed_triplane(level, 0.75), level, rtol=0, atol=1e-6)


def test_the_pipeline_passes_smoothing_to_the_extraction(field):
    model, scene = field
    options = MeshOptions(resolution=64, threshold=THRESHOLD)
    plain = mesh_from_scene(model, scene, options, ignore).mesh
    smoothed = mesh_from_scene(
        model, scene, MeshOptions(**{**options.as_dict(), "smoothing": 0.5}), ignore
    ).mesh

    assert not (
        plain.vertices.shape == smoothed.vertices.shape and np.allclose(plain.vertices, smoothed.vertices)
    )
    assert enclosed_volume(smoothed) == pytest.approx(enclosed_volume(plain), rel=0.02)
