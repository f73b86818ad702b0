"""TripoSR's backbone: a 1D transformer over the triplane tokens that cross-attends to the image tokens.

The structure and names follow the reference's diffusers-style ``Transformer1D`` /
``BasicTransformerBlock`` / ``Attention`` / ``FeedForward`` so that
``backbone.transformer_blocks.N.attn1.to_q`` and friends load directly. Attention goes through
``F.scaled_dot_product_attention``, as the reference's ``AttnProcessor2_0`` does, so the full
token-by-token score matrix is never materialised.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

FEED_FORWARD_ACTIVATIONS = ("gelu", "gelu-approximate", "geglu", "geglu-approximate")


class Attention(nn.Module):
    """Multi-head attention; keys and values come from ``context`` (cross-attention) or the input itself."""

    def __init__(
        self, query_dim: int, cross_attention_dim: int | None, heads: int, dim_head: int, bias: bool
    ):
        super().__init__()
        inner_dim = heads * dim_head
        context_dim = cross_attention_dim if cross_attention_dim is not None else query_dim
        self.heads = heads
        self.to_q = nn.Linear(query_dim, inner_dim, bias=bias)
        self.to_k = nn.Linear(context_dim, inner_dim, bias=bias)
        self.to_v = nn.Linear(context_dim, inner_dim, bias=bias)
        # A list so the checkpoint's ``to_out.0`` fits; the reference's ``to_out.1`` was a dropout.
        self.to_out = nn.ModuleList([nn.Linear(inner_dim, query_dim)])

    def forward(self, hidden_states: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        context = hidden_states if context is None else context
        batch = hidden_states.shape[0]

        def split_heads(x: torch.Tensor) -> torch.Tensor:
            return x.view(batch, -1, self.heads, x.shape[-1] // self.heads).transpose(1, 2)

        query = split_heads(self.to_q(hidden_states))
        key = split_heads(self.to_k(context))
        value = split_heads(self.to_v(context))
        attended = F.scaled_dot_product_attention(query, key, value)
        attended = attended.transpose(1, 2).reshape(batch, -1, query.shape[1] * query.shape[3])
        return self.to_out[0](attended)


class GELU(nn.Module):
    """Linear projection followed by GELU (exact, or its tanh approximation)."""

    def __init__(self, dim_in: int, dim_out: int, approximate: str = "none"):
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out)
        self.approximate = approximate

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.proj(hidden_states), approximate=self.approximate)


class GEGLU(nn.Module):
    """Gated GELU unit (https://arxiv.org/abs/2002.05202): one projection gives the value and its gate."""

    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out * 2)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        value, gate = self.proj(hidden_states).chunk(2, dim=-1)
        return value * F.gelu(gate)


class ApproximateGELU(nn.Module):
    """Linear projection followed by the sigmoid approximation of GELU, x * sigmoid(1.702 x)."""

    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        projected = self.proj(hidden_states)
        return projected * torch.sigmoid(1.702 * projected)


def make_feed_forward_activation(name: str, dim_in: int, dim_out: int) -> nn.Module:
    if name == "gelu":
        return GELU(dim_in, dim_out)
    if name == "gelu-approximate":
        return GELU(dim_in, dim_out, approximate="tanh")
    if name == "geglu":
        return GEGLU(dim_in, dim_out)
    return ApproximateGELU(dim_in, dim_out)


class FeedForward(nn.Module):
    def __init__(self, dim: int, activation_fn: str, mult: int = 4):
        super().__init__()
        inner_dim = dim * mult
        # ``net.1`` was a dropout in the reference; the Identity keeps the output layer at ``net.2``.
        self.net = nn.Sequential(
            make_feed_forward_activation(activation_fn, dim, inner_dim),
            nn.Identity(),
            nn.Linear(inner_dim, dim),
        )

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.net(hidden_states)


class BasicTransformerBlock(nn.Module):
    """Pre-LayerNorm block: self-attention, cross-attention to image tokens, feed-forward; all residual."""

    def __init__(self, dim: int, cfg: Transformer1D.Config):
        super().__init__()
        self.only_cross_attention = cfg.only_cross_attention
        affine = cfg.norm_elementwise_affine
        heads, dim_head, bias = cfg.num_attention_heads, cfg.attention_head_dim, cfg.attention_bias
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=affine)
        self.attn1 = Attention(
            dim, cfg.cross_attention_dim if cfg.only_cross_attention else None, heads, dim_head, bias
        )
        if cfg.cross_attention_dim is not None or cfg.double_self_attention:
            self.norm2 = nn.LayerNorm(dim, elementwise_affine=affine)
            self.attn2 = Attention(
                dim, None if cfg.double_self_attention else cfg.cross_attention_dim, heads, dim_head, bias
            )
        else:
            self.norm2 = None
            self.attn2 = None
        self.norm3 = nn.LayerNorm(dim, elementwise_affine=affine)
        self.ff = FeedForward(dim, cfg.activation_fn)

    def forward(
        self, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor | None
    ) -> torch.Tensor:
        self_context = encoder_hidden_states if self.only_cross_attention else None
        hidden_states = self.attn1(self.norm1(hidden_states), self_context) + hidden_states
        if self.attn2 is not None:
            hidden_states = self.attn2(self.norm2(hidden_states), encoder_hidden_states) + hidden_states
        return self.ff(self.norm3(hidden_states)) + hidden_states


class Transformer1D(nn.Module):
    """GroupNorm, project in, transformer blocks, project out, plus a residual around the whole stack."""

    @dataclass(frozen=True)
    class Config:
        in_channels: int
        num_attention_heads: int = 16
        attention_head_dim: int = 88
        # The reference computes this but projects back to ``in_channels`` anyway; accepted for its configs.
        out_channels: int | None = None
        num_layers: int = 1
        dropout: float = 0.0  # inference only: dropout never applies
        norm_num_groups: int = 32
        cross_attention_dim: int | None = None
        attention_bias: bool = False
        activation_fn: str = "geglu"
        only_cross_attention: bool = False
        double_self_attention: bool = False
        # Only affects the reference's non-SDPA attention path, which TripoSR never takes.
        upcast_attention: bool = False
        norm_type: str = "layer_norm"
        norm_elementwise_affine: bool = True
        gradient_checkpointing: bool = False  # training only

        def __post_init__(self):
            if self.activation_fn not in FEED_FORWARD_ACTIVATIONS:
                raise ValueError(f"activation_fn must be one of {', '.join(FEED_FORWARD_ACTIVATIONS)}")
            if self.norm_type != "layer_norm":
                raise ValueError("norm_type must be 'layer_norm', the only kind TripoSR's blocks support")

    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg
        inner_dim = cfg.num_attention_heads * cfg.attention_head_dim
        self.norm = nn.GroupNorm(cfg.norm_num_groups, cfg.in_channels, eps=1e-6, affine=True)
        self.proj_in = nn.Linear(cfg.in_channels, inner_dim)
        self.transformer_blocks = nn.ModuleList(
            BasicTransformerBlock(inner_dim, cfg) for _ in range(cfg.num_layers)
        )
        self.proj_out = nn.Linear(inner_dim, cfg.in_channels)

    def forward(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        on_block: Callable[[float], None] | None = None,
    ) -> torch.Tensor:
        """``hidden_states`` [B, C, N], ``encoder_hidden_states`` [B, T, C_enc] -> [B, C, N]."""
        residual = hidden_states
        # Token-major and contiguous before the matrix product, as the reference does: a product over a
        # transposed view reads memory across rows.
        hidden_states = self.proj_in(self.norm(hidden_states).permute(0, 2, 1).contiguous())
        for index, block in enumerate(self.transformer_blocks):
            hidden_states = block(hidden_states, encoder_hidden_states)
            if on_block is not None:
                on_block((index + 1) / len(self.transformer_blocks))
        return self.proj_out(hidden_states).permute(0, 2, 1) + residual
