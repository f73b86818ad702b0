"""A generation's result as one archive (``result.npz``): what the server writes, and a client reads.

A client reads it from a server it does not control, so the archive is untrusted input, checked as saved
scene codes are before anything is built from it:

- each entry's size is read from the archive's directory and its .npy header, and bounded, before it is
  inflated (``scene_codes.read_entry``), never unpickled;
- each array's shape, number type and finiteness, and the faces' indices against the vertices;
- a texture's and a normal map's size against the texture size the job asked for.

The bounds follow from what the job asked: a surface through a resolution³ grid in practice has about
1-3 × resolution² vertices (the benchmark field: 1.3 at 256; a bumpy ball: 2.3 at 512), and
``MAX_VERTICES_PER_SQUARE_CELL`` allows far more than that while a result of another size is refused.
"""

from __future__ import annotations

import io
import zipfile

import numpy as np

from .errors import TripoSRError
from .mesh import BakedTexture, FramedPhoto, Mesh
from .scene_codes import (
    CODES_ENTRY,
    MAX_CODES_BYTES,
    MAX_PHOTO_BYTES,
    NPY_HEADER_BYTES,
    SceneCodes,
    photo_entries,
    photo_in,
    read_entry,
)

MAX_VERTICES_PER_SQUARE_CELL = 64
FLOAT_BYTES = 8  # float64 at most; anything narrower is smaller


class ResultError(TripoSRError):
    """A result archive that is not what a generation makes; the text says what is wrong."""


def to_bytes(
    mesh: Mesh, texture: BakedTexture | None, codes: bytes, photo: FramedPhoto | None = None
) -> bytes:
    """The archive: the arrays Blender builds the object from, the scene codes' own entries and the photo
    they were encoded from (so a Re-mesh of the object projects it again), as saved codes hold it."""
    arrays = {"vertices": mesh.vertices, "faces": mesh.faces, "vertex_colors": mesh.vertex_colors}
    if texture is not None:
        arrays.update(corner_uvs=texture.corner_uvs, texture=texture.image)
        if texture.normal_image is not None:
            arrays.update(normal_map=texture.normal_image)
    if codes:
        with np.load(io.BytesIO(codes), allow_pickle=False) as entries:
            arrays.update({name: entries[name] for name in entries.files})
    if photo is not None:
        arrays.update(photo_entries(photo))
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def entry_limits(resolution: int, texture_size: int) -> dict[str, int]:
    """The most bytes each entry of the archive may hold, for a job that asked for ``resolution`` and
    ``texture_size``."""
    max_vertices = MAX_VERTICES_PER_SQUARE_CELL * resolution**2
    # A closed surface has about twice as many faces as vertices; open pieces have fewer.
    max_faces = 2 * max_vertices
    return {
        "vertices.npy": 3 * max_vertices * FLOAT_BYTES,
        "faces.npy": 3 * max_faces * 8,
        "vertex_colors.npy": 3 * max_vertices * FLOAT_BYTES,
        "corner_uvs.npy": 6 * max_faces * FLOAT_BYTES,
        "texture.npy": texture_size * texture_size * 4,
        "normal_map.npy": texture_size * texture_size * 3,
    }


def max_bytes(resolution: int, texture_size: int) -> int:
    """The largest archive such a job comes back as, to bound a download before it is read: every entry at
    its limit, the scene codes, the photo, and room for the archive's headers (deflate grows nothing by
    more)."""
    entries = sum(entry_limits(resolution, texture_size).values()) + MAX_CODES_BYTES + MAX_PHOTO_BYTES
    return entries + 16 * NPY_HEADER_BYTES


def from_bytes(
    data: bytes, resolution: int, texture_size: int
) -> tuple[Mesh, BakedTexture | None, bytes, FramedPhoto | None]:
    """(mesh, texture or None, scene codes or b"", photo or None) of an archive made for a job that asked for
    ``resolution`` and ``texture_size`` (0: no texture). ResultError says what is wrong with it."""
    limits = entry_limits(resolution, texture_size)
    holder = f"meshes at resolution {resolution}"
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = set(archive.namelist())
            vertices = read_entry(archive, "vertices.npy", limits["vertices.npy"], "f", holder)
            faces = read_entry(archive, "faces.npy", limits["faces.npy"], "iu", holder)
            colors = read_entry(archive, "vertex_colors.npy", limits["vertex_colors.npy"], "f", holder)
            texture = None
            if "texture.npy" in names or "corner_uvs.npy" in names:
                texture = _read_texture(archive, names, limits, texture_size)
            codes = SceneCodes.from_bytes(data, "Its scene codes").to_bytes() if CODES_ENTRY in names else b""
            photo = photo_in(data, "Its scene codes")
    except TripoSRError:
        raise
    except ValueError as error:  # read_entry's refusals, said for the user
        raise ResultError(str(error)) from error
    except (zipfile.BadZipFile, KeyError, OSError, EOFError) as error:
        raise ResultError(f"it is not a result archive ({error})") from error
    mesh = _checked_mesh(vertices, faces, colors)
    if texture is not None and len(texture.corner_uvs) != len(mesh.faces):
        raise ResultError(f"its UV layout has {len(texture.corner_uvs)} faces and its mesh {len(mesh.faces)}")
    return mesh, texture, codes, photo


def _read_texture(archive: zipfile.ZipFile, names: set, limits: dict[str, int], size: int) -> BakedTexture:
    if not size:
        raise ResultError("it holds a texture, and the job asked for colors on the vertices")
    holder = f"{size} px textures"
    corner_uvs = read_entry(archive, "corner_uvs.npy", limits["corner_uvs.npy"], "f", holder)
    image = read_entry(archive, "texture.npy", limits["texture.npy"], "u", holder)
    normal = None
    if "normal_map.npy" in names:
        normal = read_entry(archive, "normal_map.npy", limits["normal_map.npy"], "u", holder)
    _check_shape("its UV layout", corner_uvs, (None, 3, 2))
    _check_finite("its UV layout", corner_uvs)
    _check_shape("its texture", image, (size, size, 4), np.uint8)
    if normal is not None:
        _check_shape("its normal map", normal, (size, size, 3), np.uint8)
    return BakedTexture(corner_uvs.astype(np.float32, copy=False), image, normal)


def _checked_mesh(vertices: np.ndarray, faces: np.ndarray, colors: np.ndarray) -> Mesh:
    _check_shape("its vertices", vertices, (None, 3))
    _check_shape("its faces", faces, (None, 3))
    _check_shape("its vertex colors", colors, (len(vertices), 3))
    _check_finite("its vertices", vertices)
    _check_finite("its vertex colors", colors)
    if len(faces) and (faces.min() < 0 or faces.max() >= len(vertices)):
        raise ResultError(f"its faces name vertex {int(faces.max())}, and it has {len(vertices)} vertices")
    return Mesh(vertices.astype(np.float32, copy=False), faces.astype(np.int64, copy=False),
                colors.astype(np.float32, copy=False))  # fmt: skip


def _check_shape(what: str, array: np.ndarray, shape: tuple, dtype=None) -> None:
    matches = array.ndim == len(shape) and all(
        want in (None, got) for want, got in zip(shape, array.shape, strict=False)
    )
    if not matches or (dtype is not None and array.dtype != dtype):
        expected = "×".join("N" if size is None else str(size) for size in shape)
        raise ResultError(f"{what}: shape {array.shape} {array.dtype}, where {expected} was expected")


def _check_finite(what: str, array: np.ndarray) -> None:
    if not np.isfinite(array).all():
        raise ResultError(f"{what} hold NaN or infinite values")
