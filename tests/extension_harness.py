"""Blender for the extension's tests: the real bpy wheel in a fresh process, with a throw-away user folder.

``build_extension(folder)`` builds the zip as ``make extension`` does. ``Blender`` starts a process that
imports bpy with BLENDER_USER_RESOURCES/BLENDER_USER_CONFIG pointing into a temporary folder (the real
user folder is never touched), then runs the Python snippets a test sends it, each in the same namespace,
and returns the JSON-able value a snippet leaves in ``result``. Helpers available to snippets:

- ``operator(name, **kwargs)``: calls ``bpy.ops.<name>``; {"result": [...]} or {"error": message}.
- ``scene_counts()``: how many objects, meshes, materials and images the file holds.
"""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGE = "bl_ext.user_default.triposr_blender"
RESULT_MARKER = "\x1eRESULT "
STARTUP_TIMEOUT = 120

SERVER = r"""
import json, sys, traceback
import bpy

MARKER = sys.argv[1]

def operator(name, **kwargs):
    group, op = name.split(".")
    try:
        return {"result": sorted(getattr(getattr(bpy.ops, group), op)(**kwargs))}
    except RuntimeError as error:
        return {"error": str(error)}

def scene_counts():
    data = bpy.data
    return {"objects": len(data.objects), "meshes": len(data.meshes), "materials": len(data.materials),
            "images": len(data.images)}

namespace = {"bpy": bpy, "operator": operator, "scene_counts": scene_counts}
for line in sys.stdin:
    request = json.loads(line)
    namespace.update(request["variables"])
    try:
        exec(request["code"], namespace)
        reply = {"result": namespace.pop("result", None)}
    except Exception:
        reply = {"exception": traceback.format_exc()}
    sys.stdout.write(MARKER + json.dumps(reply) + "\n")
    sys.stdout.flush()
"""


def blender_ext_tool() -> Path:
    """Blender's own extension tool (blender_ext.py), found as scripts/build_extension.py finds it."""
    spec = importlib.util.spec_from_file_location("build_extension", REPO / "scripts" / "build_extension.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script.find_blender_ext_tool()


def build_extension(folder: Path) -> Path:
    """Build the extension zip into ``folder`` (staging there too) and return its path."""
    subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "build_extension.py"),
            *("--staging", str(folder / "staging")),
            *("--output-dir", str(folder / "dist")),
        ],
        check=True,
        capture_output=True,
    )
    (zip_path,) = (folder / "dist").glob("triposr_blender-*.zip")
    return zip_path


class BlenderError(AssertionError):
    """A snippet raised inside Blender; the message carries its traceback and Blender's output."""


class Blender:
    """One bpy process; ``run`` executes a snippet in it and returns its ``result``."""

    def __init__(self, user_folder: Path, environment: dict[str, str] | None = None):
        env = {**os.environ, **(environment or {})}
        env["BLENDER_USER_RESOURCES"] = str(user_folder)
        env["BLENDER_USER_CONFIG"] = str(user_folder / "config")
        self.process = subprocess.Popen(
            [sys.executable, "-c", SERVER, RESULT_MARKER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            text=True,
            cwd=REPO,
        )

    def run(self, code: str, **variables):
        self.process.stdin.write(json.dumps({"code": code, "variables": variables}) + "\n")
        self.process.stdin.flush()
        output = []
        for line in self.process.stdout:
            if line.startswith(RESULT_MARKER):
                reply = json.loads(line[len(RESULT_MARKER) :])
                if "exception" in reply:
                    raise BlenderError(reply["exception"] + "\nBlender's output:\n" + "".join(output))
                return reply["result"]
            output.append(line)
        raise BlenderError(f"Blender exited ({self.process.wait()}):\n" + "".join(output))

    def install(self, zip_path: Path) -> None:
        """Install and enable the zip with Blender's extension installer, as a user does."""
        self.run(
            "operator('extensions.package_install_files', filepath=path, repo='user_default', "
            "enable_on_install=True)\n"
            "assert module in bpy.context.preferences.addons, 'the extension did not install'",
            path=str(zip_path),
            module=PACKAGE,
        )

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=STARTUP_TIMEOUT)
