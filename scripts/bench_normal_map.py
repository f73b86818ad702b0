"""The normal map measured: how close a decimated mesh shades to the dense one, without and with the map.

On the benchmark field (Suzanne fitted by scripts/make_bench_field.py), at each resolution the dense mesh is
decimated to each face count and baked (colour and normal map, one pass). At texel centres of the layout
(50,000 of them), the light mesh's shading normal is compared with the dense mesh's smooth normal at the
nearest point of its surface (tests/bench_field.shading_errors):

- without the map: the light mesh's interpolated vertex normals;
- with the map, in the core's tangent frames (what the GLB's TANGENT carries);
- with the map, in Blender's own MikkTSpace frames (what Blender's Normal Map node uses).

Also printed: the bake's seconds without and with the normal map, in the same run.

    .venv/bin/python scripts/bench_normal_map.py [--resolutions 128 256] [--faces 5000 20000]
        [--texture-size 2048]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from bench_field import (  # noqa: E402
    THRESHOLD,
    DenseSurface,
    blender_tangents,
    load_bench_field,
    shading_errors,
)

from triposr_blender.core.decimate import decimate  # noqa: E402
from triposr_blender.core.shading import corner_tangents, vertex_normals  # noqa: E402
from triposr_blender.core.texture import bake_texture  # noqa: E402


def seconds(action):
    started = time.perf_counter()
    result = action()
    return result, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--resolutions", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--faces", type=int, nargs="+", default=[5000, 20000])
    parser.add_argument("--texture-size", type=int, default=2048)
    args = parser.parse_args()

    model, scene = load_bench_field()

    def color_fn(points):
        return model.query(scene, points)["color"].numpy()

    header = ("no map °", "core °", "Blender °", "bake s", "+map s")
    print(f"{'res':>4} {'faces':>6} " + " ".join(f"{name:>9}" for name in header))
    for resolution in args.resolutions:
        dense = model.extract_mesh(scene, resolution=resolution, threshold=THRESHOLD)
        surface = DenseSurface(dense)
        for faces in args.faces:
            light = decimate(dense, faces, color_fn)
            _, plain = seconds(lambda light=light: bake_texture(light, color_fn, args.texture_size))
            baked, mapped = seconds(
                lambda light=light, dense=dense: bake_texture(light, color_fn, args.texture_size, dense=dense)
            )
            ours = corner_tangents(
                light.vertices, light.faces, baked.corner_uvs, vertex_normals(light.vertices, light.faces)
            )
            without, with_core = shading_errors(light, baked, surface, ours)
            _, with_blender = shading_errors(light, baked, surface, blender_tangents(light, baked.corner_uvs))
            print(
                f"{resolution:>4} {len(light.faces):>6} {without.mean():>9.2f} {with_core.mean():>9.2f} "
                f"{with_blender.mean():>9.2f} {plain:>9.2f} {mapped - plain:>+9.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
