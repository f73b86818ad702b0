"""Marching cubes as PyMCubes 0.1.6 does it, bit for bit, in numpy: no compiled code to install.

PyMCubes has no wheels for Python 3.13 (Blender 5.1 and newer), and Blender's Python has no headers to build
it with. Its algorithm is simple, and its output is fully determined, so it is reproduced here exactly:

- A grid vertex counts as inside unless its value is <= 0 (so NaN counts as inside, as there).
- Each cell's case (bit n set where corner n is inside) picks triangles from ``cube_cases.TRIANGLES``, the
  triangulation PyMCubes uses, in its order and winding (scripts/make_cube_cases.py reads it off PyMCubes).
- Every grid edge whose ends differ makes one vertex, in the first cell (cells in C order) that has the
  edge. Within a cell, PyMCubes makes its vertices in a fixed order of edges: that order numbers them.
- A vertex lies at ``(x2 - x1)·(0 - f1)/(f2 - f1) + x1`` in float64, where (x1, f1) is the end PyMCubes
  starts from: for some edges the far end. Same operations in the same order, so the same bits.

The field comes in consecutive slabs of x-layers (``CubeMarcher.add``), so a grid of any resolution is
marched with the memory of a few slabs: the caller never needs the whole grid at once.
"""

from __future__ import annotations

import functools

import numpy as np

from .cube_cases import TRIANGLES

# Cube corners as offsets (dx, dy, dz); corner n is bit n of a cell's case number.
CORNERS = [((n >> 2) & 1, (n >> 1) & 1, n & 1) for n in range(8)]
# Cube edges: edge 4a + 2p + q runs along axis a from the corner whose other two offsets are (p, q).
EDGE_AXIS = np.repeat(np.arange(3), 4)
EDGE_START = np.array([np.insert([(e >> 1) & 1, e & 1], axis, 0) for axis in range(3) for e in range(4)])
# The most triangles one case has.
MAX_TRIANGLES = 5

# The other two axes of each axis, in order.
OTHER_AXES = np.array([[1, 2], [0, 2], [0, 1]])
# An edge along axis a at grid vertex v is made by the cell at v less one along each of its other two axes
# where v's coordinate there is above 0. Indexed [a, first other coordinate > 0, second other coordinate > 0]:
# - its rank among the vertices that cell makes (PyMCubes makes its edges 6, 5, 10, 0, 1, 2, 3, 4, 7, 8, 9,
#   11 in that order, each only in the first cell that has it);
_CREATION_RANK = np.array([[[3, 7], [5, 0]], [[6, 8], [4, 1]], [[9, 11], [10, 2]]])
# - whether PyMCubes interpolates it from its far end (its edges 2, 6, 3 and 7).
FROM_FAR_END = np.array([[[0, 0], [1, 1]], [[1, 1], [0, 0]], [[0, 0], [0, 0]]], dtype=bool)
_RANKS = 12
# x-layers per slab when a whole grid is marched: about 4 million values a slab.
_VALUES_PER_SLAB = 1 << 22


@functools.cache
def case_table() -> tuple[np.ndarray, np.ndarray]:
    """The triangle count of each case (256,) and its triangles' edges (256, MAX_TRIANGLES, 3), int64."""
    counts = np.array([len(edges) // 3 for edges in TRIANGLES], dtype=np.int64)
    edges = np.zeros((256, MAX_TRIANGLES, 3), dtype=np.int64)
    for case, case_edges in enumerate(TRIANGLES):
        edges[case, : counts[case]] = np.reshape(case_edges, (-1, 3))
    return counts, edges


def marching_cubes(field: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``mcubes.marching_cubes(field, 0.0)``: vertices (V, 3) float64 in grid-index units, faces (F, 3) int64.

    Marched in slabs of x-layers, so the working memory beyond the field stays a few slabs' worth."""
    if field.ndim != 3 or min(field.shape) < 2:
        raise ValueError(f"marching cubes needs a 3-D grid of at least 2 values a side, not {field.shape}")
    marcher = CubeMarcher(field.shape[1:])
    step = max(1, _VALUES_PER_SLAB // (field.shape[1] * field.shape[2]))
    for start in range(0, field.shape[0], step):
        marcher.add(field[start : start + step])
    return marcher.finish()


class CubeMarcher:
    """Marching cubes over a field that arrives in consecutive x-layers (any number per ``add``).

    Between two calls it keeps only the last layer and the vertices on it, which the next cells share.
    """

    def __init__(self, layer_shape: tuple[int, int]):
        self.ny, self.nz = layer_shape
        self.last_layer: np.ndarray | None = None  # (1, ny, nz) float64
        self.layers = 0  # x-layers received so far
        self.vertex_count = 0
        # The vertices on the last layer's y and z edges: sorted edge keys and their vertex numbers.
        self.shared = (np.empty(0, np.int64), np.empty(0, np.int64))
        self.vertices: list[np.ndarray] = []
        self.faces: list[np.ndarray] = []

    def add(self, layers: np.ndarray) -> None:
        """March the cells between the layers received so far and these (values of the field, float)."""
        if layers.shape[1:] != (self.ny, self.nz):
            raise ValueError(f"layers of shape {layers.shape[1:]} where {(self.ny, self.nz)} was given")
        values = np.asarray(layers, dtype=np.float64)  # PyMCubes reads every value as a double
        first = self.layers
        if self.last_layer is not None:
            values = np.concatenate([self.last_layer, values])
            first -= 1
        self.layers += len(layers)
        if len(values) >= 2:
            self._march(values, first)
        self.last_layer = values[-1:]

    def finish(self) -> tuple[np.ndarray, np.ndarray]:
        """(vertices (V, 3) float64 in grid-index units, faces (F, 3) int64), as PyMCubes returns them."""
        vertices = np.concatenate([np.empty((0, 3)), *self.vertices])
        faces = np.concatenate([np.empty((0, 3), np.int64), *self.faces])
        return vertices, faces

    def _march(self, values: np.ndarray, first: int) -> None:
        """The cells between x-layers first … first + len(values) - 1; values[0] is layer ``first``."""
        inside = ~(values <= 0.0)
        keys, numbers, positions = self._new_vertices(values, inside, first)
        self.vertices.append(positions)
        known_keys = np.concatenate([self.shared[0], keys])
        known_numbers = np.concatenate([self.shared[1], numbers])
        order = np.argsort(known_keys)
        known_keys, known_numbers = known_keys[order], known_numbers[order]
        corner_keys = self._triangle_edge_keys(inside, first)
        self.faces.append(known_numbers[np.searchsorted(known_keys, corner_keys)])
        # The y and z edges on the last layer belong to the next slab's first cells too.
        last = first + len(values) - 1
        on_last = (known_keys // 3 // (self.ny * self.nz) == last) & (known_keys % 3 != 0)
        self.shared = (known_keys[on_last], known_numbers[on_last])

    def _new_vertices(
        self, values: np.ndarray, inside: np.ndarray, first: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The vertices these cells make: edge keys and vertex numbers, and the positions in number order."""
        keys, ranks, positions = [], [], []
        for axis in range(3):
            lo_values, hi_values = _edge_ends(values, axis)
            lo_inside, hi_inside = _edge_ends(inside, axis)
            # A y or z edge on the first layer was made by the previous slab's cells, except on layer 0.
            skip = 1 if axis and first else 0
            index = np.nonzero((lo_inside != hi_inside)[skip:])
            vertex = [index[0] + first + skip, index[1], index[2]]
            others = OTHER_AXES[axis]
            past_0 = [(vertex[a] > 0).astype(np.int64) for a in others]
            cell = list(vertex)
            for a, step in zip(others, past_0, strict=True):
                cell[a] = vertex[a] - step
            cell_number = (cell[0] * (self.ny - 1) + cell[1]) * (self.nz - 1) + cell[2]
            ranks.append(cell_number * _RANKS + _CREATION_RANK[axis][past_0[0], past_0[1]])
            keys.append(((vertex[0] * self.ny + vertex[1]) * self.nz + vertex[2]) * 3 + axis)
            far = FROM_FAR_END[axis][past_0[0], past_0[1]]
            f_lo, f_hi = lo_values[skip:][index], hi_values[skip:][index]
            f1, f2 = np.where(far, f_hi, f_lo), np.where(far, f_lo, f_hi)
            point = np.stack(vertex, axis=1).astype(np.float64)
            # PyMCubes' (x2 - x1) * (iso - f1) / (f2 - f1) + x1, with x2 - x1 = ±1 and iso = 0.
            point[:, axis] = (np.where(far, -1.0, 1.0) * (0.0 - f1)) / (f2 - f1) + (vertex[axis] + far)
            positions.append(point)
        order = np.argsort(np.concatenate(ranks))
        numbers = np.empty(len(order), dtype=np.int64)
        numbers[order] = self.vertex_count + np.arange(len(order))
        self.vertex_count += len(order)
        return np.concatenate(keys), numbers, np.concatenate(positions)[order]

    def _triangle_edge_keys(self, inside: np.ndarray, first: int) -> np.ndarray:
        """(T, 3) edge keys of these cells' triangles: cells in C order, each case's triangles in turn."""
        n = len(inside) - 1
        case = np.zeros((n, self.ny - 1, self.nz - 1), dtype=np.uint8)
        for bit, (dx, dy, dz) in enumerate(CORNERS):
            corner = inside[dx : dx + n, dy : dy + self.ny - 1, dz : dz + self.nz - 1]
            case |= corner.astype(np.uint8) << np.uint8(bit)
        cells = np.nonzero((case != 0) & (case != 255))
        cell_case = case[cells].astype(np.int64)
        counts, edges = case_table()
        triangle_cell, slot = np.nonzero(np.arange(MAX_TRIANGLES) < counts[cell_case][:, None])
        triangle_edges = edges[cell_case[triangle_cell], slot]  # (T, 3)
        start = np.stack(cells, axis=1)[triangle_cell][:, None, :] + EDGE_START[triangle_edges]
        start[..., 0] += first
        return ((start[..., 0] * self.ny + start[..., 1]) * self.nz + start[..., 2]) * 3 + EDGE_AXIS[
            triangle_edges
        ]


def _edge_ends(array: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """The values at both ends of every grid edge along ``axis``: (start, end), each shaped like the edges."""
    start, end = [slice(None)] * 3, [slice(None)] * 3
    start[axis], end[axis] = slice(None, -1), slice(1, None)
    return array[tuple(start)], array[tuple(end)]
