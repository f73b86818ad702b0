"""Choosing where and in which precision the model runs."""

from __future__ import annotations

import torch

from .errors import ModelLoadError

HALF_PRECISIONS = {"float16": torch.float16, "half": torch.float16, "bfloat16": torch.bfloat16}


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` picks CUDA, then Apple MPS, then the CPU; anything else must name a present device."""
    if str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        chosen = torch.device(device)
    except RuntimeError as error:
        raise ModelLoadError(f"Unknown device '{device}'. Use auto, cpu, cuda or mps.") from error
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError(
            "Device 'cuda' was requested but no CUDA GPU is available. Use device 'auto' or 'cpu'."
        )
    if chosen.type == "mps" and not torch.backends.mps.is_available():
        raise ModelLoadError(
            "Device 'mps' was requested but Apple Metal is not available. Use 'auto' or 'cpu'."
        )
    return chosen


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """float32 unless half precision is asked for, which only GPUs run well (and the CPU kernels lack)."""
    if dtype is None or dtype in ("float32", torch.float32):
        return torch.float32
    half = HALF_PRECISIONS.get(dtype, dtype) if isinstance(dtype, str) else dtype
    if half not in (torch.float16, torch.bfloat16):
        raise ModelLoadError(f"Unsupported precision '{dtype}'. Use float32, float16 or bfloat16.")
    if device.type == "cpu":
        raise ModelLoadError("Half precision needs a GPU; on the CPU the model runs in float32 (dtype=None).")
    return half
