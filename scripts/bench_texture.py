"""Time unwrapping and baking a texture for a ~200k-triangle mesh on the CPU, stage by stage, and the same
after decimating it to a game-ready face count (whose bake adds a normal map of the dense mesh).

The mesh and the colours come from the benchmark field (tests/fixtures/bench-field: Suzanne fitted into a
full-size triplane and the official decoder), so colour queries cost what they cost with the real model.

    .venv/bin/python scripts/bench_texture.py [--resolution 282] [--texture-size 2048] [--target-faces 20000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

import numpy as np  # noqa: E402
import torch  # noqa: E402
from bench_field import THRESHOLD, load_bench_field  # noqa: E402

from triposr_blender.core import texture  # noqa: E402
from triposr_blender.core.decimate import decimate  # noqa: E402
from triposr_blender.core.normal_map import NormalBake  # noqa: E402


def timed(label: str, action):
    start = time.perf_counter()
    result = action()
    print(f"  {label:<44} {time.perf_counter() - start:8.2f} s", flush=True)
    return result


def bake_in_stages(mesh, color_fn, size: int, padding: int, dense=None) -> None:
    """What ``texture.bake_texture`` does, one timed stage at a time; with ``dense``, the normal map too."""
    print(f"bake {size}x{size} for {len(mesh.faces):,} triangles")
    started = time.perf_counter()
    corner_uvs = timed("unwrap (xatlas)", lambda: texture.unwrap(mesh, size, padding))
    face_image = timed("rasterise UV triangles", lambda: texture.rasterize_faces(corner_uvs, size))
    rows, columns = np.nonzero(face_image != texture.NO_FACE)
    faces = face_image[rows, columns]
    weights = timed(
        f"surface points of {len(rows):,} texels ({len(rows) / size**2:.0%})",
        lambda: texture.texel_weights(corner_uvs, faces, rows, columns, size),
    )
    points = np.einsum("nk,nkj->nj", weights, mesh.vertices[mesh.faces[faces]].astype(np.float64))
    chunks = range(0, len(points), texture.POINTS_PER_QUERY)
    colors = timed(
        "query colours (official-size decoder)",
        lambda: np.concatenate(
            [color_fn(points[start : start + texture.POINTS_PER_QUERY]) for start in chunks]
        ),
    )
    timed(
        f"dilate {padding} texels, to RGBA8",
        lambda: texture.to_rgba8(
            *texture.dilate(
                texture.spread(colors, rows, columns, size), face_image != texture.NO_FACE, padding
            )
        ),
    )
    if dense is not None:
        bake = timed("normal map: tangent frames, dense tree", lambda: NormalBake(mesh, corner_uvs, dense))
        timed(
            "normal map: dense normals, tangent space",
            lambda: [
                bake.texels(faces[part], weights[part], points[part])
                for part in (slice(start, start + texture.POINTS_PER_QUERY) for start in chunks)
            ],
        )
    print(f"  {'total':<44} {time.perf_counter() - started:8.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--resolution", type=int, default=282, help="marching-cubes grid (282: ~200k triangles)"
    )
    parser.add_argument("--texture-size", type=int, default=2048)
    parser.add_argument("--padding", type=int, default=4)
    parser.add_argument("--target-faces", type=int, default=20_000)
    args = parser.parse_args()
    print(f"torch threads: {torch.get_num_threads()}")

    model, scene = load_bench_field()

    def color_fn(points: np.ndarray) -> np.ndarray:
        return model.query(scene, points)["color"].numpy()

    mesh = model.extract_mesh(scene, resolution=args.resolution, threshold=THRESHOLD)
    bake_in_stages(mesh, color_fn, args.texture_size, args.padding)

    print(f"game-ready: decimate to {args.target_faces:,} triangles, then bake")
    light = timed(
        "decimate (fast-simplification, recolour)", lambda: decimate(mesh, args.target_faces, color_fn)
    )
    bake_in_stages(light, color_fn, args.texture_size, args.padding, dense=mesh)


if __name__ == "__main__":
    main()
