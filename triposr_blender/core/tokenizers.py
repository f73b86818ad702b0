"""TripoSR's two token sources: DINO image tokens, and learned triplane tokens for the backbone to refine."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from .vit import ViTConfig, ViTModel

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class DINOSingleImageTokenizer(nn.Module):
    """Encodes normalised images with a DINO ViT; each hidden state (CLS and patches) is one image token."""

    @dataclass(frozen=True)
    class Config:
        pretrained_model_name_or_path: str = "facebook/dino-vitb16"
        # Training-only switch of the reference, accepted so its configs load; inference never checkpoints.
        enable_gradient_checkpointing: bool = False

    def __init__(self, cfg: Config, vit_config: ViTConfig):
        super().__init__()
        self.cfg = cfg
        self.model = ViTModel(vit_config)

    def forward(self, images: torch.Tensor, on_layer: Callable[[float], None] | None = None) -> torch.Tensor:
        """``images`` [B, views, 3, H, W] in [0, 1] -> tokens [B, views, C, tokens]."""
        batch, views = images.shape[:2]
        # Constants, not buffers: the model is built on the meta device, where buffers would stay empty.
        mean = images.new_tensor(IMAGENET_MEAN).view(1, 1, 3, 1, 1)
        std = images.new_tensor(IMAGENET_STD).view(1, 1, 3, 1, 1)
        normalised = ((images - mean) / std).flatten(0, 1)
        hidden_states = self.model(normalised, on_layer)
        return hidden_states.permute(0, 2, 1).reshape(
            batch, views, hidden_states.shape[2], hidden_states.shape[1]
        )


class Triplane1DTokenizer(nn.Module):
    """Learned triplane embeddings [3, C, P, P], flattened to one token sequence [B, C, 3*P*P] and back."""

    @dataclass(frozen=True)
    class Config:
        plane_size: int
        num_channels: int

    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg
        self.embeddings = nn.Parameter(
            torch.randn(3, cfg.num_channels, cfg.plane_size, cfg.plane_size) / math.sqrt(cfg.num_channels)
        )

    def forward(self, batch_size: int) -> torch.Tensor:
        tokens = self.embeddings.permute(1, 0, 2, 3).reshape(self.cfg.num_channels, -1)
        return tokens.unsqueeze(0).expand(batch_size, -1, -1)

    def detokenize(self, tokens: torch.Tensor) -> torch.Tensor:
        """[B, C, 3*P*P] -> triplanes [B, 3, C, P, P]."""
        size = self.cfg.plane_size
        batch = tokens.shape[0]
        return tokens.reshape(batch, self.cfg.num_channels, 3, size, size).permute(0, 2, 1, 3, 4)
