"""What a TripoSR object keeps of what it was made from, so it can be re-meshed without the image.

An object carrying this is a *TripoSR object*. It is one ID-property group on the object, ``obj["triposr"]``:
saved in the .blend, kept when the object is appended into another file, and readable without the add-on
registered (the batch writes it too). It holds:

- ``codes``: the scene codes, as ``core.scene_codes`` saves them (with the fingerprint of their model);
- ``options``: the options it was made with (``GenerateOptions``, as JSON);
- ``model_to_object``: the 4×4 transform from TripoSR's model space to the object's mesh, so a new mesh of
  the same codes sits exactly where this one does;
- ``photo`` and ``photo_frame``, where the image was framed from a photo: its pixels (zlib-compressed RGBA)
  and ``FramedPhoto.frame``, so that Re-mesh projects it again (Photo Texture).
"""

import json
import zlib
from dataclasses import dataclass

import bpy
import numpy as np

from ..core.mesh import FramedPhoto
from ..options import GenerateOptions

KEY = "triposr"


@dataclass(frozen=True)
class Source:
    """What a TripoSR object was made from. The photo stays as stored (compressed) until Re-mesh asks for
    it: the panel reads the source at every redraw."""

    codes: bytes
    options: GenerateOptions
    model_to_object: np.ndarray  # (4, 4)
    photo_data: bytes = b""  # the kept photo's pixels, zlib-compressed RGBA; empty: none
    photo_frame: tuple[int, ...] = ()  # its FramedPhoto.frame

    def photo(self) -> FramedPhoto | None:
        """The kept photo, or None where there is none or it is damaged (the object stays re-meshable): its
        frame bounds what is inflated, and the inflated bytes must be exactly that size."""
        if not self.photo_data:
            return None
        try:
            height, width = self.photo_frame[:2]
            inflater = zlib.decompressobj()
            pixels = inflater.decompress(self.photo_data, max(1, height * width * 4))
            if inflater.unconsumed_tail or not inflater.eof:
                return None
            return FramedPhoto.unpacked(pixels, self.photo_frame)
        except (TypeError, ValueError, zlib.error):
            return None


def packed_photo(photo: FramedPhoto | None) -> dict:
    """``Source``'s photo fields for a framed photo (none for None)."""
    if photo is None:
        return {}
    return {
        "photo_data": zlib.compress(photo.pixels.tobytes(), PHOTO_COMPRESSION),
        "photo_frame": photo.frame,
    }


# zlib's level for the kept photo: most of the size gone, in a fraction of a second for 2048².
PHOTO_COMPRESSION = 6


def store(obj: bpy.types.Object, source: Source) -> None:
    group = {
        "codes": source.codes,
        "options": json.dumps(source.options.as_dict()),
        "model_to_object": source.model_to_object.astype(np.float64).ravel().tolist(),
    }
    if source.photo_data:
        group["photo"], group["photo_frame"] = source.photo_data, list(source.photo_frame)
    obj[KEY] = group


def source_of(obj: bpy.types.Object | None) -> Source | None:
    """The object's source, or None for an object that is no TripoSR object, or whose data is damaged: every
    stored value is checked (a .blend can be edited), the options by their ranges, the transform for finite
    values that keep a mesh a mesh."""
    group = obj.get(KEY) if obj is not None else None
    try:
        codes = bytes(group["codes"])
        options = GenerateOptions.from_dict(json.loads(group["options"]))
        model_to_object = np.array(group["model_to_object"], np.float64).reshape(4, 4)
    except (TypeError, KeyError, ValueError):
        return None
    if not is_usable_transform(model_to_object):
        return None
    return Source(codes, options, model_to_object, *kept_photo(group))


def kept_photo(group) -> tuple[bytes, tuple[int, ...]]:
    """The stored photo's bytes and frame as they are (checked when inflated), or none if malformed."""
    try:
        frame = tuple(int(value) for value in group["photo_frame"])
        return (bytes(group["photo"]), frame) if len(frame) == 5 else (b"", ())
    except (KeyError, TypeError, ValueError):
        return b"", ()


def is_usable_transform(matrix: np.ndarray) -> bool:
    """Finite, affine (last row 0 0 0 1), and not flattening the mesh (a non-zero determinant)."""
    return bool(
        np.isfinite(matrix).all()
        and np.array_equal(matrix[3], [0.0, 0.0, 0.0, 1.0])
        and abs(np.linalg.det(matrix[:3, :3])) > 1e-12
    )


def is_triposr_object(obj: bpy.types.Object | None) -> bool:
    return obj is not None and obj.type == "MESH" and KEY in obj


def selected_triposr_objects(context) -> list[bpy.types.Object]:
    return [obj for obj in context.selected_objects if is_triposr_object(obj)]


def strip(obj: bpy.types.Object) -> None:
    """Remove what the object keeps (some MB of scene codes): it becomes a plain mesh object."""
    if KEY in obj:
        del obj[KEY]
