"""The DINO ViT image encoder, written out so that TripoSR's checkpoint loads without ``transformers``.

Module and parameter names are those of ``transformers`` 4.35 ``ViTModel``
(``embeddings.patch_embeddings.projection``, ``encoder.layer.N.attention.attention.query``, ...), the version
TripoSR was trained and saved with, so the official state_dict keys load one to one. The maths follows that
version too, in particular ``interpolate_pos_encoding``. Not depending on ``transformers`` keeps a large
install out of Blender and makes the numbers independent of its version (5.x renamed these modules).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "gelu": F.gelu,
    "relu": F.relu,
    "silu": F.silu,
}


@dataclass(frozen=True)
class ViTConfig:
    """Architecture fields of a ``transformers`` ViT ``config.json``; defaults: ``facebook/dino-vitb16``."""

    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    layer_norm_eps: float = 1e-12
    image_size: int = 224
    patch_size: int = 16
    num_channels: int = 3
    qkv_bias: bool = True

    def __post_init__(self):
        if self.hidden_act not in ACTIVATIONS:
            raise ValueError(f"hidden_act must be one of {', '.join(ACTIVATIONS)}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError("hidden_size must be a multiple of num_attention_heads")


class ViTPatchEmbeddings(nn.Module):
    """Cuts the image into non-overlapping patches and projects each one to a token."""

    def __init__(self, config: ViTConfig):
        super().__init__()
        self.projection = nn.Conv2d(
            config.num_channels, config.hidden_size, kernel_size=config.patch_size, stride=config.patch_size
        )

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.projection(pixel_values).flatten(2).transpose(1, 2)


class ViTEmbeddings(nn.Module):
    """Patch tokens with a CLS token in front, plus learned position embeddings resized to the input grid."""

    def __init__(self, config: ViTConfig):
        super().__init__()
        self.patch_size = config.patch_size
        num_patches = (config.image_size // config.patch_size) ** 2
        self.cls_token = nn.Parameter(torch.randn(1, 1, config.hidden_size) * 0.02)
        self.position_embeddings = nn.Parameter(torch.randn(1, num_patches + 1, config.hidden_size) * 0.02)
        self.patch_embeddings = ViTPatchEmbeddings(config)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        height, width = pixel_values.shape[-2:]
        patches = self.patch_embeddings(pixel_values)
        cls_tokens = self.cls_token.expand(patches.shape[0], -1, -1)
        embeddings = torch.cat((cls_tokens, patches), dim=1)
        return embeddings + self.interpolate_pos_encoding(embeddings, height, width)

    def interpolate_pos_encoding(self, embeddings: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """Bicubic resize of the stored position grid to the input's patch grid, as transformers 4.35 does it.

        The ``+ 0.1`` and the ``scale_factor`` call (rather than ``size=``) are deliberate: later transformers
        versions switched to ``size=(h, w)``, which samples at different points and changes TripoSR's output.
        """
        num_patches = embeddings.shape[1] - 1
        num_positions = self.position_embeddings.shape[1] - 1
        if num_patches == num_positions and height == width:
            return self.position_embeddings
        class_pos_embed = self.position_embeddings[:, 0]
        patch_pos_embed = self.position_embeddings[:, 1:]
        dim = embeddings.shape[-1]
        side = int(math.sqrt(num_positions))
        patches_high = height // self.patch_size + 0.1
        patches_wide = width // self.patch_size + 0.1
        patch_pos_embed = patch_pos_embed.reshape(1, side, side, dim).permute(0, 3, 1, 2)
        patch_pos_embed = F.interpolate(
            patch_pos_embed,
            scale_factor=(patches_high / math.sqrt(num_positions), patches_wide / math.sqrt(num_positions)),
            mode="bicubic",
            align_corners=False,
        )
        patch_pos_embed = patch_pos_embed.permute(0, 2, 3, 1).reshape(1, -1, dim)
        return torch.cat((class_pos_embed.unsqueeze(0), patch_pos_embed), dim=1)


class ViTSelfAttention(nn.Module):
    def __init__(self, config: ViTConfig):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.query = nn.Linear(config.hidden_size, config.hidden_size, bias=config.qkv_bias)
        self.key = nn.Linear(config.hidden_size, config.hidden_size, bias=config.qkv_bias)
        self.value = nn.Linear(config.hidden_size, config.hidden_size, bias=config.qkv_bias)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        batch, tokens, width = hidden_states.shape

        def split_heads(x: torch.Tensor) -> torch.Tensor:
            return x.view(batch, tokens, self.num_heads, width // self.num_heads).transpose(1, 2)

        query, key, value = (split_heads(f(hidden_states)) for f in (self.query, self.key, self.value))
        context = F.scaled_dot_product_attention(query, key, value)
        return context.transpose(1, 2).reshape(batch, tokens, width)


class ViTSelfOutput(nn.Module):
    def __init__(self, config: ViTConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.dense(hidden_states)


class ViTAttention(nn.Module):
    def __init__(self, config: ViTConfig):
        super().__init__()
        self.attention = ViTSelfAttention(config)
        self.output = ViTSelfOutput(config)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.output(self.attention(hidden_states))


class ViTIntermediate(nn.Module):
    def __init__(self, config: ViTConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)
        self.activation = ACTIVATIONS[config.hidden_act]

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.activation(self.dense(hidden_states))


class ViTOutput(nn.Module):
    def __init__(self, config: ViTConfig):
        super().__init__()
        self.dense = nn.Linear(config.intermediate_size, config.hidden_size)

    def forward(self, hidden_states: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.dense(hidden_states) + residual


class ViTLayer(nn.Module):
    """A pre-LayerNorm transformer layer: attention and MLP, each wrapped in a residual connection."""

    def __init__(self, config: ViTConfig):
        super().__init__()
        self.attention = ViTAttention(config)
        self.intermediate = ViTIntermediate(config)
        self.output = ViTOutput(config)
        self.layernorm_before = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.layernorm_after = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        hidden_states = self.attention(self.layernorm_before(hidden_states)) + hidden_states
        return self.output(self.intermediate(self.layernorm_after(hidden_states)), hidden_states)


class ViTEncoder(nn.Module):
    def __init__(self, config: ViTConfig):
        super().__init__()
        self.layer = nn.ModuleList(ViTLayer(config) for _ in range(config.num_hidden_layers))

    def forward(
        self, hidden_states: torch.Tensor, on_layer: Callable[[float], None] | None = None
    ) -> torch.Tensor:
        for index, layer in enumerate(self.layer):
            hidden_states = layer(hidden_states)
            if on_layer is not None:
                on_layer((index + 1) / len(self.layer))
        return hidden_states


class ViTPooler(nn.Module):
    """Holds the checkpoint's ``pooler.dense`` weights. TripoSR never uses the pooled output: no forward."""

    def __init__(self, config: ViTConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)


class ViTModel(nn.Module):
    """The ViT backbone; ``forward`` returns the final-LayerNorm hidden states (CLS token first)."""

    def __init__(self, config: ViTConfig):
        super().__init__()
        self.embeddings = ViTEmbeddings(config)
        self.encoder = ViTEncoder(config)
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.pooler = ViTPooler(config)

    def forward(
        self, pixel_values: torch.Tensor, on_layer: Callable[[float], None] | None = None
    ) -> torch.Tensor:
        return self.layernorm(self.encoder(self.embeddings(pixel_values), on_layer))
