"""The per-image stages on a GPU, cold and warm, at 256 and 512: the script to run when a GPU is lent.

Prepared on the CPU (``--device cpu`` runs it here) and run as it is on a GPU machine, which has no
network: the model is the full official architecture with random weights written on the spot, and the
surfaces come from the benchmark field (tests/fixtures/bench-field), since random weights hold no object.
Background removal runs rembg's u2netp (``.venv/u2net``, from ``make test``; carry that folder) with the
product's PyTorch path. Each stage is timed twice, cold (first call in the process) and warm, with the
device synchronised before each clock is read:

- image to scene codes: background removal, then encode (half precision on CUDA, as the product runs);
- scene codes to mesh: ``extract_mesh`` (surface and colors) at each resolution;
- mesh to a Blender object: ``mesh_builder.build_object`` in the bpy wheel, when bpy imports.

    python scripts/bench_gpu.py [--device cuda] [--resolutions 256 512]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests"), str(REPO / "scripts")]

from bench_core import write_random_checkpoint  # noqa: E402
from bench_field import FIELD, THRESHOLD, load_bench_field  # noqa: E402

from triposr_blender.core import TripoSR, background  # noqa: E402


def synchronised(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def cold_and_warm(label: str, device: torch.device, action) -> object:
    """Run ``action`` twice and print both times; return the second result."""
    times = []
    for _ in range(2):
        synchronised(device)
        started = time.perf_counter()
        result = action()
        synchronised(device)
        times.append(time.perf_counter() - started)
    print(f"{label:<44} cold {times[0]:8.3f} s   warm {times[1]:8.3f} s", flush=True)
    return result


def bench_field_model(device: torch.device):
    """The benchmark field's decoder and scene codes, on ``device``."""
    model, scene = load_bench_field(FIELD)
    model.network.decoder.to(device)
    return TripoSR(model.network, device), scene.to(device)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--resolutions", type=int, nargs="+", default=[256, 512])
    args = parser.parse_args()
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
    print(f"TripoSR per-image stages on {name}, torch {torch.__version__}")

    with Image.open(REPO / "examples" / "chair.png") as opened:
        image = opened.convert("RGB")
    if (REPO / ".venv" / "u2net" / "u2netp.onnx").is_file():
        os.environ.setdefault("U2NET_HOME", str(REPO / ".venv" / "u2net"))
        masks = background.mask_model("u2netp", device)
        cold_and_warm("remove background (u2netp, PyTorch)", device, lambda: masks.predict(image))
    else:
        print("remove background: skipped (no .venv/u2net/u2netp.onnx: run make test, carry .venv/u2net)")

    with tempfile.TemporaryDirectory(prefix="triposr-gpu-bench-") as folder:
        write_random_checkpoint(Path(folder))
        model = cold_and_warm(
            "load the model", device, lambda: TripoSR.from_pretrained(folder, device=device)
        )
        cold_and_warm("encode a 512² image (image to scene codes)", device, lambda: model.encode(image))

    field, scene = bench_field_model(device)
    for resolution in args.resolutions:
        mesh = cold_and_warm(
            f"scene codes to mesh at {resolution}",
            device,
            lambda resolution=resolution: field.extract_mesh(
                scene, resolution=resolution, threshold=THRESHOLD
            ),
        )
        print(f"{'':<44} {len(mesh.vertices):,} vertices, {len(mesh.faces):,} faces")
        build_in_blender(mesh, resolution, device)


def build_in_blender(mesh, resolution: int, device: torch.device) -> None:
    try:
        import bpy

        from triposr_blender.backends.types import MeshResult
        from triposr_blender.blender import mesh_builder
        from triposr_blender.blender.placement import Destination
    except ImportError as error:
        print(f"mesh to a Blender object: skipped ({error})")
        return
    cold_and_warm(
        f"mesh to a Blender object at {resolution} (bpy)",
        device,
        lambda: mesh_builder.build_object(bpy.context, "bench", MeshResult(mesh), Destination()),
    )


if __name__ == "__main__":
    main()
