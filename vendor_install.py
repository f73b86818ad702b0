#!/usr/bin/env python3
"""The dependency installer, run from a source checkout: ``python vendor_install.py --target DIR ...``.

The installer itself is ``triposr_blender/vendor_install.py`` (the built extension ships it at its root);
this file only runs it, so the checkout keeps the command its README has always given.
"""

import runpy
from pathlib import Path

runpy.run_path(
    str(Path(__file__).resolve().parent / "triposr_blender" / "vendor_install.py"), run_name="__main__"
)
