"""The tiny random-weight fixture model as the worker and extension tests use it, and the core's own mesh
from it: what the worker and Generate must hand over unchanged."""

import functools
from pathlib import Path

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "triposr-tiny-a"
IMAGE = FIXTURE / "input.png"
# The fixture's random field has a surface at this density on its resolution-48 grid (see its README).
OPTIONS = {
    "remove_background": False,
    "foreground_ratio": 0.85,
    "resolution": 48,
    "threshold": 0.41453200578689575,
}
# Another threshold at which the field has a clearly different surface (3,852 faces instead of 2,388).
NEW_THRESHOLD = 0.40


@functools.cache
def core_model():
    from triposr_blender.core import TripoSR

    return TripoSR.from_pretrained(FIXTURE, device="cpu")


@functools.cache
def core_scene():
    """The scene codes the core makes in this process from IMAGE with OPTIONS."""
    from triposr_blender.core import preprocess_image

    image = preprocess_image(IMAGE, OPTIONS["remove_background"], OPTIONS["foreground_ratio"])
    return core_model().encode(image)


def cut_out(folder: Path) -> Path:
    """IMAGE as a cut-out (its middle opaque inside a transparent border), saved in ``folder``: framed as a
    photo of an object is, so that Photo Texture has a photo to project."""
    from PIL import Image

    image = Image.open(IMAGE).convert("RGBA")
    image.putalpha(Image.new("L", image.size, 0))
    image.paste(Image.open(IMAGE).crop((8, 8, 88, 88)), (8, 8))
    image.save(folder / "cut-out.png")
    return folder / "cut-out.png"


@functools.cache
def core_mesh_at(threshold: float):
    """The mesh the core makes in this process from IMAGE with OPTIONS at ``threshold`` (and the default
    mesh options: its floaters removed), in TripoSR's model space."""
    return mesh_of(core_scene(), threshold)


def mesh_of(scene, threshold: float):
    """The mesh the core makes of the fixture model's ``scene`` codes at ``threshold``, its floaters
    removed."""
    from triposr_blender.core.floaters import remove_floaters
    from triposr_blender.options import FLOATER_FRACTION

    extracted = core_model().extract_mesh(scene, resolution=OPTIONS["resolution"], threshold=threshold)
    return remove_floaters(extracted, FLOATER_FRACTION.default)


def core_mesh():
    """The mesh Generate must hand over for IMAGE with OPTIONS."""
    return core_mesh_at(OPTIONS["threshold"])


def core_colors(points):
    """The model's colour at ``points`` (N, 3) of core_scene(), as a numpy array."""
    return core_model().query(core_scene(), points)["color"].numpy()


def write_exr(path: Path) -> Path:
    """IMAGE saved by Blender as an OpenEXR file of scene-linear colours, as renders and composites are.

    The images it used are removed again, so the Blender file is as it was."""
    import bpy
    import numpy as np

    source = bpy.data.images.load(str(IMAGE))
    srgb = np.empty(len(source.pixels), np.float32)
    source.pixels.foreach_get(srgb)
    exr = bpy.data.images.new(path.stem, *source.size, float_buffer=True)
    exr.pixels.foreach_set(np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4))
    exr.filepath_raw, exr.file_format = str(path), "OPEN_EXR"
    exr.save()
    bpy.data.images.remove(exr)
    bpy.data.images.remove(source)
    return path
