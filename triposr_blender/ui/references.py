"""Generate from Selected References: one mesh per selected image empty, standing in its picture.

An image empty is what Blender makes when an image is dropped on the 3D Viewport as a reference. Each
selected one becomes an input of Generate with Place At Reference Image: the mesh takes the empty's place,
faces whoever looks at the picture, is as large as the picture, and is named after the image.
"""

import bpy

from ..blender.image_input import is_image_empty
from .operators import run_generate


def selected_image_empties(context) -> list[bpy.types.Object]:
    return [obj for obj in context.selected_objects if is_image_empty(obj)]


class TRIPOSR_OT_generate_from_references(bpy.types.Operator):
    """Make a colored 3D mesh from the image of each selected image empty, placed and sized at the empty"""

    bl_idname = "triposr.generate_from_references"
    bl_label = "Generate from Selected References"
    bl_options = {"REGISTER"}  # noqa: RUF012 - Blender's API wants a plain set; Generate pushes the undo steps

    @classmethod
    def poll(cls, context):
        if not selected_image_empties(context):
            cls.poll_message_set("Select one or more image empties (reference images)")
            return False
        return True

    def execute(self, context):
        empties = selected_image_empties(context)
        failures = [
            f"{empty.name}: {failure}"
            for empty in empties
            if (failure := run_generate(reference_empty=empty.name, placement="REFERENCE"))
        ]
        for failure in failures:
            self.report({"ERROR"}, failure)
        return {"CANCELLED"} if len(failures) == len(empties) else {"FINISHED"}


def draw_in_context_menu(self, context):
    if selected_image_empties(context):
        self.layout.separator()
        self.layout.operator(TRIPOSR_OT_generate_from_references.bl_idname, icon="MESH_MONKEY")


classes = (TRIPOSR_OT_generate_from_references,)


def register() -> None:
    bpy.types.VIEW3D_MT_object_context_menu.append(draw_in_context_menu)


def unregister() -> None:
    bpy.types.VIEW3D_MT_object_context_menu.remove(draw_in_context_menu)
