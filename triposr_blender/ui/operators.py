"""Operators: Generate, Re-mesh, Cancel, Load Model, Unload Model and Remove TripoSR Data, served by one
shared worker process.

In the UI, Generate and Re-mesh are modal: the model runs in the worker, a timer on Blender's main thread
drains the jobs' events (progress, then the mesh) and builds or updates the objects, and Blender stays
responsive throughout. From scripts (``bpy.ops.triposr.generate(...)``) and in background mode the same work
runs to the end before the call returns. Either way a failure leaves the scene as it was, with one message
saying why. Adjust Last Operation never runs the model again: a changed mesh option re-meshes the scene codes
the generation kept, and projects its photo again.
"""

import hashlib
import os

import bpy
import numpy as np
from bpy.props import FloatVectorProperty, StringProperty

from .. import dependencies
from ..backends.backend import BackendStartError, Job
from ..backends.types import ImageFile, ImageInput, Outcome
from ..blender import mesh_builder, placement, source
from ..blender.image_input import InputError, file_input, image_input, is_image_empty
from ..blender.quad_remesh import QuadRemeshError, quad_remesh
from ..options import GenerateOptions, OptionError
from . import preference_values, properties
from .properties import (
    MESH_OPTION_NAMES,
    check_quad_remesh,
    draw_mesh_options,
    generate_options,
    mesh_options,
)
from .session import SESSION, redraw_progress_areas

TIMER_INTERVAL = 0.1


class UserError(Exception):
    """A problem the user can fix; its text is the report."""


# What a job's submit may raise, each a message for the user.
SUBMIT_ERRORS = (UserError, InputError, OptionError, BackendStartError)


def missing_dependencies_message() -> str | None:
    if not preference_values.connection(bpy.context).runs_here:
        return None  # a server runs the model
    missing = dependencies.status().missing
    if not missing:
        return None
    return (
        f"The TripoSR dependencies are not installed ({', '.join(missing)} missing). Install them with the "
        "button in the Image to 3D panel, or in Edit > Preferences > Add-ons > TripoSR Image to 3D."
    )


class WorkerJobOperator:
    """Runs worker jobs: modally from the UI (a timer polls them), to completion from scripts.

    Each job's result is applied as it arrives; the operator finishes (one undo step) once all have ended,
    and counts as done if any result was applied.
    """

    def submit(self, context) -> list[Job]:
        raise NotImplementedError

    def finished(self, context, job: Job, outcome: Outcome) -> bool:
        """Apply one job's result; False, having reported why, when that fails."""
        raise NotImplementedError

    def execute(self, context):
        jobs = self.submitted(context)
        if jobs is None:
            return {"CANCELLED"}
        applied = [self.conclude(context, job, job.wait()) for job in jobs]
        return {"FINISHED"} if any(applied) else {"CANCELLED"}

    def invoke(self, context, event):
        jobs = self.submitted(context)
        if jobs is None:
            return {"CANCELLED"}
        self._pending, self._applied = list(jobs), []
        SESSION.active.extend(jobs)
        self._timer = context.window_manager.event_timer_add(TIMER_INTERVAL, window=context.window)
        context.window_manager.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context, event):
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        for job in list(self._pending):
            outcome = job.poll()
            if outcome is not None:
                self._pending.remove(job)
                if job in SESSION.active:
                    SESSION.active.remove(job)
                self._applied.append(self.conclude(context, job, outcome))
        if self._pending:
            show_progress(context, self._pending[0])
            return {"RUNNING_MODAL"}
        context.window_manager.event_timer_remove(self._timer)
        show_progress(context, None)
        return {"FINISHED"} if any(self._applied) else {"CANCELLED"}

    def submitted(self, context) -> list[Job] | None:
        try:
            return self.submit(context)
        except SUBMIT_ERRORS as error:
            self.report({"ERROR"}, str(error))
            return None

    def make_quads(self, context, obj: bpy.types.Object, quads: int) -> str:
        """Quad Remesh ``obj`` when ``quads`` asks for it -> what to add to the report ("" if nothing). A
        failure keeps the triangles and is reported as a warning: the object itself was made."""
        if not quads:
            return ""
        try:
            quad_remesh(context, obj, quads)
        except QuadRemeshError as error:
            self.report({"WARNING"}, str(error))
            return ""
        except Exception as error:  # a bug: still one message, and the object as it was made
            self.report(
                {"WARNING"},
                f"Quad Remesh failed ({type(error).__name__}: {error}); {obj.name} keeps its triangles.",
            )
            return ""
        return f", {len(obj.data.polygons):,} quads"

    def conclude(self, context, job: Job, outcome: Outcome) -> bool:
        if outcome.event == "cancelled":
            self.report({"WARNING"}, "Canceled.")
            return False
        if outcome.event == "error":
            self.report({"ERROR"}, outcome.message)
            return False
        return self.finished(context, job, outcome)


def report_notes(operator, result) -> None:
    """What the job did otherwise than asked (Photo Texture not applied, and why): a warning each, in the
    status bar and the Info log."""
    for note in result.notes:
        operator.report({"WARNING"}, note)


def show_progress(context, job: Job | None) -> None:
    if context.workspace is not None:
        text = f"TripoSR: {job.stage} ({job.fraction:.0%})" if job else None
        context.workspace.status_text_set(text)
    redraw_progress_areas()


class TRIPOSR_OT_generate(WorkerJobOperator, bpy.types.Operator):
    """Reconstruct a colored 3D mesh from one image with TripoSR; options not given come from the panel"""

    bl_idname = "triposr.generate"
    bl_label = "Generate 3D Mesh"
    bl_options = {"REGISTER", "UNDO"}  # noqa: RUF012 - Blender's API wants a plain set

    __annotations__ = {  # Blender reads properties from the class annotations
        "filepath": StringProperty(
            name="Image File",
            description="Image file to reconstruct",
            subtype="FILE_PATH",
            options={"SKIP_SAVE"},
        ),
        "image_name": StringProperty(
            name="Image", description="Name of an image in Blender to reconstruct", options={"SKIP_SAVE"}
        ),
        "reference_empty": StringProperty(
            name="Reference Empty",
            description="The image empty whose image is the input, and in whose picture the object is placed",
            options={"SKIP_SAVE"},
        ),
        "location": FloatVectorProperty(
            name="Location",
            description="Where the object's origin (its bottom center) goes instead of the 3D cursor",
            subtype="TRANSLATION",
            options={"SKIP_SAVE"},
        ),
        # SKIP_SAVE: an option not passed comes from the panel, never from the operator's last use.
        **properties.generation_options(options={"SKIP_SAVE"}),
    }

    @classmethod
    def poll(cls, context):
        return context.scene is not None

    def submit(self, context) -> list[Job]:
        self.fill_from_panel(context)
        self._options = generate_options(self)
        check_quad_remesh(self)
        name, image = self.input_image(context)
        self._name, self._where = name, self.destination(context)
        self._input = input_key(name, image, self._options)
        if message := missing_dependencies_message():
            raise UserError(message)
        model = preference_values.model_settings(context, self.device)
        kept = SESSION.last_codes.get(self._input) if self.options.is_repeat else None
        if kept:  # Adjust Last Operation: only mesh options can change, so the model need not run again
            codes, photo = kept
            return [SESSION.worker().remesh(codes, self._options.mesh, model, photo)]
        return [SESSION.worker().generate(image, self._options, model)]

    def finished(self, context, job: Job, outcome: Outcome) -> bool:
        result = outcome.result
        try:
            obj = mesh_builder.build_object(
                context, self._name, result, self._where, self.shade_smooth, self._options
            )
        except Exception as error:  # the scene is unchanged (the builders clean up); say why
            self.report({"ERROR"}, f"Could not build the mesh in Blender: {type(error).__name__}: {error}")
            return False
        if result.codes:  # a generation's (a re-mesh of them, by Adjust Last Operation, brings none back)
            SESSION.last_codes = {self._input: (result.codes, result.photo)}
        quads = self.make_quads(context, obj, self.quad_remesh)
        self.report({"INFO"}, f"Created {obj.name}: {len(obj.data.vertices):,} vertices{quads}.")
        report_notes(self, result)
        return True

    def draw(self, context):
        """Adjust Last Operation: only what re-meshes the kept scene codes; a new image or new image options
        need a new Generate, which runs the model."""
        draw_mesh_options(self.layout, self)
        self.layout.prop(self, "shade_smooth")

    def fill_from_panel(self, context) -> None:
        settings = context.scene.triposr
        for name in properties.OPTION_NAMES:
            if not self.properties.is_property_set(name):
                setattr(self, name, getattr(settings, name))
        if self.filepath or self.image_name or self.reference_empty:
            return
        if settings.input_source == "FILE":
            self.filepath = settings.filepath
        elif settings.input_source == "IMAGE" and settings.image is not None:
            self.image_name = settings.image.name

    def reference_object(self, context) -> bpy.types.Object | None:
        if self.reference_empty:
            obj = bpy.data.objects.get(self.reference_empty)
            if obj is None or not is_image_empty(obj):
                raise UserError(f"'{self.reference_empty}' is not an image empty (a reference image).")
            return obj
        active = context.active_object
        return active if active is not None and is_image_empty(active) else None

    def input_image(self, context) -> tuple[str, ImageInput]:
        """The object's name and the image as the worker takes it."""
        if self.filepath:
            path = os.path.abspath(bpy.path.abspath(self.filepath))
            if not os.path.isfile(path):
                raise UserError(f"Image file not found: {path}")
            return file_input(path)
        if self.image_name:
            image = bpy.data.images.get(self.image_name)
            if image is None:
                raise UserError(f"There is no image named '{self.image_name}' in this file.")
            return image_input(image)
        reference = self.reference_object(context)
        if reference is None:
            raise UserError(
                "No input image: choose an image file or an image in the Image to 3D panel, or select a "
                "reference image empty."
            )
        return image_input(reference.data)

    def destination(self, context) -> placement.Destination:
        if self.placement == "CURSOR":
            if not self.properties.is_property_set("location"):
                self.location = context.scene.cursor.location  # Adjust Last Operation shows where it went
            return placement.Destination(
                location=tuple(self.location),
                target_size=self.target_size,
                front_axis=preference_values.front_axis(context),
            )
        reference = self.reference_object(context)
        if reference is None:
            raise UserError(
                "Place At Reference Image needs a selected image empty. Select one or use 3D Cursor."
            )
        width, height = reference.data.size
        frame = placement.image_empty_frame(
            np.array(reference.matrix_world),
            reference.empty_display_size,
            tuple(reference.empty_image_offset),
            width,
            height,
        )
        return placement.Destination(picture=frame)


def input_key(name: str, image: ImageInput, chosen: GenerateOptions) -> tuple:
    """What a generation's scene codes depend on: the image and how it is prepared (not the mesh options)."""
    content = (
        image.path if isinstance(image, ImageFile) else hashlib.sha256(image.pixels.tobytes()).hexdigest()
    )
    return name, content, chosen.remove_background, chosen.foreground_ratio


class TRIPOSR_OT_remesh(WorkerJobOperator, bpy.types.Operator):
    """Make the selected TripoSR objects' meshes again from their kept scene codes, without the image"""

    bl_idname = "triposr.remesh"
    bl_label = "Remesh"
    bl_options = {"REGISTER", "UNDO"}  # noqa: RUF012 - Blender's API wants a plain set

    __annotations__ = {  # Blender reads properties from the class annotations
        name: prop
        for name, prop in properties.generation_options(options={"SKIP_SAVE"}).items()
        if name in MESH_OPTION_NAMES
    }

    @classmethod
    def poll(cls, context):
        if not source.selected_triposr_objects(context):
            cls.poll_message_set("Select objects made by Generate (TripoSR objects) to remesh")
            return False
        return True

    def submit(self, context) -> list[Job]:
        settings = context.scene.triposr
        for name in MESH_OPTION_NAMES:
            if not self.properties.is_property_set(name):
                setattr(self, name, getattr(settings, name))
        chosen = mesh_options(self)
        check_quad_remesh(self)
        if message := missing_dependencies_message():
            raise UserError(message)
        model = preference_values.model_settings(context)
        jobs, self._objects = [], {}
        for obj in source.selected_triposr_objects(context):
            made_from = source.source_of(obj)
            if made_from is None:
                raise UserError(f"{obj.name} keeps damaged TripoSR data: Generate it again from its image.")
            jobs.append(SESSION.worker().remesh(made_from.codes, chosen, model, made_from.photo()))
            now_made_with = GenerateOptions(**{**made_from.options.as_dict(), **chosen.as_dict()})
            self._objects[jobs[-1].id] = (obj.name, now_made_with)
        return jobs

    def finished(self, context, job: Job, outcome: Outcome) -> bool:
        name, made_with = self._objects[job.id]
        obj = bpy.data.objects.get(name)
        if obj is None:
            self.report({"WARNING"}, f"{name} was deleted while it was remeshed.")
            return False
        try:
            mesh_builder.replace_mesh(obj, outcome.result, made_with)
        except Exception as error:  # the object keeps its mesh (the builder cleans up); say why
            self.report({"ERROR"}, f"Could not remesh {name}: {type(error).__name__}: {error}")
            return False
        quads = self.make_quads(context, obj, self.quad_remesh)
        self.report({"INFO"}, f"Remeshed {name}: {len(obj.data.vertices):,} vertices{quads}.")
        report_notes(self, outcome.result)
        return True

    def draw(self, context):
        draw_mesh_options(self.layout, self)


class TRIPOSR_OT_remove_data(bpy.types.Operator):
    """Remove the scene codes the selected TripoSR objects keep for Remesh (some MB each)"""

    bl_idname = "triposr.remove_data"
    bl_label = "Remove TripoSR Data"
    bl_options = {"REGISTER", "UNDO"}  # noqa: RUF012 - Blender's API wants a plain set

    @classmethod
    def poll(cls, context):
        return bool(source.selected_triposr_objects(context))

    def execute(self, context):
        objects = source.selected_triposr_objects(context)
        for obj in objects:
            source.strip(obj)
        self.report({"INFO"}, f"Removed the TripoSR data of {len(objects)} object(s).")
        return {"FINISHED"}


class TRIPOSR_OT_load_model(WorkerJobOperator, bpy.types.Operator):
    """Download the model if needed and load it, so the first generation starts at once"""

    bl_idname = "triposr.load_model"
    bl_label = "Download and Load Model"

    def submit(self, context) -> list[Job]:
        if message := missing_dependencies_message():
            raise UserError(message)
        return [SESSION.worker().load(preference_values.model_settings(context))]

    def finished(self, context, job: Job, outcome: Outcome) -> bool:
        self.report({"INFO"}, f"Model loaded on {outcome.model.device}.")
        return True


class TRIPOSR_OT_cancel(bpy.types.Operator):
    """Stop the running generation"""

    bl_idname = "triposr.cancel"
    bl_label = "Cancel"

    @classmethod
    def poll(cls, context):
        return bool(SESSION.active)

    def execute(self, context):
        SESSION.cancel_all()
        return {"FINISHED"}


class TRIPOSR_OT_unload_model(bpy.types.Operator):
    """Stop the model's worker process, freeing all the memory it used (the next Generate loads it again)"""

    bl_idname = "triposr.unload_model"
    bl_label = "Unload Model"

    @classmethod
    def poll(cls, context):
        return SESSION.client is not None and SESSION.client.can_unload

    def execute(self, context):
        SESSION.stop()
        redraw_progress_areas()
        return {"FINISHED"}


@bpy.app.handlers.persistent
def cancel_on_file_load(*_args) -> None:
    """Loading a file drops the modal operators, so their jobs would run on unseen."""
    SESSION.cancel_all()
    SESSION.active.clear()


def run_generate(**options) -> str | None:
    """Run Generate with ``options``: in the UI it queues a job and returns at once, in background mode it
    finishes first. None if it started (or finished), else the reason it did not."""
    mode = "EXEC_DEFAULT" if bpy.app.background else "INVOKE_DEFAULT"
    try:
        result = bpy.ops.triposr.generate(mode, **options)
    except RuntimeError as error:  # bpy turns an operator's error report into this exception
        return str(error).removeprefix("Error: ").strip()
    return None if result & {"FINISHED", "RUNNING_MODAL"} else "Generate was canceled."


classes = (
    TRIPOSR_OT_generate,
    TRIPOSR_OT_remesh,
    TRIPOSR_OT_remove_data,
    TRIPOSR_OT_load_model,
    TRIPOSR_OT_cancel,
    TRIPOSR_OT_unload_model,
)


def register() -> None:
    bpy.app.handlers.load_pre.append(cancel_on_file_load)


def unregister() -> None:
    bpy.app.handlers.load_pre.remove(cancel_on_file_load)
    SESSION.stop()
