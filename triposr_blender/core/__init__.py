"""TripoSR inference core: image in, coloured triangle mesh out. Never imports ``bpy``.

Public API (the add-on, batch scripts and tests call exactly this)::

    from triposr_blender.core import TripoSR, preprocess_image
    model = TripoSR.from_pretrained("stabilityai/TripoSR", device="auto")
    image = preprocess_image(pil_image, remove_background=True, foreground_ratio=0.85)
    scene = model.encode(image)                      # [1, 3, C, H, W] triplanes
    fields = model.query(scene, points)              # {"density": (N,), "color": (N, 3)}
    mesh = model.extract_mesh(scene, resolution=256, threshold=25.0)
"""

from .errors import Cancelled, InvalidImageError, ModelLoadError, NoSurfaceError, TripoSRError
from .isosurface import Mesh
from .model import TripoSR
from .preprocess import preprocess_image

__all__ = [
    "Cancelled",
    "InvalidImageError",
    "Mesh",
    "ModelLoadError",
    "NoSurfaceError",
    "TripoSR",
    "TripoSRError",
    "preprocess_image",
]
