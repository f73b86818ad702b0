"""Coarse-to-fine surface extraction: the dense marching-cubes mesh for a fraction of the queries.

The dense path queries every vertex of a resolution³ grid, although only the cells the surface passes
through make triangles. Here the cells are grouped in blocks of `block`³. The blocks' corners form a
coarse grid, queried first; blocks whose corners straddle the threshold, widened by `margin` blocks,
are queried in full. Then the set grows: a block face whose vertices straddle the threshold means the
surface goes on into the neighbouring block, which is queried in turn, until no surface leaves the
queried blocks. Marching cubes then runs on those blocks' cells with the dense path's case table
(``marching_cubes``, PyMCubes' own), so each surface piece reached this way comes out as the dense path
makes it.

What it can miss: a piece of surface that lies wholly inside blocks whose corners are all on one side
and that touches no queried block, i.e. a floater or object thinner than a block and more than
`margin` blocks away from any other surface.
"""

import logging
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .isosurface import POINTS_PER_CALL, DensityFn, extract_dense, grid_to_model_space
from .marching_cubes import CORNERS, EDGE_AXIS, EDGE_START, FROM_FAR_END, OTHER_AXES, case_table
from .renderer import scale_tensor

LOG = logging.getLogger(__name__)

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

    The bookkeeping runs in torch on the device ``density_fn`` answers on, so on a GPU only the finished
    mesh crosses to the host. Should that device run out of memory, it runs again with the values on the
    CPU, which gives the same mesh. When the coarse grid sees no surface at all (an object thinner than a
    block), this falls back to the dense path, which finds it or says why there is none.
    """
    axis = scale_tensor(torch.linspace(0.0, 1.0, resolution), (0.0, 1.0), (-radius, radius))
    try:
        mesh = sparse_marching_cubes(density_fn, axis, threshold, block, margin, on_progress)
    except torch.OutOfMemoryError:
        LOG.warning(
            "Surface extraction ran out of GPU memory; extracting with the values on the CPU instead."
        )
        mesh = sparse_marching_cubes(density_fn, axis, threshold, block, margin, on_progress, "cpu")
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
    device: torch.device | str | None = None,
) -> tuple[np.ndarray, np.ndarray, int] | None:
    """Marching cubes of ``density == threshold`` over the grid axis × axis × axis.

    ``axis`` holds the grid's coordinates along one axis, the values the dense grid uses. The values and
    the bookkeeping stay on ``device``, by default the one ``density_fn`` answers on. Returns the vertices
    in grid-index units (float64), the faces (int64) as PyMCubes winds them for the dense grid, and the
    number of points queried; None when no block corners straddle the threshold.
    """
    grid = _BrickGrid(density_fn, axis, threshold, block, device)
    coarse = grid.coarse_values(_progress_span(on_progress, 0.0, _COARSE_SHARE))
    active = _dilate(_straddling_cells(_inside(coarse)), margin)
    if not active.any():
        return None
    new, done = active.clone(), _COARSE_SHARE
    while new.any():
        share = _FIRST_PASS_SHARE if done == _COARSE_SHARE else (1.0 - done) / 2
        blocks = torch.nonzero(new)
        values = grid.block_values(blocks, _progress_span(on_progress, done, done + share))
        new = grid.neighbours_across_crossed_faces(blocks, _inside(values)) & ~active
        active |= new
        done += share
    blocks = torch.nonzero(active)
    vertices, faces = _march(blocks * block, grid.block_values(blocks), len(axis))
    return vertices.cpu().numpy(), faces.cpu().numpy(), grid.queried


class _BrickGrid:
    """The marching-cubes input ``density - threshold`` on the grid, each vertex queried when first needed.

    Values live in bricks of block³ vertices, allocated only where queried (NaN until then), so memory
    follows the surface, not the grid's volume. Cell block b spans vertices b·block … (b+1)·block, which
    lie in bricks b and b + 1 along each axis. Every array lives on ``device``; None: the device of the
    first values ``density_fn`` returns.
    """

    def __init__(
        self,
        density_fn: DensityFn,
        axis: torch.Tensor,
        threshold: float,
        block: int,
        device: torch.device | str | None,
    ):
        self.density_fn, self.axis, self.block = density_fn, axis, block
        self.threshold = torch.tensor(threshold, dtype=torch.float32)
        self.device = None if device is None else torch.device(device)
        self.resolution = len(axis)
        self.blocks = -(-(self.resolution - 1) // block)
        self.queried = 0
        self.slots: torch.Tensor | None = None
        self.bricks: torch.Tensor | None = None

    def coarse_values(self, on_progress: Callable[[float], None] | None = None) -> torch.Tensor:
        """Values at the block corners: a (blocks + 1)³ grid, the last corner clamped to the grid's end."""
        corners = torch.clamp(torch.arange(self.blocks + 1) * self.block, max=self.resolution - 1)
        ijk = torch.stack(torch.meshgrid(corners, corners, corners, indexing="ij"), dim=-1).reshape(-1, 3)
        values = self._query(ijk, on_progress).reshape((self.blocks + 1,) * 3)
        # The bricks' arrays go where the first values came back, now known.
        self.slots = torch.full((-(-self.resolution // self.block),) * 3, -1, device=self.device)
        self.bricks = torch.zeros((0, self.block, self.block, self.block), device=self.device)
        return values

    def block_values(
        self, blocks: torch.Tensor, on_progress: Callable[[float], None] | None = None
    ) -> torch.Tensor:
        """(B, block+1, block+1, block+1) values of the given cell blocks, querying what is missing.

        Past the grid's end (a thinner last block) the indices repeat the last vertex. Blocks go in
        groups, which bounds the index arrays' memory whatever the resolution."""
        groups = range(0, len(blocks), _BLOCKS_PER_GROUP)
        return torch.cat(
            [
                self._group_values(
                    blocks[start : start + _BLOCKS_PER_GROUP],
                    _progress_span(on_progress, n / len(groups), (n + 1) / len(groups)),
                )
                for n, start in enumerate(groups)
            ]
        )

    def _group_values(
        self, blocks: torch.Tensor, on_progress: Callable[[float], None] | None
    ) -> torch.Tensor:
        self._allocate(blocks)
        local = torch.arange(self.block + 1, device=self.device)
        ijk = [
            torch.clamp(blocks[:, a, None] * self.block + local, max=self.resolution - 1) for a in range(3)
        ]
        slot = self.slots.reshape(-1)[_outer_linear([index // self.block for index in ijk], len(self.slots))]
        flat = slot * self.block**3 + _outer_linear([index % self.block for index in ijk], self.block)
        values = self.bricks.reshape(-1)[flat]
        missing = torch.isnan(values)
        if missing.any():
            b, x, y, z = torch.nonzero(missing, as_tuple=True)
            wanted = torch.stack([ijk[0][b, x], ijk[1][b, y], ijk[2][b, z]], dim=-1)
            missing_flat = flat[missing]
            # Entries with the same brick index are the same grid vertex.
            one, inverse = _one_of_each(missing_flat)
            fresh = self._query(wanted[one], on_progress)[inverse]
            self.bricks.view(-1)[missing_flat] = fresh
            values[missing] = fresh
        return values

    def neighbours_across_crossed_faces(self, blocks: torch.Tensor, above: torch.Tensor) -> torch.Tensor:
        """Mask of the blocks beyond a face whose vertices straddle the threshold: the surface enters them."""
        out = torch.zeros((self.blocks,) * 3, dtype=torch.bool, device=self.device)
        for axis in range(3):
            for side, step in ((0, -1), (-1, 1)):
                face = above.select(axis + 1, side).reshape(len(blocks), -1)
                neighbours = blocks[face.any(dim=1) & ~face.all(dim=1)]
                neighbours[:, axis] += step
                inside = ((neighbours >= 0) & (neighbours < self.blocks)).all(dim=1)
                out[tuple(neighbours[inside].T)] = True
        return out

    def _allocate(self, blocks: torch.Tensor) -> None:
        needed = torch.zeros(self.slots.shape, dtype=torch.bool, device=self.device)
        for offset in CORNERS:
            corner = torch.clamp(blocks + torch.tensor(offset, device=self.device), max=len(self.slots) - 1)
            needed[tuple(corner.T)] = True
        fresh = needed & (self.slots < 0)
        count = int(fresh.sum())
        self.slots[fresh] = torch.arange(len(self.bricks), len(self.bricks) + count, device=self.device)
        empty = torch.full((count, *self.bricks.shape[1:]), float("nan"), device=self.device)
        self.bricks = torch.cat([self.bricks, empty])

    def _query(self, ijk: torch.Tensor, on_progress: Callable[[float], None] | None) -> torch.Tensor:
        """Query in pieces of POINTS_PER_CALL, reporting progress (and so a chance to cancel) after each."""
        self.queried += len(ijk)
        pieces = []
        for start in range(0, len(ijk), POINTS_PER_CALL):
            piece = ijk[start : start + POINTS_PER_CALL]
            densities = self.density_fn(self.axis[piece.to(self.axis.device)]).float()
            if self.device is None:
                self.device = densities.device
            # The points are made where the values are kept, so a GPU grid never waits on the host.
            self.axis = self.axis.to(self.device)
            pieces.append(densities.to(self.device))
            if on_progress is not None:
                on_progress(min(start + POINTS_PER_CALL, len(ijk)) / len(ijk))
        # Exactly the dense path's float32 arithmetic, so that every value falls on the same side.
        return torch.cat(pieces) - self.threshold.to(self.device)


def _march(origins: torch.Tensor, values: torch.Tensor, resolution: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Marching cubes over the cells of the blocks at ``origins``; a vertex shared by cells comes out once."""
    device = values.device
    case = _cell_cases(origins, values, resolution)
    block, *cell = torch.nonzero((case != 0) & (case != 255), as_tuple=True)
    cell = torch.stack(cell, dim=-1)
    counts, edges = (torch.from_numpy(table).to(device) for table in case_table())
    cell_case = case[block, *cell.T].long()
    triangle_cell, slot = torch.nonzero(
        torch.arange(edges.shape[1], device=device) < counts[cell_case][:, None], as_tuple=True
    )
    block, cell = block[triangle_cell], cell[triangle_cell]
    triangle_edges = edges[cell_case[triangle_cell], slot]  # (T, 3)
    edge_axis = torch.from_numpy(EDGE_AXIS).to(device)

    # Each triangle corner lies on a grid edge, named by its start vertex and axis: the weld key.
    start = (
        cell[:, None, :] + torch.from_numpy(EDGE_START).to(device)[triangle_edges]
    )  # (T, 3, 3), block-local
    global_start = start + origins[block, None, :]
    keys = (global_start[..., 0] * resolution + global_start[..., 1]) * resolution + global_start[..., 2]
    # Corners with the same key are the same vertex, from the same stored values.
    one, faces = _one_of_each((keys * 3 + edge_axis[triangle_edges]).reshape(-1))
    vertices = _edge_vertices(
        values,
        block.repeat_interleave(3)[one],
        start.reshape(-1, 3)[one],
        global_start.reshape(-1, 3)[one],
        edge_axis[triangle_edges.reshape(-1)[one]],
    )
    return vertices, faces.reshape(-1, 3)


def _one_of_each(keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For the distinct ``keys`` in ascending order: the index of one entry holding each (any one: entries
    with the same key stand for the same thing), and each entry's distinct key's number."""
    distinct, inverse = torch.unique(keys, return_inverse=True)
    one = torch.empty(len(distinct), dtype=torch.long, device=keys.device)
    one[inverse] = torch.arange(len(inverse), device=keys.device)
    return one, inverse


def _cell_cases(origins: torch.Tensor, values: torch.Tensor, resolution: int) -> torch.Tensor:
    """(B, n, n, n) case numbers: bit n set where corner n lies inside; 0 past the grid's end."""
    n = values.shape[1] - 1
    case = torch.zeros((len(values), n, n, n), dtype=torch.uint8, device=values.device)
    for bit, (dx, dy, dz) in enumerate(CORNERS):
        case |= _inside(values[:, dx : dx + n, dy : dy + n, dz : dz + n]).to(torch.uint8) << bit
    # Cells of a thinner last block repeat the grid's last vertex: they are no cells of the grid.
    inside = origins[:, :, None] + torch.arange(n, device=values.device) < resolution - 1
    case *= inside[:, 0, :, None, None] & inside[:, 1, None, :, None] & inside[:, 2, None, None, :]
    return case


def _inside(values: torch.Tensor) -> torch.Tensor:
    """Where ``density - threshold`` counts as inside: wherever it is not <= 0, as the dense path decides."""
    return ~(values <= 0)


def _edge_vertices(
    values: torch.Tensor,
    block: torch.Tensor,
    start: torch.Tensor,
    global_start: torch.Tensor,
    axis: torch.Tensor,
) -> torch.Tensor:
    """Where the field crosses zero along each edge, interpolated linearly, in grid-index units.

    As PyMCubes computes it, (x2 - x1)·(0 - f1)/(f2 - f1) + x1 in float64, from the end it starts at (for
    some edges the far one, ``marching_cubes.FROM_FAR_END``): the same operations, so vertices agree with
    the dense path's bit for bit. Apple's MPS has no float64: there this runs on the CPU.
    """
    end = start + torch.eye(3, dtype=start.dtype, device=start.device)[axis]
    f_start, f_end = values[block, *start.T], values[block, *end.T]
    exact = torch.device("cpu") if values.device.type == "mps" else values.device
    f_start, f_end = f_start.to(exact, torch.float64), f_end.to(exact, torch.float64)
    vertices, axis = global_start.to(exact, torch.float64), axis.to(exact)
    others = torch.from_numpy(OTHER_AXES).to(exact)[axis]
    past_0 = (torch.gather(global_start.to(exact), 1, others) > 0).long()
    far = torch.from_numpy(FROM_FAR_END).to(exact)[axis, past_0[:, 0], past_0[:, 1]]
    f1, f2 = torch.where(far, f_end, f_start), torch.where(far, f_start, f_end)
    sign = torch.where(far, -1.0, 1.0).to(torch.float64)
    along = vertices[torch.arange(len(start), device=exact), axis] + far
    vertices[torch.arange(len(start), device=exact), axis] = (sign * (0.0 - f1)) / (f2 - f1) + along
    return vertices


def _progress_span(
    on_progress: Callable[[float], None] | None, start: float, end: float
) -> Callable[[float], None] | None:
    if on_progress is None:
        return None
    return lambda fraction: on_progress(start + (end - start) * fraction)


def _outer_linear(rows: list[torch.Tensor], size: int) -> torch.Tensor:
    """(B, n, n, n) C-order linear indices into a size³ array from per-block index rows (3 × (B, n))."""
    i, j, k = rows
    return (i[:, :, None, None] * size + j[:, None, :, None]) * size + k[:, None, None, :]


def _straddling_cells(above: torch.Tensor) -> torch.Tensor:
    """Cells of a vertex grid whose eight corners are not all on the same side."""
    n = [size - 1 for size in above.shape]
    corners = torch.stack([above[dx : dx + n[0], dy : dy + n[1], dz : dz + n[2]] for dx, dy, dz in CORNERS])
    return corners.any(dim=0) & ~corners.all(dim=0)


def _dilate(mask: torch.Tensor, margin: int) -> torch.Tensor:
    """Grow a 3D mask by `margin` cells in every direction, diagonals included."""
    if margin == 0:
        return mask
    size = 2 * margin + 1
    grown = F.max_pool3d(mask[None, None].float(), size, stride=1, padding=margin)
    return grown[0, 0] > 0
