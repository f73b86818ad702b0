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


def lumpy(resolution: int = 64) -> Mesh:
    """A body, a head off to one side and a nose towards +X (the photo's side): no symmetry that would let a
    camera fit mistake one elevation, zoom or shift for another. Marching cubes of a union of ellipsoids,
    wound outwards; its colours vary smoothly with position."""
    from triposr_blender.core.marching_cubes import marching_cubes

    axis = np.linspace(-0.87, 0.87, resolution)
    x, y, z = np.meshgrid(axis, axis, axis, indexing="ij")

    def ellipsoid(centre, radii):
        return 1 - sum(((c - m) / r) ** 2 for c, m, r in zip((x, y, z), centre, radii, strict=True))

    body = ellipsoid((0.0, 0.0, -0.1), (0.3, 0.35, 0.4))
    head = ellipsoid((0.05, 0.1, 0.4), (0.2, 0.2, 0.2))
    nose = ellipsoid((0.3, -0.15, 0.0), (0.2, 0.08, 0.08))
    vertices, faces = marching_cubes(np.maximum.reduce([body, head, nose]))
    vertices = (vertices / (resolution - 1) * 1.74 - 0.87).astype(np.float32)
    mesh = Mesh(vertices, faces.astype(np.int64), (0.5 + 0.4 * np.tanh(2 * vertices)).astype(np.float32))
    if enclosed_volume(mesh) < 0:
        mesh = Mesh(mesh.vertices, np.ascontiguousarray(mesh.faces[:, ::-1]), mesh.vertex_colors)
    return mesh


def covered_texels(mesh: Mesh, texture) -> tuple[np.ndarray, ...]:
    """Every texel a face covers in ``texture``'s layout: its row and column, its face, the barycentric
    weights and the surface point there."""
    from triposr_blender.core.texture import NO_FACE, rasterize_faces, texel_weights

    size = texture.image.shape[0]
    face_image = rasterize_faces(texture.corner_uvs, size)
    rows, columns = np.nonzero(face_image != NO_FACE)
    faces = face_image[rows, columns]
    weights = texel_weights(texture.corner_uvs, faces, rows, columns, size)
    points = np.einsum("nk,nkj->nj", weights, mesh.vertices[mesh.faces[faces]].astype(np.float64))
    return rows, columns, faces, weights, points
