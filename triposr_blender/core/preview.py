"""Pictures of a mesh without a GPU or a display: a z-buffered rasteriser in numpy, for the batch's previews,
turntables and contact sheet.

The camera is TripoSR's own input camera (its render default): 40° vertical field of view, looking at the
origin with +Z up, from +X at azimuth 0°; other views turn it about +Z. So the front view shows the object
as the input photo did. Colours are the mesh's (vertex colours, or the baked texture where there is one),
lit by a light at the camera; the background is transparent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .color import to_uint8
from .mesh import BakedTexture, Mesh
from .raster import coverage

FIELD_OF_VIEW = 40.0  # degrees, vertical
INPUT_DISTANCE = 1.9  # the input camera's distance from the origin
FRAME_MARGIN = 1.08  # the bounding sphere fills the frame's height to within this factor
AMBIENT = 0.35  # the light a face turned away from the camera still gets
SUPERSAMPLE = 2  # samples per pixel along each axis: smooth edges


@dataclass(frozen=True)
class View:
    name: str
    azimuth: float  # degrees about +Z, from +X (the input camera) towards +Y
    elevation: float = 0.0  # degrees above the XY plane


# The preview's four views: the input's, and the three that show what the input did not.
PREVIEW_VIEWS = (
    View("front", 0.0),
    View("three-quarter", 45.0, 15.0),
    View("side", 90.0, 15.0),
    View("back", 180.0, 15.0),
)


def render(mesh: Mesh, view: View, size: int = 512, texture: BakedTexture | None = None) -> np.ndarray:
    """The mesh seen from ``view``: (size, size, 4) uint8 RGBA, sRGB colours, alpha where it is."""
    samples = size * SUPERSAMPLE
    camera = Camera.around(mesh, view, samples)
    light = lighting(mesh, camera)
    # a closed surface's far side is hidden by its near side anyway
    buffer = depth_buffer(mesh, camera, np.flatnonzero(light > 0))
    seen = np.flatnonzero(buffer.face >= 0)
    b12 = buffer.weights[seen].astype(np.float64)
    barycentric = np.concatenate([1 - b12.sum(axis=1, keepdims=True), b12], axis=1)
    faces = buffer.face[seen]
    rgba = np.zeros((samples * samples, 4), np.float32)
    rgba[seen, :3] = surface_colors(mesh, texture, faces, barycentric) * np.abs(light[faces, None])
    rgba[seen, 3] = 1.0
    # each output pixel is the mean of its samples: smooth edges, alpha the share covered
    blocks = rgba.reshape(size, SUPERSAMPLE, size, SUPERSAMPLE, 4).sum(axis=(1, 3))
    covered = blocks[..., 3:]
    color = blocks[..., :3] / np.maximum(covered, 1e-9)
    return to_uint8(np.concatenate([color, covered / SUPERSAMPLE**2], axis=2))


@dataclass(frozen=True, eq=False)
class DepthBuffer:
    """Per pixel (row-major, ``samples``² entries): the nearest surface's depth along the view (inf where
    none), its face (-1 where none) and the barycentric weights of that face's corners 1 and 2 there."""

    depth: np.ndarray  # float32
    face: np.ndarray  # int64
    weights: np.ndarray  # (samples², 2) float32


def depth_buffer(mesh: Mesh, camera: Camera, faces: np.ndarray) -> DepthBuffer:
    """Rasterise the given faces of ``mesh`` from ``camera``, keeping the nearest at each pixel centre."""
    samples = camera.samples
    xy, depth = camera.project(mesh.vertices)
    nearest = np.full(samples * samples, np.inf, np.float32)
    face = np.full(samples * samples, -1, np.int64)
    weights = np.zeros((samples * samples, 2), np.float32)
    for batch, rows, columns, b1, b2 in coverage(xy[mesh.faces[faces]], samples, samples):
        batch_faces = faces[batch]
        corner_depths = depth[mesh.faces[batch_faces]]
        # 1/depth is what varies linearly across the screen
        inverse = (1 - b1 - b2) / corner_depths[:, 0] + b1 / corner_depths[:, 1] + b2 / corner_depths[:, 2]
        pixel_depth = (1.0 / inverse).astype(np.float32)
        pixels = rows * samples + columns
        order = np.argsort(-pixel_depth, kind="stable")  # the nearest written last, so it wins
        pixels = pixels[order]
        closer = pixel_depth[order] < nearest[pixels]
        chosen, pixels = order[closer], pixels[closer]
        nearest[pixels] = pixel_depth[chosen]
        face[pixels] = batch_faces[chosen]
        weights[pixels] = np.stack([b1[chosen], b2[chosen]], axis=1)
    return DepthBuffer(nearest, face, weights)


def preview_strip(mesh: Mesh, size: int = 256, texture: BakedTexture | None = None) -> np.ndarray:
    """The four preview views side by side: (size, 4 * size, 4) uint8 RGBA."""
    return np.concatenate([render(mesh, view, size, texture) for view in PREVIEW_VIEWS], axis=1)


def turntable(
    mesh: Mesh, frames: int, size: int = 256, texture: BakedTexture | None = None
) -> list[np.ndarray]:
    """``frames`` views around the object, from the input's, a little above it, as the reference's
    ``run.py --render`` turns: each (size, size, 4) uint8 RGBA."""
    return [
        render(mesh, View(f"turn {index}", 360.0 * index / frames, 10.0 if index else 0.0), size, texture)
        for index in range(frames)
    ]


@dataclass(frozen=True)
class Camera:
    eye: np.ndarray
    axes: np.ndarray  # rows: right, up, forward (unit vectors)
    focal: float  # pixels
    samples: int  # the image's side, in samples
    shift: tuple[float, float] = (
        0.0,
        0.0,
    )  # the principal point's offset from the image's centre, in samples

    @classmethod
    def orbit(
        cls,
        azimuth: float,
        elevation: float,
        distance: float,
        samples: int,
        zoom: float = 1.0,
        shift: tuple[float, float] = (0.0, 0.0),
    ) -> Camera:
        """The input camera turned ``azimuth`` degrees about +Z and raised ``elevation`` degrees, at
        ``distance`` from the origin and looking at it; ``zoom`` scales its focal length."""
        azimuth, elevation = math.radians(azimuth), math.radians(elevation)
        direction = np.array(
            [
                math.cos(elevation) * math.cos(azimuth),
                math.cos(elevation) * math.sin(azimuth),
                math.sin(elevation),
            ]
        )
        forward = -direction
        right = np.cross(forward, [0.0, 0.0, 1.0])
        right /= np.linalg.norm(right)
        up = np.cross(right, forward)
        focal = zoom * samples / 2 / math.tan(math.radians(FIELD_OF_VIEW) / 2)
        return cls(distance * direction, np.stack([right, up, forward]), focal, samples, shift)

    @classmethod
    def around(cls, mesh: Mesh, view: View, samples: int) -> Camera:
        """The input camera turned to ``view``, moved back where the object would not fit the frame."""
        radius = float(np.linalg.norm(mesh.vertices, axis=1).max()) if len(mesh.vertices) else 0.0
        distance = max(INPUT_DISTANCE, FRAME_MARGIN * radius / math.sin(math.radians(FIELD_OF_VIEW) / 2))
        return cls.orbit(view.azimuth, view.elevation, distance, samples)

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixel coordinates (column, row; centres on whole numbers) and depth along the view, per point."""
        local = (np.asarray(points, np.float64) - self.eye) @ self.axes.T
        depth = np.maximum(local[:, 2], 1e-6)
        centre = self.samples / 2 - 0.5
        xy = np.stack(
            [
                centre + self.shift[0] + self.focal * local[:, 0] / depth,
                centre + self.shift[1] - self.focal * local[:, 1] / depth,
            ],
            1,
        )
        return xy, depth


def lighting(mesh: Mesh, camera: Camera) -> np.ndarray:
    """Per face: the light from a lamp at the camera, signed: negative where the face looks away from it."""
    corners = mesh.vertices[mesh.faces].astype(np.float64)
    normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
    towards_camera = camera.eye - corners.mean(axis=1)
    towards_camera /= np.linalg.norm(towards_camera, axis=1, keepdims=True)
    facing = (normals * towards_camera).sum(axis=1)
    return np.sign(facing) * (AMBIENT + (1 - AMBIENT) * np.abs(facing))


def surface_colors(
    mesh: Mesh, texture: BakedTexture | None, faces: np.ndarray, weights: np.ndarray
) -> np.ndarray:
    """sRGB colours in [0, 1] at points given by face and barycentric weights: the texture's where there
    is one (nearest texel), else the vertex colours'."""
    if texture is None:
        return np.einsum("nk,nkc->nc", weights, mesh.vertex_colors[mesh.faces[faces]].astype(np.float64))
    uv = np.einsum("nk,nkc->nc", weights, texture.corner_uvs[faces].astype(np.float64))
    side = texture.image.shape[0]
    texel = np.clip(np.floor(uv * side), 0, side - 1).astype(np.int64)
    return texture.image[texel[:, 1], texel[:, 0], :3] / 255.0


def thumbnail(pixels: np.ndarray, side: int) -> np.ndarray:
    """An image shrunk by a whole factor to fit ``side`` (each output pixel the mean of a block), never grown:
    (H, W, C) uint8, or float in [0, 1] -> uint8."""
    values = pixels / 255.0 if pixels.dtype == np.uint8 else pixels
    factor = max(1, math.ceil(max(pixels.shape[:2]) / side))
    height, width = (pixels.shape[0] // factor) * factor, (pixels.shape[1] // factor) * factor
    blocks = values[:height, :width].reshape(height // factor, factor, width // factor, factor, -1)
    return to_uint8(blocks.mean(axis=(1, 3)))
