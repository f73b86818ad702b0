"""The batch's entry point, for ``python -m triposr_blender.batch`` and for Blender running this file as a
script (``blender -b --python <extension folder>/batch/__main__.py -- ...``)."""

import importlib
import sys
from pathlib import Path


def package_of_this_file():
    """The extension package this file belongs to, when Blender runs the file as a plain script.

    Installed, the package is ``bl_ext.<repository>.triposr_blender`` and is already imported when the
    extension is enabled; otherwise it is imported from its folder under its folder's name.
    """
    folder = Path(__file__).resolve().parent.parent
    for module in list(sys.modules.values()):
        module_file = getattr(module, "__file__", None)
        if module_file and Path(module_file).resolve() == folder / "__init__.py":
            return module
    sys.path.insert(0, str(folder.parent))
    return importlib.import_module(folder.name)


def run_batch() -> None:
    # Run as a script, this file is outside its package: the package's own modules are found through it.
    package = package_of_this_file().__name__ if not __package__ else __package__.rpartition(".")[0]
    command = importlib.import_module(f"{package}.batch.command")
    exit_code = command.main()
    if "bpy" in sys.modules:  # the batch ran in the bpy module
        importlib.import_module(f"{package}.batch.in_blender").exit_bpy_module(exit_code)
    sys.exit(exit_code)


if __name__ == "__main__":
    run_batch()
