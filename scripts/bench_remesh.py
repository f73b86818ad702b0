"""Generate against Re-mesh on this machine: what keeping the scene codes saves, and what it costs to keep.

Both run the product's own pipeline (triposr_blender/worker/pipeline.py) in this one process:

- Generate: encode a 512² image with the full official architecture (random weights, no download), then
  make the mesh and save its scene codes. The mesh stage runs on the benchmark field (Suzanne fitted with the
  real decoder, tests/fixtures/bench-field), so the surface costs what a real object's does.
- Re-mesh: read the kept scene codes back (core/scene_codes.py), then the same mesh stage.
- Bytes kept per object: the scene codes as a TripoSR object stores them, for the benchmark field's codes and
  for the random-weight model's own (a CPU's float32 output compresses less).

Not counted in either: the worker process's round trip and building the object in Blender, the same for both.

    .venv/bin/python scripts/bench_remesh.py [--resolutions 256 512]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests"), str(REPO / "scripts")]

import torch  # noqa: E402
from bench_core import bench_image, write_random_checkpoint  # noqa: E402
from bench_field import THRESHOLD, load_bench_field  # noqa: E402

from triposr_blender.core import TripoSR  # noqa: E402
from triposr_blender.core.scene_codes import SceneCodes  # noqa: E402
from triposr_blender.options import MeshOptions  # noqa: E402
from triposr_blender.worker import pipeline  # noqa: E402


def no_progress(stage: str, fraction: float) -> None:
    pass


def timed(action):
    started = time.perf_counter()
    value = action()
    return value, time.perf_counter() - started


def encode_with_the_full_model() -> tuple[bytes, float]:
    """The random-weight full model's scene codes of the benchmark image, saved, and the encode's seconds."""
    with tempfile.TemporaryDirectory(prefix="triposr-bench-") as folder:
        write_random_checkpoint(Path(folder))
        model = TripoSR.from_pretrained(folder, device="cpu")
        codes, seconds = timed(lambda: model.encode(bench_image()))
        return SceneCodes(codes.numpy(), model.fingerprint).to_bytes(), seconds


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--resolutions", type=int, nargs="+", default=[256, 512])
    args = parser.parse_args()
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; the mesh stage on the benchmark field"
    )

    model_bytes, encode_seconds = encode_with_the_full_model()
    field, field_codes = load_bench_field()
    field_source = SceneCodes(field_codes.numpy(), field.fingerprint, "bench-field")
    kept, save_seconds = timed(field_source.to_bytes)

    print(f"\n{'':12} {'Generate (s)':>13} {'Re-mesh (s)':>12} {'Re-mesh / Generate':>19}")
    for resolution in args.resolutions:
        options = MeshOptions(resolution=resolution, threshold=THRESHOLD)
        _, mesh_seconds = timed(
            lambda o=options: pipeline.mesh_from_scene(field, field_codes, o, no_progress)
        )
        generate_seconds = encode_seconds + mesh_seconds + save_seconds

        def remesh(o=options):
            codes = SceneCodes.from_bytes(kept)
            return pipeline.mesh_from_scene(field, torch.from_numpy(codes.array), o, no_progress)

        _, remesh_seconds = timed(remesh)
        share = remesh_seconds / generate_seconds
        print(f"at {resolution:<9} {generate_seconds:>13.1f} {remesh_seconds:>12.2f} {share:>18.1%}")

    print(f"\nencode {encode_seconds:.1f} s; saving the codes {save_seconds:.2f} s")
    raw = field_codes.numel() * 4
    for label, size in (
        ("benchmark field's codes", len(kept)),
        ("the CPU encoder's own codes", len(model_bytes)),
    ):
        print(f"bytes kept per object, {label}: {size:,} ({size / raw:.0%} of {raw:,} raw float32)")


if __name__ == "__main__":
    main()
