"""The generation options, defined once for both the panel's per-scene settings and the Generate operator."""

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, PointerProperty, StringProperty

DEVICES = (
    ("AUTO", "Auto", "A CUDA GPU if there is one, else Apple Metal (MPS), else the CPU"),
    ("CUDA", "CUDA", "An NVIDIA GPU"),
    ("MPS", "Apple Metal", "The GPU of an Apple silicon Mac"),
    ("CPU", "CPU", "The processor: slow, but works everywhere"),
)
DEVICE_FROM_PREFERENCES = ("DEFAULT", "Preferences", "The default device set in the add-on's preferences")

PLACEMENTS = (
    ("CURSOR", "3D Cursor", "A new object standing on the 3D cursor, longest side Size long"),
    (
        "REFERENCE",
        "Reference Image",
        "In the picture of the selected image empty (a reference image): facing its viewer, as large as it",
    ),
)

COLOR_MODES = (
    ("VERTEX", "Vertex Colors", "A colour per vertex: no extra step, needs a dense mesh to carry detail"),
    (
        "TEXTURE",
        "Baked Texture",
        "A UV layout and a colour texture baked from the model: detail independent of the mesh density, "
        "for decimated, game-ready assets. Takes longer (UV unwrapping grows with the triangle count)",
    ),
)

INPUTS = (
    ("FILE", "File", "An image file on disk"),
    ("IMAGE", "Image", "An image already in Blender, such as one open in the Image Editor"),
    ("REFERENCE", "Reference", "The image of the selected image empty (a reference image)"),
)


def generation_options(**shared) -> dict:
    """Option name -> property, each also given the ``shared`` keywords (e.g. ``options``).

    These names are the Generate operator's public keyword arguments: keep them stable.
    """
    return {
        "remove_background": BoolProperty(
            name="Remove Background",
            description=(
                "Cut the object out of its background before reconstruction. Not needed for images with a "
                "transparent background, whose own alpha is used"
            ),
            default=True,
            **shared,
        ),
        "foreground_ratio": FloatProperty(
            name="Foreground Ratio",
            description="How much of the framed square the object fills. Lower it if parts get cut off",
            default=0.85,
            min=0.5,
            max=1.0,
            subtype="FACTOR",
            **shared,
        ),
        "resolution": IntProperty(
            name="Resolution",
            description=(
                "Marching-cubes grid size along each axis: higher gives finer detail but takes longer and "
                "more memory (time and memory grow with its cube)"
            ),
            default=256,
            min=32,
            soft_max=512,
            max=1024,
            **shared,
        ),
        "threshold": FloatProperty(
            name="Threshold",
            description=(
                "Density at which the surface is drawn. Lower it for a fuller, smoother shape; raise it if "
                "the mesh is bloated or has floating blobs"
            ),
            default=25.0,
            min=0.0,
            soft_max=100.0,
            precision=4,
            **shared,
        ),
        "color_mode": EnumProperty(
            name="Color",
            description="How the mesh carries its colours",
            items=COLOR_MODES,
            **shared,
        ),
        "texture_size": IntProperty(
            name="Texture Size",
            description=(
                "Width and height of the baked texture in pixels: more keeps finer detail, costs more time "
                "and memory (4× per doubling)"
            ),
            default=2048,
            min=512,
            max=4096,
            **shared,
        ),
        "target_faces": IntProperty(
            name="Target Faces",
            description=(
                "Decimate the mesh to at most this many triangles before colouring it, for a light asset "
                "(a baked texture keeps the detail). 0 keeps every triangle"
            ),
            default=0,
            min=0,
            soft_max=200_000,
            **shared,
        ),
        "shade_smooth": BoolProperty(
            name="Shade Smooth", description="Smooth shading instead of flat facets", default=True, **shared
        ),
        "target_size": FloatProperty(
            name="Size",
            description="Length of the object's longest side (at the 3D cursor)",
            default=2.0,
            min=0.001,
            soft_max=100.0,
            subtype="DISTANCE",
            unit="LENGTH",
            **shared,
        ),
        "device": EnumProperty(
            name="Device",
            description="Where the model runs",
            items=(DEVICE_FROM_PREFERENCES, *DEVICES),
            **shared,
        ),
        "placement": EnumProperty(
            name="Place At", description="Where the new object goes", items=PLACEMENTS, **shared
        ),
    }


OPTION_NAMES = tuple(generation_options())


class TripoSRSettings(bpy.types.PropertyGroup):
    """The panel's settings, saved with the .blend file (``scene.triposr``)."""

    __annotations__ = {  # Blender reads properties from the class annotations
        "input_source": EnumProperty(name="Input", description="Where the image comes from", items=INPUTS),
        "filepath": StringProperty(
            name="Image File", description="The image to reconstruct", subtype="FILE_PATH"
        ),
        "image": PointerProperty(name="Image", description="The image to reconstruct", type=bpy.types.Image),
        **generation_options(),
    }


classes = (TripoSRSettings,)


def register() -> None:
    bpy.types.Scene.triposr = PointerProperty(type=TripoSRSettings)


def unregister() -> None:
    del bpy.types.Scene.triposr
