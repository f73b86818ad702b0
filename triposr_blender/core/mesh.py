"""What the core hands out: a triangle mesh and its baked texture, as plain numpy arrays.

Only numpy is imported, so Blender's side, the worker protocol and the server's writers use these types
without PyTorch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .defaults import MAX_IMAGE_SIDE


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


@dataclass(frozen=True, eq=False)
class FramedPhoto:
    """The object as the photo shows it, and where it lies in the square input the model saw.

    ``pixels`` is the photo cropped to the object (at most the loader's size cap), with its alpha: real
    transparency, or background removal's mask. Preprocessing pasted it at ``offset`` (left, top) on a
    transparent square canvas of side ``canvas_side``, which the model's input is, scaled to its size. So a
    point (x, y) on the crop (pixel units, (0, 0) its top-left corner, pixel centres at +0.5) lies at
    ((x + left) / side, (y + top) / side) across the input, as a fraction of its side.
    """

    pixels: np.ndarray  # (H, W, 4) uint8 RGBA, sRGB, straight alpha; top row first
    canvas_side: int
    offset: tuple[int, int]

    @property
    def frame(self) -> tuple[int, int, int, int, int]:
        """What, besides its pixels' bytes, makes the photo again: height, width, canvas side, left, top."""
        height, width = self.pixels.shape[:2]
        return height, width, self.canvas_side, *self.offset

    @classmethod
    def unpacked(cls, data: bytes, frame) -> FramedPhoto:
        """The photo of its pixels' bytes (RGBA, rows first) and its ``frame``, both checked: they come from a
        saved .blend or another process. ValueError names what does not fit."""
        height, width, canvas_side, left, top = (int(value) for value in frame)
        if not (0 < height <= MAX_IMAGE_SIDE and 0 < width <= MAX_IMAGE_SIDE):
            raise ValueError(f"a photo of {width} × {height} pixels is not one the add-on keeps")
        if not (0 <= left <= canvas_side - width and 0 <= top <= canvas_side - height):
            raise ValueError(
                f"a {width} × {height} photo at ({left}, {top}) lies off its {canvas_side} canvas"
            )
        if len(data) != height * width * 4:
            raise ValueError(f"{len(data)} bytes are not the pixels of a {width} × {height} RGBA photo")
        return cls(np.frombuffer(data, np.uint8).reshape(height, width, 4), canvas_side, (left, top))

    def to_input(self, xy: np.ndarray) -> np.ndarray:
        """Points (N, 2) on the crop, in pixels -> across the input, in fractions of its side."""
        return (np.asarray(xy, np.float64) + self.offset) / self.canvas_side

    def to_photo(self, fractions: np.ndarray) -> np.ndarray:
        """Points (N, 2) across the input, in fractions of its side -> on the crop, in pixels."""
        return np.asarray(fractions, np.float64) * self.canvas_side - self.offset
