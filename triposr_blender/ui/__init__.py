"""The registered part of the add-on: properties, preferences, operators, panels, drop handler, menus.

Everything here is a Blender class or draws one; the data work is ``blender``'s, the model's ``worker``'s.
"""

import bpy

from . import drop, install_ops, operators, panel, preferences, properties, references, translations

# Registration order: the translations first (Blender translates as it registers), properties before the
# classes that use them, the panel after its operators.
MODULES = (translations, install_ops, properties, preferences, operators, drop, references, panel)


def register() -> None:
    for module in MODULES:
        for cls in module.classes:
            bpy.utils.register_class(cls)
        if hasattr(module, "register"):
            module.register()


def unregister() -> None:
    for module in reversed(MODULES):
        if hasattr(module, "unregister"):
            module.unregister()
        for cls in reversed(module.classes):
            bpy.utils.unregister_class(cls)
