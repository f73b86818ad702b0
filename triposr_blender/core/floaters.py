"""Remove floaters: the small pieces of surface apart from the object, which marching cubes finds in a noisy
density field. Runs on the extracted mesh, before decimation and baking, so neither spends work on them.

The mesh's connected components come from scipy's ``csgraph.connected_components`` on the graph of its
triangle edges; a component with fewer faces than ``fraction`` of the largest one's is dropped, and the
vertices left without a face with it.
"""

from __future__ import annotations

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from .mesh import Mesh


def remove_floaters(mesh: Mesh, fraction: float) -> Mesh:
    """``mesh`` without its components smaller than ``fraction`` of the largest (counted in faces).

    The faces keep their order and winding; the vertices kept keep theirs, renumbered. A mesh of one
    component, or ``fraction`` 0, comes back unchanged.
    """
    if fraction <= 0 or len(mesh.faces) == 0:
        return mesh
    count, labels = vertex_components(mesh)
    if count == 1:
        return mesh
    face_labels = labels[mesh.faces[:, 0]]
    faces_per_component = np.bincount(face_labels, minlength=count)
    keep_face = faces_per_component[face_labels] >= fraction * faces_per_component.max()
    if keep_face.all():
        return mesh
    faces = mesh.faces[keep_face]
    used = np.zeros(len(mesh.vertices), bool)
    used[faces.ravel()] = True
    new_index = np.cumsum(used) - 1
    return Mesh(
        vertices=mesh.vertices[used],
        faces=new_index[faces].astype(mesh.faces.dtype),
        vertex_colors=mesh.vertex_colors[used],
    )


def vertex_components(mesh: Mesh) -> tuple[int, np.ndarray]:
    """How many connected components the mesh has, and the component of each vertex."""
    edges = np.concatenate([mesh.faces[:, [0, 1]], mesh.faces[:, [1, 2]], mesh.faces[:, [2, 0]]])
    size = len(mesh.vertices)
    graph = coo_matrix((np.ones(len(edges), np.int8), (edges[:, 0], edges[:, 1])), shape=(size, size))
    return connected_components(graph, directed=False)
