"""TripoSR Image to 3D: a Blender extension that turns one image into a coloured 3D mesh.

Blender imports this package (as ``bl_ext.<repository>.triposr_blender``) and calls ``register``.
Importing it loads neither bpy nor torch: the model's worker process imports this package too, without
bpy, and Blender must start fast whether or not the dependencies are installed yet. ARCHITECTURE.md
describes the layers below.
"""


def register() -> None:
    from . import ui

    ui.register()


def unregister() -> None:
    from . import ui

    ui.unregister()
