"""The batch on Ray: images per second with 1 and 2 model workers, and what starting on Ray costs.

With the tiny fixture model on this machine's CPUs (the model's own time is small, so Ray's share shows), in
one run, each batch over copies of the fixture image:

- ray.init: starting a local Ray (2 CPUs, on 127.0.0.1), which `--ray` pays when no cluster is running;
- per batch on Ray, a short run (SHORT images) and a long one (LONG images): the extra images give the
  throughput, and what the short run takes beyond its images is the start-up (model workers starting,
  importing PyTorch and loading the model, Ray Data planning);
- the batch in Blender over the same images, for comparison.

    .venv/bin/python scripts/bench_batch_ray.py [--short 4] [--long 24]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # Ray on 127.0.0.1 only (see tests/conftest.py)

import ray  # noqa: E402
from batch_harness import TINY_MODEL_ARGS, image_copies, run_batch  # noqa: E402

from triposr_blender.batch import command  # noqa: E402


def seconds_on_ray(images: Path, out: Path, workers: list[str]) -> float:
    started = time.perf_counter()
    with contextlib.redirect_stderr(io.StringIO()):  # Ray Data's progress lines
        code = command.main(list(map(str, [images, "--out", out, "--ray", *workers, *TINY_MODEL_ARGS])))
    assert code == 0
    return time.perf_counter() - started


def seconds_in_blender(images: Path, out: Path) -> float:
    started = time.perf_counter()
    result = run_batch(images, "--out", out, *TINY_MODEL_ARGS)
    assert result.returncode == 0, result.stderr
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--short", type=int, default=4)
    parser.add_argument("--long", type=int, default=24)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    short, long = image_copies(root / "short", args.short), image_copies(root / "long", args.long)
    extra = args.long - args.short

    started = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    print(f"ray.init (local Ray, 2 CPUs): {time.perf_counter() - started:.1f} s")
    print(f"{'run':<34} {args.short:>3} images {args.long:>3} images   images/s   start-up")
    runs = {
        "Ray, 1 worker (1 CPU)": lambda images, out: seconds_on_ray(images, out, ["--concurrency", "1"]),
        "Ray, 2 workers (0.5 CPU each)": lambda images, out: seconds_on_ray(
            images, out, ["--concurrency", "2", "--cpus-per-worker", "0.5"]
        ),
        "in Blender (worker process)": seconds_in_blender,
    }
    try:
        for name, timed in runs.items():
            few = timed(short, root / f"{name}-short")
            many = timed(long, root / f"{name}-long")
            per_image = (many - few) / extra
            print(
                f"{name:<34} {few:>8.1f} s {many:>8.1f} s {1 / per_image:>10.1f} "
                f"{few - args.short * per_image:>8.1f} s"
            )
    finally:
        ray.shutdown()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
