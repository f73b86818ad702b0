"""The input image as the worker takes it, from a file, an Image datablock or a reference image empty.

The worker reads image files itself (Pillow); formats only Blender reads (EXR, HDR) and images whose pixels
differ from their file (packed, generated, painted) are read here and sent as pixels. Either way the file is
left as it was: an image loaded only to read it is removed again.
"""

import contextlib
import os
import re
import struct

import bpy
import numpy as np

from ..backends.types import ImageFile, ImageInput, ImagePixels
from ..core.defaults import MAX_IMAGE_PIXELS

# Image formats the worker's reader (Pillow) cannot open: Blender reads them and sends their pixels.
BLENDER_READS_ONLY = (".exr", ".hdr")
EXR_MAGIC = b"\x76\x2f\x31\x01"
# An EXR header is a list of attributes; an image's is well under this, any sane file's too.
HEADER_BYTES = 1 << 16
# Radiance HDR: the resolution line after the header, e.g. "-Y 480 +X 640" (rows first, then columns).
HDR_RESOLUTION = re.compile(rb"^[-+][XY] (\d+) [-+][XY] (\d+)$")


class InputError(Exception):
    """The image cannot be used; the text says why, for the user."""


def is_image_empty(obj: bpy.types.Object) -> bool:
    return obj.type == "EMPTY" and obj.empty_display_type == "IMAGE" and obj.data is not None


def file_input(path: str) -> tuple[str, ImageInput]:
    """The object's name and the image file as the worker takes it: its path, or, for a format only Blender
    reads, its pixels."""
    name = os.path.splitext(os.path.basename(path))[0]
    if not worker_reads(path):
        with image_loaded(path) as image:
            return name, ImagePixels(image_pixels(image))
    return name, ImageFile(path)


def worker_reads(path: str) -> bool:
    return not path.lower().endswith(BLENDER_READS_ONLY)


@contextlib.contextmanager
def image_loaded(path: str, size_checked: bool = False):
    """The file as a Blender image, removed afterwards unless the file already held it (scene unchanged).
    An EXR or HDR file's pixel count is checked first, unless ``size_checked`` says the worker has read the
    file already (then it may be any format Blender reads)."""
    if not size_checked:
        check_pixel_count(path)
    images_before = set(bpy.data.images)
    try:
        image = bpy.data.images.load(path, check_existing=True)
    except RuntimeError as error:
        raise InputError(f"Blender cannot read {path} as an image: {error}") from error
    try:
        if not all(image.size):  # a file Blender cannot decode loads as an empty image
            raise InputError(f"Blender cannot read {path} as an image: is the file damaged?")
        yield image
    finally:
        if image not in images_before:
            bpy.data.images.remove(image)


def check_pixel_count(path: str) -> None:
    """Refuse an EXR or HDR file with more pixels than an input may have, from its header, before Blender
    decodes it in its own process (a few kB of compressed EXR can unpack to gigabytes)."""
    try:
        with open(path, "rb") as file:
            header = file.read(HEADER_BYTES)
    except OSError as error:
        raise InputError(f"Cannot read {path}: {error.strerror or error}.") from error
    size = exr_size(header) if header.startswith(EXR_MAGIC) else hdr_size(header)
    if size is None:
        raise InputError(
            f"Blender cannot read {path} as an image: its header is damaged or not an EXR or HDR."
        )
    width, height = size
    if width * height > MAX_IMAGE_PIXELS:
        raise InputError(
            f"{path} has {width} x {height} pixels, more than the {MAX_IMAGE_PIXELS:,} an input may have. "
            "Scale it down (2048 pixels per side is plenty) and try again."
        )


def exr_size(header: bytes) -> tuple[int, int] | None:
    """Width and height from an OpenEXR header's dataWindow attribute (box2i: xMin, yMin, xMax, yMax)."""
    position = 8  # magic number and version
    while position < len(header):
        name_end = header.find(b"\0", position)
        if name_end in (-1, position):
            return None  # the end of the header, without a dataWindow
        type_end = header.find(b"\0", name_end + 1)
        if type_end == -1 or type_end + 5 > len(header):
            return None
        (length,) = struct.unpack_from("<i", header, type_end + 1)
        value = type_end + 5
        if header[position:name_end] == b"dataWindow" and length == 16 and value + 16 <= len(header):
            x_min, y_min, x_max, y_max = struct.unpack_from("<4i", header, value)
            return x_max - x_min + 1, y_max - y_min + 1
        position = value + max(length, 0)
    return None


def hdr_size(header: bytes) -> tuple[int, int] | None:
    """Width and height from a Radiance HDR header: the resolution line after the first empty line."""
    if not header.startswith((b"#?RADIANCE", b"#?RGBE")):
        return None
    _, separator, rest = header.partition(b"\n\n")
    match = HDR_RESOLUTION.match(rest.split(b"\n", 1)[0].strip()) if separator else None
    return (int(match[2]), int(match[1])) if match else None


def image_input(image: bpy.types.Image) -> tuple[str, ImageInput]:
    """The worker reads an image's file when it matches what Blender shows, and gets its pixels otherwise."""
    name = os.path.splitext(image.name)[0]
    path = bpy.path.abspath(image.filepath, library=image.library) if image.filepath else ""
    unchanged = image.source == "FILE" and not image.packed_file and not image.is_dirty
    if unchanged and os.path.isfile(path) and worker_reads(path):
        return name, ImageFile(path)
    return name, ImagePixels(image_pixels(image))


def image_pixels(image: bpy.types.Image) -> np.ndarray:
    """An image as the model sees a PNG: (H, W, 3|4) display (sRGB) colours, straight alpha, top row first."""
    width, height = image.size
    if width * height == 0:
        raise InputError(f"The image '{image.name}' has no pixels (is its file missing or unreadable?).")
    pixels = np.empty(width * height * image.channels, dtype=np.float32)
    image.pixels.foreach_get(pixels)
    pixels = pixels.reshape(height, width, image.channels)[::-1]  # Blender stores the bottom row first
    if image.is_float:
        # Blender keeps float images premultiplied by alpha, in scene-linear colours (unless they hold
        # non-colour data); byte images keep their file's values, which are display colours already.
        if image.channels == 4 and image.alpha_mode in {"STRAIGHT", "PREMUL"}:
            alpha = pixels[..., 3:]
            np.divide(pixels[..., :3], alpha, out=pixels[..., :3], where=alpha > 0)
        if not image.colorspace_settings.is_data:
            pixels[..., :3] = linear_to_srgb(pixels[..., :3])
    if image.channels < 3:
        pixels = np.repeat(pixels[..., :1], 3, axis=2)
    return np.ascontiguousarray(np.clip(pixels[..., :4], 0.0, 1.0))


def linear_to_srgb(linear: np.ndarray) -> np.ndarray:
    linear = np.clip(linear, 0.0, 1.0)
    return np.where(linear <= 0.0031308, linear * 12.92, 1.055 * linear ** (1 / 2.4) - 0.055)
