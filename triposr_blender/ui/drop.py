"""Drag and drop: image files dropped on the 3D Viewport offer **Image to 3D**.

Blender lists every file handler that accepts a drop; for images in the 3D Viewport that is its own
reference-image empty and this one. Image to 3D runs Generate once per file with the panel's settings,
the first mesh standing where the image was dropped and the others in a row beside it. In the UI the
generations queue up on the worker and run one after another while Blender stays responsive; in
background mode and from scripts each one finishes before the next starts.
"""

import os

import bpy
from bpy.props import BoolProperty, CollectionProperty, FloatVectorProperty, StringProperty
from bpy_extras import view3d_utils
from mathutils import Vector, geometry

from ..blender.placement import ROW_SPACING
from ..options import IMAGE_EXTENSIONS
from .operators import run_generate


class TRIPOSR_OT_image_to_3d(bpy.types.Operator):
    """Make a colored 3D mesh from each image file with TripoSR, using the Image to 3D panel's settings"""

    bl_idname = "triposr.image_to_3d"
    bl_label = "Image to 3D"
    bl_options = {"REGISTER"}  # noqa: RUF012 - Blender's API wants a plain set; Generate pushes the undo steps

    __annotations__ = {  # Blender reads properties from the class annotations
        "filepath": StringProperty(name="File", subtype="FILE_PATH", options={"SKIP_SAVE"}),
        "directory": StringProperty(subtype="DIR_PATH", options={"SKIP_SAVE", "HIDDEN"}),
        "files": CollectionProperty(type=bpy.types.OperatorFileListElement, options={"SKIP_SAVE", "HIDDEN"}),
        "location": FloatVectorProperty(
            name="Location",
            description="Where the first mesh stands (default: where the images were dropped, or the 3D "
            "cursor)",
            subtype="TRANSLATION",
            options={"SKIP_SAVE"},
        ),
        # Makes the file browser, when the operator is run from a menu, show only images.
        "filter_image": BoolProperty(default=True, options={"HIDDEN", "SKIP_SAVE"}),
        "filter_folder": BoolProperty(default=True, options={"HIDDEN", "SKIP_SAVE"}),
    }

    @classmethod
    def poll(cls, context):
        return context.scene is not None

    def invoke(self, context, event):
        if not self.image_paths():
            context.window_manager.fileselect_add(self)  # run from a menu or search: choose the images
            return {"RUNNING_MODAL"}
        if not self.properties.is_property_set("location"):
            dropped_at = drop_location(context, event)
            if dropped_at is not None:
                self.location = dropped_at
        return self.execute(context)

    def execute(self, context):
        paths = self.image_paths()
        if not paths:
            self.report({"ERROR"}, "No image file given: drop image files on the 3D Viewport.")
            return {"CANCELLED"}
        given = self.properties.is_property_set("location")
        start = Vector(self.location if given else context.scene.cursor.location)
        step = Vector((ROW_SPACING * context.scene.triposr.target_size, 0.0, 0.0))
        failures = [
            failure
            for index, path in enumerate(paths)
            if (failure := run_generate(filepath=path, placement="CURSOR", location=start + index * step))
        ]
        for failure in failures:
            self.report({"ERROR"}, failure)
        return {"CANCELLED"} if len(failures) == len(paths) else {"FINISHED"}

    def image_paths(self) -> list[str]:
        """The chosen files: several from a drop or the file browser (``directory`` and ``files``), or one."""
        if self.directory and any(file.name for file in self.files):
            return [os.path.join(self.directory, file.name) for file in self.files if file.name]
        return [self.filepath] if self.filepath else []


def drop_location(context, event) -> Vector | None:
    """The point under the mouse for a drop on a 3D Viewport, or None elsewhere."""
    region, view = context.region, context.region_data
    if region is None or region.type != "WINDOW" or view is None:
        return None
    mouse = (event.mouse_x - region.x, event.mouse_y - region.y)
    return location_under_mouse(region, view, mouse, context.scene.cursor.location)


def location_under_mouse(region, view, mouse, cursor) -> Vector:
    """Where the view ray under ``mouse`` meets the floor at the 3D cursor's height, so a mesh stands where
    the image was dropped; in views that do not look at that floor (front, side), the point under the mouse
    at the 3D cursor's depth."""
    origin = view3d_utils.region_2d_to_origin_3d(region, view, mouse)
    direction = view3d_utils.region_2d_to_vector_3d(region, view, mouse)
    hit = geometry.intersect_line_plane(origin, origin + direction, cursor, Vector((0.0, 0.0, 1.0)))
    if hit is not None and (hit - origin).dot(direction) > 0:
        return hit
    return view3d_utils.region_2d_to_location_3d(region, view, mouse, cursor)


class TRIPOSR_FH_image_to_3d(bpy.types.FileHandler):
    bl_idname = "TRIPOSR_FH_image_to_3d"
    bl_label = "Image to 3D"
    bl_import_operator = TRIPOSR_OT_image_to_3d.bl_idname
    bl_file_extensions = ";".join(IMAGE_EXTENSIONS)

    @classmethod
    def poll_drop(cls, context):
        return context.area is not None and context.area.type == "VIEW_3D"


classes = (TRIPOSR_OT_image_to_3d, TRIPOSR_FH_image_to_3d)
