"""TripoSR Image to 3D: a Blender extension that turns one image into a coloured 3D mesh.

Blender imports this package (as ``bl_ext.<repository>.triposr_blender``) and calls ``register``.
Importing it loads neither bpy nor torch: the model's worker process imports this package too, without
bpy, and Blender must start fast whether or not the dependencies are installed yet.
"""


def _ui_modules() -> tuple:
    """The modules that register something, in registration order. Each has ``classes`` and maybe
    ``register``/``unregister`` for what is not a class (properties on Blender types, handlers)."""
    from . import file_handler, operators, panel, preferences, properties, references, ui_dependencies

    return (ui_dependencies, properties, preferences, operators, file_handler, references, panel)


def register() -> None:
    import bpy

    from .dependencies import ensure_on_sys_path

    ensure_on_sys_path()
    for module in _ui_modules():
        for cls in module.classes:
            bpy.utils.register_class(cls)
        if hasattr(module, "register"):
            module.register()


def unregister() -> None:
    import bpy

    for module in reversed(_ui_modules()):
        if hasattr(module, "unregister"):
            module.unregister()
        for cls in reversed(module.classes):
            bpy.utils.unregister_class(cls)
