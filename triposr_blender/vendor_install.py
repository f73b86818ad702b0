#!/usr/bin/env python3
"""Install the Python packages TripoSR for Blender needs into a private folder, for Blender's Python.

Inside Blender (the target defaults to the extension's own user folder):

    blender -b --python vendor_install.py -- --torch auto

With any Python, for that Python or for the one named with --python:

    python vendor_install.py --target DIR [--torch auto|cpu|default|cu126|cu130|rocm7.2] [--dry-run]

pip installs into a staging folder beside the target; the packages are then imported in a fresh interpreter
(which also compiles and caches rembg's numba code once), and only then does the staging folder replace the
target. A failure or a cancel leaves the target as it was. Never run with admin rights: the target is a user
folder, and Blender's own site-packages is never written.

The target is replaced whole, so the installer only ever replaces or deletes a folder it made itself (one
holding triposr-install.json), or an empty one: --target ~/shared refuses rather than wipes that folder. One
install at a time per target: <target>.lock names the process and host holding it, and a lock whose holder
has died is taken over.

The package list is requirements.txt beside this script. Lines starting with "@@" are events for the add-on's
progress display: "@@<kind> <json object>".
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import importlib
import io
import json
import ntpath
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar
from urllib.parse import unquote

PACKAGE = "triposr_blender"
TORCH_INDEX = "https://download.pytorch.org/whl"
EXIT_FAILED = 1
EXIT_CANCELLED = 130
OUTPUT_TAIL_LINES = 40
# What the installer records in every folder it makes; it also marks the folder as the installer's own.
INSTALL_INFO_FILE = "triposr-install.json"
# A lock's holder touches it this often; one untouched for much longer than that has died (on any host).
LOCK_REFRESH_S = 30.0
LOCK_STALE_AFTER_S = 300.0
# pip learnt --progress-bar raw (byte counts of each download on stdout) in 24.1.
RAW_PROGRESS_PIP = (24, 1)
# SIGBREAK: Ctrl+Break in a Windows console.
CANCEL_SIGNALS = tuple(name for name in ("SIGTERM", "SIGBREAK") if hasattr(signal, name))

# The share of the progress bar each phase fills: downloads dominate, the first import of rembg comes second.
DOWNLOAD_END = 0.80
VERIFY_START = 0.85
VERIFY_END = 0.98

# Import names that differ from the distribution names in requirements.txt.
IMPORT_NAMES = {"pillow": "PIL", "opencv_python_headless": "cv2", "pyyaml": "yaml"}

# Approximate downloads, in MB, for the size shown before installing (pip prints the real sizes as it goes):
# PyTorch 2.x wheels with their CUDA/ROCm libraries on Linux x86_64 (Windows CUDA wheels are smaller),
# and the rest of requirements.txt (rembg's onnxruntime, opencv, scipy, scikit-image, numba, numpy, ...).
TORCH_DOWNLOAD_MB = {"cpu": 190, "cuda": 3500, "rocm": 4600, "macos": 80}
OTHER_PACKAGES_DOWNLOAD_MB = 250


# ----------------------------------------------------------------------------------------- torch build choice


@dataclass(frozen=True)
class Machine:
    """What the torch build depends on: operating system, CPU, NVIDIA driver and GPU, ROCm."""

    system: str  # platform.system(): "Linux", "Windows", "Darwin"
    arch: str  # platform.machine(): "x86_64", "AMD64", "arm64", ...
    nvidia_driver: tuple[int, ...] | None = None
    gpu_name: str = ""
    compute_capability: tuple[int, int] | None = None
    rocm_version: str | None = None
    macos_version: tuple[int, ...] | None = None  # platform.mac_ver() on a Mac


@dataclass(frozen=True)
class TorchBuild:
    name: str  # "cpu", "default" (whatever PyPI serves), "cu126", "rocm7.2", ...
    reason: str

    @property
    def index_url(self) -> str | None:
        return None if self.name == "default" else f"{TORCH_INDEX}/{self.name}"


@dataclass(frozen=True)
class CudaBuild:
    name: str
    oldest_gpu: tuple[int, int]  # compute capability
    newest_gpu: tuple[int, int] | None  # None: the build carries PTX, which newer GPUs compile at load

    @property
    def cuda_major(self) -> int:
        return int(self.name[2:]) // 10

    def minimum_driver(self, system: str) -> tuple[int, ...]:
        linux, windows = CUDA_DRIVER_MINIMUM[self.cuda_major]
        return windows if system == "Windows" else linux

    def runs_on(self, capability: tuple[int, int] | None) -> bool:
        if capability is None:
            return True  # unknown GPU generation: let the driver decide
        return self.oldest_gpu <= capability and (self.newest_gpu is None or capability <= self.newest_gpu)


# PyTorch's wheels bring their own CUDA runtime, so the driver only has to offer CUDA *minor version
# compatibility* with the build's CUDA major version. Minimum drivers (Linux / Windows) from NVIDIA's CUDA
# Toolkit release notes, table "CUDA Toolkit and Minimum Required Driver Version for CUDA Minor Version
# Compatibility", and https://docs.nvidia.com/deploy/cuda-compatibility/minor-version-compatibility.html:
#   CUDA 11.x (cu118): >= 450.80.02 / 452.39   (no torch 2.13 build, so not offered by --torch auto)
#   CUDA 12.x (cu126): >= 525.60.13 / 528.33
#   CUDA 13.x (cu130): >= 580.65.06 / 580.88   (the R580 drivers released with CUDA 13.0)
CUDA_DRIVER_MINIMUM = {
    12: ((525, 60, 13), (528, 33)),
    13: ((580, 65, 6), (580, 88)),
}

# The stable CUDA builds of torch 2.13, newest first. PyTorch's release matrix for 2.13: CUDA 12.6 and 13.0
# stable, 13.2 experimental (ask for it with --torch cu132), ROCm 7.2; no 12.8 build any more. GPU generations
# from PyTorch's CUDA support matrix: 12.6 covers Maxwell (5.0) to Hopper (9.0); 13.0 dropped Maxwell, Pascal
# and Volta and covers Turing (7.5) to Blackwell (12.0), with PTX for newer GPUs. So an RTX 50 (Blackwell,
# 12.0) needs cu130, and a GTX 10 (Pascal, 6.1) needs cu126.
CUDA_BUILDS = (
    CudaBuild("cu130", oldest_gpu=(7, 5), newest_gpu=None),
    CudaBuild("cu126", oldest_gpu=(5, 0), newest_gpu=(9, 0)),
)
ROCM_BUILD = "rocm7.2"
# PyTorch stopped building for Intel Macs after 2.2; this installer refuses rather than fail inside pip.
NO_BUILD = "none"
INTEL_MAC_REASON = (
    "PyTorch 2.13 has no build for Intel Macs (the last was 2.2), so TripoSR cannot run on this Mac. Use an "
    "Apple silicon Mac, or a Windows or Linux computer"
)
# PyTorch 2.13's Apple silicon wheels are built for macOS 14 and newer (tagged macosx_14_0_arm64).
OLDEST_MACOS = (14, 0)
TORCH_BUILD_PATTERN = re.compile(r"auto|cpu|default|xpu|cu\d{3}|rocm\d+(\.\d+)*")


def choose_torch_build(machine: Machine) -> TorchBuild:
    """The torch build for this machine, and why. Pure: the detection happens in detect_machine()."""
    if machine.nvidia_driver is not None:
        return _choose_cuda_build(machine)
    if machine.system == "Linux" and machine.rocm_version:
        return TorchBuild(
            ROCM_BUILD, f"ROCm {machine.rocm_version} found; PyTorch's AMD GPU build is {ROCM_BUILD}"
        )
    if (
        machine.system == "Darwin"
        and machine.arch == "arm64"
        and (machine.macos_version or OLDEST_MACOS) < OLDEST_MACOS
    ):
        return TorchBuild(NO_BUILD, old_macos_reason(machine.macos_version))
    if machine.system == "Darwin" and machine.arch == "arm64":
        return TorchBuild("default", "Apple silicon: the standard wheels use the GPU through Metal (MPS)")
    if machine.system == "Darwin":
        return TorchBuild(NO_BUILD, INTEL_MAC_REASON)
    return TorchBuild("cpu", "no NVIDIA or AMD GPU found")


def old_macos_reason(version: tuple[int, ...]) -> str:
    return (
        f"PyTorch 2.13 needs macOS {OLDEST_MACOS[0]} (Sonoma) or newer, and this Mac runs macOS "
        f"{'.'.join(map(str, version))}, so TripoSR cannot run on it yet. Update macOS, then install again"
    )


def _choose_cuda_build(machine: Machine) -> TorchBuild:
    driver = _format_version(machine.nvidia_driver)
    gpu = f"NVIDIA {machine.gpu_name or 'GPU'} with driver {driver}"
    capability = machine.compute_capability or _capability_from_name(machine.gpu_name)
    for build in CUDA_BUILDS:
        if build.runs_on(capability) and machine.nvidia_driver >= build.minimum_driver(machine.system):
            return TorchBuild(build.name, f"{gpu}: the newest CUDA build that this driver and GPU support")
    usable = [build for build in CUDA_BUILDS if build.runs_on(capability)]
    if not usable:
        return TorchBuild("cpu", f"{gpu}: no CUDA build of PyTorch supports this GPU generation")
    minimum = _format_version(usable[-1].minimum_driver(machine.system))
    return TorchBuild(
        "cpu", f"{gpu}: the driver is too old for PyTorch; update it to {minimum} or newer to use the GPU"
    )


def _capability_from_name(gpu_name: str) -> tuple[int, int] | None:
    # Only for drivers whose nvidia-smi cannot report compute_cap: RTX 50 cards are Blackwell (12.0).
    return (12, 0) if re.search(r"RTX\s*50\d0", gpu_name) else None


def _format_version(version: tuple[int, ...]) -> str:
    return ".".join(f"{part:02d}" if index else str(part) for index, part in enumerate(version))


def resolve_torch_build(requested: str, machine: Machine | None = None) -> TorchBuild:
    if requested != "auto":
        return TorchBuild(requested, "chosen with --torch")
    return choose_torch_build(machine or detect_machine())


def detect_machine() -> Machine:
    driver, name, capability = read_nvidia_gpu()
    macos = tuple(int(part) for part in re.findall(r"\d+", platform.mac_ver()[0])) or None
    return Machine(
        platform.system(), platform.machine(), driver, name, capability, read_rocm_version(), macos
    )


def read_nvidia_gpu() -> tuple[tuple[int, ...] | None, str, tuple[int, int] | None]:
    """Driver version, name and compute capability of GPU 0 (the one torch uses), from nvidia-smi."""
    command = nvidia_smi(platform.system(), os.environ)
    if command is None:
        return None, "", None
    # Drivers older than R510 do not know the compute_cap field, hence the second query.
    for fields in ("driver_version,name,compute_cap", "driver_version,name"):
        output = _output_of([command, f"--query-gpu={fields}", "--format=csv,noheader"])
        if output:
            return parse_nvidia_smi(output)
    return None, "", None


def parse_nvidia_smi(output: str) -> tuple[tuple[int, ...] | None, str, tuple[int, int] | None]:
    """(driver, name, compute capability) from the first line of nvidia-smi's CSV answer."""
    values = [value.strip() for value in output.splitlines()[0].split(",")]
    driver = tuple(int(part) for part in re.findall(r"\d+", values[0])) or None
    name = values[1] if len(values) > 1 else ""
    capability = re.fullmatch(r"(\d+)\.(\d+)", values[2]) if len(values) > 2 else None  # "[N/A]": vGPUs
    return driver, name, (int(capability[1]), int(capability[2])) if capability else None


def read_rocm_version() -> str | None:
    if platform.system() != "Linux":
        return None
    version_file = Path("/opt/rocm/.info/version")
    if version_file.is_file():
        return version_file.read_text(encoding="utf-8").strip().split("-")[0]
    return "(version unknown)" if _output_of(["rocminfo"]) else None


def _output_of(command: list[str]) -> str:
    try:
        return subprocess.run(
            command, capture_output=True, text=True, timeout=20, check=True, **no_console_window()
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def estimated_download_mb(build_name: str, system: str) -> int:
    kind = "cuda" if build_name.startswith("cu") else "rocm" if build_name.startswith("rocm") else build_name
    if kind == "default":  # PyPI's torch is the CUDA build on Linux, the CPU build on Windows
        kind = {"Darwin": "macos", "Linux": "cuda"}.get(system, "cpu")
    return TORCH_DOWNLOAD_MB.get(kind, TORCH_DOWNLOAD_MB["cuda"]) + OTHER_PACKAGES_DOWNLOAD_MB


# ----------------------------------------------------------------------------------- Windows: the folder


# The variable that names the dependencies' folder, for render farms, shared installs, tests and short paths.
ENV_DEPS_DIR = "TRIPOSR_DEPS_DIR"
# Windows' longest path while long paths are off: MAX_PATH, 260 characters with the terminating NUL.
MAX_PATH = 260
LONG_PATHS_KEY = r"SYSTEM\CurrentControlSet\Control\FileSystem"
LONG_PATHS_COMMAND = (
    r"reg add HKLM\SYSTEM\CurrentControlSet\Control\FileSystem /v LongPathsEnabled /t REG_DWORD /d 1 /f"
)
# The deepest file path inside the Windows wheels of requirements.txt, from the wheels' own file lists
# (tests/fixtures/windows-deepest-paths.tsv): a licence deep in torch 2.13's dist-info.
DEEPEST_WHEEL_PATH = 167
# pip --target installs into <temp>\pip-target-<8 random characters>\Lib\site-packages first (the "home"
# scheme), then moves each package into the target: that folder holds the same files, deeper.
PIP_TARGET_TEMP = r"pip-target-xxxxxxxx\Lib\site-packages"
STAGING_SUFFIX = ".staging"
# What pip says when Windows refused a path for its length.
PIP_LONG_PATH_HINT = "does not have Windows Long Path support enabled"
# subprocess.CREATE_NO_WINDOW, which the subprocess module defines on Windows only.
CREATE_NO_WINDOW = 0x08000000
# The short per-user folder for the dependencies, under %LOCALAPPDATA%, where Windows has long paths off.
SHORT_FOLDER = ("TripoSR", "deps")


def long_paths_enabled(system: str, winreg=None) -> bool:
    """Whether paths may exceed MAX_PATH: always beyond Windows; there, when LongPathsEnabled is 1.
    (Blender's Python declares itself long-path aware, so the registry setting is all it needs.)"""
    if system != "Windows":
        return True
    winreg = winreg or importlib.import_module("winreg")
    try:
        with winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, LONG_PATHS_KEY) as key:
            value, _kind = winreg.QueryValueEx(key, "LongPathsEnabled")
    except OSError:
        return False
    return value == 1


def dependency_folder(system: str, environ, long_paths: bool, extension_folder) -> str:
    """Where the dependencies go: $TRIPOSR_DEPS_DIR if set; else Blender's extension folder, unless that is
    on Windows with long paths off, where its depth (about 125 characters and the user name) leaves too little
    for PyTorch's deepest files: then a short folder of the user's own, %LOCALAPPDATA%\\TripoSR\\deps.
    ``extension_folder()`` gives Blender's folder, asked for only when it is the answer."""
    if environ.get(ENV_DEPS_DIR):
        return environ[ENV_DEPS_DIR]
    if system != "Windows" or long_paths:
        return extension_folder()
    local = environ.get("LOCALAPPDATA") or ntpath.join(environ.get("USERPROFILE", "C:\\"), "AppData", "Local")
    return ntpath.join(local, *SHORT_FOLDER)


def temp_folder(system: str, environ) -> str:
    """The temporary folder pip's child process uses (Python's tempfile reads these variables in order)."""
    for name in ("TMPDIR", "TEMP", "TMP"):
        if environ.get(name):
            return environ[name]
    if system == "Windows":
        return ntpath.join(environ.get("LOCALAPPDATA", "C:\\"), "Temp")
    return "/tmp"


@dataclass(frozen=True)
class PathBudget:
    """How deep an install writes, and how deep the platform lets it."""

    deepest: int  # characters in the deepest path the install writes
    folder: str  # the folder that path is in: the staging folder, or pip's temporary folder
    limit: int | None  # the longest path the platform takes; None where no limit comes near

    @property
    def left(self) -> int | None:
        return None if self.limit is None else self.limit - self.deepest

    def describe(self) -> str:
        if self.limit is None:
            return f"deepest path {self.deepest} characters, in {self.folder} (no path limit applies)"
        return (
            f"deepest path {self.deepest} of at most {self.limit} characters, in {self.folder} "
            f"({self.left} to spare)"
        )


def path_budget(system: str, long_paths: bool, target: str, environ) -> PathBudget:
    """The deepest path an install into ``target`` writes (in its staging folder, or pip's temporary one)
    against the platform's limit: 259 characters on Windows with long paths off."""
    separator = "\\" if system == "Windows" else "/"
    staging = str(target) + STAGING_SUFFIX
    temp = temp_folder(system, environ)
    pip_temp = PIP_TARGET_TEMP if system == "Windows" else PIP_TARGET_TEMP.replace("\\", "/")
    deepest = max(
        (len(staging) + len(separator) + DEEPEST_WHEEL_PATH, staging),
        (len(temp) + 2 * len(separator) + len(pip_temp) + DEEPEST_WHEEL_PATH, temp),
    )
    limit = MAX_PATH - 1 if system == "Windows" and not long_paths else None
    return PathBudget(deepest[0], deepest[1], limit)


def long_path_message(budget: PathBudget) -> str:
    in_temp = not budget.folder.endswith(STAGING_SUFFIX)
    shorter = (
        f"point TEMP at a shorter folder (e.g. C:\\Temp) for Blender, since pip unpacks into {budget.folder}"
        if in_temp
        else f"choose a shorter folder by setting {ENV_DEPS_DIR} (e.g. to C:\\TripoSR\\deps)"
    )
    return (
        f"PyTorch's deepest file would need a path of {budget.deepest} characters in {budget.folder}, and "
        f"Windows takes at most {budget.limit} while long paths are off. Either turn long paths on (in an "
        f"administrator's terminal: {LONG_PATHS_COMMAND}; or Group Policy > Computer Configuration > "
        "Administrative Templates > System > Filesystem > Enable Win32 long paths), then restart Blender; or "
        f"{shorter}, then install again."
    )


def check_path_budget(budget: PathBudget) -> None:
    if budget.left is not None and budget.left < 0:
        raise InstallError(long_path_message(budget))


def no_console_window(os_name: str = os.name) -> dict:
    """subprocess options that keep a child from flashing a console window on Windows (Blender has none)."""
    return {"creationflags": CREATE_NO_WINDOW} if os_name == "nt" else {}


def nvidia_smi(system: str, environ) -> str | None:
    """nvidia-smi, on PATH or where NVIDIA's Windows drivers put it (System32, or NVSMI in older ones)."""
    found = shutil.which("nvidia-smi", path=environ.get("PATH", ""))
    if found or system != "Windows":
        return found
    folders = (
        os.path.join(environ.get("SystemRoot", "C:\\Windows"), "System32"),
        os.path.join(environ.get("ProgramFiles", "C:\\Program Files"), "NVIDIA Corporation", "NVSMI"),
    )
    candidates = (os.path.join(folder, "nvidia-smi.exe") for folder in folders)
    return next((candidate for candidate in candidates if os.path.isfile(candidate)), None)


# ------------------------------------------------------------------------------------------- requirements


def default_requirements_file() -> Path:
    """requirements.txt beside this script (the extension folder of the built zip), or in the folder above
    (the root of a source checkout)."""
    here = Path(__file__).resolve().parent
    beside = here / "requirements.txt"
    return beside if beside.is_file() else here.parent / "requirements.txt"


def read_requirements(path: Path) -> list[str]:
    lines = (re.sub(r"(^|\s)#.*", "", line).strip() for line in path.read_text(encoding="utf-8").splitlines())
    requirements = [line for line in lines if line]
    options = [line for line in requirements if line.startswith("-")]
    if options:
        raise InstallError(
            f"{path}: pip options such as {options[0]!r} are not supported; list one package a line"
        )
    return requirements


def requirement_name(requirement: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if not match:
        raise InstallError(f"Not a package requirement: {requirement!r}")
    return re.sub(r"[-_.]+", "_", match[1]).lower()


def import_name(requirement: str) -> str:
    name = requirement_name(requirement)
    return IMPORT_NAMES.get(name, name)


def with_torch_build(requirements: list[str], build: TorchBuild) -> list[str]:
    """Pin torch to the chosen build's local version (torch==2.13.0 -> torch==2.13.0+cu130).

    The torch index also serves plain versions, and pip would take any build of torch==2.13.0 from any index;
    the local version makes the choice explicit, and a missing build fails with pip's clear "no matching
    distribution" instead of silently installing another one.
    """
    if build.name == "default":
        return list(requirements)
    return [
        _pin_local_version(line, build.name) if requirement_name(line) == "torch" else line
        for line in requirements
    ]


def _pin_local_version(requirement: str, local: str) -> str:
    exact = re.fullmatch(r"torch\s*==\s*([0-9][0-9.]*)", requirement.strip())
    return f"torch=={exact[1]}+{local}" if exact else requirement


# ------------------------------------------------------------------------------------------- commands


def child_environment() -> dict[str, str]:
    """The environment for pip and the import check: only this Python's own packages and the target count."""
    env = dict(os.environ, PYTHONNOUSERSITE="1", PYTHONIOENCODING="utf-8")
    # User settings that would send the packages elsewhere, or make pip refuse to run outside a virtualenv.
    env.update(PIP_USER="0", PIP_REQUIRE_VIRTUALENV="0")
    for variable in ("PYTHONPATH", "PYTHONHOME"):  # another Python's settings break Blender's Python
        env.pop(variable, None)
    return env


# What the installer needs to know about the target Python, asked in one short run of it.
PROBE = """
import importlib.util, json, pathlib
try:
    import numpy
    numpy_version = numpy.__version__
except ImportError:
    numpy_version = None
spec = importlib.util.find_spec("ensurepip")
wheels = sorted(pathlib.Path(spec.origin).parent.glob("_bundled/pip-*.whl")) if spec else []
try:
    import importlib.metadata
    pip_version = importlib.metadata.version("pip")
except Exception:
    pip_version = wheels[-1].name.split("-")[1] if wheels else None
print(json.dumps({
    "numpy": numpy_version,
    "pip": importlib.util.find_spec("pip") is not None,
    "pip_version": pip_version,
    "bundled_pip": str(wheels[-1]) if wheels else None,
}))
"""


def probe_python(python: str, env: dict[str, str]) -> dict:
    result = subprocess.run(
        [python, "-c", PROBE], env=env, capture_output=True, text=True, timeout=120, **no_console_window()
    )
    if result.returncode != 0:
        raise InstallError(f"Could not run {python}: {result.stderr.strip() or result.returncode}")
    return json.loads(result.stdout)


def pip_for(python: str, probe: dict) -> list[str]:
    """The command that runs pip for `python`; without pip, pip runs from ensurepip's bundled wheel.

    Running pip from that wheel (as ensurepip itself does) installs nothing into Blender's own folder,
    which may be read-only and must stay as Blender shipped it.
    """
    if probe["pip"]:
        return [python, "-m", "pip"]
    if not probe["bundled_pip"]:
        raise InstallError(f"{python} has neither pip nor ensurepip, so packages cannot be installed for it.")
    run_from_wheel = (
        "import runpy, sys; sys.path.insert(0, sys.argv.pop(1));"
        "runpy.run_module('pip', run_name='__main__', alter_sys=True)"
    )
    return [python, "-c", run_from_wheel, probe["bundled_pip"]]


def progress_bar(probe: dict) -> str:
    """pip's progress in bytes where it can report it ("raw"), so a 3 GB download visibly moves."""
    version = tuple(int(part) for part in re.findall(r"\d+", probe.get("pip_version") or "")[:2])
    return "raw" if version >= RAW_PROGRESS_PIP else "off"


def numpy_constraint(probe: dict) -> str:
    """Pin the numpy the target Python already has: a different numpy beside Blender's breaks Blender.

    Blender 4.2-5.0 ship numpy 1.26, Blender 5.1 and newer numpy 2; the add-on runs on both, so a Python
    without numpy gets no pin ("") and whichever numpy requirements.txt allows."""
    return f"numpy=={probe['numpy']}" if probe["numpy"] else ""


def pip_install_command(
    pip: list[str],
    staging: Path,
    constraints: Path,
    requirements: list[str],
    index: list[str],
    options,
    bar: str = "off",
) -> list[str]:
    # fmt: off
    return [
        *pip, "install", "--target", str(staging), "--constraint", str(constraints),
        "--prefer-binary",  # Blender's Python has no headers to build C extensions with
        "--no-input", "--disable-pip-version-check", "--no-warn-script-location", "--progress-bar", bar,
        "--retries", str(options.retries), "--timeout", str(options.timeout),
        *index, *requirements,
    ]
    # fmt: on


def index_options(options, requirements: list[str], build: TorchBuild) -> list[str]:
    """pip's index options. A mirror given with --index-url is the only index: PyTorch's own index is
    added only without one, or as the mirror of it that --torch-index-url names."""
    result = ["--index-url", options.index_url] if options.index_url else []
    for url in options.extra_index_url:
        result += ["--extra-index-url", url]
    for location in options.find_links:
        result += ["--find-links", location]
    if options.no_index:
        result.append("--no-index")
    wants_torch = build.index_url and any(requirement_name(line) == "torch" for line in requirements)
    if wants_torch and options.torch_index_url:
        result += ["--extra-index-url", f"{options.torch_index_url.rstrip('/')}/{build.name}"]
    elif wants_torch and not (options.index_url or options.no_index):
        result += ["--extra-index-url", build.index_url]
    return result


def show_command(command: list[str]) -> str:
    return subprocess.list2cmdline(command) if os.name == "nt" else shlex.join(command)


# ------------------------------------------------------------------------------------------- progress


def emit(kind: str, **fields) -> None:
    print(f"@@{kind} {json.dumps(fields)}", flush=True)


class PipProgress:
    """Turns pip's output lines into progress events: the package at hand and the megabytes so far.

    With ``raw`` (pip's --progress-bar raw), pip reports each download's bytes as it goes ("Progress 1048576
    of 190000000"), and the megabytes count them; otherwise a file counts whole when its download starts.
    """

    COLLECTING = re.compile(r"^Collecting (\S+)")
    DOWNLOADING = re.compile(r"^\s*(Downloading|Using cached) (\S+) \(([\d.]+) (bytes|kB|MB|GB)\)")
    RAW_PROGRESS = re.compile(r"^Progress (\d+) of (\d+)$")
    PROCESSING = re.compile(r"^\s*Processing (\S+)")
    INSTALLING = re.compile(r"^Installing collected packages: (.+)")
    UNIT_MB: ClassVar = {"bytes": 1e-6, "kB": 1e-3, "MB": 1.0, "GB": 1e3}

    def __init__(self, expected_mb: float, raw: bool = False):
        self.expected_mb = expected_mb
        self.raw = raw
        self.downloaded_mb = 0.0  # everything counted so far, the current file's bytes included
        self.finished_mb = 0.0  # the files whose downloads have ended
        self.package = ""
        self.fraction = 0.0

    def event(self, line: str) -> dict | None:
        if match := self.COLLECTING.match(line):
            return self._event("resolving", _project_of(match[1]), f"Collecting {match[1]}")
        if match := self.DOWNLOADING.match(line):
            size_mb = float(match[3]) * self.UNIT_MB[match[4]]
            self.finished_mb = self.downloaded_mb
            if match[1] == "Using cached" or not self.raw:
                self._count(self.finished_mb + size_mb)
            self.package = _project_of(match[2])
            return self._event(
                "downloading", self.package, f"{match[1]} {self.package} ({match[3]} {match[4]})"
            )
        if match := self.RAW_PROGRESS.match(line):
            received_mb, total_mb = int(match[1]) / 1e6, int(match[2]) / 1e6
            self._count(self.finished_mb + received_mb)
            text = f"Downloading {self.package} ({received_mb:,.0f} of {total_mb:,.0f} MB)"
            return self._event("downloading", self.package, text)
        if match := self.PROCESSING.match(line):
            return self._event("downloading", _project_of(match[1]), f"Processing {_project_of(match[1])}")
        if match := self.INSTALLING.match(line):
            self.fraction = DOWNLOAD_END
            return self._event("installing", "", f"Unpacking the packages ({len(match[1].split(','))})")
        return None

    def _count(self, downloaded_mb: float) -> None:
        self.downloaded_mb = downloaded_mb
        self.fraction = DOWNLOAD_END * min(self.downloaded_mb / self.expected_mb, 1.0)

    def _event(self, stage: str, package: str, message: str) -> dict:
        return {
            "stage": stage,
            "package": package,
            "message": message,
            "fraction": round(self.fraction, 4),
            "downloaded_mb": round(self.downloaded_mb, 1),
            "expected_mb": self.expected_mb,
        }


def _project_of(location: str) -> str:
    """The project name in a requirement, or in a wheel or sdist file name, URL or path."""
    file_name = unquote(location.rstrip("/").rsplit("/", 1)[-1])
    return re.split(r"-\d|[^A-Za-z0-9._-]", file_name, maxsplit=1)[0].lower()


# Causes that pip reports in passing, often above a less helpful final error, and what the user should do;
# the first that matches wins, so the ones that retries cannot cause come first.
DIAGNOSES = (
    (re.compile(r"No space left on device|Errno 28"), "The disk is full: free some space and retry."),
    (
        re.compile(r"Permission denied|Errno 13|Access is denied"),
        "No permission to write the dependency folder: check its permissions (never run Blender as "
        "administrator for this), or choose another folder.",
    ),
    (
        re.compile(r"CERTIFICATE_VERIFY_FAILED|SSLError"),
        "The package index's SSL certificate was rejected (often a company proxy): ask IT for the proxy's "
        "certificate and point pip to it with the PIP_CERT environment variable.",
    ),
    (
        re.compile(
            r"NewConnectionError|Failed to establish a new connection|Max retries exceeded|ConnectTimeout|"
            r"NameResolutionError|Temporary failure in name resolution|getaddrinfo failed|"
            r"Network is unreachable|ProxyError"
        ),
        "Could not reach the package index{host}: check the internet connection, proxy (HTTPS_PROXY) or "
        "firewall, then retry.",
    ),
    (
        re.compile(r"No matching distribution found for torch\b"),
        "No PyTorch build for this Python and platform at the chosen index; try another build with --torch "
        "(e.g. cpu).",
    ),
)


def diagnose(output: list[str]) -> str:
    """What to tell the user after a pip failure: a known cause, else its ERROR lines, else its last line."""
    text = "\n".join(output)
    for pattern, advice in DIAGNOSES:
        if pattern.search(text):
            host = re.search(r"host='([^']+)'", text)
            return advice.format(host=f" ({host[1]})" if host else "")
    errors = [line.removeprefix("ERROR:").strip() for line in output if line.startswith("ERROR:")]
    return " ".join(errors[-3:]) or (output[-1].strip() if output else "pip stopped without saying why.")


# ------------------------------------------------------------------------------------------- running


class InstallError(Exception):
    """A failure with a message the user can act on."""


class Cancelled(Exception):
    """The user cancelled (SIGTERM from the add-on's Cancel, Ctrl-C in a terminal)."""


def _raise_cancelled(signum, frame):
    raise Cancelled


def run_streaming(command: list[str], env: dict[str, str], log, on_line) -> tuple[int, list[str]]:
    """Run `command`, logging every line and handing it to `on_line`; the exit code and the last lines."""
    log.write(f"$ {show_command(command)}\n")
    tail: deque[str] = deque(maxlen=OUTPUT_TAIL_LINES)
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        encoding="utf-8",
        errors="replace",
        env=env,
        **no_console_window(),
    )
    try:
        for raw_line in process.stdout:
            line = raw_line.rstrip()
            log.write(line + "\n")
            tail.append(line)
            on_line(line)
        return process.wait(), list(tail)
    finally:
        if process.poll() is None:  # cancelled or failed while the child runs: never leave it writing
            process.kill()
            process.wait()
        process.stdout.close()


def verify_command(python: str, folder: Path, requirements_file: Path) -> list[str]:
    # -I: a fresh interpreter that sees only its own packages and the folder, as the add-on will.
    script = str(Path(__file__).resolve())
    return [
        python,
        "-I",
        script,
        "--import-check",
        "--target",
        str(folder),
        "--requirement",
        str(requirements_file),
    ]


def import_check(folder: Path, modules: list[str]) -> int:
    """Import each module from `folder`, in a fresh interpreter, the way the add-on's worker process does.

    The folder goes first on the import path, as the worker's PYTHONPATH puts it: a package the interpreter
    ships too (an older antlr4, requests, ...) must not stand in for the installed one, here or there.
    """
    sys.path.insert(0, str(folder))
    for index, name in enumerate(modules):
        note = (
            " (the first import compiles code once; this can take a few minutes)" if name == "rembg" else ""
        )
        fraction = VERIFY_START + (VERIFY_END - VERIFY_START) * index / len(modules)
        emit(
            "progress", stage="verifying", package=name, message=f"Importing {name}{note}", fraction=fraction
        )
        importlib.import_module(name)
    if "torch" in sys.modules:
        emit("device", **torch_device_info())
    return 0


def torch_device_info() -> dict:
    import torch

    info = {
        "torch_version": torch.__version__,
        "cuda_available": torch.cuda.is_available(),
        "mps_available": torch.backends.mps.is_available(),
        "device": "CPU",
    }
    if info["cuda_available"]:
        free, total = torch.cuda.mem_get_info(0)
        info.update(
            device=torch.cuda.get_device_name(0),
            free_vram_gb=round(free / 2**30, 1),
            total_vram_gb=round(total / 2**30, 1),
        )
    elif info["mps_available"]:
        info["device"] = "Apple GPU (MPS)"
    return info


class Installer:
    """One run: choose the build, install into staging, check the imports, swap the staging folder in."""

    def __init__(self, options):
        self.options = options
        self.target = Path(options.target).resolve()
        self.staging = self.target.with_name(self.target.name + STAGING_SUFFIX)
        self.log_path = log_path_for(self.target)
        self.constraints_path = self.target.with_name(self.target.name + "-constraints.txt")
        self.python = options.python or sys.executable
        self.requirements_file = Path(options.requirement or default_requirements_file()).resolve()
        self.requirements = read_requirements(self.requirements_file)
        self.env = child_environment()
        system = platform.system()
        self.budget = path_budget(system, long_paths_enabled(system), str(self.target), self.env)
        self.device: dict = {}
        self.importing = ""

    def run(self) -> int:
        if self.options.check:
            return self.check()
        print(f"Target folder: {self.target}; {self.budget.describe()}", flush=True)
        check_path_budget(self.budget)  # before anything is downloaded
        build = resolve_torch_build(self.options.torch)
        if build.name == NO_BUILD:
            raise InstallError(build.reason + ".")
        print(f"PyTorch build: {build.name} ({build.reason})", flush=True)
        requirements = with_torch_build(self.requirements, build)
        probe = probe_python(self.python, self.env)
        constraint = numpy_constraint(probe)
        command = pip_install_command(
            pip_for(self.python, probe),
            self.staging,
            self.constraints_path,
            requirements,
            index_options(self.options, requirements, build),
            self.options,
            bar=progress_bar(probe),
        )
        if self.options.dry_run:
            print(
                f"Constraints file {self.constraints_path}: {constraint or 'none (that Python has no numpy)'}"
            )
            print(f"$ {show_command(command)}")
            return 0
        check_replaceable(self.target)
        with TargetLock(self.target):
            if not self.options.upgrade and self._imports_quietly(self.target):
                print(f"Dependencies already installed in {self.target} (--upgrade reinstalls).", flush=True)
                return 0
            with self._open_log() as log:
                self._install(command, constraint, build, log)
        emit("done", target=str(self.target), log=str(self.log_path), build=build.name, **self.device)
        print(f"Dependencies installed in {self.target}", flush=True)
        return 0

    def check(self) -> int:
        with self._open_log() as log:
            failure = self._import_failure(self.target, log)
        if failure:
            raise InstallError(f"{failure}; reinstall the dependencies. Log: {self.log_path}")
        print(f"All dependencies import from {self.target}.", flush=True)
        return 0

    def _install(self, command: list[str], constraint: str, build: TorchBuild, log) -> None:
        remove_installers_folder(self.staging)  # left over from a run that was killed
        make_installers_folder(self.staging)
        try:
            self.constraints_path.write_text(constraint + "\n" if constraint else "", encoding="utf-8")
            self._pip(command, build, log)
            failure = self._import_failure(self.staging, log)
            if failure:
                raise InstallError(f"{failure} (full log: {self.log_path})")
            self._write_install_info(build)
            emit(
                "progress",
                stage="finishing",
                package="",
                message="Moving the packages into place",
                fraction=VERIFY_END,
            )
            with _cancel_deferred():
                replace_folder(self.staging, self.target)
        finally:
            remove_folder(self.staging)

    def _pip(self, command: list[str], build: TorchBuild, log) -> None:
        progress = PipProgress(estimated_download_mb(build.name, platform.system()), raw="raw" in command)

        def report(line: str) -> None:
            print(line, flush=True)
            event = progress.event(line)
            if event:
                emit("progress", **event)

        code, output = run_streaming(command, self.env, log, report)
        if code != 0 and any(PIP_LONG_PATH_HINT in line for line in output):
            raise InstallError(long_path_message(self.budget))
        if code != 0:
            raise InstallError(f"{diagnose(output)} (pip exit code {code}; full log: {self.log_path})")

    def _import_failure(self, folder: Path, log, on_line=None) -> str | None:
        """None when every package imports from `folder` in a fresh interpreter, else what went wrong."""
        command = verify_command(self.python, folder, self.requirements_file)
        code, output = run_streaming(command, self.env, log, on_line or self._relay)
        if code == 0:
            return None
        error = next(
            (line for line in reversed(output) if line and not line.startswith("@@")), f"exit {code}"
        )
        return f"Importing {self.importing} failed: {error.strip()}"

    def _imports_quietly(self, folder: Path) -> bool:
        """Whether an earlier install is complete; its output would only confuse the log of this one."""
        return folder.is_dir() and self._import_failure(folder, io.StringIO(), on_line=self._record) is None

    def _relay(self, line: str) -> None:
        print(line, flush=True)
        self._record(line)

    def _record(self, line: str) -> None:
        event = parse_event(line)
        if event and event[0] == "device":
            self.device = event[1]
        elif event and event[0] == "progress":
            self.importing = event[1].get("package", "")

    def _write_install_info(self, build: TorchBuild) -> None:
        info = {
            "torch_build": build.name,
            "reason": build.reason,
            "python": self.python,
            "requirements": self.requirements,
            "installed": time.strftime("%Y-%m-%d %H:%M:%S"),
            **self.device,
        }
        (self.staging / INSTALL_INFO_FILE).write_text(json.dumps(info, indent=2), encoding="utf-8")

    def _open_log(self):
        try:
            self.target.parent.mkdir(parents=True, exist_ok=True)
            return open(self.log_path, "a", encoding="utf-8")
        except OSError as error:
            raise InstallError(
                f"Cannot write next to {self.target}: {error}. Choose another folder with --target."
            ) from None


def parse_event(line: str) -> tuple[str, dict] | None:
    """("progress", {...}) for a line "@@progress {...}"; None for any other line."""
    if not line.startswith("@@"):
        return None
    kind, _, payload = line[2:].partition(" ")
    try:
        fields = json.loads(payload)
    except ValueError:
        return None
    return (kind, fields) if isinstance(fields, dict) else None


@contextlib.contextmanager
def _cancel_deferred():
    """Hold a cancel back while the folders are swapped: between the two renames the target is missing."""
    deferred = []
    previous = {
        name: signal.signal(getattr(signal, name), lambda *_: deferred.append(True))
        for name in CANCEL_SIGNALS
    }
    try:
        yield
    finally:
        for name, handler in previous.items():
            signal.signal(getattr(signal, name), handler)
    if deferred:
        raise Cancelled


def replace_folder(staging: Path, target: Path) -> None:
    """Swap `staging` in for `target` with two renames: the import path only ever sees a complete set."""
    old = _aside(target)
    remove_installers_folder(old)
    try:
        if target.exists():
            target.rename(old)
        staging.rename(target)
    except OSError as error:
        if old.exists() and not target.exists():
            old.rename(target)
        raise InstallError(
            f"Could not replace {target} ({error}). Files in it may be in use: restart Blender, retry."
        ) from None
    remove_folder(old)


def log_path_for(target: Path) -> Path:
    return target.with_name(target.name + "-install.log")


def remove_installed(target: Path) -> None:
    """Remove the dependency folder; renamed aside first, a partial delete never stays on the import path.

    Only a folder the installer made is removed; another one raises InstallError, as does a running install.
    """
    if not target.exists():
        return
    check_replaceable(target)
    with TargetLock(target):
        old = _aside(target)
        remove_installers_folder(old)
        target.rename(old)
        remove_folder(old)


def is_installers_folder(folder: Path) -> bool:
    return (folder / INSTALL_INFO_FILE).is_file()


def check_replaceable(folder: Path) -> None:
    """Refuse a folder the installer may not replace or delete: one it did not make, unless empty."""
    if not folder.exists():
        return
    if not folder.is_dir():
        raise InstallError(f"{folder} is a file, not a folder. Choose a new folder with --target.")
    if not is_installers_folder(folder) and any(folder.iterdir()):
        raise InstallError(
            f"{folder} holds files this installer did not put there, and it replaces its target folder "
            "whole. Choose an empty or new folder with --target: the dependencies need a folder of their own."
        )


def make_installers_folder(folder: Path) -> None:
    """A new folder, marked as the installer's own from the start (the full record replaces the mark)."""
    folder.mkdir(parents=True)
    (folder / INSTALL_INFO_FILE).write_text("{}", encoding="utf-8")


def remove_installers_folder(folder: Path) -> None:
    """Remove a staging or aside folder the installer left behind; never one it did not make."""
    check_replaceable(folder)
    remove_folder(folder)


class TargetLock:
    """One install or removal per target at a time, across processes and hosts (a shared --target).

    The lock file beside the target names its holder. A holder keeps it fresh; a lock whose holder has died
    (a process gone from this host, or a lock untouched for LOCK_STALE_AFTER_S) is taken over.
    """

    def __init__(self, target: Path):
        self.target = target
        self.path = target.with_name(target.name + ".lock")
        self._released = threading.Event()

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while not self._create():
            holder = self._holder()
            if not self._is_stale(holder):
                since = time.strftime("%Y-%m-%d %H:%M", time.localtime(holder.get("started", 0)))
                raise InstallError(
                    f"Another install into {self.target} is running (process {holder.get('pid')} on "
                    f"{holder.get('host')}, since {since}). Wait for it to finish; if it no longer runs, "
                    f"delete {self.path} and try again."
                )
            self._take_over(holder)
        threading.Thread(target=self._keep_fresh, name="install-lock", daemon=True).start()
        return self

    def __exit__(self, *_exception):
        self._released.set()
        self.path.unlink(missing_ok=True)

    def _create(self) -> bool:
        try:
            descriptor = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return False
        with os.fdopen(descriptor, "w", encoding="utf-8") as lock:
            json.dump({"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}, lock)
        return True

    def _holder(self) -> dict:
        try:
            return {**json.loads(self.path.read_text(encoding="utf-8")), "touched": self.path.stat().st_mtime}
        except FileNotFoundError:
            return {"touched": 0.0}  # released meanwhile: stale, so the next round takes it
        except (OSError, ValueError):
            return {"touched": time.time()}  # being written right now: its holder lives

    @staticmethod
    def _is_stale(holder: dict) -> bool:
        if time.time() - holder["touched"] > LOCK_STALE_AFTER_S:
            return True
        here = holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int)
        return here and not process_alive(holder["pid"])

    def _take_over(self, holder: dict) -> None:
        """Move the stale lock aside; if another process replaced it meanwhile, put that one back."""
        aside = self.path.with_name(f"{self.path.name}.stale-{os.getpid()}")
        try:
            os.replace(self.path, aside)
        except FileNotFoundError:
            return
        moved = {**json.loads(aside.read_text(encoding="utf-8") or "{}"), "touched": holder["touched"]}
        if moved.get("started") != holder.get("started"):
            with contextlib.suppress(OSError):
                os.link(aside, self.path)  # never over a lock created since
        aside.unlink(missing_ok=True)

    def _keep_fresh(self) -> None:
        while not self._released.wait(LOCK_REFRESH_S):
            with contextlib.suppress(OSError):
                os.utime(self.path)


def process_alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine (as any user)."""
    if os.name == "nt":  # os.kill(pid, 0) would end the process there
        import ctypes

        kernel32 = ctypes.windll.kernel32
        handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return kernel32.GetLastError() == 5  # access denied: it runs, as another user
        exit_code = ctypes.c_ulong()
        kernel32.GetExitCodeProcess(handle, ctypes.byref(exit_code))
        kernel32.CloseHandle(handle)
        return exit_code.value == 259  # STILL_ACTIVE
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it runs, as another user
    return True


def remove_folders_of_ended_processes(parent: Path, prefix: str) -> None:
    """Remove the folders named ``<prefix><pid>-…`` in ``parent`` whose process no longer runs: what a run
    killed before its own clean-up left behind."""
    pattern = re.compile(rf"{re.escape(prefix)}(\d+)-")
    for folder in Path(parent).glob(f"{glob.escape(prefix)}*"):
        match = pattern.match(folder.name)
        if match and folder.is_dir() and not process_alive(int(match[1])):
            shutil.rmtree(folder, ignore_errors=True)


def remove_folder(folder: Path) -> None:
    # Files still loaded by a running program (Windows) stay behind; the next run removes them.
    shutil.rmtree(folder, ignore_errors=True)


def _aside(target: Path) -> Path:
    return target.with_name(target.name + ".old")


# ------------------------------------------------------------------------------------------- command line


def blender_target() -> Path | None:
    """Inside Blender: where the add-on looks for its dependencies (``dependency_folder``)."""
    bpy = sys.modules.get("bpy")  # already imported inside Blender; never imported here on purpose
    if bpy is None:
        return None
    suffix = f".{PACKAGE}"
    addons = bpy.context.preferences.addons
    names = [name for name in addons.keys() if name.startswith("bl_ext.") and name.endswith(suffix)]  # noqa: SIM118
    package = names[0] if names else f"bl_ext.user_default{suffix}"
    system = platform.system()

    def extension_folder():
        return bpy.utils.extension_path_user(package, path="site-packages", create=True)

    return Path(dependency_folder(system, os.environ, long_paths_enabled(system), extension_folder))


def script_arguments(argv: list[str]) -> list[str]:
    """Blender passes everything after "--" to the script; plain Python passes everything."""
    return argv[argv.index("--") + 1 :] if "--" in argv else argv[1:]


def torch_build_argument(value: str) -> str:
    if not TORCH_BUILD_PATTERN.fullmatch(value):
        raise argparse.ArgumentTypeError(
            "expected auto, cpu, default, cuXYZ (e.g. cu126) or rocmX.Y (e.g. rocm7.2)"
        )
    return value


def parse_options(arguments: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="vendor_install.py",
        description=__doc__.split("\n\n")[0],
        epilog="Inside Blender: blender -b --python vendor_install.py -- [options]",
    )
    add = parser.add_argument
    add("--target", help="folder to install into (default in Blender: the extension's user folder)")
    add(
        "--torch",
        default="auto",
        type=torch_build_argument,
        help="PyTorch build: auto (detect; the default), cpu, default (PyPI's), cu126, cu130, rocm7.2, ...",
    )
    add("--python", help="the Python to install for (default: this one, which is Blender's inside Blender)")
    add("--requirement", "-r", help="requirements file (default: requirements.txt beside this script)")
    add("--dry-run", action="store_true", help="print the build choice and the pip command, then exit")
    add("--upgrade", action="store_true", help="reinstall even if the target's packages import fine")
    add("--check", action="store_true", help="only check that the target's packages import")
    add(
        "--index-url",
        help="package index to use instead of PyPI, and the only one (a company mirror); PyTorch's own index "
        "is then not used: name its mirror with --torch-index-url",
    )
    add(
        "--torch-index-url",
        help="mirror of PyTorch's wheel index (https://download.pytorch.org/whl); the build's folder, such "
        "as /cu130 or /cpu, is added",
    )
    add("--extra-index-url", action="append", default=[], help="another package index (passed to pip)")
    add("--find-links", action="append", default=[], help="folder or page with wheels (passed to pip)")
    add("--no-index", action="store_true", help="use only --find-links (passed to pip)")
    add("--retries", type=int, default=5, help="pip's retries per connection (default: 5)")
    add("--timeout", type=float, default=15, help="pip's socket timeout in seconds (default: 15)")
    add("--import-check", action="store_true", help=argparse.SUPPRESS)  # the fresh interpreter's part
    options = parser.parse_args(arguments)
    options.target = options.target or blender_target()
    if options.target is None:
        parser.error("--target is required outside Blender")
    return options


def failed(message: str) -> int:
    """The end of a failed run: one event for the add-on, one line for a person."""
    emit("error", message=message)
    print(f"ERROR: {message}", file=sys.stderr, flush=True)
    return EXIT_FAILED


def main(argv: list[str] | None = None) -> int:
    options = parse_options(script_arguments(sys.argv) if argv is None else argv)
    if options.import_check:
        requirements = read_requirements(Path(options.requirement or default_requirements_file()))
        return import_check(Path(options.target), [import_name(line) for line in requirements])
    sys.stdout.reconfigure(errors="replace")  # a package's odd output must never end the run
    for name in CANCEL_SIGNALS:
        signal.signal(getattr(signal, name), _raise_cancelled)
    try:
        return Installer(options).run()
    except InstallError as error:
        return failed(str(error))
    except OSError as error:  # a folder that cannot be written (read-only, full, no permission)
        where = f" {error.filename}" if error.filename else ""
        return failed(
            f"Cannot write{where}: {error.strerror or error}. Choose a folder you can write to with --target "
            "(or TRIPOSR_DEPS_DIR)."
        )
    except (Cancelled, KeyboardInterrupt):
        emit("error", message="Installation cancelled; nothing was changed.", cancelled=True)
        return EXIT_CANCELLED


if __name__ == "__main__":
    sys.exit(main())
