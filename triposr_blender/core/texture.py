"""Baked colour texture: a UV layout from xatlas, then the colour field sampled at each texel's surface point.

No OpenGL context and no GPU: the UV triangles are rasterised with numpy. The pipeline is

    unwrap (xatlas) -> rasterise the UV triangles -> surface point of each covered texel
    -> colour_fn at those points (and the dense mesh's normal, for a normal map) -> dilate across the seams
    -> RGBA image (and RGB normal map).

Image convention: ``image[row, column]`` with row 0 at v = 0 and column 0 at u = 0 (the bottom-left
origin of OpenGL and of Blender's ``Image.pixels``); texel (row r, column c) has its centre at
``u = (c + 0.5) / size, v = (r + 0.5) / size``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import xatlas

from .color import to_uint8
from .mesh import BakedTexture, Mesh
from .normal_map import FLAT_NORMAL, NormalBake
from .photo_texture import PhotoProjection, blend
from .progress import BAKE_STAGE, RASTERIZE_STAGE, UNWRAP_STAGE, Progress, report
from .raster import barycentric_matrices, coverage

ColorFn = Callable[[np.ndarray], np.ndarray]

# xatlas grows charts without limit by default and then spends most of its time splitting the ones that
# fail to flatten: on a 40k-triangle marching-cubes mesh that took 20 s instead of 1 s. Capping a chart's
# area at this share of the surface keeps charts flat from the start, for about 10 % less texel density.
MAX_CHART_AREA_SHARE = 1 / 300
# Texels per colour_fn call: steady progress, a chance to cancel, and bounded memory during large bakes.
POINTS_PER_QUERY = 1 << 18
NO_FACE = -1
# The 8-neighbourhood used by dilation, as (row, column) offsets.
NEIGHBOURS = [(dr, dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1) if (dr, dc) != (0, 0)]


def bake_texture(
    mesh: Mesh,
    color_fn: ColorFn,
    texture_size: int = 2048,
    padding: int = 4,
    progress: Progress | None = None,
    dense: Mesh | None = None,
    photo: PhotoProjection | None = None,
) -> BakedTexture:
    """Unwrap ``mesh`` and bake ``color_fn`` (points (N, 3) -> sRGB colours (N, 3) in [0, 1]) into a texture;
    with ``dense``, the denser mesh ``mesh`` was decimated from, a tangent-space normal map of its shading
    too, in the same pass (see normal_map.py).

    ``padding`` texels of colour are grown around every chart, so mipmaps and bilinear filtering do not
    pull in the empty background along seams. The mesh's own vertex colours are not used. With ``photo``,
    the photo's colours are blended in where it shows the surface (see photo_texture.py).
    """
    check_texture_size(texture_size)
    report(progress, UNWRAP_STAGE, 0.0)
    corner_uvs = unwrap(mesh, texture_size, padding)
    report(progress, UNWRAP_STAGE, 1.0)
    face_image = rasterize_faces(corner_uvs, texture_size)
    report(progress, RASTERIZE_STAGE, 1.0)
    covered = face_image != NO_FACE
    rows, columns = np.nonzero(covered)
    normal_bake = NormalBake(mesh, corner_uvs, dense) if dense is not None else None
    colors, normals = bake_texels(
        mesh, corner_uvs, face_image, rows, columns, color_fn, normal_bake, photo, progress
    )
    rgb, filled = dilate(spread(colors, rows, columns, texture_size), covered, padding)
    normal_image = None
    if normals is not None:
        normal_image = to_normal_rgb8(*dilate(spread(normals, rows, columns, texture_size), covered, padding))
    return BakedTexture(corner_uvs=corner_uvs, image=to_rgba8(rgb, filled), normal_image=normal_image)


def spread(values: np.ndarray, rows: np.ndarray, columns: np.ndarray, texture_size: int) -> np.ndarray:
    """Per-texel values (N, 3) into an (S, S, 3) image, zero elsewhere."""
    image = np.zeros((texture_size, texture_size, 3), np.float32)
    image[rows, columns] = values
    return image


def check_texture_size(texture_size: int) -> None:
    """The add-on's range is options.TEXTURE_SIZE's; here only what cannot be baked at all is refused."""
    if texture_size < 1:
        raise ValueError(f"texture_size must be a positive number of texels, got {texture_size}")


def unwrap(mesh: Mesh, texture_size: int, padding: int) -> np.ndarray:
    """A UV layout packed into the unit square with ``padding`` texels between charts -> (F, 3, 2) float32.

    xatlas cuts the surface into charts and splits vertices along the cuts; it keeps the face order,
    so its per-face indices give each corner of ``mesh.faces`` its UV and the mesh itself stays whole
    (shared vertices keep smooth normals across seams).
    """
    atlas = xatlas.Atlas()
    vertices = np.ascontiguousarray(mesh.vertices, np.float32)
    atlas.add_mesh(vertices, np.ascontiguousarray(mesh.faces, np.uint32))
    chart_options = xatlas.ChartOptions()
    chart_options.max_chart_area = float(surface_area(mesh)) * MAX_CHART_AREA_SHARE
    pack_options = xatlas.PackOptions()
    pack_options.resolution = texture_size
    pack_options.padding = padding
    atlas.generate(chart_options, pack_options)
    _, corner_indices, uvs = atlas[0]
    return uvs[corner_indices].astype(np.float32)


def surface_area(mesh: Mesh) -> float:
    corners = mesh.vertices[mesh.faces].astype(np.float64)
    normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    return 0.5 * float(np.linalg.norm(normals, axis=1).sum())


def texel_coordinates(corner_uvs: np.ndarray, texture_size: int) -> np.ndarray:
    """UVs -> (column, row) texel coordinates, in which texel centres sit on whole numbers."""
    return corner_uvs.astype(np.float64) * texture_size - 0.5


def rasterize_faces(corner_uvs: np.ndarray, texture_size: int) -> np.ndarray:
    """Which face covers each texel centre -> (S, S) int32 face index, ``NO_FACE`` where none does (a later
    face wins a tie)."""
    face_image = np.full((texture_size, texture_size), NO_FACE, np.int32)
    for faces, rows, columns, _b1, _b2 in coverage(
        texel_coordinates(corner_uvs, texture_size), *face_image.shape
    ):
        face_image[rows, columns] = faces
    return face_image


def texel_weights(
    corner_uvs: np.ndarray, faces: np.ndarray, rows: np.ndarray, columns: np.ndarray, texture_size: int
) -> np.ndarray:
    """Barycentric weights (N, 3) on face ``faces[i]`` of the point mapped to texel (rows[i], columns[i])."""
    xy = texel_coordinates(corner_uvs[faces], texture_size)
    inverse, _ = barycentric_matrices(xy)
    offset = np.stack([columns, rows], axis=1) - xy[:, 0]
    b12 = np.einsum("nij,nj->ni", inverse, offset)
    return np.concatenate([1.0 - b12.sum(axis=1, keepdims=True), b12], axis=1)


def bake_texels(
    mesh: Mesh,
    corner_uvs: np.ndarray,
    face_image: np.ndarray,
    rows: np.ndarray,
    columns: np.ndarray,
    color_fn: ColorFn,
    normal_bake: NormalBake | None,
    photo: PhotoProjection | None,
    progress: Progress | None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """``color_fn`` (and ``normal_bake``) at the surface points of the given texels -> (N, 3) float32 colours
    (and encoded normals, else None), a chunk at a time (the float64 intermediates of all 7M texels of a
    4096² texture at once would need gigabytes). With ``photo``, its colours are blended in at the end: the
    match of the model's colours to the photo's needs every texel both see."""
    colors = np.empty((len(rows), 3), np.float32)
    normals = np.empty((len(rows), 3), np.float32) if normal_bake is not None else None
    if photo is not None:
        photo_colors, photo_weights = np.empty((len(rows), 3), np.float32), np.empty(len(rows), np.float32)
    texture_size = face_image.shape[0]
    for start in range(0, len(rows), POINTS_PER_QUERY):
        report(progress, BAKE_STAGE, start / len(rows))
        part = slice(start, start + POINTS_PER_QUERY)
        faces = face_image[rows[part], columns[part]]
        weights = texel_weights(corner_uvs, faces, rows[part], columns[part], texture_size)
        points = np.einsum("nk,nkj->nj", weights, mesh.vertices[mesh.faces[faces]].astype(np.float64))
        colors[part] = color_fn(points.astype(np.float32))
        if normal_bake is not None:
            normals[part] = normal_bake.texels(faces, weights, points)
        if photo is not None:
            photo_colors[part], photo_weights[part] = photo.sample(faces, weights, points)
    if photo is not None:
        colors = blend(colors, photo_colors, photo_weights)
    report(progress, BAKE_STAGE, 1.0)
    return colors, normals


def dilate(rgb: np.ndarray, filled: np.ndarray, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Grow the filled region by ``steps`` texels: each step, every empty texel next to a filled one takes
    the mean colour of its filled 8-neighbours. Returns the new colours and filled mask.

    Only the ring of empty texels at the border is touched per step, not the whole image.
    """
    rgb, filled = rgb.copy(), filled.copy()
    size_y, size_x = filled.shape
    for _ in range(steps):
        padded = np.pad(filled, 1)
        ring = ~filled & np.logical_or.reduce(
            [padded[1 + dr : 1 + dr + size_y, 1 + dc : 1 + dc + size_x] for dr, dc in NEIGHBOURS]
        )
        rows, columns = np.nonzero(ring)
        if len(rows) == 0:
            break
        total = np.zeros((len(rows), 3), np.float32)
        count = np.zeros(len(rows), np.float32)
        for dr, dc in NEIGHBOURS:
            r, c = rows + dr, columns + dc
            valid = (r >= 0) & (r < size_y) & (c >= 0) & (c < size_x)
            r, c = r.clip(0, size_y - 1), c.clip(0, size_x - 1)
            use = valid & filled[r, c]
            total += rgb[r, c] * use[:, None]
            count += use
        rgb[rows, columns] = total / count[:, None]
        filled[rows, columns] = True
    return rgb, filled


def to_rgba8(rgb: np.ndarray, filled: np.ndarray) -> np.ndarray:
    rgba = np.zeros((*filled.shape, 4), np.uint8)
    rgba[..., :3] = to_uint8(rgb)
    rgba[..., 3] = np.where(filled, 255, 0)
    return rgba


def to_normal_rgb8(encoded: np.ndarray, filled: np.ndarray) -> np.ndarray:
    """A normal map as 8-bit RGB: texels outside the layout hold the flat normal."""
    return to_uint8(np.where(filled[..., None], encoded, FLAT_NORMAL))
