"""TripoSR inference core: image in, coloured triangle mesh out. Never imports ``bpy``.

Public API (the add-on, batch scripts and tests call exactly this)::

    from triposr_blender.core import TripoSR, preprocess_image
    model = TripoSR.from_pretrained("stabilityai/TripoSR", device="auto")
    image = preprocess_image(pil_image, remove_background=True, foreground_ratio=0.85)
    scene = model.encode(image)                      # [1, 3, C, H, W] triplanes
    fields = model.query(scene, points)              # {"density": (N,), "color": (N, 3)}
    mesh = model.extract_mesh(scene, resolution=256, threshold=25.0)

Importing the package loads neither PyTorch nor the other dependencies: the names that need them are
imported on first use. Blender's side imports only the modules in ``TORCH_FREE_MODULES`` (numpy at most),
which must work, and fast, before the dependencies are installed.
"""

import importlib

from .errors import Cancelled, InvalidImageError, ModelLoadError, NoSurfaceError, TripoSRError
from .mesh import BakedTexture, Mesh

# The modules Blender's process may import: they need numpy at most, never PyTorch.
TORCH_FREE_MODULES = (
    "color",
    "defaults",
    "errors",
    "export",
    "mesh",
    "orientation",
    "preview",
    "progress",
    "raster",
    "result_archive",
    "scene_codes",
    "shading",
)
# The public names that need the dependencies, and the module of each.
_ON_FIRST_USE = {"TripoSR": ".model", "preprocess_image": ".preprocess"}

__all__ = [
    "BakedTexture",
    "Cancelled",
    "InvalidImageError",
    "Mesh",
    "ModelLoadError",
    "NoSurfaceError",
    "TripoSR",
    "TripoSRError",
    "preprocess_image",
]


def __getattr__(name: str):
    if name in _ON_FIRST_USE:
        return getattr(importlib.import_module(_ON_FIRST_USE[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
