"""The input image as the worker takes it (blender/image_input.py), in the real bpy: files Blender reads are
checked from their header before Blender decodes them in its own process."""

import struct

import bpy
import pytest
from fixture_model import write_exr

from triposr_blender.blender import image_input
from triposr_blender.blender.image_input import InputError

pytestmark = pytest.mark.blender

HUGE = 20_000  # 400 million pixels: gigabytes once decoded, a few kB in a compressed file


def with_data_window(exr: bytes, width: int, height: int) -> bytes:
    """The EXR with its dataWindow attribute claiming ``width`` x ``height`` pixels."""
    value = exr.index(b"dataWindow\x00box2i\x00") + len(b"dataWindow\x00box2i\x00") + 4
    return exr[:value] + struct.pack("<4i", 0, 0, width - 1, height - 1) + exr[value + 16 :]


def test_an_exr_file_is_sent_as_pixels_read_by_blender(tmp_path):
    name, sent = image_input.file_input(str(write_exr(tmp_path / "render.exr")))
    assert name == "render" and sent.pixels.shape == (96, 96, 4)


def test_an_exr_with_more_pixels_than_an_input_may_have_is_refused_before_blender_decodes_it(tmp_path):
    huge = tmp_path / "huge.exr"
    huge.write_bytes(with_data_window(write_exr(tmp_path / "small.exr").read_bytes(), HUGE, HUGE))
    images = set(bpy.data.images)

    with pytest.raises(InputError, match=f"has {HUGE} x {HUGE} pixels, more than the 89,478,485"):
        image_input.file_input(str(huge))
    assert set(bpy.data.images) == images


def test_a_radiance_hdr_header_is_read_for_its_size_too(tmp_path):
    huge = tmp_path / "huge.hdr"
    huge.write_bytes(b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y %d +X %d\n" % (HUGE, HUGE) + bytes(64))

    with pytest.raises(InputError, match=f"has {HUGE} x {HUGE} pixels"):
        image_input.file_input(str(huge))


def test_a_file_named_exr_that_is_none_is_refused_from_its_header(tmp_path):
    fake = tmp_path / "fake.exr"
    fake.write_bytes(b"plain text, not an image\n")

    with pytest.raises(InputError, match="its header is damaged or not an EXR or HDR"):
        image_input.file_input(str(fake))
