"""Coarse-to-fine surface extraction: the dense marching-cubes mesh for a fraction of the queries.

The dense path queries every vertex of a resolution³ grid, although only the cells the surface passes
through make triangles. Here the cells are grouped in blocks of `block`³. The blocks' corners form a
coarse grid, queried first; blocks whose corners straddle the threshold, widened by `margin` blocks,
are queried in full. Then the set grows: a block face whose vertices straddle the threshold means the
surface goes on into the neighbouring block, which is queried in turn, until no surface leaves the
queried blocks. Marching cubes then runs on those blocks' cells with PyMCubes' own case table, so each
surface piece reached this way comes out exactly as the dense path makes it.

What it can miss: a piece of surface that lies wholly inside blocks whose corners are all on one side
and that touches no queried block, i.e. a floater or object thinner than a block and more than
`margin` blocks away from any other surface.
"""

import functools
from collections.abc import Callable

import mcubes
import numpy as np
import torch

from .isosurface import POINTS_PER_CALL, DensityFn, extract_dense, grid_to_model_space
from .renderer import scale_tensor

# Cube corners as offsets (dx, dy, dz); corner n is bit n of a cell's case number.
_CORNERS = np.array([[(n >> 2) & 1, (n >> 1) & 1, n & 1] for n in range(8)])
# Cube edges: edge 4a + 2p + q runs along axis a from the corner whose other two offsets are (p, q).
_EDGE_AXIS = np.repeat(np.arange(3), 4)
_EDGE_START = np.array([np.insert([(e >> 1) & 1, e & 1], axis, 0) for axis in range(3) for e in range(4)])
# Progress: the coarse grid, the first full pass over the blocks it found, then growth steps.
_COARSE_SHARE, _FIRST_PASS_SHARE = 0.1, 0.8
# Blocks handled at once: their index arrays take about 1 KB per block.
_BLOCKS_PER_GROUP = 8192


def extract_sparse(
    density_fn: DensityFn,
    resolution: int,
    radius: float,
    threshold: float,
    on_progress: Callable[[float], None] | None = None,
    block: int = 4,
    margin: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Same inputs and output as ``extract_dense``: (vertices (V, 3) float32 in model space, faces int64).

    When the coarse grid sees no surface at all (an object thinner than a block), this falls back to the
    dense path, which finds it or says why there is none.
    """
    axis = scale_tensor(torch.linspace(0.0, 1.0, resolution), (0.0, 1.0), (-radius, radius))
    mesh = sparse_marching_cubes(density_fn, axis, threshold, block, margin, on_progress)
    if mesh is None:
        dense_progress = _progress_span(on_progress, _COARSE_SHARE, 1.0)
        return extract_dense(density_fn, resolution, radius, threshold, dense_progress)
    vertices, faces, _ = mesh
    if on_progress is not None:
        on_progress(1.0)
    return grid_to_model_space(vertices, resolution, radius), faces


def sparse_marching_cubes(
    density_fn: DensityFn,
    axis: torch.Tensor,
    threshold: float,
    block: int = 4,
    margin: int = 1,
    on_progress: Callable[[float], None] | None = None,
) -> tuple[np.ndarray, np.ndarray, int] | None:
    """Marching cubes of ``density == threshold`` over the grid axis × axis × axis.

    ``axis`` holds the grid's coordinates along one axis, the values the dense grid uses. Returns the
    vertices in grid-index units (float64), the faces (int64) as PyMCubes winds them for the dense grid,
    and the number of points queried; None when no block corners straddle the threshold.
    """
    grid = _BrickGrid(density_fn, axis, threshold, block)
    coarse = grid.coarse_values(_progress_span(on_progress, 0.0, _COARSE_SHARE))
    active = _dilate(_straddling_cells(coarse > 0), margin)
    if not active.any():
        return None
    new, done = active.copy(), _COARSE_SHARE
    while new.any():
        share = _FIRST_PASS_SHARE if done == _COARSE_SHARE else (1.0 - done) / 2
        blocks = np.argwhere(new)
        values = grid.block_values(blocks, _progress_span(on_progress, done, done + share))
        new = grid.neighbours_across_crossed_faces(blocks, values > 0) & ~active
        active |= new
        done += share
    blocks = np.argwhere(active)
    vertices, faces = _march(blocks * block, grid.block_values(blocks), len(axis))
    return vertices, faces, grid.queried


class _BrickGrid:
    """The marching-cubes input ``density - threshold`` on the grid, each vertex queried when first needed.

    Values live in bricks of block³ vertices, allocated only where queried (NaN until then), so memory
    follows the surface, not the grid's volume. Cell block b spans vertices b·block … (b+1)·block, which
    lie in bricks b and b + 1 along each axis.
    """

    def __init__(self, density_fn: DensityFn, axis: torch.Tensor, threshold: float, block: int):
        self.density_fn, self.axis, self.threshold, self.block = density_fn, axis, threshold, block
        self.resolution = len(axis)
        self.blocks = -(-(self.resolution - 1) // block)
        self.slots = np.full((-(-self.resolution // block),) * 3, -1, dtype=np.int32)
        self.bricks = np.zeros((0, block, block, block), dtype=np.float32)
        self.queried = 0

    def coarse_values(self, on_progress: Callable[[float], None] | None = None) -> np.ndarray:
        """Values at the block corners: a (blocks + 1)³ grid, the last corner clamped to the grid's end."""
        corners = np.minimum(np.arange(self.blocks + 1) * self.block, self.resolution - 1)
        ijk = np.stack(np.meshgrid(corners, corners, corners, indexing="ij"), axis=-1).reshape(-1, 3)
        return self._query(ijk, on_progress).reshape((self.blocks + 1,) * 3)

    def block_values(
        self, blocks: np.ndarray, on_progress: Callable[[float], None] | None = None
    ) -> np.ndarray:
        """(B, block+1, block+1, block+1) values of the given cell blocks, querying what is missing.

        Past the grid's end (a thinner last block) the indices repeat the last vertex. Blocks go in
        groups, which bounds the index arrays' memory whatever the resolution."""
        groups = range(0, len(blocks), _BLOCKS_PER_GROUP)
        return np.concatenate(
            [
                self._group_values(
                    blocks[start : start + _BLOCKS_PER_GROUP],
                    _progress_span(on_progress, n / len(groups), (n + 1) / len(groups)),
                )
                for n, start in enumerate(groups)
            ]
        )

    def _group_values(self, blocks: np.ndarray, on_progress: Callable[[float], None] | None) -> np.ndarray:
        self._allocate(blocks)
        local = np.arange(self.block + 1)
        ijk = [np.minimum(blocks[:, a, None] * self.block + local, self.resolution - 1) for a in range(3)]
        slot = self.slots.reshape(-1)[_outer_linear([index // self.block for index in ijk], len(self.slots))]
        flat = slot * self.block**3 + _outer_linear([index % self.block for index in ijk], self.block)
        values = self.bricks.reshape(-1)[flat]
        missing = np.isnan(values)
        if missing.any():
            b, x, y, z = np.nonzero(missing)
            wanted = np.stack([ijk[0][b, x], ijk[1][b, y], ijk[2][b, z]], axis=-1)
            _, first, inverse = np.unique(flat[missing], return_index=True, return_inverse=True)
            fresh = self._query(wanted[first], on_progress)[inverse.reshape(-1)]
            self.bricks.reshape(-1)[flat[missing]] = fresh
            values[missing] = fresh
        return values

    def neighbours_across_crossed_faces(self, blocks: np.ndarray, above: np.ndarray) -> np.ndarray:
        """Mask of the blocks beyond a face whose vertices straddle the threshold: the surface enters them."""
        out = np.zeros((self.blocks,) * 3, dtype=bool)
        for axis in range(3):
            for side, step in ((0, -1), (-1, 1)):
                face = np.take(above, side, axis=axis + 1).reshape(len(blocks), -1)
                neighbours = blocks[face.any(axis=1) & ~face.all(axis=1)]
                neighbours[:, axis] += step
                out[tuple(neighbours[((neighbours >= 0) & (neighbours < self.blocks)).all(axis=1)].T)] = True
        return out

    def _allocate(self, blocks: np.ndarray) -> None:
        needed = np.zeros(self.slots.shape, dtype=bool)
        for offset in _CORNERS:
            needed[tuple(np.minimum(blocks + offset, len(self.slots) - 1).T)] = True
        fresh = needed & (self.slots < 0)
        count = int(fresh.sum())
        self.slots[fresh] = np.arange(len(self.bricks), len(self.bricks) + count)
        empty = np.full((count, *self.bricks.shape[1:]), np.nan, dtype=np.float32)
        self.bricks = np.concatenate([self.bricks, empty])

    def _query(self, ijk: np.ndarray, on_progress: Callable[[float], None] | None) -> np.ndarray:
        """Query in pieces of POINTS_PER_CALL, reporting progress (and so a chance to cancel) after each."""
        self.queried += len(ijk)
        pieces = []
        for start in range(0, len(ijk), POINTS_PER_CALL):
            points = self.axis[torch.from_numpy(ijk[start : start + POINTS_PER_CALL])]
            pieces.append(self.density_fn(points).float().cpu().numpy())
            if on_progress is not None:
                on_progress(min(start + POINTS_PER_CALL, len(ijk)) / len(ijk))
        # Exactly the dense path's float32 arithmetic, so that every value falls on the same side.
        return np.concatenate(pieces) - np.float32(self.threshold)


def _march(origins: np.ndarray, values: np.ndarray, resolution: int) -> tuple[np.ndarray, np.ndarray]:
    """Marching cubes over the cells of the blocks at ``origins``; a vertex shared by cells comes out once."""
    case = _cell_cases(origins, values, resolution)
    block, *cell = np.nonzero((case != 0) & (case != 255))
    cell = np.stack(cell, axis=-1)
    counts, edges = _pymcubes_cases()
    triangle_cell, slot = np.nonzero(np.arange(edges.shape[1]) < counts[case[block, *cell.T]][:, None])
    block, cell = block[triangle_cell], cell[triangle_cell]
    triangle_edges = edges[case[block, *cell.T], slot]  # (T, 3)

    # Each triangle corner lies on a grid edge, named by its start vertex and axis: the weld key.
    start = cell[:, None, :] + _EDGE_START[triangle_edges]  # (T, 3, 3), block-local
    global_start = start + origins[block, None, :]
    keys = (global_start[..., 0] * resolution + global_start[..., 1]) * resolution + global_start[..., 2]
    _, first, faces = np.unique(
        (keys * 3 + _EDGE_AXIS[triangle_edges]).reshape(-1), return_index=True, return_inverse=True
    )
    vertices = _edge_vertices(
        values,
        np.repeat(block, 3)[first],
        start.reshape(-1, 3)[first],
        global_start.reshape(-1, 3)[first],
        _EDGE_AXIS[triangle_edges.reshape(-1)[first]],
    )
    return vertices, faces.reshape(-1, 3).astype(np.int64)


def _cell_cases(origins: np.ndarray, values: np.ndarray, resolution: int) -> np.ndarray:
    """(B, n, n, n) case numbers: bit n set where corner n lies above the threshold; 0 past the grid's end."""
    n = values.shape[1] - 1
    case = np.zeros((len(values), n, n, n), dtype=np.uint8)
    for bit, (dx, dy, dz) in enumerate(_CORNERS):
        case |= (values[:, dx : dx + n, dy : dy + n, dz : dz + n] > 0).astype(np.uint8) << bit
    # Cells of a thinner last block repeat the grid's last vertex: they are no cells of the grid.
    inside = origins[:, :, None] + np.arange(n) < resolution - 1
    case *= inside[:, 0, :, None, None] & inside[:, 1, None, :, None] & inside[:, 2, None, None, :]
    return case


def _edge_vertices(
    values: np.ndarray, block: np.ndarray, start: np.ndarray, global_start: np.ndarray, axis: np.ndarray
) -> np.ndarray:
    """Where the field crosses zero along each edge, interpolated linearly, in grid-index units.

    PyMCubes computes (x1 - x0)·(iso - f0)/(f1 - f0) + x0 in float64; with x1 - x0 = 1 this is the
    same arithmetic, so vertices agree with the dense path's bit for bit.
    """
    f0 = values[block, *start.T].astype(np.float64)
    f1 = values[block, *(start + np.eye(3, dtype=start.dtype)[axis]).T].astype(np.float64)
    vertices = global_start.astype(np.float64)
    vertices[np.arange(len(start)), axis] += (0.0 - f0) / (f1 - f0)
    return vertices


@functools.cache
def _pymcubes_cases() -> tuple[np.ndarray, np.ndarray]:
    """PyMCubes' triangulation of each of the 256 cube cases, read off by marching one cube per case.

    Returns the triangle count per case and (256, 5, 3) edge numbers per triangle, in PyMCubes' winding.
    """
    counts = np.zeros(256, dtype=np.int64)
    edges = np.zeros((256, 5, 3), dtype=np.int64)
    for case in range(256):
        cube = np.where((case >> np.arange(8)) & 1, 1.0, -1.0).reshape(2, 2, 2)  # corner n at flat index n
        vertices, faces = mcubes.marching_cubes(cube, 0.0)
        if len(faces):
            axis = np.argmax(vertices == 0.5, axis=1)  # ±1 corners put each vertex mid-edge
            others = vertices[vertices != 0.5].reshape(-1, 2).astype(np.int64)
            counts[case] = len(faces)
            edges[case, : len(faces)] = (axis * 4 + others[:, 0] * 2 + others[:, 1])[faces.astype(np.int64)]
    return counts, edges


def _progress_span(
    on_progress: Callable[[float], None] | None, start: float, end: float
) -> Callable[[float], None] | None:
    if on_progress is None:
        return None
    return lambda fraction: on_progress(start + (end - start) * fraction)


def _outer_linear(rows: list[np.ndarray], size: int) -> np.ndarray:
    """(B, n, n, n) C-order linear indices into a size³ array from per-block index rows (3 × (B, n))."""
    i, j, k = rows
    return (i[:, :, None, None] * size + j[:, None, :, None]) * size + k[:, None, None, :]


def _straddling_cells(above: np.ndarray) -> np.ndarray:
    """Cells of a vertex grid whose eight corners are not all on the same side."""
    n = np.array(above.shape) - 1
    corners = [above[dx : dx + n[0], dy : dy + n[1], dz : dz + n[2]] for dx, dy, dz in _CORNERS]
    return np.logical_or.reduce(corners) & ~np.logical_and.reduce(corners)


def _dilate(mask: np.ndarray, margin: int) -> np.ndarray:
    """Grow a 3D mask by `margin` cells in every direction, diagonals included."""
    n = mask.shape
    for _ in range(margin):
        padded = np.pad(mask, 1)
        mask = np.logical_or.reduce(
            [
                padded[i : i + n[0], j : j + n[1], k : k + n[2]]
                for i in range(3)
                for j in range(3)
                for k in range(3)
            ]
        )
    return mask
