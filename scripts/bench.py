"""`make bench`: one table of where an image -> mesh run spends its time and memory on this machine.

Every row runs in its own child process, so that each peak RSS is that row's own. Rows:

- matmul rate: this machine's float32 `torch.mm` rate on the encoder's own shapes, measured in the
  encoding process just before and just after encoding; the higher is the denominator of the encode
  floor (FLOPs / rate). Other processes sharing the CPU move all timings: compare rows of one run.
- load, encode: the full official architecture with random weights (no download); encode FLOPs are
  counted on the meta device. "x floor" is the encode time over FLOPs / matmul rate. The cpu_fast rows
  encode with int8 transformer layers; their note gives the deviation from float32 (same image and
  threshold): scene codes, and the 256 mesh's vertex counts and Hausdorff distance in grid cells.
- end to end: load + encode + extract_mesh (the default method) at 256 in one process: its peak RSS is
  what a user's CPU run needs. Random weights hold no object, so the iso-level is the 99th percentile of
  a coarse density grid, as in scripts/bench_core.py.
- extract: the benchmark field (Suzanne fitted with the real decoder, tests/fixtures/bench-field) at
  the product's threshold 25, dense and sparse; "queries" counts grid points decoded (vertex colours
  not included). The sparse meshes are compared with the dense one: vertex counts and Hausdorff distance
  in grid cells. Dense above 256 is estimated from dense 256's time per point unless --all-dense.
- GPU rows, when CUDA is present: the same pipeline on the GPU with torch.cuda.max_memory_allocated.
- per-image stages: what follows the encoder for each image, on the device the model would use, with
  "host s", the wall time minus the time inside torch operators (torch.profiler). On a GPU the operators
  run on the device and the host time is what the CPU adds: with no GPU here, it is the GPU's floor.
  Background removal runs examples/chair.png through rembg's u2netp (from `make test`; the product's u2net
  is about 40 times larger) both ways: with torch, as on a GPU, and with onnxruntime, as on the CPU.

    .venv/bin/python scripts/bench.py [--all-dense] [--resolutions 256 384 512]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

import numpy as np  # noqa: E402
import torch  # noqa: E402
from bench_core import bench_image, peak_rss_mb, write_random_checkpoint  # noqa: E402
from bench_field import THRESHOLD, load_bench_field  # noqa: E402
from PIL import Image  # noqa: E402
from scipy.spatial import cKDTree  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from triposr_blender.core import TripoSR  # noqa: E402
from triposr_blender.core.config import load_config  # noqa: E402
from triposr_blender.core.isosurface import grid_points  # noqa: E402
from triposr_blender.core.model import build_network  # noqa: E402

OFFICIAL_CONFIG = REPO / "tests" / "fixtures" / "official-config.yaml"
# (M, K, N) of the encoder's large matrix products: backbone projections and feed-forward, ViT MLP.
MATMUL_SHAPES = [(3072, 1024, 1024), (3072, 1024, 8192), (3072, 4096, 1024), (1025, 768, 3072)]
SURFACE_PERCENTILE = 99.0
PROBE_RESOLUTION = 64


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--resolutions", type=int, nargs="+", default=[256, 384, 512])
    parser.add_argument(
        "--all-dense", action="store_true", help="measure dense above 256 too instead of estimating it"
    )
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(CHILDREN[args.child[0]](*args.child[1:])))
        return

    rows = []
    started = time.perf_counter()
    flops = encode_flops()
    with tempfile.TemporaryDirectory(prefix="triposr-bench-") as folder:
        child("checkpoint", folder)
        exact = child("end_to_end", folder, "cpu", "exact", "", f"{folder}/exact.npz")
        fast = child("end_to_end", folder, "cpu", "cpu_fast", str(exact["threshold"]), f"{folder}/fast.npz")
        rows += end_to_end_rows(exact, flops, "cpu")
        rows += end_to_end_rows(fast, flops, "cpu, cpu_fast")
        rows[-1].note += "; " + cpu_fast_deviation(f"{folder}/exact.npz", f"{folder}/fast.npz")
        if torch.cuda.is_available():
            rows += end_to_end_rows(
                child("end_to_end", folder, "cuda", "exact", "", f"{folder}/cuda.npz"), flops, "cuda"
            )
    rows += extraction_rows(args.resolutions, args.all_dense)
    rows += stage_rows(child("stages"))
    print_table(rows, time.perf_counter() - started)


class Row:
    def __init__(
        self,
        stage,
        seconds=None,
        gflops=None,
        gflops_per_s=None,
        floor=None,
        queries=None,
        rss_mb=None,
        note="",
        host_seconds=None,
    ):
        self.stage, self.seconds, self.gflops, self.gflops_per_s = stage, seconds, gflops, gflops_per_s
        self.floor, self.queries, self.rss_mb, self.note = floor, queries, rss_mb, note
        self.host_seconds = host_seconds


def child(name: str, *args: str) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", name, *args], check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def encode_flops() -> float:
    """FLOPs of image -> scene codes, counted on the meta device (nothing is computed or allocated)."""
    network = build_network(load_config(OFFICIAL_CONFIG))
    size = network.config.cond_image_size
    with FlopCounterMode(display=False) as counter:
        network(torch.zeros(1, size, size, 3, device="meta"))
    return counter.get_total_flops()


# --- children -------------------------------------------------------------------------------------------


def matmul_rate() -> tuple[float, float]:
    """This machine's float32 rate on the encoder's shapes: total FLOPs over the best time per shape,
    per wall second and per CPU second of this process (which other processes' load hardly moves)."""
    flops = wall = cpu = 0.0
    for m, k, n in MATMUL_SHAPES:
        a, b = torch.randn(m, k), torch.randn(k, n)
        torch.mm(a, b)
        times = [cpu_timed(lambda a=a, b=b: torch.mm(a, b))[1:] for _ in range(3)]
        wall += min(t[0] for t in times)
        cpu += min(t[1] for t in times)
        flops += 2 * m * k * n
    return flops / wall / 1e9, flops / cpu / 1e9


def make_checkpoint(folder: str) -> dict:
    write_random_checkpoint(Path(folder))
    return {}


def end_to_end(folder: str, device: str, mode: str, threshold: str, out: str) -> dict:
    """Load, encode and extract at 256 as a user's run does, with each stage's figures.

    On the CPU the matmul rate is measured just before and just after encoding, in this process."""
    cuda = device == "cuda"
    result = {}
    model, result["load_s"] = timed(
        lambda: TripoSR.from_pretrained(
            folder, device, dtype="float16" if cuda else None, cpu_fast=mode == "cpu_fast"
        )
    )
    result["rss_load_mb"] = peak_rss_mb()
    image = bench_image()
    if cuda:
        model.encode(image)  # the first CUDA call pays for kernel selection; time the second
        torch.cuda.reset_peak_memory_stats()
    rates = [] if cuda else [matmul_rate()]
    scene, result["encode_s"], result["encode_cpu_s"] = cpu_timed(lambda: model.encode(image))
    rates += [] if cuda else [matmul_rate()]
    result["rates"] = rates
    result["rss_encode_mb"] = peak_rss_mb()
    if threshold:
        result["threshold"] = float(threshold)
    else:
        probe = model.query(scene, grid_points(PROBE_RESOLUTION, model.config.renderer.radius))["density"]
        result["threshold"] = float(np.percentile(probe.cpu().numpy(), SURFACE_PERCENTILE))
    mesh, result["extract_s"] = timed(
        lambda: model.extract_mesh(scene, resolution=256, threshold=result["threshold"])
    )
    result["faces"] = len(mesh.faces)
    result["rss_mb"] = peak_rss_mb()
    if cuda:
        result["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    np.savez(out, scene=scene.cpu().numpy(), vertices=mesh.vertices)
    return result


def extract_bench_field(method: str, resolution: str, mesh_path: str) -> dict:
    model, scene = load_bench_field()
    renderer = model.network.renderer
    query, queried = renderer.query, []

    def counting_query(decoder, points, *args, **kwargs):
        queried.append(len(points))
        return query(decoder, points, *args, **kwargs)

    renderer.query = counting_query
    mesh, seconds = timed(
        lambda: model.extract_mesh(scene, resolution=int(resolution), threshold=THRESHOLD, method=method)
    )
    np.save(mesh_path, mesh.vertices)
    return {
        "seconds": seconds,
        "queries": sum(queried) - len(mesh.vertices),
        "vertices": len(mesh.vertices),
        "faces": len(mesh.faces),
        "rss_mb": peak_rss_mb(),
    }


def per_image_stages() -> dict:
    """Each stage after the encoder, warm (second of two runs), with its wall and host seconds."""
    from triposr_blender.core import background
    from triposr_blender.core.floaters import remove_floaters

    stages = {}
    u2net_home = REPO / ".venv" / "u2net"
    if (u2net_home / "u2netp.onnx").is_file():
        os.environ.setdefault("U2NET_HOME", str(u2net_home))
        with Image.open(REPO / "examples" / "chair.png") as opened:
            image = opened.convert("RGB")
        torch_model = background.mask_model("u2netp", "cpu")
        stages["remove background, torch: GPUs' path"] = host_timed(lambda: torch_model.predict(image), "cpu")
        stages["remove background, onnxruntime: CPU's path"] = host_timed(
            lambda: background.object_mask(image, "u2netp", "cpu"), "cpu"
        )
    model, scene = load_bench_field()
    mesh = stages["mesh at 256: surface and colors"] = host_timed(
        lambda: model.extract_mesh(scene, resolution=256, threshold=THRESHOLD), str(model.device)
    )
    stages["remove floaters (scipy)"] = host_timed(lambda: remove_floaters(mesh["value"], 0.05), "cpu")
    for figures in stages.values():
        figures.pop("value")
    return stages


def host_timed(action, device: str) -> dict:
    """The second of two runs: wall seconds, and host seconds (wall minus the top-level torch operators')."""
    action()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profiler:
        value, wall = timed(action)
    inside = sum(event.cpu_time_total for event in profiler.events() if event.cpu_parent is None) / 1e6
    return {"value": value, "seconds": wall, "host_seconds": max(wall - inside, 0.0), "device": device}


CHILDREN = {
    "checkpoint": make_checkpoint,
    "end_to_end": end_to_end,
    "extract": extract_bench_field,
    "stages": per_image_stages,
}


def timed(action):
    value, wall, _ = cpu_timed(action)
    return value, wall


def cpu_timed(action):
    """(value, wall seconds, CPU seconds of this process over all its threads)."""
    wall, cpu = time.perf_counter(), time.process_time()
    value = action()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return value, time.perf_counter() - wall, time.process_time() - cpu


# --- table ----------------------------------------------------------------------------------------------


def end_to_end_rows(e2e: dict, flops: float, label: str) -> list[Row]:
    """On the CPU: the matmul rate, then load, encode (x floor by wall time, and by CPU time in the
    note) and the whole run."""
    rows = [Row(f"load ({label}, mmap)", e2e["load_s"], rss_mb=e2e["rss_load_mb"])]
    encode = Row(
        f"encode ({label}, 512x512 image)",
        e2e["encode_s"],
        gflops=flops / 1e9,
        gflops_per_s=flops / e2e["encode_s"] / 1e9,
        rss_mb=e2e["rss_encode_mb"],
    )
    if e2e["rates"]:
        wall_rate, cpu_rate = (max(rates) for rates in zip(*e2e["rates"], strict=True))
        rows.insert(0, Row(f"matmul rate ({label.split(',')[0]}, fp32 torch.mm)", gflops_per_s=wall_rate))
        rows[0].note = "before / after encode: " + " / ".join(f"{wall:.0f}" for wall, _ in e2e["rates"])
        encode.floor = e2e["encode_s"] / (flops / 1e9 / wall_rate)
        encode.note = f"x floor by CPU time {e2e['encode_cpu_s'] / (flops / 1e9 / cpu_rate):.2f}"
    rows.append(encode)
    rows.append(
        Row(
            f"end to end at 256 ({label})",
            e2e["load_s"] + e2e["encode_s"] + e2e["extract_s"],
            rss_mb=e2e["rss_mb"],
            note=f"extract {e2e['extract_s']:.1f} s, {e2e['faces']} faces",
        )
    )
    if "cuda_peak_mb" in e2e:
        rows[-1].note += f"; CUDA peak {e2e['cuda_peak_mb']:.0f} MB"
    return rows


def cpu_fast_deviation(exact_path: str, fast_path: str) -> str:
    """How far cpu_fast's scene codes and mesh are from float32's (same image, same threshold)."""
    exact, fast = np.load(exact_path), np.load(fast_path)
    error = fast["scene"] - exact["scene"]
    relative = np.linalg.norm(error) / np.linalg.norm(exact["scene"])
    cells = mesh_difference(exact["vertices"], fast["vertices"], 256)
    return f"vs fp32: scene codes max |err| {np.abs(error).max():.3g}, relative {relative:.2%}; mesh {cells}"


def extraction_rows(resolutions: list[int], all_dense: bool) -> list[Row]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="triposr-bench-mesh-") as folder:
        dense = {}
        for resolution in resolutions:
            if resolution <= 256 or all_dense:
                dense[resolution] = child(
                    "extract", "dense", str(resolution), f"{folder}/dense{resolution}.npy"
                )
                rows.append(extraction_row("dense", resolution, dense[resolution]))
            elif 256 in dense:
                rows.append(estimated_dense_row(resolution, dense[256]))
            sparse = child("extract", "sparse", str(resolution), f"{folder}/sparse{resolution}.npy")
            row = extraction_row("sparse", resolution, sparse)
            if resolution in dense:
                row.note = "vs dense: " + mesh_difference(
                    np.load(f"{folder}/dense{resolution}.npy"),
                    np.load(f"{folder}/sparse{resolution}.npy"),
                    resolution,
                )
            rows.append(row)
    return rows


def stage_rows(stages: dict) -> list[Row]:
    return [
        Row(f"{name} ({figures['device']})", figures["seconds"], host_seconds=figures["host_seconds"])
        for name, figures in stages.items()
    ]


def extraction_row(method: str, resolution: int, result: dict) -> Row:
    return Row(
        f"extract {method} {resolution} (bench field)",
        result["seconds"],
        queries=result["queries"],
        rss_mb=result["rss_mb"],
        note=f"{result['vertices']} vertices, {result['faces']} faces",
    )


def estimated_dense_row(resolution: int, dense_256: dict) -> Row:
    scale = (resolution / 256) ** 3
    return Row(
        f"extract dense {resolution} (estimated)",
        dense_256["seconds"] * scale,
        queries=resolution**3,
        note="the 256 run's time per grid point (--all-dense measures it)",
    )


def mesh_difference(reference: np.ndarray, other: np.ndarray, resolution: int) -> str:
    """Vertex counts and the symmetric Hausdorff distance between the vertex sets, in grid cells."""
    cell = 2 * load_config(OFFICIAL_CONFIG).renderer.radius / (resolution - 1)
    hausdorff = max(cKDTree(reference).query(other)[0].max(), cKDTree(other).query(reference)[0].max())
    return f"{len(other)} vs {len(reference)} vertices, Hausdorff {hausdorff / cell:.3g} cells"


def print_table(rows: list[Row], total_seconds: float) -> None:
    print(
        f"TripoSR benchmark ({platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; CUDA {'yes' if torch.cuda.is_available() else 'no'})"
    )
    columns = [("stage", "<48"), ("s", ">8"), ("host s", ">7"), ("GFLOP", ">7"), ("GFLOP/s", ">8")]
    columns += [("x floor", ">8")]
    columns += [("queries", ">11"), ("RSS MB", ">7")]
    header = " ".join(format(name, spec) for name, spec in columns) + "  notes"
    print(header)
    print("-" * len(header))
    for row in rows:
        print(
            f"{row.stage:<48} {fmt(row.seconds, '.2f'):>8} {fmt(row.host_seconds, '.3f'):>7} "
            f"{fmt(row.gflops, '.0f'):>7} "
            f"{fmt(row.gflops_per_s, '.1f'):>8} {fmt(row.floor, '.2f'):>8} {fmt(row.queries, ',d'):>11} "
            f"{fmt(row.rss_mb, '.0f'):>7}  {row.note}"
        )
    print(f"(whole benchmark {total_seconds:.0f} s; RSS = peak resident memory of that row's process)")


def fmt(value, spec: str) -> str:
    return "" if value is None else format(value, spec)


if __name__ == "__main__":
    main()
