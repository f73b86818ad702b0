"""The TripoSR API around the maths: inputs it accepts or refuses, chunking, progress, cancelling, devices."""

import numpy as np
import pytest
import torch
from fixture_model import FIXTURE
from PIL import Image

from triposr_blender.core import Cancelled, InvalidImageError, ModelLoadError, NoSurfaceError, TripoSR
from triposr_blender.core.device import resolve_device

POINTS = (torch.rand(500, 3, generator=torch.Generator().manual_seed(3)) * 2 - 1) * 0.87


def test_several_images_encode_as_a_batch(model, image, scene):
    mirrored = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    batch = model.encode([image, mirrored])
    assert batch.shape == (2, *scene.shape[1:])
    torch.testing.assert_close(batch[:1], scene, atol=1e-5, rtol=1e-4)


def test_an_image_with_alpha_must_be_prepared_first(model, image):
    with pytest.raises(InvalidImageError, match="preprocess_image"):
        model.encode(image.convert("RGBA"))


def test_a_non_image_is_refused(model):
    with pytest.raises(InvalidImageError, match="PIL images"):
        model.encode([np.zeros((8, 8, 3), dtype=np.uint8)])


def test_query_accepts_numpy_points_and_returns_float32_fields(model, scene):
    fields = model.query(scene, POINTS.numpy())
    assert fields["density"].shape == (500,) and fields["density"].dtype == torch.float32
    assert fields["color"].shape == (500, 3)
    assert fields["color"].min() >= 0 and fields["color"].max() <= 1


def test_chunked_queries_give_the_same_fields(model, scene):
    chunked = TripoSR.from_pretrained(FIXTURE, device="cpu", chunk_size=64)
    torch.testing.assert_close(chunked.query(scene, POINTS), model.query(scene, POINTS), atol=1e-6, rtol=1e-5)


def test_points_of_the_wrong_shape_are_refused(model, scene):
    with pytest.raises(ValueError, match=r"shape \(N, 3\)"):
        model.query(scene, torch.zeros(10, 2))


def test_query_takes_one_scene_at_a_time(model, scene):
    with pytest.raises(ValueError, match="one scene at a time"):
        model.query(torch.cat([scene, scene]), POINTS)


def test_a_threshold_nothing_reaches_raises_no_surface_with_advice(model, scene):
    with pytest.raises(NoSurfaceError, match="Lower the threshold"):
        model.extract_mesh(scene, resolution=16, threshold=1e6)


def test_an_unknown_extraction_method_is_refused(model, scene):
    with pytest.raises(ValueError, match="use one of sparse, dense"):
        model.extract_mesh(scene, resolution=16, threshold=0.4, method="magic")


def test_encode_reports_progress_from_start_to_end(model, image):
    reports = []
    model.encode(image, progress=lambda stage, fraction: reports.append((stage, fraction)))
    fractions = [fraction for _, fraction in reports]
    assert {stage for stage, _ in reports} == {"Encoding image"}
    assert fractions[0] == 0.0 and fractions[-1] == 1.0 and fractions == sorted(fractions)


def test_extract_mesh_reports_its_stages_in_order(model, scene):
    reports = []
    model.extract_mesh(scene, resolution=24, threshold=0.4, progress=lambda *report: reports.append(report))
    stages = list(dict.fromkeys(stage for stage, _ in reports))
    assert stages == ["Computing density grid", "Extracting surface", "Coloring vertices"]
    assert reports[-1] == ("Coloring vertices", 1.0)


def test_a_progress_callback_can_cancel_mesh_extraction(model, scene):
    def cancel(stage, fraction):
        if stage == "Computing density grid":
            raise Cancelled("cancelled by the user")

    with pytest.raises(Cancelled):
        model.extract_mesh(scene, resolution=24, threshold=0.4, progress=cancel)


def test_auto_picks_the_cpu_when_there_is_no_gpu():
    if torch.cuda.is_available() or torch.backends.mps.is_available():
        pytest.skip("a GPU is present")
    assert resolve_device("auto") == torch.device("cpu")


def test_asking_for_a_missing_gpu_is_explained():
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present")
    with pytest.raises(ModelLoadError, match="no CUDA GPU"):
        TripoSR.from_pretrained(FIXTURE, device="cuda")


def test_half_precision_on_the_cpu_is_refused():
    with pytest.raises(ModelLoadError, match="Half precision needs a GPU"):
        TripoSR.from_pretrained(FIXTURE, device="cpu", dtype="float16")


def test_an_unloaded_model_says_so_when_used_again(image):
    model = TripoSR.from_pretrained(FIXTURE, device="cpu")
    model.unload()
    with pytest.raises(ModelLoadError, match="unloaded"):
        model.encode(image)


def test_a_half_precision_encoder_still_yields_float32_scene_codes_and_fields(image, scene):
    """Half precision covers image -> scene codes only; the density field stays float32 (tested in bfloat16,
    which the CPU runs, as a stand-in for a GPU's float16)."""
    network = TripoSR.from_pretrained(FIXTURE, device="cpu").network
    network.set_encoder_dtype(torch.bfloat16)
    half = TripoSR(network, torch.device("cpu"))
    half_scene = half.encode(image)
    assert half.dtype == torch.bfloat16 and half_scene.dtype == torch.float32
    torch.testing.assert_close(half_scene, scene, atol=0.05, rtol=0.05)
    assert half.query(half_scene, POINTS)["density"].dtype == torch.float32
