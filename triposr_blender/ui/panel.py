"""The "Image to 3D" tab of the 3D Viewport's sidebar: input, options, Generate / progress / Cancel, model."""

import os

import bpy
import bpy.utils.previews

from ..blender import source
from ..blender.image_input import is_image_empty
from . import status
from .properties import draw_mesh_options
from .session import SESSION

# File thumbnails (images already in Blender have their own previews). Keyed by path and modification time,
# so an edited file shows its new content.
_file_previews = None


def file_preview_icon(path: str) -> int:
    global _file_previews
    if _file_previews is None:
        _file_previews = bpy.utils.previews.new()
    key = f"{path}:{os.path.getmtime(path)}"
    preview = _file_previews.get(key) or _file_previews.load(key, path, "IMAGE")
    return preview.icon_id


def input_preview_icon(layout, context) -> int:
    """Icon id of the thumbnail of the current input, or 0 when there is none to show."""
    settings = context.scene.triposr
    if settings.input_source == "FILE":
        path = bpy.path.abspath(settings.filepath)
        return file_preview_icon(path) if settings.filepath and os.path.isfile(path) else 0
    image = settings.image if settings.input_source == "IMAGE" else reference_image(context)
    return layout.icon(image) if image is not None else 0


def reference_image(context) -> bpy.types.Image | None:
    active = context.active_object
    return active.data if active is not None and is_image_empty(active) else None


class SidebarPanel:
    """Where the add-on's panels live: the 3D Viewport's sidebar (N), tab Image to 3D."""

    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "Image to 3D"


class VIEW3D_PT_triposr(SidebarPanel, bpy.types.Panel):
    bl_label = "Image to 3D"

    def draw(self, context):
        layout = self.layout
        if not status.draw_dependencies(layout, context):
            return
        settings = context.scene.triposr
        layout.row().prop(settings, "input_source", expand=True)
        self.draw_input(layout, context, settings)
        icon = input_preview_icon(layout, context)
        if icon:
            layout.template_icon(icon_value=icon, scale=6.0)
        self.draw_generate(layout, settings)

    @staticmethod
    def draw_input(layout, context, settings) -> None:
        if settings.input_source == "FILE":
            layout.prop(settings, "filepath", text="")
        elif settings.input_source == "IMAGE":
            layout.template_ID(settings, "image", open="image.open")
        elif (image := reference_image(context)) is not None:
            layout.label(text=f"{context.active_object.name}: {image.name}", icon="IMAGE_REFERENCE")
        else:
            layout.label(text="Select an image empty (a reference image)", icon="INFO")

    @staticmethod
    def draw_generate(layout, settings) -> None:
        job = SESSION.current("generate")
        if job is None:
            layout.operator("triposr.generate", icon="MESH_MONKEY")
            if settings.input_source == "REFERENCE":
                layout.operator("triposr.generate_from_references", icon="IMAGE_REFERENCE")
            return
        layout.progress(factor=job.fraction, text=job.stage)
        layout.operator("triposr.cancel", icon="CANCEL")


class VIEW3D_PT_triposr_options(SidebarPanel, bpy.types.Panel):
    bl_label = "Options"
    bl_parent_id = "VIEW3D_PT_triposr"

    def draw(self, context):
        layout = self.layout
        settings = context.scene.triposr
        layout.use_property_split = True
        layout.use_property_decorate = False
        layout.prop(settings, "remove_background")
        layout.prop(settings, "foreground_ratio")
        draw_mesh_options(layout, settings)
        layout.prop(settings, "shade_smooth")
        layout.prop(settings, "device")
        layout.prop(settings, "placement")
        size = layout.row()
        size.active = settings.placement == "CURSOR"  # a reference image sets the size itself
        size.prop(settings, "target_size")


class VIEW3D_PT_triposr_remesh(SidebarPanel, bpy.types.Panel):
    """Shown for a TripoSR object: what it was made from, and a new mesh from it with the panel's options."""

    bl_label = "Remesh"
    bl_parent_id = "VIEW3D_PT_triposr"

    @classmethod
    def poll(cls, context):
        return source.is_triposr_object(context.active_object)

    def draw(self, context):
        layout = self.layout
        made_from = source.source_of(context.active_object)
        if made_from is None:
            layout.label(text="Its TripoSR data is damaged: Generate it again", icon="ERROR")
        else:
            made = made_from.options
            floaters = "floaters removed" if made.remove_floaters else "floaters kept"
            layout.label(
                text=f"Made at {made.resolution}, threshold {made.threshold:g}, {floaters}", icon="INFO"
            )
            layout.label(text="Remesh uses the Options above: no image, no encoding", icon="BLANK1")
        count = len(source.selected_triposr_objects(context))
        layout.operator(
            "triposr.remesh", text=f"Remesh {count} Selected" if count > 1 else "Remesh", icon="MOD_REMESH"
        )
        layout.operator("triposr.remove_data", icon="TRASH")


class VIEW3D_PT_triposr_model(SidebarPanel, bpy.types.Panel):
    bl_label = "Model"
    bl_parent_id = "VIEW3D_PT_triposr"
    bl_options = {"DEFAULT_CLOSED"}  # noqa: RUF012 - Blender's API wants a plain set

    def draw(self, context):
        status.draw_model_status(self.layout)


classes = (VIEW3D_PT_triposr, VIEW3D_PT_triposr_options, VIEW3D_PT_triposr_remesh, VIEW3D_PT_triposr_model)


def unregister() -> None:
    global _file_previews
    if _file_previews is not None:
        bpy.utils.previews.remove(_file_previews)
        _file_previews = None
