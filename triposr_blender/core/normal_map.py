"""Normal map: the dense mesh's shading carried onto the UV layout of its decimated copy.

Decimation keeps the shape's outline but flattens what lies between the kept vertices, so a light mesh
shades faceted. For each texel of the bake, the dense mesh's normal near that texel's surface point is
written in the tangent frame the renderer rebuilds there (core.shading), so the light mesh shades like the
dense one. The dense normal is its vertex normals around the point, weighted by inverse distance: the
vertices of a resolution-256 mesh lie a few thousandths apart, far closer than a decimated mesh's faces, and
only those on the same side as the light surface count (a thin part's far side is no nearer in space).
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from .mesh import Mesh
from .shading import corner_tangents, perpendicular, unit, vertex_normals

# Dense vertices whose normals make up each texel's; four is the fewest that covers the triangle around it.
NEIGHBOURS = 4
# A texel no face covers: the normal straight out of the surface, as stored.
FLAT_NORMAL = np.array([0.5, 0.5, 1.0], np.float32)


class DenseNormals:
    """The shading normal of a dense mesh near given points."""

    def __init__(self, dense: Mesh):
        self.tree = cKDTree(dense.vertices)
        self.normals = vertex_normals(dense.vertices, dense.faces)

    def __call__(self, points: np.ndarray, facing: np.ndarray) -> np.ndarray:
        """Unit normals (N, 3) at ``points``, from dense vertices whose normals are within 90° of ``facing``
        (where none is, ``facing`` itself)."""
        distance, nearest = self.tree.query(points, k=NEIGHBOURS, workers=-1)
        normals = self.normals[nearest]
        same_side = np.einsum("nkj,nj->nk", normals, facing.astype(np.float32)) > 0
        weight = (same_side / np.maximum(distance, 1e-9)).astype(np.float32)
        blended = unit(np.einsum("nk,nkj->nj", weight, normals)).astype(np.float64)
        return np.where(same_side.any(axis=1, keepdims=True), blended, facing)


class NormalBake:
    """Tangent-space normals of a dense mesh for the texels of a light mesh's UV layout."""

    def __init__(self, mesh: Mesh, corner_uvs: np.ndarray, dense: Mesh):
        self.faces = mesh.faces
        self.vertex_normals = vertex_normals(mesh.vertices, mesh.faces).astype(np.float64)
        self.tangents = corner_tangents(mesh.vertices, mesh.faces, corner_uvs, self.vertex_normals)
        self.dense_normals = DenseNormals(dense)

    def texels(self, faces: np.ndarray, weights: np.ndarray, points: np.ndarray) -> np.ndarray:
        """For texels on ``faces`` at barycentric ``weights`` (surface ``points``): the dense normal in the
        texel's tangent frame, as stored in the image, (N, 3) in [0, 1]."""
        normal = unit(np.einsum("nk,nkj->nj", weights, self.vertex_normals[self.faces[faces]]))
        tangents = self.tangents[faces].astype(np.float64)
        tangent = unit(perpendicular(np.einsum("nk,nkj->nj", weights, tangents[..., :3]), normal))
        bitangent = tangents[:, 0, 3:] * np.cross(normal, tangent)
        dense = self.dense_normals(points, normal)
        local = np.stack([(dense * axis).sum(axis=1) for axis in (tangent, bitangent, normal)], axis=1)
        return (local * 0.5 + 0.5).astype(np.float32)
