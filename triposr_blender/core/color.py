"""Colour encodings. TripoSR predicts display (sRGB) colours; Blender and glTF store linear ones."""

import numpy as np


def srgb_to_linear(srgb: np.ndarray) -> np.ndarray:
    """The sRGB transfer function, inverted, on values clipped to [0, 1] -> float32."""
    srgb = np.clip(srgb, 0.0, 1.0)
    return np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4).astype(np.float32)


def to_uint8(values: np.ndarray) -> np.ndarray:
    """Values in [0, 1] as bytes, rounded to the nearest; outside clipped, NaN as 0."""
    return np.rint(np.clip(np.nan_to_num(values, nan=0.0), 0.0, 1.0) * 255.0).astype(np.uint8)
