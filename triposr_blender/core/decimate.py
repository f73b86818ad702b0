"""Fewer triangles, same shape: quadric edge-collapse decimation (fast-simplification), bpy-free.

It runs in the core, beside the model, so one job can decimate, colour and bake: with Blender's Decimate
modifier the mesh would go to Blender and back to the worker process before the texture could be baked.
"""

from __future__ import annotations

from collections.abc import Callable

import fast_simplification
import numpy as np

from .defaults import MIN_TARGET_FACES
from .errors import TripoSRError
from .mesh import Mesh
from .progress import Progress, report

ColorFn = Callable[[np.ndarray], np.ndarray]

DECIMATE_STAGE = "Decimating mesh"
# fast-simplification stops after a fixed number of rounds and can end above the target when collapses
# are blocked (they would flip triangles); running it again on its own result lets it go on.
MAX_PASSES = 3


def decimate(mesh: Mesh, target_faces: int, color_fn: ColorFn, progress: Progress | None = None) -> Mesh:
    """``mesh`` with at most ``target_faces`` faces, coloured by ``color_fn`` at its new vertices.

    Edge collapses move vertices to where they best keep the surface (quadric error), so the colours
    are queried again there rather than carried over. A mesh already within the target is returned as is.
    Not thread-safe: fast-simplification keeps the mesh in module state while it works.
    """
    if target_faces < MIN_TARGET_FACES:
        raise TripoSRError(
            f"Target faces is {target_faces}, but a closed mesh needs at least {MIN_TARGET_FACES}. "
            "Set it higher, or to 0 to keep every face."
        )
    if len(mesh.faces) <= target_faces:
        return mesh
    report(progress, DECIMATE_STAGE, 0.0)
    vertices, faces = mesh.vertices, mesh.faces
    for _ in range(MAX_PASSES):
        vertices, faces = fast_simplification.simplify(vertices, faces, target_count=target_faces)
        if len(faces) <= target_faces:
            break
    else:
        raise TripoSRError(
            f"The mesh could not be reduced to {target_faces} faces (it stopped at {len(faces)}). "
            "Set Target faces higher and try again."
        )
    vertices = vertices.astype(np.float32)
    colors = np.asarray(color_fn(vertices), np.float32)
    report(progress, DECIMATE_STAGE, 1.0)
    return Mesh(vertices=vertices, faces=faces.astype(np.int64), vertex_colors=colors)
