"""Scene codes kept for later: one image's encoding, saved with the model that made it.

A new mesh needs only the scene codes (the triplanes, [1, 3, 40, 64, 64] for the released model): neither the
image nor the encoder. Saved, they carry the format's version and the fingerprint of the decoder that reads
them, so codes of another model, of another format version or from a damaged file are refused with a message
rather than meshed into nonsense.

The saved form is a standard compressed ``.npz`` (pipelines open it with ``numpy.load``): ``scene_codes``
(float32, lossless), ``model_id``, ``model_name`` and ``format_version``. Blender keeps the same bytes on the
object. Codes saved by the batch, and those sent to a server for a Re-mesh, also hold the photo they were
encoded from (``photo``, RGBA uint8, and ``photo_frame``: ``FramedPhoto.frame``), so Photo Texture projects it
again wherever the codes go; a reader of the codes alone never inflates it. Codes can come from an untrusted
file, so each entry is checked before it is inflated: its size in the archive's directory and its .npy header
(a plain number type, no sub-arrays, at most ``MAX_CODES_BYTES``), then the values (the expected rank,
finite). Only numpy: Blender uses this module.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .defaults import MAX_IMAGE_SIDE
from .errors import TripoSRError
from .mesh import FramedPhoto

FORMAT_VERSION = 1
CODES_ENTRY = "scene_codes.npy"
# The largest codes a model within config.SIZE_LIMITS makes are 3 x 256 x 256 x 256 float32 values.
MAX_CODES_BYTES = 3 * 256**3 * 4
MAX_FIELD_BYTES = 4096  # format_version, model_id, model_name: one short value each
NPY_HEADER_BYTES = 65536  # numpy's .npy header is at most this long
TEXT_FIELDS = ("model_id", "model_name")
PHOTO, PHOTO_FRAME = "photo", "photo_frame"  # the photo's two arrays, each in its .npy entry
MAX_PHOTO_BYTES = MAX_IMAGE_SIDE**2 * 4  # the largest photo the add-on keeps: RGBA at the loader's size cap
HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


class SceneCodesError(TripoSRError):
    """Saved scene codes cannot be used: damaged, of another format version, or of another model."""


@dataclass(frozen=True)
class SceneCodes:
    """One image's encoding, and which model made it."""

    array: np.ndarray  # float32 (1, 3, C, H, W)
    model_id: str  # the fingerprint of the decoder that reads them (TripoSR.fingerprint)
    model_name: str = ""  # where the model came from (a repo id or a folder), for messages

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        np.savez_compressed(
            buffer,
            scene_codes=np.ascontiguousarray(self.array, np.float32),
            model_id=np.array(self.model_id),
            model_name=np.array(self.model_name),
            format_version=np.array(FORMAT_VERSION),
        )
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, source: str = "The saved scene codes") -> SceneCodes:
        """Read codes saved by ``to_bytes`` (or ``save``); SceneCodesError says what is wrong with them."""
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                version = int(read_entry(archive, "format_version.npy", MAX_FIELD_BYTES, kinds="iu"))
                if version != FORMAT_VERSION:
                    raise SceneCodesError(
                        f"{source} were saved in format version {version}; this version of the add-on reads "
                        f"version {FORMAT_VERSION}. Generate the object again."
                    )
                texts = {
                    name: str(read_entry(archive, f"{name}.npy", MAX_FIELD_BYTES, kinds="U"))
                    for name in TEXT_FIELDS
                }
                array = read_entry(archive, CODES_ENTRY, MAX_CODES_BYTES, kinds="f")
        except SceneCodesError:
            raise
        except (zipfile.BadZipFile, KeyError, ValueError, OSError, EOFError) as error:
            raise SceneCodesError(f"{source} are damaged ({error}). Generate the object again.") from error
        check_array(array, source)
        return cls(array.astype(np.float32, copy=False), **texts)

    def check_model(self, model_id: str, model_name: str, channels: int) -> None:
        """Refuse codes that another model made, or of another shape than the loaded model's decoder reads:
        it would turn them into nonsense, or fail deep inside."""
        if model_id != self.model_id:
            raise SceneCodesError(
                f"These scene codes were made with another model ({self.model_name or 'unknown'}) than the "
                f"one loaded ({model_name}). Set the model source to the one they were made with, or "
                "Generate again from the image."
            )
        if self.array.shape[2] != channels:
            raise SceneCodesError(
                f"These scene codes have {self.array.shape[2]} channels, and the loaded model ({model_name}) "
                f"reads {channels}: they are damaged. Generate again from the image."
            )


def photo_entries(photo: FramedPhoto) -> dict[str, np.ndarray]:
    """The photo as the archives hold it: its pixels, and the frame that places them in the model's input."""
    return {PHOTO: photo.pixels, PHOTO_FRAME: np.array(photo.frame, np.int64)}


def with_photo(data: bytes, photo: FramedPhoto | None) -> bytes:
    """Saved scene codes (``SceneCodes.to_bytes``) and the photo they were encoded from, in one archive: the
    codes' entries as they are, the photo's added."""
    if photo is None:
        return data
    buffer = io.BytesIO(data)
    with zipfile.ZipFile(buffer, "a", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, array in photo_entries(photo).items():
            with archive.open(f"{name}.npy", "w", force_zip64=True) as entry:
                np.lib.format.write_array(entry, array, allow_pickle=False)
    return buffer.getvalue()


def photo_in(data: bytes, source: str = "The saved scene codes") -> FramedPhoto | None:
    """The photo an archive (saved scene codes, or a server's result) holds beside its codes, checked before
    it is inflated and against its frame; None for one that holds none. SceneCodesError says what is wrong."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            if f"{PHOTO}.npy" not in archive.namelist():
                return None
            pixels = read_entry(archive, f"{PHOTO}.npy", MAX_PHOTO_BYTES, kinds="u", holder="photos")
            frame = read_entry(archive, f"{PHOTO_FRAME}.npy", MAX_FIELD_BYTES, kinds="iu", holder="photos")
        if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] != 4 or frame.shape != (5,):
            raise ValueError(f"its pixels are {pixels.shape} {pixels.dtype} and its frame {frame.shape}")
        (height, width), (rows, columns) = (int(value) for value in frame[:2]), pixels.shape[:2]
        if (height, width) != (rows, columns):
            raise ValueError(f"its frame says {width} × {height} pixels, and it has {columns} × {rows}")
        return FramedPhoto.unpacked(pixels.tobytes(), frame)
    except (zipfile.BadZipFile, KeyError, ValueError, OSError, EOFError) as error:
        message = f"{source} hold a damaged photo ({error}). Generate the object again."
        raise SceneCodesError(message) from error


def read_entry(
    archive: zipfile.ZipFile, name: str, max_bytes: int, kinds: str, holder: str = "scene codes"
) -> np.ndarray:
    """One array of the archive, checked before it is inflated: at most ``max_bytes`` of a plain number
    or text type of ``kinds`` (numpy's dtype kinds), never a pickle. ``holder`` names what the archive
    should be, for the messages."""
    if archive.getinfo(name).file_size > max_bytes + NPY_HEADER_BYTES:
        raise ValueError(f"{name} is larger than {holder} are")
    with archive.open(name) as entry:
        version = np.lib.format.read_magic(entry)
        if version not in HEADER_READERS:
            raise ValueError(f"{name} is in .npy format {version}, not one numpy writes for {holder}")
        shape, _fortran, dtype = HEADER_READERS[version](entry)
        # A sub-array dtype ('(1000,1000)f4') holds megabytes in each "value": bytes are what is bounded.
        size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if dtype.kind not in kinds or dtype.subdtype is not None or dtype.hasobject or size > max_bytes:
            raise ValueError(f"{name} holds {shape} values of {dtype}, not what {holder} hold")
    with archive.open(name) as entry:
        return np.lib.format.read_array(entry, allow_pickle=False)


def check_array(array: np.ndarray, source: str) -> None:
    if array.ndim != 5 or array.shape[:2] != (1, 3) or array.dtype.kind != "f":
        raise SceneCodesError(
            f"{source} have the shape {array.shape} ({array.dtype}), not one image's triplanes "
            "(1, 3, channels, height, width). Generate the object again."
        )
    if not np.isfinite(array).all():
        raise SceneCodesError(f"{source} hold NaN or infinite values: they are damaged. Generate again.")


def save(codes: SceneCodes, path: Path) -> None:
    """Write ``codes`` to ``path`` (a .npz file), complete or not at all."""
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(codes.to_bytes())
    partial.replace(path)


def load(path: Path) -> SceneCodes:
    try:
        data = path.read_bytes()
    except OSError as error:
        raise SceneCodesError(f"Cannot read the scene codes {path}: {error.strerror or error}.") from error
    return SceneCodes.from_bytes(data, source=f"The scene codes {path}")
