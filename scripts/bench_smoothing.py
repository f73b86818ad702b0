"""Smoothing measured against the true shape: the benchmark field is Suzanne, whose surface is known.

For the bench field (Suzanne subdivided once, fitted by scripts/make_bench_field.py) and a copy with noise
on every texel of its triplane (tests/bench_field.noisy_copy: the lumps TripoSR users see), at each
resolution, the mesh is extracted with each Smoothing width. Printed per mesh:

- distance of its vertices to the true surface (mean and 95th percentile, in grid cells);
- normal error: the mean angle between the mesh's vertex normals and the true surface's at the nearest
  point;
- volume change against the unsmoothed mesh, and the seconds the extraction took.

    .venv/bin/python scripts/bench_smoothing.py [--resolutions 128 256] [--smoothing 0 0.25 0.5 0.75 1]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from bench_field import THRESHOLD, TrueSurface, load_bench_field, noisy_copy  # noqa: E402
from shapes import enclosed_volume  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--resolutions", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--smoothing", type=float, nargs="+", default=[0.0, 0.25, 0.5, 0.75, 1.0])
    args = parser.parse_args()

    model, scene = load_bench_field()
    truth = TrueSurface()
    radius = model.config.renderer.radius
    columns = ("mean d", "95% d", "normal°", "volume", "s")
    print(f"{'field':<12} {'res':>4} {'smooth':>6} " + " ".join(f"{name:>8}" for name in columns))
    for name, codes in {"bench field": scene, "noisy copy": noisy_copy(scene)}.items():
        for resolution in args.resolutions:
            cell = 2 * radius / (resolution - 1)
            unsmoothed = None
            for smoothing in args.smoothing:
                started = time.perf_counter()
                mesh = model.extract_mesh(
                    codes, resolution=resolution, threshold=THRESHOLD, smoothing=smoothing
                )
                seconds = time.perf_counter() - started
                volume = enclosed_volume(mesh)
                unsmoothed = unsmoothed or volume
                distance, angle = truth.compare(mesh)
                print(
                    f"{name:<12} {resolution:>4} {smoothing:>6.2f} {distance.mean() / cell:>8.3f} "
                    f"{np.percentile(distance, 95) / cell:>8.3f} {angle.mean():>8.2f} "
                    f"{volume / unsmoothed - 1:>+8.2%} {seconds:>8.2f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
