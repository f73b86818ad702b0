"""cpu_fast: int8 transformer layers on the CPU, close to float32 but not equal; off by default."""

import pytest
import torch
from fixture_model import FIXTURE
from torch import nn
from torch.ao.nn.quantized.dynamic import Linear as Int8Linear

from triposr_blender.core import TripoSR


@pytest.fixture(scope="module")
def exact(model):
    return model  # conftest's: the float32 model


@pytest.fixture(scope="module")
def fast():
    return TripoSR.from_pretrained(FIXTURE, device="cpu", cpu_fast=True)


def linear_kinds(module: nn.Module) -> set[type]:
    return {type(layer) for layer in module.modules() if isinstance(layer, nn.Linear | Int8Linear)}


def test_by_default_every_linear_layer_is_float32(exact):
    assert linear_kinds(exact.network) == {nn.Linear}


def test_cpu_fast_makes_the_transformer_layers_int8_and_leaves_the_rest(fast):
    network = fast.network
    assert linear_kinds(network.backbone.transformer_blocks) == {Int8Linear}
    assert linear_kinds(network.image_tokenizer.model.encoder) == {Int8Linear}
    assert linear_kinds(network.decoder) == {nn.Linear}
    assert fast.dtype == torch.float32


def test_cpu_fast_scene_codes_are_close_to_float32_but_not_equal(exact, fast, image):
    reference, quantised = exact.encode(image), fast.encode(image)
    relative_error = ((quantised - reference).norm() / reference.norm()).item()
    assert 0 < relative_error < 0.05
