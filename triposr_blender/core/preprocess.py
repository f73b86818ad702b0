"""Turn a user's picture into TripoSR's input: the object cut out, centred and framed on 0.5 grey.

The steps follow the reference (TripoSR's ``run.py`` and gradio app): an image with real transparency
keeps its own alpha, any other image goes through rembg; the result is cropped to the object, padded to a
square in which the object spans ``foreground_ratio`` of the side, and composited over 0.5 grey.
Two deliberate differences, both at the object's outline only: the crop keeps the object's last row and
column (the reference's slice drops them), and rembg's mask is applied as straight alpha (the reference's
cut-out premultiplies colour by alpha and then composites with alpha again, darkening soft edges).
"""

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from .background import object_mask
from .defaults import DEFAULT_FOREGROUND_RATIO, MAX_IMAGE_PIXELS, MAX_IMAGE_SIDE
from .errors import InvalidImageError
from .mesh import FramedPhoto
from .progress import REMOVING_BACKGROUND, Progress

ImageSource = Image.Image | str | Path | bytes

DEFAULT_MAX_SIDE = MAX_IMAGE_SIDE
# rembg's masks are soft; a result with no pixel more likely object than background found nothing.
CONFIDENT_FOREGROUND = 128
SIXTEEN_BIT_GREY_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I"}


@dataclass(frozen=True, eq=False)
class PreparedInput:
    """The model's input, and the photo it was framed from (None where the whole image was squashed to a
    square: no alpha and no background removal, so nothing marks where the object is)."""

    image: Image.Image
    photo: FramedPhoto | None


def preprocess_image(
    image: ImageSource,
    remove_background: bool = True,
    foreground_ratio: float = DEFAULT_FOREGROUND_RATIO,
    **options,
) -> Image.Image:
    """Prepare ``image`` (a PIL image, a file path or encoded bytes) for ``TripoSR.encode``:
    ``prepare_input``'s image alone."""
    return prepare_input(image, remove_background, foreground_ratio, **options).image


def prepare_input(
    image: ImageSource,
    remove_background: bool = True,
    foreground_ratio: float = DEFAULT_FOREGROUND_RATIO,
    *,
    rembg_model: str = "u2net",
    max_side: int = DEFAULT_MAX_SIDE,
    progress: Progress | None = None,
    allow_download: bool = True,
    device: str | torch.device = "cpu",
) -> PreparedInput:
    """Prepare ``image`` for ``TripoSR.encode``, keeping the framing (for Photo Texture).

    The input is a new RGB image: the object centred on 0.5 grey, filling ``foreground_ratio`` of the side.
    An image whose alpha channel has transparent pixels is framed using that alpha, whatever
    ``remove_background`` says; any other image goes through rembg's ``rembg_model`` if
    ``remove_background`` (on ``device``, the model's: see background.py), or is returned as RGB unchanged
    if not. Images larger than ``max_side`` are scaled down first. rembg downloads its model on first use
    unless ``allow_download`` is false. Raises InvalidImageError for unusable input and ModelLoadError if
    rembg or its model cannot be loaded.
    """
    check_foreground_ratio(foreground_ratio)
    image = load_image(image, max_side=max_side)
    if has_real_alpha(image):
        check_something_visible(image)
        cutout = image
    elif remove_background:
        cutout = cut_out_object(image.convert("RGB"), rembg_model, progress, allow_download, device)
    else:
        return PreparedInput(image.convert("RGB"), None)
    canvas, photo = frame_object(cutout, foreground_ratio)
    return PreparedInput(composite_on_grey(canvas), photo)


def load_image(source: ImageSource, *, max_side: int = DEFAULT_MAX_SIDE) -> Image.Image:
    """Decode ``source`` into an upright RGB or RGBA image no larger than ``max_side`` on either side.

    Applies the EXIF orientation and converts grayscale, palette, 16-bit and CMYK images; RGBA is kept
    only when the image carries transparency. Raises InvalidImageError with a message for the user.
    """
    name = describe(source)
    image = source if isinstance(source, Image.Image) else open_image(source, name, max_side)
    decode(image, name)
    image = to_rgb_or_rgba(ImageOps.exif_transpose(image), name)
    image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return image


def check_foreground_ratio(foreground_ratio: float) -> None:
    if not 0 < foreground_ratio <= 1:
        raise InvalidImageError(
            f"The foreground ratio must be above 0 and at most 1 (it is the share of the image side the "
            f"object fills); got {foreground_ratio}."
        )


def describe(source: ImageSource) -> str:
    if isinstance(source, str | Path):
        return f"The file {source}"
    if isinstance(source, bytes):
        return "The image data"
    return "The image"


def open_image(source: str | Path | bytes, name: str, max_side: int) -> Image.Image:
    """Open lazily (only the header is read) and refuse images too large to decode safely."""
    check_not_empty(source, name)
    try:
        with warnings.catch_warnings():
            # Pillow only warns between one and two times its limit; the check below raises instead.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
    except Image.DecompressionBombError as error:
        raise too_large(name) from error
    except Image.UnidentifiedImageError as error:
        raise InvalidImageError(
            f"{name} is not an image in a format that can be read (use PNG, JPEG, WebP, TIFF or BMP)."
        ) from error
    except OSError as error:
        raise InvalidImageError.unreadable(name, error) from error
    except ValueError as error:  # Pillow's limit on the text and colour-profile chunks it decompresses
        raise oversized_chunk(name, error) from error
    # JPEG can decode at 1/2, 1/4 or 1/8 scale, so a huge photo never fills memory at full size.
    image.draft(None, (max_side, max_side))
    if image.width * image.height > MAX_IMAGE_PIXELS:
        raise too_large(name)
    return image


def check_not_empty(source: str | Path | bytes, name: str) -> None:
    try:
        empty = len(source) == 0 if isinstance(source, bytes) else Path(source).stat().st_size == 0
    except OSError:
        return  # Image.open says what is wrong with the path
    if empty:
        raise InvalidImageError(f"{name} is empty (0 bytes): save or download it again and retry.")


def oversized_chunk(name: str, error: ValueError) -> InvalidImageError:
    return InvalidImageError(
        f"{name} holds a metadata chunk (text or colour profile) too large to read safely ({error}): the "
        "file is damaged or was made to exhaust memory. Save the picture again as a plain PNG or JPEG."
    )


def too_large(name: str) -> InvalidImageError:
    return InvalidImageError(
        f"{name} has more than {MAX_IMAGE_PIXELS:,} pixels, too many to open safely. "
        f"Scale it down ({DEFAULT_MAX_SIDE} pixels per side is plenty) and try again."
    )


def decode(image: Image.Image, name: str) -> None:
    try:
        image.load()
    except OSError as error:
        raise InvalidImageError(
            f"{name} is damaged or incomplete ({error}). Save or download it again and retry."
        ) from error
    except ValueError as error:
        raise oversized_chunk(name, error) from error


def to_rgb_or_rgba(image: Image.Image, name: str) -> Image.Image:
    if image.mode in SIXTEEN_BIT_GREY_MODES:
        image = sixteen_bit_to_grey(image)
    mode = "RGBA" if image.has_transparency_data else "RGB"
    try:
        return image.convert(mode)
    except ValueError as error:
        raise InvalidImageError(
            f"{name} uses the colour mode {image.mode}, which cannot be converted to RGB. "
            "Save it as an 8-bit RGB or RGBA PNG and try again."
        ) from error


def sixteen_bit_to_grey(image: Image.Image) -> Image.Image:
    """Scale 0..65535 to 0..255: Pillow's own conversion clips everything above 255 to white."""
    values = np.asarray(image, dtype=np.float64)
    grey = np.clip(np.rint(values / 257.0), 0, 255).astype(np.uint8)
    return Image.fromarray(grey)


def has_real_alpha(image: Image.Image) -> bool:
    """True if the image has an alpha channel in which some pixel is not fully opaque."""
    return image.mode == "RGBA" and image.getchannel("A").getextrema()[0] < 255


def check_something_visible(image: Image.Image) -> None:
    if image.getchannel("A").getextrema()[1] == 0:
        raise InvalidImageError(
            "The image is fully transparent, so there is no object to turn into 3D. "
            "Use an image in which the object is visible."
        )


def cut_out_object(
    image: Image.Image,
    rembg_model: str,
    progress: Progress | None,
    allow_download: bool = True,
    device: str | torch.device = "cpu",
) -> Image.Image:
    """Mask an RGB image with rembg's model, run on ``device``: RGBA with the mask as alpha."""
    if progress:
        progress(REMOVING_BACKGROUND, 0.0)
    mask = object_mask(image, rembg_model, device, allow_download)
    if mask.getextrema()[1] < CONFIDENT_FOREGROUND:
        raise InvalidImageError(
            "No object was found in the image after removing the background. Use a picture of one "
            "object in front of a plain background, or an image whose background is already transparent."
        )
    cutout = image.convert("RGBA")
    cutout.putalpha(mask)
    if progress:
        progress(REMOVING_BACKGROUND, 1.0)
    return cutout


def frame_object(cutout: Image.Image, foreground_ratio: float) -> tuple[Image.Image, FramedPhoto]:
    """Crop an RGBA image to its non-transparent pixels and centre them on a transparent square canvas
    whose side is the object's longer side / ``foreground_ratio`` (TripoSR's ``resize_foreground``).
    Returns the canvas, and the crop with where it lies on the canvas."""
    obj = cutout.crop(cutout.getchannel("A").getbbox())
    side = max(obj.size)
    canvas_side = int(side / foreground_ratio)
    canvas = Image.new("RGBA", (canvas_side, canvas_side))
    # Same rounding as the reference, which pads to a square first and then to the canvas.
    left, top = ((side - extent) // 2 + (canvas_side - side) // 2 for extent in obj.size)
    canvas.paste(obj, (left, top))
    return canvas, FramedPhoto(np.asarray(obj, np.uint8), canvas_side, (left, top))


def composite_on_grey(image: Image.Image) -> Image.Image:
    """RGB = rgb·a + 0.5·(1 − a), computed and truncated to 8 bits exactly as the reference does."""
    rgba = np.asarray(image, dtype=np.float32) / 255.0
    alpha = rgba[..., 3:4]
    rgb = rgba[..., :3] * alpha + (1 - alpha) * 0.5
    return Image.fromarray((rgb * 255.0).astype(np.uint8))
