"""Saved scene codes (core/scene_codes.py): kept exactly, with their model and the photo they were encoded
from, and refused when they cannot be used, before anything large is read."""

import io
import tracemalloc
import zipfile

import numpy as np
import pytest
from codes_files import codes_archive, npy, one_value_of_640_mb, with_photo_entries

from triposr_blender.core.mesh import FramedPhoto
from triposr_blender.core.scene_codes import (
    FORMAT_VERSION,
    SceneCodes,
    SceneCodesError,
    load,
    photo_in,
    save,
    with_photo,
)

CODES = np.random.default_rng(0).standard_normal((1, 3, 8, 16, 16)).astype(np.float32)
SAVED = SceneCodes(CODES, model_id="3c08c036c06a8104", model_name="stabilityai/TripoSR")
PHOTO = FramedPhoto(
    np.random.default_rng(1).integers(0, 256, (30, 20, 4), dtype=np.uint8), canvas_side=40, offset=(10, 5)
)


def npz(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def test_codes_come_back_exactly_with_their_model(tmp_path):
    again = SceneCodes.from_bytes(SAVED.to_bytes())

    assert again.array.dtype == np.float32 and np.array_equal(again.array, CODES)
    assert (again.model_id, again.model_name) == (SAVED.model_id, SAVED.model_name)
    save(SAVED, tmp_path / "chair.triposr.npz")
    assert np.array_equal(load(tmp_path / "chair.triposr.npz").array, CODES)


def test_the_saved_file_is_a_plain_npz_a_pipeline_reads_with_numpy(tmp_path):
    save(SAVED, tmp_path / "chair.triposr.npz")
    with np.load(tmp_path / "chair.triposr.npz") as arrays:
        assert (
            np.array_equal(arrays["scene_codes"], CODES) and int(arrays["format_version"]) == FORMAT_VERSION
        )


def test_codes_keep_their_photo_for_a_re_mesh_elsewhere_and_readers_of_the_codes_alone_are_unchanged():
    kept = with_photo(SAVED.to_bytes(), PHOTO)

    again = photo_in(kept)
    assert np.array_equal(again.pixels, PHOTO.pixels) and again.frame == PHOTO.frame
    assert np.array_equal(SceneCodes.from_bytes(kept).array, CODES), "an earlier version reads them too"
    assert photo_in(SAVED.to_bytes()) is None and with_photo(SAVED.to_bytes(), None) == SAVED.to_bytes()
    with np.load(io.BytesIO(kept)) as arrays:
        assert arrays["photo"].shape == (30, 20, 4) and list(arrays["photo_frame"]) == [30, 20, 40, 10, 5]


def declared(shape, descr="|u1") -> bytes:
    """A .npy header declaring ``shape``, with no data behind it."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": descr, "fortran_order": False, "shape": shape})
    return header.getvalue()


@pytest.mark.parametrize(
    ("pixels", "frame", "message"),
    [
        (declared((65536, 65536, 4)), [65536, 65536, 65536, 0, 0], "not what photos hold"),
        (npy(PHOTO.pixels.astype(np.float32)), PHOTO.frame, "not what photos hold"),
        (npy(PHOTO.pixels[..., :3]), PHOTO.frame, "its pixels are \\(30, 20, 3\\)"),
        (npy(PHOTO.pixels), (20, 30, 40, 10, 5), "its frame says 30 × 20 pixels, and it has 20 × 30"),
        (npy(PHOTO.pixels), (30, 20, 40, 30, 5), "lies off its 40 canvas"),
        (npy(PHOTO.pixels), (30, 20, 40), "its frame \\(3,\\)"),
    ],
    ids=["huge", "not bytes", "no alpha", "frame of another size", "off its canvas", "short frame"],
)
def test_a_damaged_photo_is_refused_before_it_is_inflated_with_a_message(pixels, frame, message):
    with pytest.raises(SceneCodesError, match=f"The saved scene codes hold a damaged photo \\(.*{message}"):
        photo_in(with_photo_entries(SAVED.to_bytes(), pixels, frame))


def test_codes_of_another_model_are_refused_naming_both():
    with pytest.raises(
        SceneCodesError, match="made with another model \\(stabilityai/TripoSR\\) than the one loaded"
    ):
        SAVED.check_model("0000000000000000", "/models/other", channels=8)
    SAVED.check_model(SAVED.model_id, "anything", channels=8)  # the same decoder: fine whatever its name


def test_codes_of_this_model_with_another_channel_count_are_refused():
    with pytest.raises(SceneCodesError, match="have 8 channels, and the loaded model .* reads 40"):
        SAVED.check_model(SAVED.model_id, "stabilityai/TripoSR", channels=40)


def test_another_format_version_is_refused():
    data = npz(
        scene_codes=CODES, model_id=np.array("x"), model_name=np.array(""), format_version=np.array(99)
    )
    with pytest.raises(
        SceneCodesError, match="format version 99; this version of the add-on reads version 1"
    ):
        SceneCodes.from_bytes(data)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"not a zip at all", "are damaged"),
        (SAVED.to_bytes()[:-200], "are damaged"),
        (npz(model_id=np.array("x"), model_name=np.array(""), format_version=np.array(1)), "are damaged"),
        (
            npz(
                scene_codes=CODES[0],
                model_id=np.array("x"),
                model_name=np.array(""),
                format_version=np.array(1),
            ),
            "have the shape \\(3, 8, 16, 16\\)",
        ),
        (
            npz(
                scene_codes=CODES * np.nan,
                model_id=np.array("x"),
                model_name=np.array(""),
                format_version=np.array(1),
            ),
            "hold NaN or infinite values",
        ),
    ],
    ids=["not a zip", "truncated", "no codes", "wrong shape", "nan"],
)
def test_damaged_codes_are_refused_with_a_message(data, message):
    with pytest.raises(SceneCodesError, match=message):
        SceneCodes.from_bytes(data)


def test_codes_declaring_a_huge_array_are_refused_before_it_is_read():
    """A .blend from elsewhere is untrusted: a header claiming terabytes must not be allocated."""
    data = io.BytesIO()
    with zipfile.ZipFile(data, "w") as archive:
        for name, value in (("model_id", "x"), ("model_name", ""), ("format_version", 1)):
            archive.writestr(f"{name}.npy", npy(np.array(value)))
        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(
            header, {"descr": "<f4", "fortran_order": False, "shape": (1, 3, 4096, 4096, 4096)}
        )
        archive.writestr("scene_codes.npy", header.getvalue())  # a header, and no data behind it

    with pytest.raises(SceneCodesError, match="not what scene codes hold"):
        SceneCodes.from_bytes(data.getvalue())


def test_codes_of_a_sub_array_type_are_refused_by_their_bytes_before_they_are_inflated():
    """One "value" of a (160, 1024, 1024) float32 sub-array type is 640 MB: a bound on values lets it by,
    the bound on bytes does not, and nothing is inflated (the file is a few hundred kB)."""
    data = codes_archive(one_value_of_640_mb)
    tracemalloc.start()
    try:
        with pytest.raises(SceneCodesError, match="larger than scene codes are"):
            SceneCodes.from_bytes(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(data) < 1 << 20 and peak < 8 << 20


def test_a_sub_array_type_is_refused_from_its_header_too():
    def header_only(archive):
        header = io.BytesIO()
        np.lib.format.write_array_header_1_0(
            header, {"descr": [("", "<f4", (3, 1024, 1024, 64))], "fortran_order": False, "shape": ()}
        )
        archive.writestr("scene_codes.npy", header.getvalue())

    with pytest.raises(SceneCodesError, match="not what scene codes hold"):
        SceneCodes.from_bytes(codes_archive(header_only))


def test_a_format_version_that_is_no_whole_number_is_damage_not_a_crash():
    def codes(archive):
        archive.writestr("scene_codes.npy", npy(CODES))

    with pytest.raises(SceneCodesError, match="are damaged"):
        SceneCodes.from_bytes(codes_archive(codes, format_version=1 + 2j))
