"""Remove Floaters (core/floaters.py): the small pieces apart from the object go, the rest stays as it was."""

import numpy as np

from triposr_blender.core.floaters import remove_floaters
from triposr_blender.core.mesh import Mesh


def fans(*pieces) -> Mesh:
    """Separate pieces, each a fan of triangles around its own centre: (triangles, offset) per piece."""
    vertices, faces = [], []
    for triangles, offset in pieces:
        start = sum(len(part) for part in vertices)
        angles = np.linspace(0, np.pi, triangles + 1)
        ring = np.stack([np.cos(angles), np.sin(angles), np.zeros_like(angles)], axis=1)
        vertices.append(np.vstack([[0, 0, 0], ring]).astype(np.float32) + offset)
        faces.append(start + np.array([[0, i, i + 1] for i in range(1, triangles + 1)]))
    vertices = np.concatenate(vertices)
    colors = np.linspace(0, 1, len(vertices) * 3, dtype=np.float32).reshape(-1, 3)
    return Mesh(vertices, np.concatenate(faces).astype(np.int64), colors)


def test_a_piece_smaller_than_the_fraction_of_the_largest_goes_with_its_vertices():
    mesh = fans((100, (0, 0, 0)), (4, (10, 0, 0)))  # 100 faces, and a 4-face floater

    cleaned = remove_floaters(mesh, fraction=0.05)

    assert len(cleaned.faces) == 100 and len(cleaned.vertices) == len(mesh.vertices) - 6
    np.testing.assert_array_equal(cleaned.faces, mesh.faces[:100])  # same order and winding
    np.testing.assert_array_equal(cleaned.vertices, mesh.vertices[:-6])
    np.testing.assert_array_equal(cleaned.vertex_colors, mesh.vertex_colors[:-6])


def test_pieces_at_or_above_the_fraction_stay():
    mesh = fans((40, (0, 0, 0)), (4, (10, 0, 0)))  # the second piece has 10 % of the first's faces

    assert remove_floaters(mesh, fraction=0.1) is mesh
    assert len(remove_floaters(mesh, fraction=0.11).faces) == 40


def test_a_fraction_of_zero_keeps_everything():
    mesh = fans((100, (0, 0, 0)), (4, (10, 0, 0)))
    assert remove_floaters(mesh, fraction=0.0) is mesh
