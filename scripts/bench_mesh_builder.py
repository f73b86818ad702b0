"""Time building a coloured 1-million-triangle mesh in bpy: our foreach_set builder against from_pydata.

Run: ``.venv/bin/python scripts/bench_mesh_builder.py [--triangles N]``. Prints seconds per step.
"""

import argparse
import sys
import time
from pathlib import Path

import bpy
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from triposr_blender.backends.types import MeshResult
from triposr_blender.blender import materials, mesh_builder
from triposr_blender.blender.placement import Destination
from triposr_blender.core.mesh import Mesh


def grid_mesh(triangles: int) -> Mesh:
    """A wavy square grid with about ``triangles`` triangles and random colours."""
    side = int(np.sqrt(triangles / 2)) + 1
    u, v = np.meshgrid(np.linspace(-0.8, 0.8, side), np.linspace(-0.8, 0.8, side), indexing="ij")
    vertices = np.stack([u, v, 0.1 * np.sin(8 * u) * np.cos(8 * v)], axis=-1).reshape(-1, 3)
    corner = (np.arange(side - 1)[:, None] * side + np.arange(side - 1)[None, :]).ravel()
    faces = np.concatenate(
        [
            np.stack([corner, corner + side, corner + 1], axis=1),
            np.stack([corner + 1, corner + side, corner + side + 1], axis=1),
        ]
    )
    colors = np.random.default_rng(0).random((len(vertices), 3), dtype=np.float32)
    return Mesh(vertices.astype(np.float32), faces.astype(np.int64), colors)


def timed(label: str, action):
    start = time.perf_counter()
    result = action()
    print(f"{label:<48} {time.perf_counter() - start:8.3f} s")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--triangles", type=int, default=1_000_000)
    args = parser.parse_args()
    generated = grid_mesh(args.triangles)
    sizes = f"{len(generated.vertices):,} vertices, {len(generated.faces):,} triangles"
    print(f"{sizes} (Blender {bpy.app.version_string})")

    timed(
        "build_object (foreach_set, colours, material)",
        lambda: mesh_builder.build_object(bpy.context, "bench", MeshResult(generated), Destination()),
    )
    mesh = timed(
        "  of which new_mesh", lambda: mesh_builder.new_mesh("b", generated.vertices, generated.faces)
    )
    timed("  of which Blender deriving the edges (timed again)", lambda: mesh.update(calc_edges=True))
    timed("  of which add_vertex_colors", lambda: materials.add_vertex_colors(mesh, generated.vertex_colors))
    timed("mesh.validate() (not used: the core's arrays are valid)", mesh.validate)

    pydata = bpy.data.meshes.new("pydata")
    timed(
        "from_pydata (no colours)",
        lambda: pydata.from_pydata(generated.vertices.tolist(), [], generated.faces.tolist()),
    )


if __name__ == "__main__":
    main()
