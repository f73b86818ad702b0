"""Every option of a generation, once: its default, limits, label and help text. No bpy, no torch.

Blender's properties (``ui/properties.py``), the batch's command line (``batch/command.py``), the worker's
messages (``worker/protocol.py``) and the server's form fields are all made from these, so a default, a range
or a tooltip changes here and nowhere else. The model's own recommended values (resolution 256, threshold 25,
foreground ratio 0.85) come from ``core.defaults``, where the core's functions take them too.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .core.defaults import (
    DEFAULT_FOREGROUND_RATIO,
    DEFAULT_RESOLUTION,
    DEFAULT_THRESHOLD,
    MIN_TARGET_FACES,
)

# Quad Remesh's range: below 100 quads QuadriFlow loses the shape; its time grows with the count (20,000
# quads take about half a minute on a 2-core CPU).
MIN_QUADS = 100
MAX_QUADS = 20_000

# The environment variables that set defaults for every front end: the panel, the batch and its runners.
ENV_MODEL = "TRIPOSR_MODEL"  # the model source (a Hugging Face repo id or a folder)
ENV_SERVER = "TRIPOSR_SERVER"  # a TripoSR server to run the model on instead of this computer
ENV_SERVER_TOKEN = "TRIPOSR_SERVER_TOKEN"  # its token
ENV_DEBUG = "TRIPOSR_DEBUG"  # set: an unexpected error (a bug) prints its traceback too


def absolute_model_source(source: str) -> str:
    """A model folder as an absolute path, since the worker, a server or a Ray node reads it from another
    folder; a Hugging Face repo id as it is."""
    folder = Path(source).expanduser()
    return str(folder.absolute()) if folder.is_dir() else source


# Files the panel, the drop handler and the batch take as images (Pillow reads them; Blender reads EXR).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".exr")


class OptionError(ValueError):
    """An option's value is out of its range or of the wrong kind; the text names the option and its range."""


@dataclass(frozen=True)
class Option:
    """One option: what it is called, what it does, its default and the values it takes."""

    name: str  # the keyword of bpy.ops.triposr.generate, of the worker's message and of the server's form
    label: str
    description: str
    default: bool | int | float
    minimum: float | None = None
    maximum: float | None = None
    soft_maximum: float | None = None  # where Blender's slider stops; typing goes on to ``maximum``
    off: int | None = None  # a value below ``minimum`` that turns the option off (0 = keep every face)
    switched_by: str = ""  # the panel option that turns this one on and off instead of ``off``
    flag: str = ""  # the batch's command-line flag, when not --<name with dashes>

    @property
    def cli_flag(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")

    @property
    def ui_minimum(self) -> float | None:
        """The smallest value the panel's field accepts: ``off`` where typing it is how one turns it off."""
        return self.off if self.off is not None and not self.switched_by else self.minimum

    @property
    def range_text(self) -> str:
        if self.minimum is None and self.maximum is None:
            return "any number"
        if self.maximum is None:
            limits = f"at least {self.minimum:g}"
        elif self.minimum is None:
            limits = f"at most {self.maximum:g}"
        else:
            limits = f"from {self.minimum:g} to {self.maximum:g}"
        return f"{self.off} (off) or {limits}" if self.off is not None else limits

    def check(self, value):
        """``value`` as this option's type, or OptionError naming the option and what it takes."""
        if isinstance(self.default, bool):
            if not isinstance(value, bool):
                raise OptionError(f"{self.name} must be true or false, not {value!r}")
            return value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise OptionError(f"{self.name} must be a number, not {value!r}")
        if not math.isfinite(value):
            raise OptionError(f"{self.name} must be a finite number, not {value}")
        if isinstance(self.default, int) and value != int(value):
            raise OptionError(f"{self.name} must be a whole number, not {value}")
        value = type(self.default)(value)
        if value == self.off:
            return value
        below = self.minimum is not None and value < self.minimum
        above = self.maximum is not None and value > self.maximum
        if below or above:
            raise OptionError(f"{self.name} must be {self.range_text}, not {value:g}")
        return value

    def parse(self, text: str):
        """A value typed on a command line or sent in a form (booleans as true/false)."""
        if isinstance(self.default, bool):
            lowered = text.strip().lower()
            if lowered not in ("true", "false"):
                raise OptionError(f"{self.name} must be true or false, not {text!r}")
            return lowered == "true"
        try:
            number = float(text)
        except ValueError:
            raise OptionError(f"{self.name} must be a number, not {text!r}") from None
        return self.check(number)


REMOVE_BACKGROUND = Option(
    "remove_background",
    "Remove Background",
    "Cut the object out of its background first; an image with a transparent background keeps its own",
    default=True,
    flag="--no-remove-bg",
)
FOREGROUND_RATIO = Option(
    "foreground_ratio",
    "Foreground Ratio",
    "How much of the framed square the object fills: lower it if parts get cut off",
    default=DEFAULT_FOREGROUND_RATIO,
    minimum=0.5,
    maximum=1.0,
)
RESOLUTION = Option(
    "resolution",
    "Resolution",
    "Marching-cubes grid size per axis: finer detail, but time and memory grow with its cube",
    default=DEFAULT_RESOLUTION,
    minimum=32,
    maximum=1024,
    soft_maximum=512,
)
THRESHOLD = Option(
    "threshold",
    "Threshold",
    "Density where the surface is drawn: lower for a fuller shape, higher if it is bloated or has blobs",
    default=DEFAULT_THRESHOLD,
    minimum=0.0,
    soft_maximum=100.0,
)
SMOOTHING = Option(
    "smoothing",
    "Smoothing",
    "Width in the model's texels over which lumps are evened out, keeping the volume "
    "(0 keeps the raw surface)",
    default=0.0,
    minimum=0.0,
    maximum=2.0,
)
REMOVE_FLOATERS = Option(
    "remove_floaters",
    "Remove Floaters",
    "Drop the small pieces of surface apart from the object: those with fewer faces than Floater Size of the "
    "largest piece",
    default=True,
)
FLOATER_FRACTION = Option(
    "floater_fraction",
    "Floater Size",
    "A piece of the mesh with fewer faces than this share of the largest piece's counts as a floater",
    default=0.05,
    minimum=0.0,
    maximum=0.5,
)
TARGET_FACES = Option(
    "target_faces",
    "Target Faces",
    "Decimate to at most this many triangles before coloring, for a light asset (0 keeps every triangle)",
    default=0,
    minimum=MIN_TARGET_FACES,
    soft_maximum=200_000,
    off=0,
)
TEXTURE_SIZE = Option(
    "texture_size",
    "Texture Size",
    "Width and height of the baked texture in pixels: finer detail, 4× the time and memory per doubling",
    default=2048,
    minimum=512,
    maximum=4096,
    off=0,
    switched_by="color_mode",
)
PHOTO_TEXTURE = Option(
    "photo_texture",
    "Photo Texture",
    "Project the photo's own detail onto the side of the object it shows, where the outlines match",
    default=True,
)
QUAD_REMESH = Option(
    "quad_remesh",
    "Quad Remesh",
    "Remesh into about this many quads with QuadriFlow, keeping the Color Attribute (0 keeps the triangles)",
    default=0,
    minimum=MIN_QUADS,
    maximum=MAX_QUADS,
    soft_maximum=10_000,
    off=0,
)
# The quads carry colors per vertex; a baked texture's UV layout would not survive the remesh.
QUAD_REMESH_WITH_TEXTURE = (
    "Quad Remesh carries colors as a Color Attribute, not a baked texture: set Color to Color Attribute for "
    "quads, or Quad Remesh to 0 for the texture."
)
SHADE_SMOOTH = Option("shade_smooth", "Shade Smooth", "Smooth shading instead of flat facets", default=True)
TARGET_SIZE = Option(
    "target_size",
    "Size",
    "Length of the object's longest side, in Blender units (at the 3D cursor)",
    default=2.0,
    minimum=0.001,
    soft_maximum=100.0,
    flag="--size",
)

# What the worker needs, in the order the panel shows them: first for the image, then for the mesh.
IMAGE_OPTIONS = (REMOVE_BACKGROUND, FOREGROUND_RATIO)
MESH_OPTIONS = (
    RESOLUTION,
    THRESHOLD,
    SMOOTHING,
    REMOVE_FLOATERS,
    FLOATER_FRACTION,
    TARGET_FACES,
    TEXTURE_SIZE,
    PHOTO_TEXTURE,
)
# How the object is made in Blender: the worker never sees these.
OBJECT_OPTIONS = (QUAD_REMESH, SHADE_SMOOTH, TARGET_SIZE)
OPTIONS = {option.name: option for option in (*IMAGE_OPTIONS, *MESH_OPTIONS, *OBJECT_OPTIONS)}


@dataclass(frozen=True)
class MeshOptions:
    """How scene codes become a mesh. ``smoothing`` 0 keeps the raw surface; ``target_faces`` 0 keeps every
    face; ``texture_size`` 0 keeps vertex colours instead of baking a texture."""

    resolution: int = RESOLUTION.default
    threshold: float = THRESHOLD.default
    smoothing: float = SMOOTHING.default
    remove_floaters: bool = REMOVE_FLOATERS.default
    floater_fraction: float = FLOATER_FRACTION.default
    target_faces: int = TARGET_FACES.off
    texture_size: int = TEXTURE_SIZE.off
    photo_texture: bool = PHOTO_TEXTURE.default

    def __post_init__(self):
        for field in dataclasses.fields(self):
            object.__setattr__(self, field.name, OPTIONS[field.name].check(getattr(self, field.name)))

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_attributes(cls, source, **given):
        """From any object with an attribute per option (Blender properties, parsed arguments), the options
        in ``given`` taken from there instead."""
        names = [field.name for field in dataclasses.fields(cls)]
        return cls(**{name: given[name] if name in given else getattr(source, name) for name in names})

    @classmethod
    def from_dict(cls, values: Mapping):
        """From a message or a form; unknown names are refused, missing ones take their defaults."""
        names = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise OptionError(f"Unknown option(s): {', '.join(unknown)}. Known: {', '.join(sorted(names))}.")
        return cls(**values)


@dataclass(frozen=True)
class GenerateOptions(MeshOptions):
    """Everything the worker needs besides the image and the model: how the image is prepared, then the
    mesh options."""

    remove_background: bool = REMOVE_BACKGROUND.default
    foreground_ratio: float = FOREGROUND_RATIO.default

    @property
    def mesh(self) -> MeshOptions:
        names = (field.name for field in dataclasses.fields(MeshOptions))
        return MeshOptions(**{name: getattr(self, name) for name in names})
