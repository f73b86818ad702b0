"""config.yaml is read strictly in the reference's format, and class names in it are never imported."""

import copy
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from fixture_model import FIXTURE
from PIL import Image

from triposr_blender.core import ModelLoadError, TripoSR
from triposr_blender.core.config import load_config, parse_config, read_yaml
from triposr_blender.core.model import build_network
from triposr_blender.core.vit import ViTConfig

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def raw():
    """The tiny model's config.yaml as a plain mapping, ${...} references resolved."""
    return read_yaml(FIXTURE / "config.yaml")


def parse(raw):
    return parse_config(raw, model_folder=FIXTURE)


def test_the_tiny_config_reads_with_references_resolved_and_its_vit_folder(raw):
    config = parse(raw)
    assert config.backbone.in_channels == config.tokenizer.num_channels == 64
    assert config.vit == ViTConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        image_size=32,
        patch_size=8,
    )


def test_the_official_config_uses_the_built_in_dino_vitb16():
    config = load_config(FIXTURES / "official-config.yaml")
    assert config.vit == ViTConfig(
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=3072,
        hidden_act="gelu",
        layer_norm_eps=1e-12,
        image_size=224,
        patch_size=16,
        num_channels=3,
        qkv_bias=True,
    )


def test_a_class_outside_the_allow_list_is_refused_and_never_imported(raw):
    raw["decoder_cls"] = "evil_payload_module.Payload"
    with pytest.raises(ModelLoadError, match=r"decoder_cls 'evil_payload_module\.Payload'.*never imports"):
        parse(raw)
    assert "evil_payload_module" not in sys.modules


def test_a_known_class_in_the_wrong_place_is_refused(raw):
    raw["decoder_cls"] = raw["renderer_cls"]
    with pytest.raises(ModelLoadError, match=r"decoder_cls must be 'tsr\.models\.network_utils\.NeRFMLP'"):
        parse(raw)


@pytest.mark.parametrize(
    ("section", "option", "value", "message"),
    [
        ("decoder", "n_neuron", 16, r"Unknown option\(s\) in config.yaml decoder: n_neuron"),
        ("backbone", "num_layers", "two", "option num_layers has the wrong type"),
        ("backbone", "num_layers", True, "option num_layers has the wrong type"),
        ("renderer", "feature_reduction", "sum", "feature_reduction must be one of concat, mean"),
        ("renderer", "density_activation", "cube", "density_activation must be one of none, exp, trunc_exp"),
        ("decoder", "activation", "tanh", "activation must be one of relu, silu"),
        ("backbone", "activation_fn", "swish", "activation_fn must be one of gelu, gelu-approximate"),
        ("backbone", "norm_type", "ada_norm", "norm_type must be 'layer_norm'"),
    ],
)
def test_a_bad_option_is_named(raw, section, option, value, message):
    raw[section][option] = value
    with pytest.raises(ModelLoadError, match=message):
        parse(raw)


def test_an_unknown_top_level_option_is_named(raw):
    raw["cond_image_sise"] = 64
    with pytest.raises(ModelLoadError, match=r"Unknown option\(s\) in config.yaml: cond_image_sise"):
        parse(raw)


def test_a_missing_required_option_is_named(raw):
    del raw["tokenizer"]["plane_size"]
    with pytest.raises(ModelLoadError, match=r"Missing option\(s\) in config.yaml tokenizer: plane_size"):
        parse(raw)


def test_parts_that_cannot_fit_together_are_refused(raw):
    raw["decoder"]["in_channels"] = 25
    with pytest.raises(
        ModelLoadError, match=r"decoder\.in_channels must equal 3 x post_processor\.out_channels"
    ):
        parse(raw)


def test_an_image_encoder_config_that_cannot_be_found_is_explained(raw):
    raw["image_tokenizer"]["pretrained_model_name_or_path"] = "someone/other-vit"
    with pytest.raises(ModelLoadError, match="neither a folder next to config.yaml nor one of the built-in"):
        parse(raw)


def test_an_unsupported_image_encoder_activation_is_named(tmp_path, raw):
    vit = json.loads((FIXTURE / "vit" / "config.json").read_text())
    (tmp_path / "vit").mkdir()
    (tmp_path / "vit" / "config.json").write_text(json.dumps({**vit, "hidden_act": "swish"}))
    with pytest.raises(ModelLoadError, match="hidden_act must be one of gelu, relu, silu"):
        parse_config(raw, model_folder=tmp_path)


def test_a_file_that_is_not_yaml_is_a_model_load_error(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("cond_image_size: [64\n")
    with pytest.raises(ModelLoadError, match="Could not read the model config"):
        load_config(path)


# Options the reference's classes accept beyond those the released model uses: each must build and run.
VARIANTS = {
    "mean of the plane features": {"renderer": {"feature_reduction": "mean"}, "decoder": {"in_channels": 8}},
    "softplus density": {"renderer": {"density_activation": "softplus"}},
    "relu decoder without biases": {"decoder": {"activation": "relu", "bias": False}},
    "gelu feed-forward, biased attention": {"backbone": {"activation_fn": "gelu", "attention_bias": True}},
    "approximate gelu": {"backbone": {"activation_fn": "gelu-approximate"}},
    "approximate geglu, cross-attention only": {
        "backbone": {"activation_fn": "geglu-approximate", "only_cross_attention": True}
    },
    "eight samples per ray": {"renderer": {"num_samples_per_ray": 8}},
}


@pytest.mark.parametrize("overrides", VARIANTS.values(), ids=VARIANTS.keys())
def test_option_variants_build_and_run(raw, overrides):
    varied = copy.deepcopy(raw)
    for section, options in overrides.items():
        varied[section].update(options)
    torch.manual_seed(0)
    model = TripoSR(build_network(parse(varied), device="cpu").eval(), torch.device("cpu"))
    scene = model.encode(Image.open(FIXTURE / "input.png").convert("RGB"))
    fields = model.query(scene, torch.rand(100, 3) - 0.5)
    image = model.render(scene, n_views=1, height=4, width=4)
    assert scene.shape == (1, 3, 8, 16, 16)
    assert fields["density"].shape == (100,) and fields["color"].shape == (100, 3)
    assert np.isfinite(image.numpy()).all()


# --- A config from an untrusted folder cannot hang or exhaust the machine -------------------------------

YAML_BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{name}: &{name} [{', '.join(['*' + previous] * 9)}]\n"
    for previous, name in zip("abcdefgh", "bcdefghi", strict=True)
)


def write_config(folder: Path, text: str) -> Path:
    folder.mkdir()
    (folder / "config.yaml").write_text(text)
    return folder / "config.yaml"


def test_a_yaml_alias_bomb_is_refused_at_once(tmp_path):
    assert len(YAML_BOMB) < 1024, "1 kB of YAML that expands to 9^9 values"
    with pytest.raises(ModelLoadError, match="expands to more than 10,000 values through its aliases"):
        load_config(write_config(tmp_path / "bomb", YAML_BOMB))


def test_a_config_of_interpolations_copying_each_other_is_refused(tmp_path):
    levels = "a: [1, 1]\n" + "".join(
        f"{b}: [${{{a}}}, ${{{a}}}]\n"
        for a, b in zip("abcdefghijklmnopqrs", "bcdefghijklmnopqrst", strict=True)
    )
    with pytest.raises(ModelLoadError, match="more than 32 interpolations"):
        load_config(write_config(tmp_path / "interpolations", levels))


def test_a_file_far_larger_than_a_config_is_not_read(tmp_path):
    with pytest.raises(ModelLoadError, match="far more than a model config holds"):
        load_config(write_config(tmp_path / "large", "# padding\n" * 10_000))


@pytest.mark.parametrize(
    ("option", "value"),
    [(("backbone", "num_layers"), 1_000_000), ("cond_image_size", 1_000_000), (("decoder", "n_neurons"), 0)],
)
def test_sizes_no_triposr_model_uses_are_refused_before_anything_is_built(raw, option, value):
    if isinstance(option, tuple):
        raw[option[0]][option[1]] = value
    else:
        raw[option] = value
    name = ".".join(option) if isinstance(option, tuple) else option
    with pytest.raises(ModelLoadError, match=f"{name} is {value}, outside the sizes a TripoSR model uses"):
        parse(raw)
