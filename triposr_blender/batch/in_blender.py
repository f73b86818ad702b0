"""The batch in Blender: each image's mesh built as the panel builds it, and written by Blender's own
exporters (glb, obj, ply, fbx, usd, a .blend each, or every mesh in one .blend).

The model runs in the extension's worker process, as Generate's does (or on a TripoSR server with
``--server``): it loads once and serves every image, and a crash in PyTorch fails one image instead of the
run (the next image gets a new worker).
"""

import contextlib
import dataclasses
import functools
import os
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import NoReturn

import bpy

from ..backends.backend import Backend, BackendStartError, Connection, backend_for
from ..blender import materials, mesh_builder
from ..blender.image_input import InputError, file_input, image_loaded, image_pixels
from ..blender.placement import ROW_SPACING, Destination
from ..blender.quad_remesh import QuadRemeshError, quad_remesh
from ..core import preview
from ..core.export import png_bytes
from ..core.scene_codes import with_photo
from ..dependencies import dependency_paths
from ..options import ENV_SERVER_TOKEN, GenerateOptions
from ..vendor_install import remove_folders_of_ended_processes
from . import contact_sheet
from .plan import (
    CODES_SUFFIX,
    STAGING_PREFIX,
    THUMBNAIL_SIZE,
    LocalFolder,
    ProgressBar,
    model_settings,
    result_pictures,
)

# The worker's error kinds (exception class names) that would fail every image alike.
ERRORS_THAT_STOP_THE_BATCH = frozenset({"ModelLoadError", "MissingDependencies"})
PROGRESS_INTERVAL = 0.1  # seconds between progress bar updates
# Exporters that need a baked texture as a file beside them: OBJ refers to it, FBX embeds a copy. glTF and
# USD write the packed image themselves, a .blend packs it.
FORMATS_WITH_TEXTURE_FILES = ("obj", "fbx")


# The runner's side of batch.main: outputs on this computer, inputs that are local paths.
output_folder = LocalFolder
expand_url = None


def run(args, plan, report, interruption):
    BlenderBatch(args, report, interruption).run(plan)


class GenerationError(Exception):
    """The worker could not make a mesh from this image; the text says why, for the user."""


class StopBatch(Exception):
    """A failure no later image can escape: the model does not load, or the dependencies are missing."""


class BlenderBatch:
    """Converts the images one after another in this Blender session."""

    def __init__(self, args, report, interruption):
        self.args = args
        self.out = Path(args.out)
        self.report = report
        self.interruption = interruption
        self.progress = ProgressBar(len(report.items))
        self.model = model_settings(args, args.device)
        self.options = GenerateOptions.from_attributes(args)
        self.worker: Backend | None = None

    def run(self, plan):
        self._open_target()
        try:
            for position, (item, name) in enumerate(plan):
                self.progress.start(Path(item.input).name)
                try:
                    self._convert(item, name)
                except StopBatch as error:
                    for remaining, _ in plan[position:]:
                        remaining.status, remaining.error = "failed", str(error)
                    break
                finally:
                    self.progress.finish(item.status)
                    self.report.save()
        finally:
            if self.worker is not None:
                self.worker.stop()

    def _open_target(self):
        """Start from an empty file, or open the --one-blend file to add to it: a user's scene in it stays."""
        blend = self.args.one_blend
        if blend and blend.is_file() and not self.args.overwrite:
            bpy.ops.wm.open_mainfile(filepath=str(blend))
        else:
            bpy.ops.wm.read_homefile(use_empty=True)
        if not blend:
            # The pid in a staging folder's name tells those of runs killed mid-export from those going on.
            remove_folders_of_ended_processes(self.out, STAGING_PREFIX)

    def _convert(self, item, name):
        output = self.args.one_blend or self.out / f"{name}.{self.args.format}"
        if self.args.skip_existing and self._exists(output, name):
            item.status, item.output = "skipped", str(output)
            if self.report.path is not None:
                item.pictures = contact_sheet.earlier_pictures(self.report.path, name)
            return
        started = time.monotonic()
        try:
            self._generate_and_write(item, name, output)
            item.status, item.output = "done", str(output)
        except GenerationError as error:
            item.status, item.error = "failed", str(error)
        except StopBatch:
            raise  # every later image would fail alike: the run ends here, once
        except Exception as error:
            if self.interruption.requested:  # Ctrl+C inside an exporter, which Blender made a RuntimeError
                raise KeyboardInterrupt from error
            # Anything else (an exporter's error, a full disk) must not end the batch either; the traceback
            # goes to stderr for a bug report.
            traceback.print_exc()
            item.status, item.error = "failed", f"{type(error).__name__}: {error}"
        item.seconds = round(time.monotonic() - started, 3)

    def _exists(self, output, name):
        if self.args.one_blend:
            return name in bpy.data.objects
        return output.exists()

    def _generate_and_write(self, item, name, output):
        obj, result = self._generate(Path(item.input), name, output)
        try:
            item.faces, item.vertices = len(obj.data.polygons), len(obj.data.vertices)
            item.notes = list(result.notes)
            self._save_pictures(item, name, result)
            if self.args.one_blend:
                self._add_to_one_blend(output)
                obj = None  # it stays in the file
            else:
                self.progress("Exporting", 0.0)
                export_object(output, self.args.format)
        finally:
            if obj is not None:
                mesh_builder.remove_object(obj)

    def _generate(self, image_path, name, output):
        result = self._run_on_worker(image_path)
        if self.args.save_codes:
            # with the photo, so that --from-codes projects it again (Photo Texture)
            save_codes(with_photo(result.codes, result.photo), output.parent / f"{name}{CODES_SUFFIX}")
        if output.suffix != ".blend":
            result = dataclasses.replace(result, codes=b"")  # other formats would carry them as properties
        self.progress("Building the mesh", 0.0)
        obj = mesh_builder.build_object(bpy.context, name, result, self._destination(), options=self.options)
        if self.args.quad_remesh:
            self.progress("Quad remeshing (QuadriFlow)", 0.0)
            try:
                quad_remesh(bpy.context, obj, self.args.quad_remesh)
            except QuadRemeshError as error:
                mesh_builder.remove_object(obj)
                raise GenerationError(str(error)) from error
        return obj, result

    def _run_on_worker(self, path):
        """The worker's ``MeshResult`` for one input, showing the worker's progress while it works: an image,
        or with --from-codes, saved scene codes meshed without the encoder."""
        if self.args.from_codes:
            job = self._worker().remesh(read_codes(path), self.options.mesh, self.model)
        else:
            job = self._worker().generate(image_for_worker(path), self.options, self.model)
        while (outcome := job.poll()) is None:
            self.progress(job.stage, job.fraction)
            job.finished.wait(PROGRESS_INTERVAL)
        if outcome.event == "error":
            error = StopBatch if outcome.kind in ERRORS_THAT_STOP_THE_BATCH else GenerationError
            raise error(outcome.message)
        return outcome.result

    def _worker(self):
        if self.worker is None:
            try:
                self.worker = backend_for(self.connection())
            except BackendStartError as error:
                raise StopBatch(str(error)) from error
        return self.worker

    def connection(self):
        """--server's (its token in TRIPOSR_SERVER_TOKEN), else this computer's worker."""
        if self.args.server:
            return Connection(self.args.server, os.environ.get(ENV_SERVER_TOKEN, ""))
        return Connection(pythonpath=tuple(dependency_paths()))

    def _save_pictures(self, item, name, result):
        """A converted input's pictures for the contact sheet, beside the report: its thumbnail (an image's:
        the worker has read it, so its size is known to be sane), and those of its result."""
        if self.report.path is None:
            return
        self.progress("Drawing the previews", 0.0)
        pictures = {} if self.args.from_codes else input_thumbnail(Path(item.input))
        pictures.update(result_pictures(result, self.args.preview, self.args.turntable))
        for kind, data in pictures.items():
            item.pictures[kind] = contact_sheet.save_picture(self.report.path, name, kind, data)

    def _destination(self):
        """At the origin; in a --one-blend file, next in a row along +X, so the meshes do not overlap."""
        size = self.args.target_size
        if not self.args.one_blend:
            return Destination(target_size=size)
        placed = sum(obj.type == "MESH" for obj in bpy.context.scene.objects)
        return Destination(location=(placed * size * ROW_SPACING, 0.0, 0.0), target_size=size)

    def _add_to_one_blend(self, output):
        self.progress("Saving", 0.0)
        output.parent.mkdir(parents=True, exist_ok=True)
        # Saved after every image (Blender writes a .blend safely under a temporary name): an interrupted run
        # keeps all finished meshes, and --skip-existing picks up from there.
        bpy.ops.wm.save_as_mainfile(filepath=str(output.resolve()), copy=True)


def save_codes(codes, path):
    """Write saved scene codes beside an output, complete or not at all."""
    partial = path.with_name(f"{STAGING_PREFIX}{os.getpid()}-{path.name}")
    partial.write_bytes(codes)
    os.replace(partial, path)


def read_codes(path):
    try:
        return path.read_bytes()
    except OSError as error:
        raise GenerationError(f"Cannot read {path}: {error.strerror or error}.") from error


def input_thumbnail(image_path):
    """{"input": PNG bytes}: the image as Blender reads it, shrunk for the contact sheet; {} for one
    Blender cannot read (its card says why)."""
    try:
        with image_loaded(str(image_path), size_checked=True) as image:
            pixels = image_pixels(image)
    except InputError:
        return {}
    return {"input": png_bytes(preview.thumbnail(pixels, THUMBNAIL_SIZE))}


def image_for_worker(image_path):
    """The image as Generate sends it: its path, or its pixels when only Blender reads the format (EXR)."""
    try:
        return file_input(str(image_path))[1]
    except InputError as error:
        raise GenerationError(str(error)) from error


def export_object(output, file_format):
    """Write the selected object (``build_object`` selects only the new one) to ``output`` with Blender's
    exporter for ``file_format``, vertex colours or baked texture included (OBJ: a PNG beside it).

    The exporter writes into a temporary folder beside ``output`` and the files move into place when it has
    finished, the main file last: an interrupted run never leaves a half-written file that --skip-existing
    would take for a finished one.
    """
    with tempfile.TemporaryDirectory(dir=output.parent, prefix=f"{STAGING_PREFIX}{os.getpid()}-") as staging:
        staged = Path(staging) / output.name
        if file_format in FORMATS_WITH_TEXTURE_FILES:
            for obj in bpy.context.selected_objects:
                materials.save_textures_beside(obj, Path(staging))
        with exporter_output_kept_back():
            EXPORTERS[file_format](filepath=str(staged))
        # OBJ writes its .mtl beside the .obj, under the same name, so the files move together.
        for written in sorted(Path(staging).iterdir(), key=lambda path: path == staged):
            move_into(written, output.parent)


@contextlib.contextmanager
def exporter_output_kept_back():
    """Keep what an exporter prints (glTF's INFO lines, Draco's) out of the batch's output, which is its
    progress and report; shown on stderr only if the export fails. At the file-descriptor level, since the
    exporters' loggers hold the stream they were given."""
    sys.stdout.flush()
    kept = os.dup(1)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 1)
        try:
            yield
        except BaseException:
            sys.stdout.flush()
            os.dup2(kept, 1)
            captured.seek(0)
            sys.stderr.write(captured.read().decode("utf-8", errors="replace"))
            raise
        finally:
            sys.stdout.flush()
            os.dup2(kept, 1)
            os.close(kept)


def move_into(source, folder):
    """Move a file into ``folder``; a folder's files go into the same-named folder there, which may already
    hold those of earlier outputs (USD's textures/)."""
    target = folder / source.name
    if not source.is_dir():
        os.replace(source, target)
        return
    target.mkdir(exist_ok=True)
    for child in source.iterdir():
        move_into(child, target)


EXPORTERS = {
    # The colors the material uses: RGB, as the core's GLB writes them. With "ACTIVE", Blender 5.2 and newer
    # add the attribute's alpha to COLOR_0 (4.2-5.0 did not); the material never uses that alpha.
    "glb": functools.partial(
        bpy.ops.export_scene.gltf, export_format="GLB", use_selection=True, export_vertex_color="MATERIAL"
    ),
    # Textures: OBJ refers to the PNG export_object saved beside it by name alone; FBX carries a copy inside.
    "obj": functools.partial(
        bpy.ops.wm.obj_export, export_selected_objects=True, export_colors=True, path_mode="STRIP"
    ),
    "ply": functools.partial(bpy.ops.wm.ply_export, export_selected_objects=True, export_colors="SRGB"),
    "fbx": functools.partial(
        bpy.ops.export_scene.fbx,
        use_selection=True,
        colors_type="SRGB",
        path_mode="COPY",
        embed_textures=True,
    ),
    # USD writes a baked texture into a textures/ folder beside it, shared by every output of a run.
    "usd": functools.partial(bpy.ops.wm.usd_export, selected_objects_only=True, export_mesh_colors=True),
    "blend": functools.partial(bpy.ops.wm.save_as_mainfile, copy=True),
}


def exit_bpy_module(code: int) -> NoReturn:
    """End a ``python -m triposr_blender.batch`` run without Python's normal teardown of the bpy module.

    The Blender 4.2 bpy module crashes (signal 11) while Python shuts down after two or more glTF exports,
    even in a script that does nothing else, which would turn a good batch into a failed one. By now the
    outputs and the report are written and the worker is stopped, so nothing is lost by skipping it.
    """
    shutil.rmtree(bpy.app.tempdir, ignore_errors=True)  # Blender's own exit would have removed it
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
