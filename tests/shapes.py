"""Small meshes the tests build by hand, in TripoSR's model space."""

import numpy as np

from triposr_blender.core.mesh import Mesh

# A tetrahedron wound counter-clockwise seen from outside, as the core winds its meshes: the apex (+X) is on
# the side the photo saw.
TETRAHEDRON = Mesh(
    vertices=np.array([[0.5, 0, 0], [-0.5, 0.5, -0.5], [-0.5, -0.5, -0.5], [-0.5, 0, 0.5]], np.float32),
    faces=np.array([[0, 1, 3], [0, 3, 2], [0, 2, 1], [1, 2, 3]], np.int64),
    vertex_colors=np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [0.5, 0.5, 0.5]], np.float32),
)


def enclosed_volume(mesh: Mesh) -> float:
    """The volume a closed, outward-wound mesh encloses (divergence theorem over its triangles)."""
    corners = mesh.vertices[mesh.faces].astype(np.float64)
    return float(np.einsum("ij,ij->i", corners[:, 0], np.cross(corners[:, 1], corners[:, 2])).sum() / 6)
