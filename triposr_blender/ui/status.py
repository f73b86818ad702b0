"""What the add-on's status boxes show: the dependencies (panel and preferences) and the model.

What the dependency box shows is decided by ``dependency_rows`` (plain data, testable without a window) and
drawn by ``draw_dependencies``; ``draw_model_status`` draws whether the model is loaded, where and how large.
"""

import textwrap
from dataclasses import dataclass

import bpy

from .. import dependencies
from ..backends.types import ModelState
from . import install_ops, preference_values
from .install_ops import (
    OFFLINE_MESSAGE,
    TRIPOSR_OT_cancel_dependency_install,
    TRIPOSR_OT_check_dependencies,
    TRIPOSR_OT_install_dependencies,
    TRIPOSR_OT_reinstall_dependencies,
    TRIPOSR_OT_remove_dependencies,
    TRIPOSR_OT_retry_dependency_install,
)
from .session import SESSION

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
    missing = Row(f"Missing Python packages: {', '.join(status.missing)}", "ERROR")
    if not plan.possible:  # an Intel Mac: say so before anything is downloaded
        return [missing, Row(f"{plan.reason}.", "ERROR", alert=True)]
    rows = [
        missing,
        Row(f"About {plan.size_text} to download: PyTorch build {plan.build} ({plan.reason}).", "INFO"),
        Row(f"Installs into {status.folder}", "FILE_FOLDER"),
    ]
    budget = dependencies.path_budget(status.folder)
    if budget.left is not None and budget.left < 0:  # Windows with long paths off: say so before downloading
        return [*rows, Row(dependencies.long_path_message(budget), "ERROR", alert=True)]
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
    connection = preference_values.connection(context)
    if not connection.runs_here:  # a server runs the model: nothing to install on this computer
        layout.label(
            text=f"Model runs on the TripoSR server at {connection.address}: nothing to install here.",
            icon="URL",
        )
        return True
    status = dependencies.status()
    details = getattr(context.area, "type", "") == "PREFERENCES"
    column = layout.column()
    for row in dependency_rows(install_ops.current_job(), status, bpy.app.online_access, details=details):
        _draw_row(column, context, row)
    return status.ready and not install_ops.installing()


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
        # Messages from elsewhere (the installer's, say) are sentences; a label ends without a period.
        for index, text in enumerate(_wrap(row.text.removesuffix("."), context)):
            block.label(text=text, icon=row.icon if index == 0 else continuation)


def _wrap(text: str, context) -> list[str]:
    width = context.region.width if context.region else 400
    scale = context.preferences.system.ui_scale or 1.0  # 0 where no window has been drawn yet
    characters = max(20, int(width / (7 * scale)))
    return textwrap.wrap(text, characters) or [""]


def model_text(state: ModelState) -> str:
    """Where the model is loaded, and what it holds of this computer: "Loaded on cuda:0 (2,345 MB)"."""
    details = [f"{state.memory_bytes / 2**20:,.0f} MB"] if state.memory_bytes is not None else []
    details += ["int8 encoder"] if state.cpu_fast else []
    return f"Loaded on {state.device}" + (f" ({', '.join(details)})" if details else "")


def draw_model_status(layout) -> None:
    """Loaded or not, where, how much memory; the Load / Unload buttons; download and load progress."""
    loading = SESSION.current("load")
    if loading is not None:
        layout.progress(factor=loading.fraction, text=loading.stage)
        return
    state = SESSION.model_state
    row = layout.row()
    if state.loaded:
        row.label(text=model_text(state), icon="CHECKMARK")
        if state.memory_bytes is not None:  # held on this computer: Unload frees it
            row.operator("triposr.unload_model", text="Unload", icon="X")
    else:
        row.label(text="Not loaded", icon="DOT")
        row.operator("triposr.load_model", text="Load", icon="IMPORT")
