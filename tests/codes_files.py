"""Saved scene codes files as an attacker or a damaged disk makes them, for the tests that refuse them."""

import io
import zipfile

import numpy as np


def npy(array) -> bytes:
    """One array as numpy saves it (.npy)."""
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array))
    return buffer.getvalue()


def codes_archive(scene_codes_entry, format_version=1) -> bytes:
    """A codes file whose other entries are fine; ``scene_codes_entry(archive)`` writes scene_codes.npy."""
    data = io.BytesIO()
    with zipfile.ZipFile(data, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, value in (("model_id", "x"), ("model_name", ""), ("format_version", format_version)):
            archive.writestr(f"{name}.npy", npy(value))
        scene_codes_entry(archive)
    return data.getvalue()


def with_photo_entries(codes: bytes, pixels_entry: bytes, frame) -> bytes:
    """Saved ``codes`` and a photo as a damaged disk or an attacker writes it: ``pixels_entry`` as the bytes
    of photo.npy, and ``frame`` as photo_frame.npy."""
    data = io.BytesIO(codes)
    with zipfile.ZipFile(data, "a", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("photo.npy", pixels_entry)
        archive.writestr("photo_frame.npy", npy(np.array(frame, np.int64)))
    return data.getvalue()


def one_value_of_640_mb(archive) -> None:
    """scene_codes.npy holding one "value" of a (160, 1024, 1024) float32 sub-array type: 640 MB of zeros
    that deflate to a few hundred kB, and a header that declares a single value."""
    huge = np.dtype(("<f4", (160, 1024, 1024)))
    with archive.open("scene_codes.npy", "w", force_zip64=True) as entry:
        np.lib.format.write_array_header_1_0(
            entry, {"descr": np.lib.format.dtype_to_descr(huge), "fortran_order": False, "shape": ()}
        )
        zeros = bytes(64 << 20)
        for _ in range(huge.itemsize // len(zeros)):
            entry.write(zeros)
