"""From a density field to a triangle mesh: dense marching cubes on a regular grid, as the reference does it.

The extractor only needs ``density_fn(points [N, 3]) -> densities [N]`` in model space, so other
extraction strategies (e.g. a sparse coarse-to-fine one) can sit beside ``extract_dense`` with the same
inputs and output.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from .errors import NoSurfaceError
from .marching_cubes import CubeMarcher
from .renderer import scale_tensor

DensityFn = Callable[[torch.Tensor], torch.Tensor]
# Points per density_fn call (rounded to whole x-slices): small enough for steady progress and cancellation.
POINTS_PER_CALL = 1 << 18


def grid_points(resolution: int, radius: float, x_start: int = 0, x_stop: int | None = None) -> torch.Tensor:
    """Grid points with x index in [x_start, x_stop), flattened in C order (x slowest, z fastest).

    Built like the reference: ``linspace(0, 1)`` on each axis, ``meshgrid(indexing="ij")``, then scaled to
    [-radius, radius]. Every point's value is independent of the slice, so slabs concatenate to the full grid.
    """
    axis = torch.linspace(0.0, 1.0, resolution)
    x, y, z = torch.meshgrid(axis[x_start:x_stop], axis, axis, indexing="ij")
    unit = torch.stack([x.reshape(-1), y.reshape(-1), z.reshape(-1)], dim=-1)
    return scale_tensor(unit, (0.0, 1.0), (-radius, radius))


def extract_dense(
    density_fn: DensityFn,
    resolution: int,
    radius: float,
    threshold: float,
    on_progress: Callable[[float], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Dense extraction: query every grid point, then marching cubes -> (vertices, faces) in model space.

    The grid is queried one slab of x-slices at a time, and each slab's cells are marched as it arrives, so
    only a slab of densities is held at once, whatever the resolution. The mesh is PyMCubes' own, bit for bit
    (``marching_cubes``); with the field ``density - threshold`` (positive inside) its triangles wind
    counter-clockwise seen from outside, i.e. normals point out of the object.
    """
    marcher = CubeMarcher((resolution, resolution))
    lowest, highest = np.float32(np.inf), np.float32(-np.inf)
    slab = max(1, POINTS_PER_CALL // (resolution * resolution))
    for x_start in range(0, resolution, slab):
        x_stop = min(x_start + slab, resolution)
        densities = density_fn(grid_points(resolution, radius, x_start, x_stop)).float().cpu().numpy()
        densities = densities.reshape(x_stop - x_start, resolution, resolution)
        # np.minimum and np.maximum keep a NaN, which the message then reports.
        lowest, highest = np.minimum(lowest, densities.min()), np.maximum(highest, densities.max())
        marcher.add(densities - np.float32(threshold))
        if on_progress is not None:
            on_progress(x_stop / resolution)
    vertices, faces = marcher.finish()
    if len(faces) == 0:
        raise NoSurfaceError(no_surface_message(float(lowest), float(highest), threshold))
    return grid_to_model_space(vertices, resolution, radius), faces


def grid_to_model_space(vertices: np.ndarray, resolution: int, radius: float) -> np.ndarray:
    """Grid-index coordinates -> model space (float32), as the reference maps marching-cubes vertices."""
    unit = torch.from_numpy(vertices).float() / (resolution - 1.0)
    return scale_tensor(unit, (0.0, 1.0), (-radius, radius)).numpy()


def no_surface_message(lowest: float, highest: float, threshold: float) -> str:
    """What to do when no grid value lies on each side of the threshold, from the lowest and highest."""
    if highest <= threshold:
        advice = f"no point is denser than it (highest density {highest:.4g}). Lower the threshold"
    elif lowest >= threshold:
        advice = f"every point is denser than it (lowest density {lowest:.4g}). Raise the threshold"
    else:
        advice = "the density field may be invalid (NaN). Try another image or resolution"
    return f"No surface found at threshold {threshold:g}: {advice} and try again."
