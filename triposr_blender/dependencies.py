"""Where the add-on's Python dependencies live, which are missing, and the background install of them.

Never imports bpy at import time, and never imports the dependencies themselves: whether torch is there is a
question for importlib's finders, answered in milliseconds, so registering the add-on stays fast. Blender's
own process never puts the dependency folder on its sys.path either, or every other add-on would import this
copy of torch, opencv and huggingface_hub: only the worker process imports them (through its PYTHONPATH).

The dependencies live in the extension's user folder (``bpy.utils.extension_path_user``), which survives
updates of the extension and needs no admin rights; on Windows with long paths off, in a short folder of the
user's own instead (``vendor_install.dependency_folder``), since PyTorch's deepest files do not fit below
Blender's. ``vendor_install`` installs them there; this module
shares its requirement list, build choice and progress format instead of repeating them.

Environment variables, for render farms, mirrors and tests:

- ``TRIPOSR_DEPS_DIR``: use this folder for the dependencies instead of the one chosen above.
- ``TRIPOSR_REQUIRED_MODULES``: comma-separated modules to require instead of those of requirements.txt.
- ``TRIPOSR_MODELS_DIR``: keep the background-removal model here instead of the extension's user folder.
- ``TRIPOSR_INSTALL_ARGS``: extra ``vendor_install.py`` options for the Install button, e.g.
  ``--index-url https://mirror.example/simple`` or ``--torch cpu``.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.machinery
import importlib.metadata
import importlib.util
import json
import os
import platform
import queue
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from . import vendor_install
from .vendor_install import InstallError, PathBudget, long_path_message

# What the UI needs of the installer, through this module alone: the add-on's side of the installer.
__all__ = ["InstallError", "PathBudget", "long_path_message"]

ENV_DEPS_DIR = vendor_install.ENV_DEPS_DIR
ENV_REQUIRED_MODULES = "TRIPOSR_REQUIRED_MODULES"
ENV_INSTALL_ARGS = "TRIPOSR_INSTALL_ARGS"
ENV_MODELS_DIR = "TRIPOSR_MODELS_DIR"
# rembg's model goes into this subfolder of the models folder, or of the configured download cache.
REMBG_FOLDER = "rembg"
CANCEL_GRACE_S = 5.0  # time for the installer to stop pip and delete its staging folder before it is killed
OUTPUT_LINES_KEPT = 30

RUNNING, SUCCEEDED, FAILED, CANCELLED = "running", "succeeded", "failed", "cancelled"


# ------------------------------------------------------------------------------------------- locations


def deps_dir() -> Path:
    """The folder the dependencies are installed into and imported from (``vendor_install``'s choice)."""
    system = platform.system()

    def extension_folder() -> str:
        return str(_user_folder(ENV_DEPS_DIR, "site-packages", "the dependencies"))

    long_paths = vendor_install.long_paths_enabled(system)
    # Absolute: the worker imports from it in another folder, and Blender's own folder is wherever it started.
    return Path(vendor_install.dependency_folder(system, os.environ, long_paths, extension_folder)).absolute()


def path_budget(folder: Path) -> PathBudget:
    """How deep an install into ``folder`` writes, against this platform's limit on paths."""
    system = platform.system()
    long_paths = vendor_install.long_paths_enabled(system)
    return vendor_install.path_budget(system, long_paths, str(folder), vendor_install.child_environment())


def models_dir() -> Path:
    """The extension's own folder for the models it downloads besides TripoSR's (rembg's u2net)."""
    return _user_folder(ENV_MODELS_DIR, "models", "its models")


def _user_folder(override_variable: str, name: str, what: str) -> Path:
    """A folder of the extension's in Blender's user folders, or the one the environment variable names."""
    override = os.environ.get(override_variable)
    if override:
        return Path(override).expanduser().absolute()
    import bpy

    folder = bpy.utils.extension_path_user(_extension_package(), path=name, create=True)
    if not folder:
        raise OSError(f"Blender could not create the extension's user folder for {what}.")
    return Path(folder)


def rembg_home(cache_dir: str = "") -> str:
    """Where the worker's rembg keeps its model: the configured download cache, else the extension's own
    folder, so Remove can find it; empty (rembg's own choice) when the user has set U2NET_HOME."""
    if os.environ.get("U2NET_HOME"):
        return ""
    return str((Path(cache_dir) if cache_dir else models_dir()) / REMBG_FOLDER)


def hub_cache(cache_dir: str = "") -> Path:
    """huggingface_hub's cache folder (the configured one, else its own default), without importing it."""
    if cache_dir:
        return Path(cache_dir)
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface"
    )
    return Path(home).expanduser() / "hub"


def downloaded_models(model_source: str, cache_dir: str = "") -> list[Path]:
    """The folders of the models the add-on downloaded: the TripoSR repository in the Hugging Face cache
    (when the model comes from the hub) and rembg's folder (when it is the add-on's)."""
    folders = []
    if not Path(model_source).is_dir():
        folders.append(hub_cache(cache_dir) / ("models--" + model_source.replace("/", "--")))
    if rembg := rembg_home(cache_dir):
        folders.append(Path(rembg))
    return [folder for folder in folders if folder.is_dir()]


def folder_bytes(folder: Path) -> int:
    """Bytes in ``folder``'s files; links (the hub cache's snapshots, pointing at its blobs) count nothing."""
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file() and not path.is_symlink())


def _extension_package() -> str:
    # A source checkout imported as plain "triposr_blender" shares the installed extension's folder.
    return __package__ if __package__.startswith("bl_ext.") else f"bl_ext.user_default.{__package__}"


def dependency_paths() -> list[str]:
    """The folders a process needs on its import path to find the dependencies (the worker's PYTHONPATH)."""
    return [str(deps_dir())]


# ------------------------------------------------------------------------------------------- status


def required_modules() -> list[str]:
    override = os.environ.get(ENV_REQUIRED_MODULES)
    if override:
        return [name.strip() for name in override.split(",") if name.strip()]
    requirements = vendor_install.read_requirements(vendor_install.default_requirements_file())
    return [vendor_install.import_name(line) for line in requirements]


def is_importable(module: str, folder: Path) -> bool:
    """Whether the worker could import top-level ``module``: from ``folder`` (its PYTHONPATH) or from this
    Python's own path (numpy, which Blender ships). Found without importing it, and without putting
    ``folder`` on this process's sys.path."""
    if module in sys.modules:
        return True
    try:
        return importlib.machinery.PathFinder.find_spec(module, [str(folder), *sys.path]) is not None
    except (ImportError, ValueError):
        return False


@dataclass(frozen=True)
class Status:
    folder: Path
    missing: tuple[str, ...]
    info: dict = field(default_factory=dict)  # what the installer recorded: torch build, device, ...

    @property
    def ready(self) -> bool:
        return not self.missing

    @property
    def torch_version(self) -> str | None:
        if "torch_version" in self.info:
            return self.info["torch_version"]
        found = importlib.metadata.distributions(name="torch", path=[str(self.folder)])
        return next((distribution.version for distribution in found), None)


_status: Status | None = None


def status() -> Status:
    """The dependencies' state, computed once and kept until refresh_status(): the panel draws it often."""
    global _status
    if _status is None:
        folder = deps_dir()
        missing = tuple(module for module in required_modules() if not is_importable(module, folder))
        _status = Status(folder, missing, _read_install_info(folder))
    return _status


def refresh_status() -> Status:
    """Look again, also right after an install: no restart is needed."""
    global _status
    _status = None
    importlib.invalidate_caches()  # forget that the folder was missing or empty when last looked at
    return status()


def _read_install_info(folder: Path) -> dict:
    try:
        return json.loads((folder / vendor_install.INSTALL_INFO_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


@dataclass(frozen=True)
class DownloadPlan:
    build: str
    reason: str
    size_mb: int

    @property
    def possible(self) -> bool:
        """False where PyTorch has no build for this machine (an Intel Mac)."""
        return self.build != vendor_install.NO_BUILD

    @property
    def size_text(self) -> str:
        return f"{self.size_mb / 1000:.1f} GB" if self.size_mb >= 1000 else f"{self.size_mb} MB"


@functools.cache
def download_plan() -> DownloadPlan:
    """The PyTorch build --torch auto picks on this machine and the download's size (runs nvidia-smi once)."""
    machine = vendor_install.detect_machine()
    build = vendor_install.choose_torch_build(machine)
    return DownloadPlan(
        build.name, build.reason, vendor_install.estimated_download_mb(build.name, machine.system)
    )


def log_path() -> Path:
    return vendor_install.log_path_for(deps_dir())


def extra_installer_options() -> list[str]:
    return shlex.split(os.environ.get(ENV_INSTALL_ARGS, ""))


def remove_dependencies() -> None:
    """Delete the installed dependencies; modules already imported in this process stay until a restart."""
    vendor_install.remove_installed(deps_dir())
    refresh_status()


# ------------------------------------------------------------------------------------------- install job


class InstallJob:
    """vendor_install.py running in a background process; poll() on the main thread follows its progress.

    Only the reader thread touches the process's output, and only to queue its lines; everything the UI
    reads is updated by poll(), so nothing here needs a lock and nothing touches bpy off the main thread.
    """

    def __init__(self, options: list[str]):
        self.command = [sys.executable, vendor_install.__file__, *options]
        self.state = RUNNING
        self.stage = "starting"  # then resolving, downloading, installing, verifying, finishing
        self.message = "Starting the installer"
        self.package = ""
        self.fraction = 0.0
        self.downloaded_mb = 0.0
        self.expected_mb = 0.0
        self.error = ""
        self.device: dict = {}
        self.output: deque[str] = deque(maxlen=OUTPUT_LINES_KEPT)
        self._cancel_requested_at: float | None = None
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._process = subprocess.Popen(
            self.command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
            errors="replace",
            env=vendor_install.child_environment(),
            **_own_process_group(),
        )
        threading.Thread(target=self._read_output, name="triposr-install-output", daemon=True).start()

    @property
    def running(self) -> bool:
        return self.state == RUNNING

    def poll(self) -> bool:
        """Take in the installer's new output; True when anything changed (time to redraw)."""
        changed = False
        while self.running:
            try:
                line = self._lines.get_nowait()
            except queue.Empty:
                break
            changed = True
            if line is None:
                self._finish(self._process.wait())
            else:
                self._take(line)
        if (
            self.running
            and self._cancel_requested_at
            and time.monotonic() > self._cancel_requested_at + CANCEL_GRACE_S
        ):
            _kill_process_group(self._process)
        return changed

    def wait(self, poll_interval: float = 0.1) -> None:
        """Follow the installer to its end, blocking: for background mode and scripts."""
        while self.running:
            if not self.poll():
                time.sleep(poll_interval)

    def cancel(self) -> None:
        if self.running and self._cancel_requested_at is None:
            self._cancel_requested_at = time.monotonic()
            self.message = "Canceling"
            _interrupt_process_group(self._process)

    def _read_output(self) -> None:
        for line in self._process.stdout:
            self._lines.put(line.rstrip())
        self._lines.put(None)

    def _take(self, line: str) -> None:
        self.output.append(line)
        event = vendor_install.parse_event(line)
        if event is None:
            return
        kind, fields = event
        if kind == "progress":
            self.stage = fields.get("stage", self.stage)
            self.message = fields.get("message", self.message)
            self.package = fields.get("package", "")
            self.fraction = fields.get("fraction", self.fraction)
            self.downloaded_mb = fields.get("downloaded_mb", self.downloaded_mb)
            self.expected_mb = fields.get("expected_mb", self.expected_mb)
        elif kind == "device":
            self.device = fields
        elif kind == "error":
            self.error = fields.get("message", "")

    def _finish(self, exit_code: int) -> None:
        if exit_code == 0:
            self.state, self.fraction, self.message = SUCCEEDED, 1.0, "Done"
        elif self._cancel_requested_at is not None:
            self.state, self.message = CANCELLED, "Canceled; nothing was changed"
        else:
            self.state = FAILED
            self.error = self.error or self._unexplained_failure(exit_code)

    def _unexplained_failure(self, exit_code: int) -> str:
        last = next((line for line in reversed(self.output) if line and not line.startswith("@@")), "")
        return f"The installer stopped with exit code {exit_code}. {last}".strip()


def _own_process_group() -> dict:
    """Start the installer as the head of its own process group, so Cancel reaches pip below it too."""
    if os.name == "nt":
        return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP | vendor_install.CREATE_NO_WINDOW}
    return {"start_new_session": True}


def _interrupt_process_group(process: subprocess.Popen) -> None:
    """Ask the installer to stop: it stops pip, deletes its staging folder and exits."""
    if os.name == "nt":  # no console to deliver Ctrl+Break to: end the tree; the next run clears the staging
        _kill_process_group(process)
    else:
        _signal_group(process, signal.SIGTERM)


def _kill_process_group(process: subprocess.Popen) -> None:
    if os.name == "nt":
        command = ["taskkill", "/T", "/F", "/PID", str(process.pid)]
        subprocess.run(command, capture_output=True, **vendor_install.no_console_window())
    else:
        _signal_group(process, signal.SIGKILL)


def _signal_group(process: subprocess.Popen, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signum)
