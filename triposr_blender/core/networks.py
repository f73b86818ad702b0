"""The triplane upsampler (post-processor) and the NeRF MLP (features -> density, colour)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

MLP_ACTIVATIONS = {"relu": nn.ReLU, "silu": nn.SiLU}


class TriplaneUpsampleNetwork(nn.Module):
    """Doubles each plane's resolution (stride-2 transposed conv): [B, 3, C, H, W] -> [B, 3, C', 2H, 2W]."""

    @dataclass(frozen=True)
    class Config:
        in_channels: int
        out_channels: int

    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg
        self.upsample = nn.ConvTranspose2d(cfg.in_channels, cfg.out_channels, kernel_size=2, stride=2)

    def forward(self, triplanes: torch.Tensor) -> torch.Tensor:
        batch, planes = triplanes.shape[:2]
        upsampled = self.upsample(triplanes.flatten(0, 1))
        return upsampled.unflatten(0, (batch, planes))


class NeRFMLP(nn.Module):
    """Point features -> 4 numbers: raw density (channel 0) and raw colour features (channels 1-3)."""

    @dataclass(frozen=True)
    class Config:
        in_channels: int
        n_neurons: int
        n_hidden_layers: int
        activation: str = "relu"
        bias: bool = True
        # Initialisation choices of the reference. They are checked so its configs load, but the weights
        # always come from the checkpoint, so they change nothing here.
        weight_init: str | None = "kaiming_uniform"
        bias_init: str | None = None

        def __post_init__(self):
            if self.activation not in MLP_ACTIVATIONS:
                raise ValueError(f"activation must be one of {', '.join(MLP_ACTIVATIONS)}")
            if self.n_hidden_layers < 1:
                raise ValueError("n_hidden_layers must be at least 1")
            if self.weight_init not in (None, "kaiming_uniform"):
                raise ValueError("weight_init must be kaiming_uniform or null")
            if self.bias_init not in (None, "zero"):
                raise ValueError("bias_init must be zero or null")

    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg
        activation = MLP_ACTIVATIONS[cfg.activation]
        layers: list[nn.Module] = [
            nn.Linear(cfg.in_channels, cfg.n_neurons, bias=cfg.bias),
            activation(inplace=True),
        ]
        for _ in range(cfg.n_hidden_layers - 1):
            layers += [nn.Linear(cfg.n_neurons, cfg.n_neurons, bias=cfg.bias), activation(inplace=True)]
        layers.append(nn.Linear(cfg.n_neurons, 4, bias=cfg.bias))
        self.layers = nn.Sequential(*layers)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.layers(features)
