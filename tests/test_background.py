"""Background removal runs rembg's own model files with torch on the model's GPU, and gives rembg's masks.

Everything here is real: rembg with onnxruntime on rembg's u2netp.onnx is the reference, and the torch path
reads the same file. The torch path runs here on the CPU, computing what it computes on a GPU (the product
itself uses onnxruntime on the CPU, which is faster there); a GPU that fails is played by PyTorch's meta
device, on which no tensor can be read back.
"""

import logging
import os
from pathlib import Path

import numpy as np
import onnxruntime
import pooch.core
import pytest
import torch
from PIL import Image

from triposr_blender.core import background
from triposr_blender.core.errors import ModelLoadError
from triposr_blender.core.onnx_graph import DamagedModelFile, read_onnx

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
# The bound: masks within 1/255 of rembg's on average.
MEAN_MASK_DIFFERENCE = 1 / 255


def example(name, crop=None):
    with Image.open(EXAMPLES / name) as image:
        image = image.convert("RGB")
    return image.crop(crop) if crop else image


IMAGES = {
    "chair": lambda: example("chair.png"),
    "teapot": lambda: example("teapot.png"),
    "teapot, a wide crop": lambda: example("teapot.png", crop=(0, 100, 512, 400)),
}


def rembgs_mask(image, model_name):
    import rembg

    return rembg.remove(image, session=rembg.new_session(model_name), only_mask=True)


@pytest.fixture
def fresh_models(monkeypatch):
    """Nothing read or loaded yet, as in a new worker process."""
    monkeypatch.setattr(background, "_cache", {})


@pytest.mark.parametrize("name", IMAGES)
def test_the_torch_mask_is_rembgs(name, rembg_model, fresh_models):
    image = IMAGES[name]()

    mask = background.mask_model(rembg_model, "cpu").predict(image)
    expected = rembgs_mask(image, rembg_model)

    assert mask.mode == "L" and mask.size == image.size
    difference = np.abs(np.asarray(mask, np.float64) - np.asarray(expected, np.float64)) / 255
    assert difference.mean() <= MEAN_MASK_DIFFERENCE, difference.mean() * 255


def test_the_graph_runner_gives_onnxruntimes_outputs(rembg_model):
    path = background.rembg_model_file(rembg_model)
    x = np.random.default_rng(0).standard_normal((1, 3, 320, 320)).astype(np.float32)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    expected = session.run(None, {session.get_inputs()[0].name: x})
    with torch.inference_mode():
        outputs = read_onnx(path).run(torch.from_numpy(x))

    assert len(outputs) == len(expected) == 7
    for output, reference in zip(outputs, expected, strict=True):
        assert output.shape == reference.shape
        assert np.abs(output.numpy() - reference).max() < 1e-4


def test_the_cpu_runs_rembg_itself(rembg_model, fresh_models):
    image = IMAGES["teapot"]()

    mask = background.object_mask(image, rembg_model, device="cpu")

    assert np.array_equal(np.asarray(mask), np.asarray(rembgs_mask(image, rembg_model)))
    assert not any(key[0] == "torch" for key in background._cache)


def test_a_gpu_that_fails_falls_back_to_rembg_on_the_cpu_and_says_so(rembg_model, fresh_models, caplog):
    image = IMAGES["teapot"]()

    with caplog.at_level(logging.WARNING, logger=background.__name__):
        mask = background.object_mask(image, rembg_model, device="meta")

    assert np.array_equal(np.asarray(mask), np.asarray(rembgs_mask(image, rembg_model)))
    assert "could not run on meta" in caplog.text and "rembg on the CPU instead" in caplog.text


def test_the_model_is_read_once_per_device(rembg_model, fresh_models):
    first = background.mask_model(rembg_model, "cpu")
    assert background.mask_model(rembg_model, torch.device("cpu")) is first


@pytest.fixture
def damaged_model(rembg_model, tmp_path, monkeypatch, fresh_models):
    """The first 100 kB of rembg's model file, where rembg looks for it."""
    damaged = tmp_path / f"{rembg_model}.onnx"
    damaged.write_bytes(background.rembg_model_file(rembg_model).read_bytes()[:100_000])
    monkeypatch.setenv("U2NET_HOME", str(tmp_path))
    return damaged


def test_a_damaged_model_file_is_refused_with_what_to_do(rembg_model, damaged_model):
    with pytest.raises(DamagedModelFile):
        read_onnx(damaged_model)
    for device in ("cpu", "meta"):  # rembg's own session; the torch path, which does not fall back to it
        with pytest.raises(
            ModelLoadError, match="could not be loaded: .* Delete it to have it downloaded again"
        ):
            background.object_mask(IMAGES["teapot"](), rembg_model, device=device)


def test_with_downloads_off_a_damaged_model_file_is_never_fetched_again(
    rembg_model, damaged_model, monkeypatch
):
    """pooch fetches a file whose checksum fails again; with online access off, nothing may be fetched."""
    fetched = []
    monkeypatch.setattr(pooch.core, "stream_download", lambda url, *args, **kwargs: fetched.append(url))
    for device in ("cpu", "meta"):
        with pytest.raises(ModelLoadError, match=f"{damaged_model}.*allow online access") as refused:
            background.object_mask(IMAGES["teapot"](), rembg_model, device=device, allow_download=False)
        assert "Out of memory" not in str(refused.value)
    assert fetched == [] and "MODEL_CHECKSUM_DISABLED" not in os.environ
