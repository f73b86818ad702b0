"""The core's marching cubes against PyMCubes': time, working memory, and whether the meshes are identical.

On the benchmark field's density grid (Suzanne, at the product's threshold) and on a bumpy ball at larger
resolutions, each run interleaves the two implementations, so both see the same machine load. Printed per
grid: the best and median seconds of each, the peak memory the core's marcher allocates beyond the grid
(tracemalloc counts numpy's allocations), and whether vertices and faces are equal bit for bit.

    .venv/bin/python scripts/bench_marching_cubes.py [--resolutions 256 512] [--repeats 3] [--bench-field 256]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

import mcubes  # noqa: E402
from bench_field import THRESHOLD, load_bench_field  # noqa: E402

from triposr_blender.core.isosurface import grid_points  # noqa: E402
from triposr_blender.core.marching_cubes import marching_cubes  # noqa: E402


def bumpy_ball(resolution: int) -> np.ndarray:
    axis = np.linspace(-1, 1, resolution, dtype=np.float32)
    x, y, z = np.meshgrid(axis, axis, axis, indexing="ij", sparse=True)
    return 0.7 - np.sqrt(x**2 + y**2 + z**2) + 0.08 * np.sin(6 * x) * np.sin(5 * y) * np.sin(4 * z)


def bench_field_grid(resolution: int) -> np.ndarray:
    model, scene = load_bench_field()
    points = grid_points(resolution, model.config.renderer.radius)
    pieces = [model.query(scene, piece)["density"].numpy() for piece in points.split(1 << 20)]
    density = np.concatenate(pieces)
    return density.reshape((resolution,) * 3) - np.float32(THRESHOLD)


def pymcubes(field: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # numpy 2.5 on PyMCubes' own reshaping
        vertices, faces = mcubes.marching_cubes(field, 0.0)
    return vertices.reshape(-1, 3), faces.reshape(-1, 3).astype(np.int64)


def peak_memory_mb(field: np.ndarray) -> float:
    tracemalloc.start()
    marching_cubes(field)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 1e6


def compare(name: str, field: np.ndarray, repeats: int) -> None:
    times = {"core": [], "PyMCubes": []}
    for _ in range(repeats):
        for label, function in (("core", marching_cubes), ("PyMCubes", pymcubes)):
            start = time.perf_counter()
            mesh = function(field)
            times[label].append(time.perf_counter() - start)
    ours, theirs = marching_cubes(field), pymcubes(field)
    same = all(np.array_equal(a.view(np.int64), b.view(np.int64)) for a, b in zip(ours, theirs, strict=True))
    timings = (f"{label} {min(t):6.2f} s (median {statistics.median(t):.2f})" for label, t in times.items())
    print(
        f"{name:<22} {len(mesh[1]):>10,} faces | "
        + " | ".join(timings)
        + f" | core's peak {peak_memory_mb(field):6.0f} MB beyond the {field.nbytes / 1e6:.0f} MB grid"
        + f" | identical: {same}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--resolutions", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--bench-field", type=int, default=256, help="the bench field's resolution; 0: skip")
    args = parser.parse_args()
    if args.bench_field:
        compare(f"bench field, {args.bench_field}", bench_field_grid(args.bench_field), args.repeats)
    for resolution in args.resolutions:
        compare(f"bumpy ball, {resolution}", bumpy_ball(resolution), args.repeats)


if __name__ == "__main__":
    main()
