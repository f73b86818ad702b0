"""The dependency box of the panel and the preferences, and the operators behind its buttons.

Install, Retry and Reinstall start vendor_install.py in a background process (``dependencies.InstallJob``);
a ``bpy.app.timers`` function on Blender's main thread follows its output and redraws. A timer rather than a
modal operator's event timer: a modal operator ends when a file is opened, and an install of several GB
easily outlives that. In background mode (``blender -b``, the bpy module) the operators wait for the
installer and report its outcome instead.

What the box shows is decided by ``dependency_rows`` (plain data, testable without a window) and drawn by
``draw_dependencies``.
"""

import sys
import textwrap
from dataclasses import dataclass

import bpy

from . import dependencies

POLL_INTERVAL_S = 0.25
AREAS_TO_REDRAW = ("VIEW_3D", "PREFERENCES")
OFFLINE_MESSAGE = (
    "Online access is disabled. To download the dependencies, allow it in "
    "Preferences > System > Network > Allow Online Access."
)

_job: dependencies.InstallJob | None = None  # the one install of this Blender session


def current_job() -> dependencies.InstallJob | None:
    return _job


def installing() -> bool:
    return _job is not None and _job.running


# ------------------------------------------------------------------------------------ what the box shows


@dataclass(frozen=True)
class Row:
    """One line of the dependency box: a label, a progress bar, a button or a checkbox."""

    text: str = ""
    icon: str = "NONE"
    operator: str = ""  # a button running this operator
    path: str = ""  # a button opening this file
    progress: float | None = None  # a progress bar, `text` on it
    setting: str = ""  # a checkbox for this Preferences > System setting
    enabled: bool = True
    alert: bool = False


def dependency_rows(job, status: dependencies.Status, online: bool, *, details: bool) -> list[Row]:
    """The lines of the dependency box, from the install job, the dependencies' status and online access.

    `details` (the preferences) adds what is installed and the Refresh, Reinstall and Remove buttons; the
    panel shows nothing once the dependencies are ready.
    """
    if job is not None and job.running:
        return _progress_rows(job)
    rows = _outcome_rows(job)
    if not status.ready:
        failed = job is not None and job.state == dependencies.FAILED
        return rows + _missing_rows(status, online, retry=failed)
    return rows + (_installed_rows(status, job) if details else [])


def _progress_rows(job) -> list[Row]:
    rows = [Row(job.message, progress=job.fraction)]
    if job.stage == "downloading":
        rows.append(Row(f"{job.downloaded_mb:.0f} MB of about {job.expected_mb:.0f} MB downloaded", "IMPORT"))
    return [*rows, Row("Cancel", "CANCEL", operator=TRIPOSR_OT_cancel_dependency_install.bl_idname)]


def _outcome_rows(job) -> list[Row]:
    if job is None or job.state == dependencies.SUCCEEDED:
        return []
    if job.state == dependencies.CANCELLED:
        return [Row(job.message, "INFO")]
    return [
        Row("The dependency install failed:", "ERROR", alert=True),
        Row(job.error, alert=True),
        Row("Open Log", "TEXT", path=str(dependencies.log_path())),
    ]


def _missing_rows(status: dependencies.Status, online: bool, *, retry: bool) -> list[Row]:
    plan = dependencies.download_plan()
    rows = [
        Row(f"Missing Python packages: {', '.join(status.missing)}", "ERROR"),
        Row(f"About {plan.size_text} to download: PyTorch build {plan.build} ({plan.reason}).", "INFO"),
    ]
    if not online:
        rows.append(Row(OFFLINE_MESSAGE, "ERROR", alert=True))
        if not bpy.app.online_access_override:  # started with --offline-mode: the setting would not help
            rows.append(Row(setting="use_online_access"))
    operator = TRIPOSR_OT_retry_dependency_install if retry else TRIPOSR_OT_install_dependencies
    return [
        *rows,
        Row(operator.bl_label, "FILE_REFRESH" if retry else "IMPORT", operator.bl_idname, enabled=online),
    ]


def _installed_rows(status: dependencies.Status, job) -> list[Row]:
    device = {**status.info, **(job.device if job is not None else {})}  # the latest check wins
    build = f" ({status.info['torch_build']} build)" if "torch_build" in status.info else ""
    return [
        Row(f"Dependencies installed in {status.folder}", "CHECKMARK"),
        Row(f"PyTorch {status.torch_version or '(version unknown)'}{build}"),
        Row(_device_text(device), "MEMORY"),
        Row(TRIPOSR_OT_check_dependencies.bl_label, "FILE_REFRESH", TRIPOSR_OT_check_dependencies.bl_idname),
        Row(
            TRIPOSR_OT_reinstall_dependencies.bl_label, "IMPORT", TRIPOSR_OT_reinstall_dependencies.bl_idname
        ),
        Row(TRIPOSR_OT_remove_dependencies.bl_label, "TRASH", TRIPOSR_OT_remove_dependencies.bl_idname),
    ]


def _device_text(device: dict) -> str:
    if device.get("cuda_available"):
        memory = (
            f": {device['free_vram_gb']} GB of {device['total_vram_gb']} GB free at the last check"
            if "free_vram_gb" in device
            else ""
        )
        return f"GPU {device.get('device', '')}{memory}"
    if device.get("mps_available"):
        return "GPU: Apple silicon (Metal/MPS)"
    if "cuda_available" in device:
        return "No GPU available to PyTorch: TripoSR runs on the CPU"
    return "Device not checked yet: press Refresh"


# ------------------------------------------------------------------------------------------- drawing


def draw_dependencies(layout, context) -> bool:
    """Draw the dependency box into `layout`; True when the dependencies are ready to use.

    In the preferences it also shows what is installed, with Refresh, Reinstall and Remove.
    """
    status = dependencies.status()
    details = getattr(context.area, "type", "") == "PREFERENCES"
    column = layout.column()
    for row in dependency_rows(_job, status, bpy.app.online_access, details=details):
        _draw_row(column, context, row)
    return status.ready and not installing()


def _draw_row(column, context, row: Row) -> None:
    block = column.column(align=True)
    block.enabled = row.enabled
    block.alert = row.alert
    if row.progress is not None:
        block.progress(factor=row.progress, type="BAR", text=row.text)
    elif row.operator:
        block.operator(row.operator, text=row.text, icon=row.icon)
    elif row.path:
        block.operator("wm.path_open", text=row.text, icon=row.icon).filepath = row.path
    elif row.setting:
        block.prop(context.preferences.system, row.setting)
    else:
        continuation = "NONE" if row.icon == "NONE" else "BLANK1"  # wrapped lines align under the first
        for index, text in enumerate(_wrap(row.text, context)):
            block.label(text=text, icon=row.icon if index == 0 else continuation)


def _wrap(text: str, context) -> list[str]:
    width = context.region.width if context.region else 400
    characters = max(20, int(width / (7 * context.preferences.system.ui_scale)))
    return textwrap.wrap(text, characters) or [""]


def _redraw() -> None:
    for window in bpy.context.window_manager.windows:
        for area in window.screen.areas:
            if area.type in AREAS_TO_REDRAW:
                area.tag_redraw()


# ------------------------------------------------------------------------------------------- the install job


def start_job(options: tuple[str, ...]) -> dependencies.InstallJob:
    global _job
    folder = dependencies.ensure_on_sys_path()
    command = ["--target", str(folder), "--python", sys.executable, *options]
    _job = dependencies.InstallJob([*command, *dependencies.extra_installer_options()])
    return _job


def follow_job() -> float | None:
    """Timer on the main thread: take in the installer's output, redraw, and finish when it ends."""
    job = _job
    if job is None:
        return None
    if job.poll():
        _redraw()
    if job.running:
        return POLL_INTERVAL_S
    _finish_job(job)
    _redraw()
    return None


def _finish_job(job: dependencies.InstallJob) -> None:
    dependencies.refresh_status()  # new packages import from now on, without restarting Blender
    print(
        f"TripoSR dependencies: {job.state}. {job.error}".strip(),
        file=sys.stderr if job.error else sys.stdout,
    )


def stop_model_worker() -> None:
    """Stop the model's worker process, which holds the installed PyTorch's files open: on Windows they can
    be neither replaced nor deleted while it runs. The next Generate starts a new one."""
    from .operators import SESSION  # not at the top: operators imports preferences, which import this module

    SESSION.stop()


class InstallerOperator:
    """Runs vendor_install.py with `installer_options`: followed by a timer in the UI, awaited otherwise."""

    installer_options = ("--upgrade",)  # the user asked for it: install even if one imports
    needs_online_access = True
    replaces_installed = False  # stop the worker first, which uses the installed packages

    @classmethod
    def poll(cls, context):
        return not installing()

    def execute(self, context):
        if self.needs_online_access and not bpy.app.online_access:
            self.report({"ERROR"}, OFFLINE_MESSAGE)
            return {"CANCELLED"}
        if self.replaces_installed:
            stop_model_worker()
        try:
            job = start_job(self.installer_options)
        except OSError as error:
            self.report({"ERROR"}, f"Could not start the dependency installer: {error}")
            return {"CANCELLED"}
        if not bpy.app.background:
            if not bpy.app.timers.is_registered(follow_job):
                bpy.app.timers.register(follow_job, first_interval=POLL_INTERVAL_S, persistent=True)
            return {"FINISHED"}
        job.wait()
        _finish_job(job)
        if job.state != dependencies.SUCCEEDED:
            self.report({"ERROR"}, job.error or job.message)
            return {"CANCELLED"}
        self.report({"INFO"}, f"TripoSR dependencies ready in {dependencies.deps_dir()}")
        return {"FINISHED"}


class TRIPOSR_OT_install_dependencies(InstallerOperator, bpy.types.Operator):
    bl_idname = "triposr.install_dependencies"
    bl_label = "Install Dependencies"
    bl_description = (
        "Download PyTorch and the other Python packages TripoSR needs into this extension's user folder "
        "(the size is shown above; needs online access)"
    )


class TRIPOSR_OT_retry_dependency_install(InstallerOperator, bpy.types.Operator):
    bl_idname = "triposr.retry_dependency_install"
    bl_label = "Retry"
    bl_description = "Run the dependency install again (already downloaded packages come from pip's cache)"


class TRIPOSR_OT_reinstall_dependencies(InstallerOperator, bpy.types.Operator):
    bl_idname = "triposr.reinstall_dependencies"
    bl_label = "Reinstall"
    bl_description = (
        "Install the dependencies again, with the newest allowed versions; the current ones are kept until "
        "the new set is complete. Unloads the model first"
    )
    replaces_installed = True


class TRIPOSR_OT_check_dependencies(InstallerOperator, bpy.types.Operator):
    bl_idname = "triposr.check_dependencies"
    bl_label = "Refresh"
    bl_description = "Import the dependencies in a separate process and show the device PyTorch finds"
    installer_options = ("--check",)
    needs_online_access = False


class TRIPOSR_OT_cancel_dependency_install(bpy.types.Operator):
    bl_idname = "triposr.cancel_dependency_install"
    bl_label = "Cancel"
    bl_description = "Stop the dependency install; the installed dependencies stay as they were"

    @classmethod
    def poll(cls, context):
        return installing()

    def execute(self, context):
        _job.cancel()
        return {"FINISHED"}


class TRIPOSR_OT_remove_dependencies(bpy.types.Operator):
    bl_idname = "triposr.remove_dependencies"
    bl_label = "Remove"
    bl_description = (
        "Delete the installed dependencies (PyTorch and the others) from this extension's user folder. "
        "Unloads the model first"
    )

    @classmethod
    def poll(cls, context):
        return not installing()

    def invoke(self, context, event):
        return context.window_manager.invoke_confirm(self, event)

    def execute(self, context):
        folder = dependencies.deps_dir()
        stop_model_worker()
        try:
            dependencies.remove_dependencies()
        except OSError as error:
            self.report(
                {"ERROR"}, f"Could not remove {folder} ({error}). Restart Blender, then Remove again."
            )
            return {"CANCELLED"}
        self.report({"INFO"}, f"Removed the TripoSR dependencies from {folder}")
        return {"FINISHED"}


classes = (
    TRIPOSR_OT_install_dependencies,
    TRIPOSR_OT_retry_dependency_install,
    TRIPOSR_OT_reinstall_dependencies,
    TRIPOSR_OT_check_dependencies,
    TRIPOSR_OT_cancel_dependency_install,
    TRIPOSR_OT_remove_dependencies,
)


def unregister() -> None:
    """Stop following (and cancel) an install in progress, and take the dependency folder off sys.path."""
    if bpy.app.timers.is_registered(follow_job):
        bpy.app.timers.unregister(follow_job)
    if installing():
        _job.cancel()
    dependencies.remove_from_sys_path()
