"""TripoSR Image to 3D: a Blender extension that turns one image into a coloured 3D mesh.

Blender imports this package (as ``bl_ext.<repository>.triposr_blender``) and calls ``register``.
Importing it loads neither bpy nor torch: the model's worker process imports this package too, without
bpy, and Blender must start fast whether or not the dependencies are installed yet. ARCHITECTURE.md
describes the layers below.
"""

# The backends that come with the extension, this computer's worker process and a TripoSR server: imported
# here, the root of every use of the package, so that ``backends.backend_for`` can choose among them (it
# takes every subclass imported) while the panel and the batch name neither.
from .backends import remote as _server_backend  # noqa: F401
from .worker import client as _worker_backend  # noqa: F401


def register() -> None:
    from . import ui

    ui.register()


def unregister() -> None:
    from . import ui

    ui.unregister()
