"""What the installer installs comes as wheels on every Blender and platform the extension supports.

Blender's Python has no headers and most artists have no compiler, so a package that must be built from its
source fails the first run. pip's own resolver works out what the installer would install (requirements.txt,
with the numpy that Blender ships pinned) for each supported Python and platform, taking wheels only. A
source distribution is allowed only where it builds into a pure-Python wheel with no compiler at hand; pip
then takes that wheel from a local folder, as it would build it on the artist's machine.

These tests read the package index (PyPI, as the installer does): its metadata, not the packages. PyTorch's
own index, which the installer adds for CUDA and ROCm builds, serves the same versions and is not reached
here; PyPI's torch stands in for it. pip evaluates environment markers for the Python that runs it, not for
the --platform it is given (pypa/pip#11664), so the resolver runs with the target's marker values.
"""

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from triposr_blender.vendor_install import default_requirements_file, read_requirements

pytestmark = pytest.mark.index

# Each supported Blender's Python, and the numpy that Blender ships.
BLENDER_PYTHONS = {
    "3.11.9": "1.26.4",  # Blender 4.2 LTS to 5.0
    "3.13.0": "2.5.5",  # Blender 5.1 to 5.3 (the newest numpy 5.3's bpy takes)
}
# The manifest's platforms: the wheel tags of the oldest system the add-on runs on, and its marker values.
# On Apple silicon that is macOS 14, PyTorch 2.13's oldest (the installer says so on an older Mac); pip itself
# adds the older macOS tags. On Linux, glibc 2.28 as Blender needs: pip does not expand manylinux_2_28 to the
# older manylinux tags it accepts, so they are listed (with the legacy aliases of 2.17, 2.12 and 2.5).
GLIBC_2_28 = [f"manylinux_2_{minor}_x86_64" for minor in range(28, 4, -1)] + [
    "manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64",
]  # fmt: skip
PLATFORMS = {
    "windows-x64": (["win_amd64"], {"os_name": "nt", "sys_platform": "win32", "platform_system": "Windows",
                                    "platform_machine": "AMD64"}),
    "macos-arm64": (["macosx_14_0_arm64"], {"os_name": "posix", "sys_platform": "darwin",
                                            "platform_system": "Darwin", "platform_machine": "arm64"}),
    "linux-x64": (GLIBC_2_28, {"os_name": "posix", "sys_platform": "linux", "platform_system": "Linux",
                               "platform_machine": "x86_64"}),
}  # fmt: skip

# pip, with its environment markers evaluated for another Python and platform (json in argv[1]).
PIP_FOR_TARGET = """
import json, sys
from pip._vendor.packaging import markers
environment = dict(markers.default_environment(), **json.loads(sys.argv[1]))
markers.default_environment = lambda: dict(environment)
from pip._internal.cli.main import main
sys.exit(main(sys.argv[2:]))
"""


def marker_values(python: str, platform_markers: dict) -> dict:
    return {
        **platform_markers,
        "python_version": python.rsplit(".", 1)[0],
        "python_full_version": python,
        "implementation_name": "cpython",
        "implementation_version": python,
        "platform_python_implementation": "CPython",
        "platform_release": "",
        "platform_version": "",
    }


def pip_report(tmp_path, arguments, markers=None, env=None) -> list[dict]:
    """Run pip's resolver (nothing is installed) and return the packages of its installation report."""
    report = tmp_path / "report.json"
    command = [sys.executable, "-c", PIP_FOR_TARGET, json.dumps(markers or {}), "install", "--dry-run",
               "--ignore-installed", "--quiet", "--report", str(report), "--target", str(tmp_path / "target"),
               "--disable-pip-version-check", *arguments]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(report.read_text())["install"]


def constraints_for(tmp_path, numpy_version: str):
    constraints = tmp_path / "constraints.txt"
    constraints.write_text(f"numpy=={numpy_version}\n")
    return ["--constraint", str(constraints)]


@pytest.fixture(scope="module")
def pure_python_wheels(tmp_path_factory):
    """Wheels built here from every source distribution the installer's set resolves to on this machine,
    with no compiler at hand: a package that needs one fails here, naming itself."""
    folder = tmp_path_factory.mktemp("built-wheels")
    resolved = pip_report(
        tmp_path_factory.mktemp("host"),
        [*constraints_for(folder, BLENDER_PYTHONS["3.13.0"]), *installer_requirements()],
    )
    sources = [item for item in resolved if not item["download_info"]["url"].endswith(".whl")]
    no_compiler = dict(os.environ, CC="/bin/false", CXX="/bin/false")
    for item in sources:
        name, version = item["metadata"]["name"], item["metadata"]["version"]
        command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--no-binary", name,
                   "--wheel-dir", str(folder), f"{name}=={version}"]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=no_compiler)
        assert result.returncode == 0, f"{name} {version} does not build without a compiler:\n{result.stderr}"
    return folder


def installer_requirements() -> list[str]:
    """requirements.txt as the installer reads it and hands it to pip."""
    return read_requirements(default_requirements_file())


def test_every_source_distribution_in_the_set_is_pure_python(pure_python_wheels):
    for wheel in pure_python_wheels.glob("*.whl"):
        assert wheel.name.endswith("-none-any.whl"), f"{wheel.name} is not pure Python"


def resolve_for(folder, wheels, python: str, platform: str) -> list[dict]:
    """What pip installs for the installer's set on ``python`` and ``platform``, wheels only."""
    tags, platform_markers = PLATFORMS[platform]
    return pip_report(
        folder,
        ["--only-binary=:all:", *(f"--platform={tag}" for tag in tags), "--python-version", python,
         "--implementation", "cp",
         "--find-links", str(wheels), *constraints_for(folder, BLENDER_PYTHONS[python]),
         *installer_requirements()],
        markers=marker_values(python, platform_markers),
    )  # fmt: skip


@pytest.fixture(scope="module")
def resolutions(pure_python_wheels, tmp_path_factory):
    """Every (Python, platform) resolved side by side: pip mostly waits on the index. Each test takes its own
    target's answer, or its failure."""
    targets = [(python, platform) for python in BLENDER_PYTHONS for platform in PLATFORMS]
    with ThreadPoolExecutor(len(targets)) as pool:
        yield {
            target: pool.submit(resolve_for, tmp_path_factory.mktemp("resolve"), pure_python_wheels, *target)
            for target in targets
        }


@pytest.mark.parametrize("python", BLENDER_PYTHONS)
@pytest.mark.parametrize("platform", PLATFORMS)
def test_the_installer_s_set_resolves_to_wheels(resolutions, python, platform):
    resolved = resolutions[(python, platform)].result()
    names = {item["metadata"]["name"].lower(): item["metadata"]["version"] for item in resolved}
    assert names["numpy"] == BLENDER_PYTHONS[python]
    assert names["torch"].split("+")[0] == "2.13.0"  # a local build (+cpu) where pip is set to find one
    assert "pymcubes" not in names
    for item in resolved:
        assert item["download_info"]["url"].endswith(".whl")
