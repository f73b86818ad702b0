"""Colour encodings. TripoSR predicts display (sRGB) colours; Blender and glTF store linear ones."""

import numpy as np


def srgb_to_linear(srgb: np.ndarray) -> np.ndarray:
    """The sRGB transfer function, inverted, on values clipped to [0, 1] -> float32."""
    srgb = np.clip(srgb, 0.0, 1.0)
    return np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4).astype(np.float32)
