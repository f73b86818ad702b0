"""Blender properties for ``options.py``'s options: the panel's per-scene settings and Generate's keywords.

Defaults, limits and tooltips come from ``options.py``; what is Blender's alone lives here: how a field is
shown (slider, distance, precision) and the choices of the panel's menus.
"""

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, PointerProperty, StringProperty

from .. import options
from ..options import GenerateOptions, MeshOptions

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
    (
        "VERTEX",
        "Color Attribute",
        "A color per vertex: no extra step, but it needs a dense mesh to carry detail",
    ),
    (
        "TEXTURE",
        "Baked Texture",
        "A UV layout and a texture baked from the model: detail however few the faces, for game-ready assets",
    ),
)

INPUTS = (
    ("FILE", "File", "An image file on disk"),
    ("IMAGE", "Image", "An image already in Blender, such as one open in the Image Editor"),
    ("REFERENCE", "Reference", "The image of the selected image empty (a reference image)"),
)

# How Blender shows a field, where its default display would not do.
DISPLAY = {
    "foreground_ratio": {"subtype": "FACTOR"},
    "floater_fraction": {"subtype": "FACTOR"},
    "threshold": {"precision": 4},
    "target_size": {"subtype": "DISTANCE", "unit": "LENGTH"},
}


def option_property(option: options.Option, **shared):
    """The Blender property for one option, also given the ``shared`` keywords (e.g. ``options``)."""
    common = {"name": option.label, "description": option.description, "default": option.default, **shared}
    if isinstance(option.default, bool):
        return BoolProperty(**common)
    limits = {"min": option.ui_minimum, "max": option.maximum, "soft_max": option.soft_maximum}
    limits = {key: value for key, value in limits.items() if value is not None}
    kind = IntProperty if isinstance(option.default, int) else FloatProperty
    return kind(**common, **limits, **DISPLAY.get(option.name, {}))


def generation_options(**shared) -> dict:
    """Option name -> property, each also given the ``shared`` keywords (e.g. ``options``).

    These names are the Generate operator's public keyword arguments: keep them stable.
    """
    numbers = {name: option_property(option, **shared) for name, option in options.OPTIONS.items()}
    return {
        **numbers,
        "color_mode": EnumProperty(
            name="Color", description="How the mesh carries its colors", items=COLOR_MODES, **shared
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


# --- Blender properties <-> options: the panel's, Generate's and Re-mesh's alike ----------------------------


def mesh_options(data) -> MeshOptions:
    """The mesh options of an operator's (or the panel's) properties; OptionError when out of range."""
    return MeshOptions.from_attributes(
        data, texture_size=data.texture_size if data.color_mode == "TEXTURE" else 0
    )


def generate_options(data) -> GenerateOptions:
    """All the worker's options of Generate's (or the panel's) properties."""
    return GenerateOptions.from_attributes(data, **mesh_options(data).as_dict())


# The Re-mesh operator's options: the mesh options, the colour mode that decides the texture size, and Quad
# Remesh, which Blender applies to the mesh the worker gives back.
MESH_OPTION_NAMES = (*(option.name for option in options.MESH_OPTIONS), "color_mode", "quad_remesh")


def draw_mesh_options(layout, data) -> None:
    """The options that only change how scene codes become a mesh: Generate's panel, its Adjust Last
    Operation, and Re-mesh draw the same."""
    layout.use_property_split = True
    layout.use_property_decorate = False
    layout.prop(data, "resolution")
    layout.prop(data, "threshold")
    layout.prop(data, "smoothing")
    layout.prop(data, "remove_floaters")
    fraction = layout.row()
    fraction.active = data.remove_floaters
    fraction.prop(data, "floater_fraction")
    layout.prop(data, "target_faces")
    layout.prop(data, "color_mode")
    texture_size = layout.row()
    texture_size.active = data.color_mode == "TEXTURE"
    texture_size.prop(data, "texture_size")
    layout.prop(data, "photo_texture")
    quads = layout.row()
    quads.active = data.color_mode == "VERTEX"  # the quads carry the colors as a Color Attribute
    quads.prop(data, "quad_remesh")


def check_quad_remesh(data) -> None:
    """OptionError when Quad Remesh is asked for with a baked texture, which the quads cannot carry."""
    if data.quad_remesh and data.color_mode == "TEXTURE":
        raise options.OptionError(options.QUAD_REMESH_WITH_TEXTURE)


def register() -> None:
    bpy.types.Scene.triposr = PointerProperty(type=TripoSRSettings)


def unregister() -> None:
    del bpy.types.Scene.triposr
