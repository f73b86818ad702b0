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
from .progress import DECIMATE_STAGE, Progress, report

ColorFn = Callable[[np.ndarray], np.ndarray]

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
    vertices, faces = without_unused_vertices(vertices, faces[shading_faces(vertices, faces)])
    vertices = vertices.astype(np.float32)
    colors = np.asarray(color_fn(vertices), np.float32)
    report(progress, DECIMATE_STAGE, 1.0)
    return Mesh(vertices=vertices, faces=faces.astype(np.int64), vertex_colors=colors)


def shading_faces(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Which faces to keep: not those that name a vertex twice or have no area, and of faces with the same
    three vertices only the first (edge collapses leave such back-to-back pairs, where a small piece of the
    mesh was: their normals cancel, and glTF validators and shading object; one face keeps the piece)."""
    repeated = (faces[:, 0] == faces[:, 1]) | (faces[:, 1] == faces[:, 2]) | (faces[:, 0] == faces[:, 2])
    corners = vertices[faces].astype(np.float64)
    doubled_area = np.linalg.norm(
        np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]), axis=1
    )
    extent = float(np.ptp(vertices, axis=0).max()) if len(vertices) else 1.0
    flat = doubled_area <= 1e-12 * extent**2
    _, first = np.unique(np.sort(faces, axis=1), axis=0, return_index=True)
    duplicate = np.ones(len(faces), bool)
    duplicate[first] = False
    return ~(repeated | flat | duplicate)


def without_unused_vertices(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The vertices some face uses, and the faces renumbered to them."""
    used, renumbered = np.unique(faces, return_inverse=True)
    return vertices[used], renumbered.reshape(faces.shape)
