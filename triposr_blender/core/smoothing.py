"""Smoothing: even out the lumps of a TripoSR surface at their source, without shrinking the object.

The lumps come from the triplane: each of its 64² texels per plane carries its own error, and the decoder
turns that into bumps one or two texels wide (several grid cells at 256). Smoothing the extracted mesh
cannot reach them without flattening the object's own features: Taubin's volume-keeping λ|μ smoothing,
measured against the benchmark field's true shape (an earlier scripts/bench_smoothing.py), took 10 % off
the normal error of a noisy field at 128 and 2 % at 256 while making the clean field's worse. So the
geometry is extracted from the triplane low-passed with a Gaussian of ``sigma`` texels, which removes
texel-scale noise and keeps the broader shape; colors still come from the original triplane, so they keep
their detail.

Low-passing a density field shrinks the object a little (1-3 % of its volume at 0.5-0.75 texels): the
volume inside the surface is counted on a coarse grid for both fields and the mesh is scaled about its
centroid by the ratio, so the object keeps its volume. Everything runs in torch on the model's device.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .isosurface import grid_points

# The grid on which the volume inside the surface is counted, with and without smoothing: the ratio of the
# two counts is within 0.5 % of the ratio of the meshes' volumes on the benchmark field.
VOLUME_GRID = 64


def smoothed_triplane(triplane: torch.Tensor, sigma: float) -> torch.Tensor:
    """[3, C, H, W] planes, each channel blurred with a separable Gaussian of ``sigma`` texels; the planes'
    edges are extended, not darkened."""
    reach = max(1, math.ceil(3 * sigma))
    offsets = torch.arange(-reach, reach + 1, dtype=triplane.dtype, device=triplane.device)
    kernel = torch.exp(-(offsets**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    planes, channels, height, width = triplane.shape
    flat = triplane.reshape(planes * channels, 1, height, width)
    flat = F.conv2d(F.pad(flat, (reach, reach, 0, 0), mode="replicate"), kernel.view(1, 1, 1, -1))
    flat = F.conv2d(F.pad(flat, (0, 0, reach, reach), mode="replicate"), kernel.view(1, 1, -1, 1))
    return flat.reshape(triplane.shape)


def volume_ratio(original_fn, smoothed_fn, radius: float, threshold: float, device: torch.device) -> float:
    """How much larger the original field's inside (density above ``threshold``) is than the smoothed one's,
    counted on a VOLUME_GRID³ grid; 1 when either holds nothing."""
    points = grid_points(VOLUME_GRID, radius).to(device)
    original = (original_fn(points) > threshold).sum()
    smoothed = (smoothed_fn(points) > threshold).sum()
    if original == 0 or smoothed == 0:
        return 1.0
    return float(original) / float(smoothed)


def scaled_to_volume(vertices: torch.Tensor, ratio: float) -> torch.Tensor:
    """Vertices scaled about their centroid so that the volume they enclose grows by ``ratio``."""
    centroid = vertices.mean(dim=0)
    return centroid + (vertices - centroid) * ratio ** (1 / 3)
