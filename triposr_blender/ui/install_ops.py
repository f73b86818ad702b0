"""The operators behind the dependency box's buttons, and the one install job of this Blender session.

Install, Retry and Reinstall start vendor_install.py in a background process (``dependencies.InstallJob``);
a ``bpy.app.timers`` function on Blender's main thread follows its output and redraws. A timer rather than a
modal operator's event timer: a modal operator ends when a file is opened, and an install of several GB
easily outlives that. In background mode (``blender -b``, the bpy module) the operators wait for the
installer and report its outcome instead.
"""

import shutil
import sys

import bpy
from bpy.props import BoolProperty

from .. import dependencies
from . import preference_values
from .session import SESSION, redraw_progress_areas

POLL_INTERVAL_S = 0.25
OFFLINE_MESSAGE = (
    "Online access is disabled. To download the dependencies, allow it in "
    "Preferences > System > Network > Allow Online Access."
)

_job: dependencies.InstallJob | None = None  # the one install of this Blender session


def current_job() -> dependencies.InstallJob | None:
    return _job


def installing() -> bool:
    return _job is not None and _job.running


# ------------------------------------------------------------------------------------------- the install job


def start_job(options: tuple[str, ...]) -> dependencies.InstallJob:
    global _job
    folder = dependencies.deps_dir()
    command = ["--target", str(folder), "--python", sys.executable, *options]
    _job = dependencies.InstallJob([*command, *dependencies.extra_installer_options()])
    return _job


def follow_job() -> float | None:
    """Timer on the main thread: take in the installer's output, redraw, and finish when it ends."""
    job = _job
    if job is None:
        return None
    if job.poll():
        redraw_progress_areas()
    if job.running:
        return POLL_INTERVAL_S
    _finish_job(job)
    redraw_progress_areas()
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
    bl_description = "Download PyTorch and the other packages TripoSR needs, once, into a folder of its own"


class TRIPOSR_OT_retry_dependency_install(InstallerOperator, bpy.types.Operator):
    bl_idname = "triposr.retry_dependency_install"
    bl_label = "Retry"
    bl_description = "Run the dependency install again (already downloaded packages come from pip's cache)"


class TRIPOSR_OT_reinstall_dependencies(InstallerOperator, bpy.types.Operator):
    bl_idname = "triposr.reinstall_dependencies"
    bl_label = "Reinstall"
    bl_description = "Install the dependencies again; the current set stays until the new one works"
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


def downloaded_models(context) -> list:
    """The model folders the add-on downloaded, by the preferences' model source and cache."""
    preferences = preference_values.addon_preferences(context)
    source = preference_values.model_source(preferences)
    return dependencies.downloaded_models(source, preference_values.cache_dir(preferences))


class TRIPOSR_OT_remove_dependencies(bpy.types.Operator):
    bl_idname = "triposr.remove_dependencies"
    bl_label = "Remove"
    bl_description = "Delete the installed dependencies, and the downloaded models if you choose"

    __annotations__ = {  # Blender reads properties from the class annotations
        "delete_models": BoolProperty(
            name="Also Delete Downloaded Models",
            description="Also delete the downloaded TripoSR and background-removal models",
            default=False,
        ),
    }

    @classmethod
    def poll(cls, context):
        return not installing()

    def invoke(self, context, event):
        return context.window_manager.invoke_props_dialog(self, width=480)

    def draw(self, context):
        layout = self.layout
        layout.label(text=f"Delete the TripoSR dependencies from {dependencies.deps_dir()}?", icon="TRASH")
        folders = downloaded_models(context)
        if not folders:
            return
        gigabytes = sum(dependencies.folder_bytes(folder) for folder in folders) / 1e9
        layout.prop(self, "delete_models", text=f"Also delete the downloaded models ({gigabytes:.1f} GB)")
        column = layout.column(align=True)
        column.active = self.delete_models
        for folder in folders:
            column.label(text=str(folder), icon="FILE_FOLDER")

    def execute(self, context):
        folder = dependencies.deps_dir()
        stop_model_worker()
        try:
            dependencies.remove_dependencies()
            if self.delete_models:
                for models in downloaded_models(context):
                    shutil.rmtree(models)
        except (OSError, dependencies.InstallError) as error:
            self.report(
                {"ERROR"}, f"Could not remove {folder} ({error}). Restart Blender, then Remove again."
            )
            return {"CANCELLED"}
        removed = " and the downloaded models" if self.delete_models else ""
        self.report({"INFO"}, f"Removed the TripoSR dependencies from {folder}{removed}")
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
    """Stop following (and cancel) an install in progress."""
    if bpy.app.timers.is_registered(follow_job):
        bpy.app.timers.unregister(follow_job)
    if installing():
        _job.cancel()
