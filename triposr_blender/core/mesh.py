"""What the core hands out: a triangle mesh and its baked texture, as plain numpy arrays.

Only numpy is imported, so Blender's side, the worker protocol and the server's writers use these types
without PyTorch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Mesh:
    """A triangle mesh in TripoSR's model space; faces are wound so that normals point out of the object."""

    vertices: np.ndarray  # (V, 3) float32
    faces: np.ndarray  # (F, 3) int64
    vertex_colors: np.ndarray  # (V, 3) float32, sRGB in [0, 1]


@dataclass(frozen=True)
class BakedTexture:
    """A UV layout for the mesh it was baked on, its colour texture, and a normal map where the mesh was
    decimated from a denser one.

    Image convention: ``image[row, column]`` with row 0 at v = 0 and column 0 at u = 0 (the bottom-left
    origin of OpenGL and of Blender's ``Image.pixels``).
    """

    corner_uvs: np.ndarray  # (F, 3, 2) float32: UV of each face corner, in the order of mesh.faces
    image: np.ndarray  # (S, S, 4) uint8 RGBA, sRGB; alpha 0 marks texels no face uses
    # (S, S, 3) uint8, linear: the dense mesh's normals in the tangent frame of core.shading (x along the
    # tangent, y along the bitangent, z along the normal; n = 2 * value / 255 - 1); None when not baked
    normal_image: np.ndarray | None = None
