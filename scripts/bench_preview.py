"""The batch's pictures: how long a preview (four views) and a turntable take, on the benchmark field's mesh.

The mesh is the benchmark field's (Suzanne at the product's threshold) at each resolution; each size is
timed ``--repeats`` times, the sizes interleaved so that all see the same machine load. Printed: faces, and
the best and median seconds of a preview strip at each view size and of a 12-frame turntable at 256 px.

    .venv/bin/python scripts/bench_preview.py [--resolutions 128 256] [--sizes 256 320 512] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from bench_field import THRESHOLD, load_bench_field  # noqa: E402

from triposr_blender.core import preview  # noqa: E402

TURNTABLE_FRAMES = 12


def timed(work, *arguments) -> float:
    started = time.perf_counter()
    work(*arguments)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolutions", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 320, 512])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    model, scene = load_bench_field()
    for resolution in args.resolutions:
        mesh = model.extract_mesh(scene, resolution=resolution, threshold=THRESHOLD)
        works = {f"preview, {size} px a view": (preview.preview_strip, (mesh, size)) for size in args.sizes}
        works[f"turntable, {TURNTABLE_FRAMES} x 256 px"] = (preview.turntable, (mesh, TURNTABLE_FRAMES, 256))
        seconds = {name: [] for name in works}
        for _ in range(args.repeats):
            for name, (work, arguments) in works.items():
                seconds[name].append(timed(work, *arguments))
        print(f"resolution {resolution}: {len(mesh.faces):,} faces")
        for name, times in seconds.items():
            print(f"  {name:28} best {min(times):.2f} s, median {statistics.median(times):.2f} s")


if __name__ == "__main__":
    main()
