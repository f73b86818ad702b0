"""Quad Remesh measured: quads made, how close they stay to the dense mesh, and how long it takes.

On the benchmark field (Suzanne fitted by scripts/make_bench_field.py), at each resolution the extracted mesh
becomes a TripoSR object in the bpy wheel (2 units tall, as Generate makes it) and is quad-remeshed to each
count (blender/quad_remesh.py: Decimate, QuadriFlow, colors carried). Printed per count:

- quads made and their share of the faces, and the edges left open (holes QuadriFlow made and filling left);
- distance of the quads' vertices to the dense mesh (mean and 95th percentile, in the extraction's grid
  cells);
- seconds, all steps together.

    .venv/bin/python scripts/bench_quad_remesh.py [--resolutions 128 256] [--quads 2000 5000 10000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import bpy
import numpy as np
from mathutils.bvhtree import BVHTree

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from bench_field import THRESHOLD, load_bench_field  # noqa: E402

from triposr_blender.backends.types import MeshResult  # noqa: E402
from triposr_blender.blender import mesh_builder  # noqa: E402
from triposr_blender.blender.placement import Destination  # noqa: E402
from triposr_blender.blender.quad_remesh import corners, quad_remesh, vertex_positions  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--resolutions", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--quads", type=int, nargs="+", default=[2000, 5000, 10000])
    args = parser.parse_args()

    model, scene = load_bench_field()
    radius = model.config.renderer.radius
    columns = ("asked", "quads", "share", "open", "mean d", "95% d", "s")
    print(f"{'res':>4} {'triangles':>9} " + " ".join(f"{name:>7}" for name in columns))
    for resolution in args.resolutions:
        dense = model.extract_mesh(scene, resolution=resolution, threshold=THRESHOLD)
        for quads in args.quads:
            bpy.ops.wm.read_factory_settings(use_empty=True)
            obj = mesh_builder.build_object(bpy.context, "Suzanne", MeshResult(dense), Destination())
            points = vertex_positions(obj.data)
            tree = BVHTree.FromPolygons(points.tolist(), dense.faces.tolist())
            # a grid cell of the extraction, in the object's units (build_object scales the model's box)
            cell = (
                2
                * radius
                / (resolution - 1)
                * np.ptp(points, axis=0).max()
                / np.ptp(dense.vertices, axis=0).max()
            )
            started = time.perf_counter()
            quad_remesh(bpy.context, obj, quads)
            seconds = time.perf_counter() - started
            sides = np.array([len(polygon.vertices) for polygon in obj.data.polygons])
            open_edges = int((np.bincount(corners(obj.data)[1], minlength=len(obj.data.edges)) == 1).sum())
            quad_points = vertex_positions(obj.data).tolist()
            distance = np.array([tree.find_nearest(point)[3] for point in quad_points]) / cell
            print(
                f"{resolution:>4} {len(dense.faces):>9,} {quads:>7} {(sides == 4).sum():>7} "
                f"{(sides == 4).mean():>7.1%} {open_edges:>7} {distance.mean():>7.3f} "
                f"{np.percentile(distance, 95):>7.3f} "
                f"{seconds:>7.1f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
