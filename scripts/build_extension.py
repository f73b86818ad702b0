"""Build the extension zip: ``python scripts/build_extension.py`` -> dist/triposr_blender-<version>.zip

The package's contents become the root of the extension (Blender imports that folder as
``bl_ext.<repo>.triposr_blender``), next to the manifest, the requirements its installer installs and
the license; the optional extras (the server, the batch on Ray) are left out, as they cannot run in Blender.
Blender's own extension tool validates and zips the staged folder; it runs under plain Python, so the one
shipped inside the ``bpy`` wheel does the job without a Blender binary.
"""

import argparse
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "triposr_blender"
FILES_BESIDE_PACKAGE = ("blender_manifest.toml", "requirements.txt", "LICENSE")
# The optional extras need FastAPI or Ray, which are never installed into Blender: they stay out of the zip.
EXTRAS_OUTSIDE_BLENDER = ("server", "on_ray.py", "ray_cluster.py")
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", ".*", *EXTRAS_OUTSIDE_BLENDER)


def find_blender_ext_tool() -> Path:
    """Locate ``blender_ext.py`` in the installed ``bpy`` wheel without importing bpy (a second's work)."""
    spec = importlib.util.find_spec("bpy")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("The bpy wheel is not installed; run `make setup` first, or pass --blender-ext.")
    bpy_dir = Path(next(iter(spec.submodule_search_locations)))
    tools = sorted(bpy_dir.glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
    if not tools:
        sys.exit(f"No blender_ext.py found under {bpy_dir}; pass --blender-ext.")
    return tools[-1]


def stage(staging: Path) -> None:
    """Copy the extension's files into a clean ``staging`` folder."""
    missing = [name for name in FILES_BESIDE_PACKAGE if not (REPO / name).is_file()]
    if missing:
        sys.exit(f"Cannot build the extension: missing {', '.join(missing)} in {REPO}.")
    if staging.exists():
        shutil.rmtree(staging)
    shutil.copytree(PACKAGE, staging, ignore=IGNORED)
    for name in FILES_BESIDE_PACKAGE:
        shutil.copy2(REPO / name, staging / name)


def run_tool(tool: Path, *args: str) -> None:
    subprocess.run([sys.executable, str(tool), *args], check=True)


def build(staging: Path, output_dir: Path, tool: Path) -> None:
    stage(staging)
    run_tool(tool, "validate", str(staging))
    output_dir.mkdir(parents=True, exist_ok=True)
    run_tool(tool, "build", "--source-dir", str(staging), "--output-dir", str(output_dir))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--staging", type=Path, default=REPO / "build" / "extension", help="staging (wiped)")
    parser.add_argument("--output-dir", type=Path, default=REPO / "dist", help="where the zip goes")
    parser.add_argument("--blender-ext", type=Path, help="Blender's blender_ext.py (default: bpy wheel's)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        build(args.staging, args.output_dir, args.blender_ext or find_blender_ext_tool())
    except subprocess.CalledProcessError as error:
        sys.exit(f"Blender's extension tool failed (exit status {error.returncode}); see its output above.")


if __name__ == "__main__":
    main()
