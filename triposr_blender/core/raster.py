"""Triangles rasterised with numpy: which pixel centres each triangle covers, with its barycentric weights.

One routine for the texture bake (UV triangles onto texels) and the preview renderer (projected triangles
onto pixels). Pixel (row r, column c) has its centre at x = c, y = r. Vectorised over triangles: triangles
whose bounding boxes are of similar size go through numpy together, each batch testing every pixel centre
of each triangle's (padded) box.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

# Candidate pixels tested per batch: bounds the batch arrays to some tens of MB.
PIXELS_PER_BATCH = 1 << 20
# A pixel centre on a shared edge belongs to both triangles; this tolerance keeps it from falling through
# the crack between them through rounding.
EDGE_TOLERANCE = 1e-7


def coverage(xy: np.ndarray, width: int, height: int) -> Iterator[tuple[np.ndarray, ...]]:
    """For triangles ``xy`` (F, 3, 2) in pixel coordinates: batches of (faces, rows, columns, b1, b2), one
    entry per pixel centre inside a face (and inside the image), with the barycentric weights of corners 1
    and 2 there (corner 0's is 1 - b1 - b2)."""
    lowest = np.ceil(xy.min(axis=1)).astype(np.int64).clip(0, None)  # first pixel centre inside the box
    highest = np.floor(xy.max(axis=1)).astype(np.int64)
    highest = np.minimum(highest, [width - 1, height - 1])
    extent = highest - lowest + 1
    inverse, usable = barycentric_matrices(xy)
    usable &= (extent > 0).all(axis=1)
    size_class = box_size_class(extent)
    for key in np.unique(size_class[usable]):
        faces = np.flatnonzero(usable & (size_class == key))
        box_width, box_height = extent[faces].max(axis=0)
        per_batch = max(1, PIXELS_PER_BATCH // (box_width * box_height))
        for start in range(0, len(faces), per_batch):
            batch = faces[start : start + per_batch]
            yield covered_in_batch(batch, xy[batch, 0], inverse[batch], lowest[batch], highest[batch])


def barycentric_matrices(xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per triangle: the 2×2 matrix taking p - corner0 to barycentrics (b1, b2), and whether it exists."""
    edges = np.stack([xy[:, 1] - xy[:, 0], xy[:, 2] - xy[:, 0]], axis=2)  # columns are the two edges
    determinant = edges[:, 0, 0] * edges[:, 1, 1] - edges[:, 0, 1] * edges[:, 1, 0]
    usable = np.abs(determinant) > 1e-12
    safe = np.where(usable, determinant, 1.0)
    inverse = np.empty_like(edges)
    inverse[:, 0, 0] = edges[:, 1, 1] / safe
    inverse[:, 0, 1] = -edges[:, 0, 1] / safe
    inverse[:, 1, 0] = -edges[:, 1, 0] / safe
    inverse[:, 1, 1] = edges[:, 0, 0] / safe
    return inverse, usable


def box_size_class(extent: np.ndarray) -> np.ndarray:
    """Bounding boxes binned by width and height on a ×1.5 scale, so a batch pads each box by < 50 %."""
    bins = np.ceil(np.log(extent.clip(min=1)) / np.log(1.5)).astype(np.int64)
    return bins[:, 0] * 1000 + bins[:, 1]


def covered_in_batch(
    faces: np.ndarray, origin: np.ndarray, inverse: np.ndarray, lowest: np.ndarray, highest: np.ndarray
) -> tuple[np.ndarray, ...]:
    width, height = (highest - lowest + 1).max(axis=0)
    offset_x, offset_y = np.meshgrid(np.arange(width), np.arange(height), indexing="xy")
    columns = lowest[:, :1] + offset_x.reshape(1, -1)
    rows = lowest[:, 1:] + offset_y.reshape(1, -1)
    in_box = (columns <= highest[:, :1]) & (rows <= highest[:, 1:])
    dx = columns - origin[:, :1]
    dy = rows - origin[:, 1:]
    b1 = inverse[:, 0, :1] * dx + inverse[:, 0, 1:] * dy
    b2 = inverse[:, 1, :1] * dx + inverse[:, 1, 1:] * dy
    inside = in_box & (b1 >= -EDGE_TOLERANCE) & (b2 >= -EDGE_TOLERANCE) & (b1 + b2 <= 1 + EDGE_TOLERANCE)
    which_face, which_pixel = np.nonzero(inside)
    return (
        faces[which_face],
        rows[which_face, which_pixel],
        columns[which_face, which_pixel],
        b1[which_face, which_pixel],
        b2[which_face, which_pixel],
    )
