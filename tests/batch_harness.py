"""Running the batch as users run it, in tests: its command, a folder of good and bad images, its report."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import FIXTURE_IMAGE, FIXTURE_MODEL, FIXTURE_RESOLUTION, FIXTURE_THRESHOLD, REPO

TINY_MODEL_ARGS = [
    "--model", FIXTURE_MODEL, "--device", "cpu", "--no-remove-bg",
    "--resolution", FIXTURE_RESOLUTION, "--threshold", repr(FIXTURE_THRESHOLD),
]  # fmt: skip


def run_python(*arguments, cwd=REPO):
    command = [sys.executable, *map(str, arguments)]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300, check=False)


def run_batch(*args):
    return run_python("-m", "triposr_blender.batch", "--", *args)


def image_folder(folder):
    """Two good images, a truncated PNG, a text file named .png, and a text file the folder scan ignores."""
    folder.mkdir()
    shutil.copy(FIXTURE_IMAGE, folder / "disc.png")
    shutil.copy(FIXTURE_IMAGE, folder / "square.png")
    (folder / "truncated.png").write_bytes(FIXTURE_IMAGE.read_bytes()[:200])
    (folder / "notes.png").write_text("not an image\n")
    (folder / "readme.txt").write_text("not an input\n")
    return folder


def image_copies(folder, count):
    """``count`` copies of the fixture image, image000.png and on."""
    folder.mkdir()
    for number in range(count):
        shutil.copy(FIXTURE_IMAGE, folder / f"image{number:03}.png")
    return folder


def statuses(report_path):
    """The report's items by input file name."""
    report = json.loads(report_path.read_text())
    return {Path(item["input"]).name: item for item in report["images"]}
