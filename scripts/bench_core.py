"""Benchmark the inference core on the full official TripoSR architecture with random weights (no download).

A child process writes a random-weight checkpoint in the official format next to the official config.yaml,
so that this process measures exactly what a user's run does: load (memory-mapped), encode a 512x512 image,
extract a mesh at resolution 256. Random weights describe no object, so the iso-level is taken from the
density field itself (a high percentile of a coarse grid) to give marching cubes a surface to find.

    .venv/bin/python scripts/bench_core.py [--device auto] [--resolution 256] [--chunk-size N]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from triposr_blender.core import TripoSR  # noqa: E402
from triposr_blender.core.config import load_config  # noqa: E402
from triposr_blender.core.isosurface import grid_points  # noqa: E402
from triposr_blender.core.model import DEFAULT_CHUNK_SIZE, build_network  # noqa: E402

OFFICIAL_CONFIG = REPO / "tests" / "fixtures" / "official-config.yaml"
SURFACE_PERCENTILE = 99.0
PROBE_RESOLUTION = 64


def write_random_checkpoint(folder: Path) -> None:
    """Runs in a child process, so that making 1.7 GB of random weights does not count in our peak memory."""
    torch.manual_seed(0)
    network = build_network(load_config(OFFICIAL_CONFIG), device="cpu")
    torch.save(network.state_dict(), folder / "model.ckpt")
    shutil.copy(OFFICIAL_CONFIG, folder / "config.yaml")


def peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 / 1024 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timed(label: str, results: dict[str, tuple[float, float]], action):
    """Run ``action``, recording (wall seconds, CPU seconds of this process over all its threads)."""
    wall, cpu = time.perf_counter(), cpu_seconds()
    value = action()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    results[label] = (time.perf_counter() - wall, cpu_seconds() - cpu)
    return value


def bench_image() -> Image.Image:
    """A 512x512 object-like picture: a shaded disc on TripoSR's 0.5 grey background."""
    y, x = np.mgrid[-1:1:512j, -1:1:512j]
    inside = x**2 + y**2 < 0.6
    rgb = np.full((512, 512, 3), 127, dtype=np.uint8)
    rgb[inside] = (np.stack([200 + 40 * x, 120 + 60 * y, 80 + 0 * x], axis=-1)[inside]).astype(np.uint8)
    return Image.fromarray(rgb)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK_SIZE)
    parser.add_argument("--write-checkpoint", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.write_checkpoint:
        write_random_checkpoint(args.write_checkpoint)
        return

    seconds: dict[str, tuple[float, float]] = {}
    with tempfile.TemporaryDirectory(prefix="triposr-bench-") as folder:
        timed(
            "write random checkpoint (child; CPU not counted)",
            seconds,
            lambda: subprocess.run([sys.executable, __file__, "--write-checkpoint", folder], check=True),
        )
        model = timed(
            "from_pretrained",
            seconds,
            lambda: TripoSR.from_pretrained(folder, args.device, chunk_size=args.chunk_size),
        )
        rss_after_load = peak_rss_mb()
        scene = timed("encode (512x512 image)", seconds, lambda: model.encode(bench_image()))
        radius = model.config.renderer.radius
        probe = timed(
            f"threshold probe (grid {PROBE_RESOLUTION}^3)",
            seconds,
            lambda: model.query(scene, grid_points(PROBE_RESOLUTION, radius))["density"].cpu().numpy(),
        )
        threshold = float(np.percentile(probe, SURFACE_PERCENTILE))
        mesh = timed(
            f"extract_mesh (resolution {args.resolution})",
            seconds,
            lambda: model.extract_mesh(scene, resolution=args.resolution, threshold=threshold),
        )

    print(f"TripoSR core benchmark: full official architecture, random weights ({platform.machine()})")
    dtype = str(model.dtype).removeprefix("torch.")
    print(f"  device {model.device}, {dtype}, torch {torch.__version__}, chunk_size {model.chunk_size}")
    print(
        f"  {torch.get_num_threads()} torch threads, {os.cpu_count()} cores (wall > CPU/threads: shared CPUs)"
    )
    print(f"  {'stage':<50} {'wall s':>8} {'CPU s':>8}")
    for label, (wall, cpu) in seconds.items():
        print(f"  {label:<50} {wall:8.2f} {cpu:8.2f}")
    print(f"  {'  of which reading weights (meta + mmap)':<50} {model.load_seconds:8.2f}")
    print(
        f"  mesh: {len(mesh.vertices)} vertices, {len(mesh.faces)} faces at threshold {threshold:.4g} "
        f"({SURFACE_PERCENTILE:g}th percentile of the probe grid)"
    )
    print(f"  peak RSS after load  {rss_after_load:8.0f} MB")
    print(f"  peak RSS overall     {peak_rss_mb():8.0f} MB")
    if model.device.type == "cuda":
        print(f"  peak CUDA memory     {torch.cuda.max_memory_allocated() / 2**20:8.0f} MB")


if __name__ == "__main__":
    main()
