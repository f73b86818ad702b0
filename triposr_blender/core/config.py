"""Reading a TripoSR ``config.yaml`` safely and strictly.

The file names its parts by the reference's class paths (``tsr.models.network_utils.NeRFMLP``). Those
strings are only looked up in a fixed allow-list that maps them to this package's classes: nothing named in
a file is ever imported. Every option is checked against the part's ``Config`` dataclass, so a typo is an
error, not a silent default.

A model folder is untrusted input like the checkpoint: only regular files of a config's size are read (a FIFO
would block forever), YAML aliases and interpolations may not expand the file beyond what a config holds, and
every size is checked against an upper bound before anything is built.
"""

from __future__ import annotations

import dataclasses
import json
import math
import stat
import types
import typing
from pathlib import Path

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from .errors import ModelLoadError
from .networks import NeRFMLP, TriplaneUpsampleNetwork
from .renderer import TriplaneNeRFRenderer
from .tokenizers import DINOSingleImageTokenizer, Triplane1DTokenizer
from .transformer import Transformer1D
from .vit import ViTConfig

# slot -> (the reference class path the config must name, our implementation)
ALLOWED_CLASSES: dict[str, tuple[str, type]] = {
    "image_tokenizer": ("tsr.models.tokenizers.image.DINOSingleImageTokenizer", DINOSingleImageTokenizer),
    "tokenizer": ("tsr.models.tokenizers.triplane.Triplane1DTokenizer", Triplane1DTokenizer),
    "backbone": ("tsr.models.transformer.transformer_1d.Transformer1D", Transformer1D),
    "post_processor": ("tsr.models.network_utils.TriplaneUpsampleNetwork", TriplaneUpsampleNetwork),
    "decoder": ("tsr.models.network_utils.NeRFMLP", NeRFMLP),
    "renderer": ("tsr.models.nerf_renderer.TriplaneNeRFRenderer", TriplaneNeRFRenderer),
}
BUILT_IN_VIT_CONFIGS = {"facebook/dino-vitb16": ViTConfig()}

# A config file holds a few hundred bytes and nodes. The YAML of a "billion laughs" is 1 kB and, once its
# aliases are expanded, 10^9 nodes; interpolations (${...}) copy whole subtrees the same way.
MAX_CONFIG_BYTES = 1 << 16
MAX_CONFIG_NODES = 10_000
MAX_INTERPOLATIONS = 32
# Upper bounds for the sizes a config sets, far above the released model's (in the comments). They are
# checked before anything is built: an untrusted config must neither build a million layers nor ask for
# terabytes. (option path -> bound)
SIZE_LIMITS = {
    "cond_image_size": 1024,  # 512
    "tokenizer.plane_size": 128,  # 32
    "tokenizer.num_channels": 4096,  # 1024
    "backbone.in_channels": 4096,  # 1024
    "backbone.num_attention_heads": 64,  # 16
    "backbone.attention_head_dim": 256,  # 64
    "backbone.out_channels": 4096,  # unset
    "backbone.num_layers": 64,  # 16
    "backbone.norm_num_groups": 4096,  # 32
    "backbone.cross_attention_dim": 4096,  # 768
    "post_processor.in_channels": 4096,  # 1024
    "post_processor.out_channels": 256,  # 40
    "decoder.in_channels": 768,  # 120
    "decoder.n_neurons": 1024,  # 64
    "decoder.n_hidden_layers": 64,  # 9
    "renderer.num_samples_per_ray": 1024,  # 128
    "vit.hidden_size": 4096,  # 768
    "vit.num_hidden_layers": 64,  # 12
    "vit.num_attention_heads": 64,  # 12
    "vit.intermediate_size": 16384,  # 3072
    "vit.image_size": 1024,  # 224
    "vit.patch_size": 64,  # 16
    "vit.num_channels": 4,  # 3
}


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    cond_image_size: int
    image_tokenizer: DINOSingleImageTokenizer.Config
    vit: ViTConfig
    tokenizer: Triplane1DTokenizer.Config
    backbone: Transformer1D.Config
    post_processor: TriplaneUpsampleNetwork.Config
    decoder: NeRFMLP.Config
    renderer: TriplaneNeRFRenderer.Config


def load_config(path: Path) -> ModelConfig:
    """Parse ``config.yaml``; a relative ViT config folder is looked up next to it."""
    return parse_config(read_yaml(path), model_folder=path.parent)


def read_config_text(path: Path) -> str:
    """The text of a config file, read only when it is a regular file of a config's size."""
    try:
        status = path.stat()
        if not stat.S_ISREG(status.st_mode):
            raise ModelLoadError(
                f"The model config {path} is not a regular file; replace it with the real file."
            )
        if status.st_size > MAX_CONFIG_BYTES:
            raise ModelLoadError(
                f"The model config {path} has {status.st_size:,} bytes, far more than a model config holds "
                f"(at most {MAX_CONFIG_BYTES:,}); it is not a TripoSR config."
            )
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ModelLoadError(f"Could not read the model config {path}: {error}") from error


def read_yaml(path: Path) -> dict:
    text = read_config_text(path)
    try:
        check_expansion(text, path)
        raw = OmegaConf.to_container(OmegaConf.create(text), resolve=True)
    except (yaml.YAMLError, OmegaConfBaseException, RecursionError) as error:
        raise ModelLoadError(f"Could not read the model config {path}: {error}") from error
    if not isinstance(raw, dict):
        raise ModelLoadError(
            f"The model config {path} must be a mapping of options, not {type(raw).__name__}."
        )
    return raw


def check_expansion(text: str, path: Path) -> None:
    """Refuse YAML whose aliases or interpolations would expand it far beyond what a config holds."""
    if text.count("${") > MAX_INTERPOLATIONS:
        raise ModelLoadError(
            f"The model config {path} has more than {MAX_INTERPOLATIONS} interpolations (${{...}}); "
            "it is not a TripoSR config."
        )
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    if root is not None and expanded_size(root, {}) > MAX_CONFIG_NODES:
        raise ModelLoadError(
            f"The model config {path} expands to more than {MAX_CONFIG_NODES:,} values through its aliases "
            "(a YAML bomb?); it is not a TripoSR config."
        )


def expanded_size(node: yaml.Node, sizes: dict[int, int]) -> int:
    """How many nodes ``node`` becomes once aliases are copied out; an alias is one shared node object, so
    the count is memoised on it and stays fast however large the expansion."""
    if id(node) not in sizes:
        if isinstance(node, yaml.MappingNode):
            children = [child for pair in node.value for child in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = node.value
        else:
            children = []
        sizes[id(node)] = 1 + sum(expanded_size(child, sizes) for child in children)
    return sizes[id(node)]


def parse_config(raw: dict, model_folder: Path) -> ModelConfig:
    known = {"cond_image_size", *ALLOWED_CLASSES, *(f"{slot}_cls" for slot in ALLOWED_CLASSES)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ModelLoadError(f"Unknown option(s) in config.yaml: {', '.join(unknown)}.")
    parts = {slot: parse_part(raw, slot) for slot in ALLOWED_CLASSES}
    cond_image_size = raw.get("cond_image_size")
    if not isinstance(cond_image_size, int) or isinstance(cond_image_size, bool) or cond_image_size < 1:
        raise ModelLoadError("config.yaml: cond_image_size must be a positive whole number of pixels.")
    vit = resolve_vit_config(parts["image_tokenizer"].pretrained_model_name_or_path, model_folder)
    config = ModelConfig(cond_image_size=cond_image_size, vit=vit, **parts)
    check_sizes(config)
    check_consistency(config)
    return config


def check_sizes(config: ModelConfig) -> None:
    """Every size within its bound (``SIZE_LIMITS``) and at least 1; the radius a positive number."""
    for option, limit in SIZE_LIMITS.items():
        value = config
        for name in option.split("."):
            value = getattr(value, name)
        if value is not None and not 1 <= value <= limit:
            raise ModelLoadError(
                f"config.yaml: {option} is {value}, outside the sizes a TripoSR model uses (1 to {limit}); "
                "this config would not build a usable model."
            )
    radius = config.renderer.radius
    if not (math.isfinite(radius) and radius > 0):
        raise ModelLoadError(f"config.yaml: renderer.radius must be a positive number, not {radius}.")


def parse_part(raw: dict, slot: str):
    class_path, implementation = ALLOWED_CLASSES[slot]
    named = raw.get(f"{slot}_cls")
    if named != class_path:
        raise ModelLoadError(
            f"config.yaml names {slot}_cls '{named}', which is not a TripoSR part this add-on knows. "
            f"It never imports classes named in a file; {slot}_cls must be '{class_path}'."
        )
    return parse_options(implementation.Config, raw.get(slot) or {}, f"config.yaml {slot}")


def parse_options(config_class: type, raw: object, where: str, ignore_unknown: bool = False):
    """Build a part's ``Config`` dataclass from a mapping, rejecting unknown, missing and mistyped options."""
    if not isinstance(raw, dict):
        raise ModelLoadError(f"{where} must be a mapping of options.")
    fields = {field.name: field for field in dataclasses.fields(config_class)}
    unknown = sorted(set(raw) - set(fields))
    if unknown and not ignore_unknown:
        raise ModelLoadError(
            f"Unknown option(s) in {where}: {', '.join(unknown)}. Known: {', '.join(fields)}."
        )
    options = {name: value for name, value in raw.items() if name in fields}
    missing = [name for name, field in fields.items() if name not in options and is_required(field)]
    if missing:
        raise ModelLoadError(f"Missing option(s) in {where}: {', '.join(missing)}.")
    hints = typing.get_type_hints(config_class)
    for name, value in options.items():
        if not matches_type(value, hints[name]):
            raise ModelLoadError(f"{where}: option {name} has the wrong type ({value!r}).")
    try:
        return config_class(**options)
    except ValueError as error:
        raise ModelLoadError(f"{where}: {error}.") from error


def is_required(field: dataclasses.Field) -> bool:
    return field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING


def matches_type(value: object, hint: object) -> bool:
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    return any(is_instance_of(value, option) for option in (typing.get_args(hint) if union else (hint,)))


def is_instance_of(value: object, option: type) -> bool:
    if option is type(None):
        return value is None
    if isinstance(value, bool):  # bool is a subclass of int, but `num_layers: true` is a mistake
        return option is bool
    if option is float:
        return isinstance(value, int | float)
    return isinstance(value, option)


def resolve_vit_config(name: str, model_folder: Path) -> ViTConfig:
    """A folder next to config.yaml holding ``config.json`` wins; else a built-in config by hub name."""
    folder = model_folder / name
    if folder.is_dir():
        return read_vit_config(folder / "config.json")
    if name in BUILT_IN_VIT_CONFIGS:
        return BUILT_IN_VIT_CONFIGS[name]
    raise ModelLoadError(
        f"config.yaml asks for the image encoder config '{name}', which is neither a folder next to "
        f"config.yaml nor one of the built-in configs ({', '.join(BUILT_IN_VIT_CONFIGS)})."
    )


def read_vit_config(path: Path) -> ViTConfig:
    try:
        raw = json.loads(read_config_text(path))
    except (json.JSONDecodeError, RecursionError) as error:
        raise ModelLoadError(f"Could not read the image encoder config {path}: {error}") from error
    # A transformers config.json also carries bookkeeping (model_type, torch_dtype, ...); only the
    # architecture fields matter.
    return parse_options(ViTConfig, raw, str(path), ignore_unknown=True)


def check_consistency(config: ModelConfig) -> None:
    """Catch parts that cannot fit together before building anything, naming the options involved."""
    planes = 3 if config.renderer.feature_reduction == "concat" else 1
    requirements = [
        (
            config.backbone.in_channels == config.tokenizer.num_channels,
            "backbone.in_channels",
            "tokenizer.num_channels",
        ),
        (
            config.backbone.cross_attention_dim in (None, config.vit.hidden_size),
            "backbone.cross_attention_dim",
            "the image encoder's hidden_size",
        ),
        (
            config.post_processor.in_channels == config.tokenizer.num_channels,
            "post_processor.in_channels",
            "tokenizer.num_channels",
        ),
        (
            config.decoder.in_channels == planes * config.post_processor.out_channels,
            "decoder.in_channels",
            f"{planes} x post_processor.out_channels ({config.renderer.feature_reduction} features)",
        ),
    ]
    for holds, option, should_match in requirements:
        if not holds:
            raise ModelLoadError(f"config.yaml is inconsistent: {option} must equal {should_match}.")
