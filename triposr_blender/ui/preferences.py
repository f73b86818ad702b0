"""Add-on preferences: the model and its download cache, device, chunk size, int8 encoding, orientation,
dependencies."""

import os

import bpy
from bpy.props import BoolProperty, EnumProperty, IntProperty, StringProperty

from ..core.defaults import CPU_FAST_DESCRIPTION, DEFAULT_CHUNK_SIZE, DEFAULT_MODEL_SOURCE
from ..options import ENV_MODEL, ENV_SERVER
from . import preference_values, properties, status
from .preference_values import ADDON

BACKENDS = (
    ("LOCAL", "This Computer", "The model runs here, on this computer's GPU or CPU (needs the dependencies)"),
    (
        "SERVER",
        "Server",
        "The model runs on a TripoSR server, e.g. the studio's GPU box: nothing to install here",
    ),
)

MODEL_SOURCES = (
    ("HUB", "Hugging Face", "Download the model from a Hugging Face repository once, then use it offline"),
    ("FOLDER", "Folder", "A folder on this computer holding config.yaml and model.ckpt"),
)
FRONT_AXES = (
    ("NEG_Y", "-Y (Front View)", "Numpad 1 shows the object as in the image"),
    ("POS_Y", "+Y (Back View)", "Ctrl Numpad 1 shows the object as in the image"),
    ("POS_X", "+X (Right View)", "Numpad 3 shows the object as in the image: TripoSR's own axes"),
    ("NEG_X", "-X (Left View)", "Ctrl Numpad 3 shows the object as in the image"),
)


class TripoSRPreferences(bpy.types.AddonPreferences):
    bl_idname = ADDON

    backend: EnumProperty(name="Backend", description="Where the model runs", items=BACKENDS)
    server_url: StringProperty(
        name="Server",
        description="Address of the TripoSR server, e.g. https://gpu-box.studio.lan:8700",
        default="http://127.0.0.1:8700",
    )
    server_token: StringProperty(
        name="Token",
        description="The server's token, if it has one (kept in your preferences, never in a .blend file)",
        subtype="PASSWORD",
    )
    model_source: EnumProperty(
        name="Model Source", description="Where the model comes from", items=MODEL_SOURCES
    )
    model_repo: StringProperty(
        name="Repository", description="Hugging Face repository id of the model", default=DEFAULT_MODEL_SOURCE
    )
    model_folder: StringProperty(
        name="Folder", description="Folder holding the model's config.yaml and model.ckpt", subtype="DIR_PATH"
    )
    cache_dir: StringProperty(
        name="Download Cache",
        description="Folder for downloaded models; empty: Hugging Face's shared cache (~/.cache/huggingface)",
        subtype="DIR_PATH",
    )
    device: EnumProperty(
        name="Default Device",
        description="Where the model runs unless Generate says otherwise",
        items=properties.DEVICES,
    )
    chunk_size: IntProperty(
        name="Chunk Size",
        description="Points evaluated at once: lower it if the GPU runs out of memory (0: all at once)",
        default=DEFAULT_CHUNK_SIZE,
        min=0,
        soft_max=1 << 20,
    )
    cpu_fast: BoolProperty(name="Faster CPU Encoding (int8)", description=CPU_FAST_DESCRIPTION, default=False)
    front_axis: EnumProperty(
        name="Front Axis",
        description="Which way the side seen in the image faces when the object is placed at the 3D cursor",
        items=FRONT_AXES,
    )

    def draw(self, context):
        layout = self.layout
        layout.use_property_split = True
        draw_backend(layout.box(), self)
        if not preference_values.connection(context).runs_here:
            status.draw_model_status(layout.box())
            return
        draw_model_source(layout.box(), self)
        box = layout.box()
        box.prop(self, "device")
        box.prop(self, "chunk_size")
        box.prop(self, "cpu_fast")
        box.prop(self, "front_axis")
        status.draw_dependencies(layout.box(), context)


def draw_backend(layout, preferences: TripoSRPreferences) -> None:
    overridden = os.environ.get(ENV_SERVER)
    column = layout.column()
    column.active = not overridden
    column.prop(preferences, "backend", expand=True)
    if preferences.backend == "SERVER":
        column.prop(preferences, "server_url")
        column.prop(preferences, "server_token")
    if overridden:
        layout.label(text=f"{ENV_SERVER} overrides this: {overridden}", icon="INFO")


def draw_model_source(layout, preferences: TripoSRPreferences) -> None:
    layout.prop(preferences, "model_source", expand=True)
    override = os.environ.get(ENV_MODEL)
    column = layout.column()
    column.active = not override
    column.prop(preferences, "model_repo" if preferences.model_source == "HUB" else "model_folder")
    column.prop(preferences, "cache_dir")
    if override:
        layout.label(text=f"{ENV_MODEL} overrides this: {override}", icon="INFO")
    status.draw_model_status(layout)


classes = (TripoSRPreferences,)
