"""preprocess_image: any picture a user may have becomes TripoSR's input, the object centred on 0.5 grey.

Background removal runs real rembg on rembg's real u2netp model, offline (see the rembg_model fixture).
Odd image files are made here with Pillow rather than stored in the repository.
"""

import io
import re
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from triposr_blender.core import background, preprocess
from triposr_blender.core.errors import Cancelled, InvalidImageError, ModelLoadError
from triposr_blender.core.preprocess import load_image, preprocess_image

REPO = Path(__file__).resolve().parent.parent
GREY = 127  # 0.5 grey as TripoSR's reference writes it: int(0.5 * 255)
RED = (255, 0, 0)


@pytest.fixture(scope="module")
def teapot():
    """A real photo-like example: a red teapot on flat grey, no alpha (examples/teapot.png, MIT)."""
    with Image.open(REPO / "examples" / "teapot.png") as image:
        return image.convert("RGB").resize((192, 192), Image.Resampling.LANCZOS)


@pytest.fixture
def without_rembg(monkeypatch):
    """Make `import rembg` fail, to prove that a code path never uses background removal."""
    monkeypatch.setitem(sys.modules, "rembg", None)


def rectangle_with_alpha(size=(300, 200), box=(40, 30, 140, 80), colour=RED):
    """A transparent canvas with one opaque rectangle: an object whose extent is known exactly."""
    image = Image.new("RGBA", size, (0, 0, 0, 0))
    ImageDraw.Draw(image).rectangle((box[0], box[1], box[2] - 1, box[3] - 1), fill=(*colour, 255))
    return image


def extent_of(mask):
    """(left, top, right, bottom) of the True pixels, right and bottom exclusive."""
    rows, cols = np.nonzero(mask)
    return cols.min(), rows.min(), cols.max() + 1, rows.max() + 1


def border_of(pixels):
    return np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])


def viewers_rotate_90_clockwise():
    exif = Image.Exif()
    exif[0x0112] = 6  # the EXIF Orientation tag: viewers rotate the stored pixels 90° clockwise
    return exif


def saved(image, path, **options):
    image.save(path, **options)
    return path


# --- Images with real alpha: their own alpha frames the object ---------------------------------------


def test_an_image_with_real_alpha_is_framed_by_its_alpha_without_running_rembg(without_rembg):
    result = preprocess_image(rectangle_with_alpha(), foreground_ratio=0.85)

    # The 100x50 object becomes a square of side int(100 / 0.85) = 117, object centred in it.
    assert result.mode == "RGB" and result.size == (117, 117)
    pixels = np.asarray(result)
    assert extent_of((pixels == RED).all(axis=2)) == (8, 33, 108, 83)
    assert (pixels[~(pixels == RED).all(axis=2)] == GREY).all()


def test_the_object_fills_the_whole_side_at_foreground_ratio_one(without_rembg):
    result = preprocess_image(rectangle_with_alpha(), foreground_ratio=1.0)

    assert result.size == (100, 100)
    assert extent_of((np.asarray(result) == RED).all(axis=2)) == (0, 25, 100, 75)


def test_an_image_with_real_alpha_keeps_its_alpha_even_with_background_removal_off(without_rembg):
    framed = preprocess_image(rectangle_with_alpha(), remove_background=False)

    assert framed.size == (117, 117)


def test_partly_transparent_pixels_are_blended_with_grey():
    image = Image.new("RGBA", (3, 1), (0, 0, 0, 0))
    image.putpixel((0, 0), (255, 255, 255, 255))
    image.putpixel((1, 0), (255, 255, 255, 51))  # 20 % white over grey: 0.2 + 0.8 * 0.5 = 0.6

    pixels = np.asarray(preprocess_image(image, foreground_ratio=1.0))

    assert pixels[0, 0].tolist() == [255, 255, 255]
    assert pixels[0, 1].tolist() == pytest.approx([153, 153, 153], abs=1)


def test_an_opaque_rgba_image_is_treated_as_having_no_alpha(without_rembg):
    opaque = Image.new("RGBA", (20, 10), (10, 20, 30, 255))

    result = preprocess_image(opaque, remove_background=False)

    assert result.mode == "RGB" and result.size == (20, 10)
    assert (np.asarray(result) == (10, 20, 30)).all()


# --- Images without alpha: rembg cuts the object out -----------------------------------------------


def test_a_photo_goes_through_rembg_and_comes_out_square_centred_on_grey(teapot, rembg_model):
    result = preprocess_image(teapot, foreground_ratio=0.85, rembg_model=rembg_model)

    assert result.mode == "RGB" and result.width == result.height
    pixels = np.asarray(result).astype(int)
    assert (border_of(pixels) == GREY).all()
    # The teapot is red; its widest extent (spout to handle) spans about 85 % of the side, centred.
    left, top, right, bottom = extent_of((pixels[..., 0] > 150) & (pixels[..., 1] < 110))
    side = result.width
    assert 0.78 * side <= right - left <= 0.86 * side
    assert abs((left + right) / 2 - side / 2) <= 0.03 * side
    assert abs((top + bottom) / 2 - side / 2) <= 0.05 * side


def test_without_background_removal_an_image_without_alpha_is_returned_as_it_is(teapot, without_rembg):
    result = preprocess_image(teapot, remove_background=False)

    assert result.mode == "RGB"
    assert np.array_equal(np.asarray(result), np.asarray(teapot))


def test_the_rembg_session_is_created_once_and_reused(teapot, rembg_model, monkeypatch):
    import rembg

    preprocess_image(teapot, rembg_model=rembg_model)
    sessions_created = []
    real_new_session = rembg.new_session

    def counting_new_session(*args, **kwargs):
        sessions_created.append(args)
        return real_new_session(*args, **kwargs)

    monkeypatch.setattr(rembg, "new_session", counting_new_session)
    preprocess_image(teapot, rembg_model=rembg_model)

    assert sessions_created == []


def test_background_removal_reports_progress(teapot, rembg_model):
    reports = []

    preprocess_image(teapot, rembg_model=rembg_model, progress=lambda *report: reports.append(report))

    assert reports == [("Removing background", 0.0), ("Removing background", 1.0)]


def test_a_progress_callback_can_cancel_before_background_removal_starts(teapot, without_rembg):
    def cancel(stage, done):
        raise Cancelled("cancelled by the user")

    with pytest.raises(Cancelled):
        preprocess_image(teapot, progress=cancel)


# --- Odd but valid images ---------------------------------------------------------------------------


def grey_disc_with_alpha(path):
    """A grayscale+alpha (LA) image whose alpha shows a dark disc and hides everything else."""
    image = Image.new("LA", (64, 48), (200, 0))
    ImageDraw.Draw(image).ellipse((16, 8, 47, 39), fill=(40, 255))
    return saved(image, path / "grey-alpha.png")


def palette_with_transparent_index(path):
    image = Image.new("P", (64, 48), 0)
    image.putpalette([0, 0, 0, 200, 30, 30])
    ImageDraw.Draw(image).ellipse((16, 8, 47, 39), fill=1)
    return saved(image, path / "palette-transparent.png", transparency=0)


def sixteen_bit_file(teapot, path, mode, suffix):
    values = np.asarray(teapot.convert("L"), dtype=np.uint16) * 257  # the full 16-bit range
    image = Image.fromarray(values) if mode == "I;16" else Image.fromarray(values.astype(np.int32))
    assert image.mode == mode
    return saved(image, path / f"grey16{suffix}")


ODD_FILES = {
    "grayscale L": lambda teapot, path: saved(teapot.convert("L"), path / "grey.png"),
    "grayscale with alpha LA": lambda teapot, path: grey_disc_with_alpha(path),
    "palette P": lambda teapot, path: saved(teapot.convert("P"), path / "palette.png"),
    "palette with a transparent index": lambda teapot, path: palette_with_transparent_index(path),
    "16-bit grayscale PNG I;16": lambda teapot, path: sixteen_bit_file(teapot, path, "I;16", ".png"),
    "32-bit integer TIFF I": lambda teapot, path: sixteen_bit_file(teapot, path, "I", ".tif"),
    "CMYK JPEG": lambda teapot, path: saved(teapot.convert("CMYK"), path / "cmyk.jpg", quality=95),
    "EXIF-rotated JPEG": lambda teapot, path: saved(
        teapot.crop((0, 30, 192, 162)), path / "rotated.jpg", exif=viewers_rotate_90_clockwise()
    ),
}


@pytest.mark.parametrize("kind", ODD_FILES)
def test_odd_but_valid_files_become_a_square_rgb_image(kind, teapot, rembg_model, tmp_path):
    path = ODD_FILES[kind](teapot, tmp_path)

    result = preprocess_image(path, rembg_model=rembg_model)

    assert result.mode == "RGB" and result.width == result.height > 32
    assert (border_of(np.asarray(result)) == GREY).all()


@pytest.mark.parametrize(("mode", "suffix"), [("I;16", ".png"), ("I", ".tif")])
def test_16_bit_images_are_scaled_to_8_bits_not_clipped(mode, suffix, teapot, tmp_path):
    loaded = load_image(sixteen_bit_file(teapot, tmp_path, mode, suffix))

    assert np.array_equal(np.asarray(loaded), np.asarray(teapot.convert("L").convert("RGB")))


def test_cmyk_jpeg_keeps_its_colours(teapot, tmp_path):
    loaded = load_image(saved(teapot.convert("CMYK"), tmp_path / "cmyk.jpg", quality=95))

    assert np.abs(np.asarray(loaded, dtype=int) - np.asarray(teapot, dtype=int)).mean() < 8


def test_exif_orientation_is_applied(tmp_path):
    stored = Image.new("RGB", (64, 32), "white")
    ImageDraw.Draw(stored).rectangle((0, 0, 15, 15), fill=RED)  # top-left as stored
    path = saved(stored, tmp_path / "rotated.jpg", exif=viewers_rotate_90_clockwise(), quality=95)

    loaded = np.asarray(load_image(path), dtype=int)

    assert loaded.shape == (64, 32, 3)
    assert loaded[4, -4].tolist() == pytest.approx(list(RED), abs=40)  # now top-right, as a viewer shows it


def test_a_tiny_image_works(without_rembg):
    tiny = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    tiny.paste((*RED, 255), (1, 1, 3, 3))

    result = preprocess_image(tiny, foreground_ratio=0.5)

    assert result.mode == "RGB" and result.size == (4, 4)
    assert (np.asarray(result)[1:3, 1:3] == RED).all()


def test_a_large_image_is_scaled_down_to_2048_pixels_on_its_longer_side(tmp_path):
    path = saved(Image.new("RGB", (3000, 1000), "white"), tmp_path / "wide.png")

    assert load_image(path).size == (2048, 683)


def test_a_large_jpeg_is_decoded_at_reduced_scale(tmp_path, monkeypatch):
    path = saved(Image.new("RGB", (800, 800), "white"), tmp_path / "big.jpg")
    # A pixel limit the full-size image breaks: it loads only because JPEG decodes at 1/8 scale here.
    monkeypatch.setattr(preprocess, "MAX_IMAGE_PIXELS", 100 * 100)

    assert load_image(path, max_side=64).size == (64, 64)


def test_the_input_may_be_an_image_a_path_a_path_string_or_bytes(tmp_path, without_rembg):
    image = rectangle_with_alpha()
    path = saved(image, tmp_path / "object.png")
    expected = np.asarray(preprocess_image(image))

    for source in (path, str(path), path.read_bytes()):
        assert np.array_equal(np.asarray(preprocess_image(source)), expected)


# --- Invalid input: one exception type, a message that says what to do -----------------------------


def png_claiming_size(width, height):
    """A valid 1x1 PNG whose header claims another size: what a decompression bomb looks like."""
    data = io.BytesIO()
    Image.new("L", (1, 1)).save(data, format="PNG")
    png = bytearray(data.getvalue())
    header = struct.pack(">II", width, height) + png[24:29]  # IHDR: size, depth, colour, methods
    png[16:29] = header
    png[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + header))
    return bytes(png)


def truncated(image, image_format):
    data = io.BytesIO()
    image.save(data, format=image_format)
    return data.getvalue()[: len(data.getvalue()) // 2]


def photo_like():
    image = Image.new("RGB", (120, 90), "white")
    ImageDraw.Draw(image).ellipse((20, 10, 100, 80), fill=(30, 90, 200))
    return image


INVALID_INPUTS = {
    "not an image": (b"This is a text file, not a picture.", "not an image"),
    "truncated PNG": (truncated(photo_like(), "PNG"), "damaged or incomplete"),
    "truncated JPEG": (truncated(photo_like(), "JPEG"), "damaged or incomplete"),
    "decompression bomb": (png_claiming_size(100_000, 100_000), "too many to open safely"),
    "fully transparent": (Image.new("RGBA", (32, 32), (255, 0, 0, 0)), "fully transparent"),
}


@pytest.mark.parametrize("case", INVALID_INPUTS)
def test_invalid_images_raise_invalid_image_error_saying_what_is_wrong(case):
    source, message = INVALID_INPUTS[case]

    with pytest.raises(InvalidImageError, match=message):
        preprocess_image(source)


def test_a_missing_file_is_named_in_the_error(tmp_path):
    missing = tmp_path / "nowhere.png"

    with pytest.raises(InvalidImageError, match=r"nowhere\.png could not be opened: No such file"):
        preprocess_image(missing)


def test_an_image_in_which_rembg_finds_no_object_is_refused(rembg_model):
    plain_grey = Image.new("RGB", (64, 64), (128, 128, 128))

    with pytest.raises(InvalidImageError, match="No object was found"):
        preprocess_image(plain_grey, rembg_model=rembg_model)


@pytest.mark.parametrize("ratio", [0, -0.5, 1.01, float("nan")])
def test_foreground_ratio_must_be_above_0_and_at_most_1(ratio):
    with pytest.raises(InvalidImageError, match="foreground ratio must be above 0 and at most 1"):
        preprocess_image(rectangle_with_alpha(), foreground_ratio=ratio)


# --- The background-removal model cannot be loaded -------------------------------------------------


def test_a_missing_model_without_network_says_where_to_put_it(teapot, rembg_model, tmp_path, monkeypatch):
    monkeypatch.setenv("U2NET_HOME", str(tmp_path))
    where_and_what_to_do = rf"into {re.escape(str(tmp_path))}.*connect to the internet once"

    with pytest.raises(ModelLoadError, match=where_and_what_to_do):
        preprocess_image(teapot, rembg_model="u2net")


def test_an_unknown_rembg_model_lists_the_known_ones(teapot, rembg_model):
    with pytest.raises(ModelLoadError, match=r"Unknown background-removal model 'u3net'.*u2netp"):
        preprocess_image(teapot, rembg_model="u3net")


def test_without_rembg_installed_background_removal_says_how_to_go_on(teapot, without_rembg):
    with pytest.raises(ModelLoadError, match="needs the rembg package.*transparent background"):
        preprocess_image(teapot)


def test_an_empty_file_is_called_empty(tmp_path):
    empty = tmp_path / "empty.png"
    empty.touch()
    with pytest.raises(InvalidImageError, match="is empty \\(0 bytes\\)"):
        load_image(empty)
    with pytest.raises(InvalidImageError, match="is empty \\(0 bytes\\)"):
        load_image(b"")


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def test_a_png_whose_text_chunk_inflates_to_megabytes_is_refused_with_a_message():
    """Pillow refuses to inflate a zTXt chunk past 1 MB with a bare ValueError."""
    clean = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(clean, "PNG")
    header_end = 8 + 25  # the signature and the IHDR chunk
    bomb = png_chunk(b"zTXt", b"Comment\x00\x00" + zlib.compress(b"A" * (64 << 20), 9))
    data = clean.getvalue()[:header_end] + bomb + clean.getvalue()[header_end:]

    with pytest.raises(InvalidImageError, match="metadata chunk \\(text or colour profile\\) too large"):
        load_image(data)


def test_with_downloads_not_allowed_a_missing_rembg_model_is_explained_instead_of_fetched(
    teapot, tmp_path, monkeypatch
):
    """Blender's Allow Online Access off: rembg must not fetch its 176 MB model on first use."""
    monkeypatch.setenv("U2NET_HOME", str(tmp_path / "no-models-here"))
    monkeypatch.setattr(background, "_cache", {})

    with pytest.raises(ModelLoadError, match="not downloaded yet, and online access is off") as refused:
        preprocess_image(teapot, rembg_model="u2net", allow_download=False)

    assert str(tmp_path / "no-models-here") in str(refused.value)
    assert "Allow Online Access" in str(refused.value) and "Remove Background off" in str(refused.value)


def test_with_downloads_not_allowed_a_rembg_model_already_there_is_used(teapot, rembg_model):
    result = preprocess_image(teapot, rembg_model=rembg_model, allow_download=False)
    assert result.mode == "RGB"
