"""The batch on a Ray cluster: Ray Data streams the inputs through a pool of model workers.

    python -m triposr_blender.batch -- s3://studio/photos --out s3://studio/meshes --ray

Each input is one row through two stages:

1. ``prepare`` (Ray tasks, on CPUs): read the file (pyarrow's file systems: local paths, s3://, gs://, ...),
   and for an image remove its background and centre the object, as the worker process does;
2. ``Converter`` (an actor pool, ``--concurrency`` actors of ``--gpus-per-worker`` GPUs each): encode, extract
   the mesh as the options ask (floaters, decimation, texture bake), and write its files with the core's own
   writer (``core/export.py``), complete or not at all.

A failure (an unreadable image, a model that does not load) becomes that row's error, so it fails its input
alone and the report names it, as in the batch in Blender. This process only plans the run, shows Ray's
progress and keeps the report; the extension's code travels to the cluster with the job, and the nodes need
its Python dependencies (requirements.txt and requirements-ray.txt).
"""

import dataclasses
import functools
import gc
import os
import time
import uuid
from pathlib import Path

import numpy as np
import pyarrow.fs
import ray

from .. import ray_cluster
from ..core import preview, progress
from ..core.export import png_bytes
from ..core.scene_codes import photo_in, with_photo
from ..options import GenerateOptions
from . import contact_sheet
from .plan import (
    CODES_SUFFIX,
    STAGING_PREFIX,
    THUMBNAIL_SIZE,
    OutputError,
    empty_folder,
    file_name,
    is_url,
    model_settings,
    result_pictures,
)

REPORT_INTERVAL = 2.0  # seconds between saves of the report: a run may have tens of thousands of images
NOTE_SEPARATOR = "\n"  # between a row's notes: one line each
# A model worker that dies (its node lost, a crash, out of memory) is started again and its image tried again,
# up to this many times; then that image fails alone instead of being retried for ever or ending the run.
RETRIES = 2
LOST_ROW_MESSAGE = (
    f"The model worker stopped while converting it, {RETRIES + 1} times (a crash, or its node ran out of "
    "memory): lower the resolution or the texture size, or see the Ray logs of the cluster."
)
PACKAGE = Path(__file__).resolve().parent


def run(args, plan, report, _interruption):
    """Convert ``plan`` on the cluster, each item's outcome in ``report``; Ctrl+C stops the Ray job."""
    folder = ArrowFolder(args.out)
    present = folder.existing() if args.skip_existing else set()
    todo = []
    for item, name in plan:
        output = f"{name}.{args.format}"
        if output in present:
            item.status, item.output = "skipped", folder.child(output)
        else:
            todo.append((item, name))
    if not todo:
        return
    # The package goes along with the job: the nodes need its dependencies installed, not the extension.
    started_ray = ray_cluster.connect(args.ray, runtime_env={"py_modules": [str(PACKAGE)]})
    run_tag, started = f"ray-{uuid.uuid4().hex[:12]}", time.time()
    try:
        rows = iter(dataset(args, todo, run_tag).iter_rows())
        try:
            collect(rows, todo, report)
            fail_lost_rows(todo)
        finally:
            rows.close()  # ends the Ray Data execution, its tasks and model workers, also on Ctrl+C
            # Ray Data drops its model workers rather than killing them, and a reference cycle keeps them
            # alive; on a Ray this process did not start (a script's), they would hold their GPUs till then.
            gc.collect()
    finally:
        if started_ray:
            ray.shutdown()
        folder.remove_staging(run_tag)  # what workers stopped mid-write left
        count_outputs_written(folder, todo, args.format, started)


def collect(rows, todo, report):
    """Each input's outcome into its item as Ray hands the rows back, its pictures beside the report, the
    report saved now and then."""
    saved = time.monotonic()
    for row in rows:
        item, name = todo[row["position"]]
        item.status, item.seconds = row["status"], round(float(row["seconds"]), 3)
        item.output, item.error = row["output"] or None, row["error"] or None
        if row["faces"]:
            item.faces, item.vertices = int(row["faces"]), int(row["vertices"])
        item.notes = row["notes"].split(NOTE_SEPARATOR) if row["notes"] else []
        for kind in contact_sheet.PICTURES:
            if report.path is not None and row[kind]:
                item.pictures[kind] = contact_sheet.save_picture(report.path, name, kind, row[kind])
        if time.monotonic() - saved > REPORT_INTERVAL:
            report.save()
            saved = time.monotonic()


def fail_lost_rows(todo):
    """Inputs whose model worker died on them (a crash, the node's memory) every time they were tried."""
    for item, _ in todo:
        if item.status == "pending":
            item.status, item.error = "failed", LOST_ROW_MESSAGE


def count_outputs_written(folder, todo, file_format, started):
    """Outputs written in this run whose rows Ray had not handed back when it stopped (Ctrl+C): done too,
    since an output exists only once whole."""
    written = folder.written_since(started)
    for item, name in todo:
        if item.status == "pending" and f"{name}.{file_format}" in written:
            item.status, item.output = "done", folder.child(f"{name}.{file_format}")


def dataset(args, todo, run_tag):
    """The Ray Data pipeline for the inputs in ``todo``: one row per input, out of order as each finishes."""
    rows = [
        {"position": position, "input": absolute(item.input), "name": name}
        for position, (item, name) in enumerate(todo)
    ]
    options = GenerateOptions.from_attributes(args)
    workers = worker_resources(args)
    # One block per input: rows stream to the workers one by one instead of in large blocks, and a block
    # that fails after its retries (LOST_ROW_MESSAGE) is skipped rather than ending the run.
    ray.data.DataContext.get_current().max_errored_blocks = -1
    inputs = ray.data.from_items(rows, override_num_blocks=len(rows))
    pictures = {"preview": args.preview, "turntable": args.turntable} if args.report is not None else None
    prepared = inputs.map(
        prepare, fn_kwargs={"options": options, "from_codes": args.from_codes, "thumbnail": bool(pictures)}
    )
    return prepared.map(
        Converter,
        fn_constructor_kwargs={
            "pictures": pictures,
            "model": worker_model_settings(args, workers["num_gpus"]),
            "options": options,
            "out": absolute(args.out),
            "file_format": args.format,
            "size": args.target_size,
            "save_codes": args.save_codes,
            "run_tag": run_tag,
        },
        **workers,
    )


def absolute(location):
    """A local path as the workers see it, whatever their working folder (on a cluster: shared storage)."""
    return location if is_url(location) else os.path.abspath(location)


def worker_resources(args):
    """The actor pool's size and each actor's GPUs and CPUs, from the options or from the cluster."""
    cluster = ray.cluster_resources()
    nodes = sum(node["Alive"] for node in ray.nodes())
    gpus = args.gpus_per_worker
    if gpus is None:
        gpus = 1.0 if cluster.get("GPU", 0) else 0.0
    concurrency = args.concurrency or (int(cluster.get("GPU", 0) // gpus) if gpus else nodes) or 1
    cpus = args.cpus_per_worker
    if cpus is None:
        # The tasks that read and prepare the images need CPUs too: the workers leave one per node (half the
        # cluster's, at least), or the pipeline would stall with every CPU held by a model.
        share = max(cluster.get("CPU", 1) - nodes, cluster.get("CPU", 1) / 2) / concurrency
        cpus = share if gpus == 0 else min(1.0, share)
    return {
        "compute": ray.data.ActorPoolStrategy(size=concurrency),
        "num_gpus": gpus,
        "num_cpus": cpus,
        "max_task_retries": RETRIES,  # Ray Data's default retries for ever
    }


def worker_model_settings(args, gpus):
    """The model each worker loads: on a GPU Ray gave it, or on its CPUs."""
    return model_settings(args, args.device if args.device != "auto" or gpus else "cpu")


def prepare(row, options, from_codes, thumbnail):
    """Read one input and, for an image, cut it out and centre it, and shrink it for the contact sheet when
    there is one (a Ray task); a failure becomes the row's error."""
    started = time.monotonic()
    row.update(data=b"", shape=np.zeros(3, np.int64), error="", input_thumbnail=b"")
    row.update(photo=b"", photo_frame=np.zeros(5, np.int64))  # FramedPhoto.frame's five numbers
    try:
        if from_codes:
            row["data"] = ArrowFolder.read(row["input"])
            photo = photo_in(row["data"], f"The scene codes {file_name(row['input'])}")
        else:
            source = ArrowFolder.read(row["input"]) if is_url(row["input"]) else row["input"]
            pixels, photo = prepared_pixels(source, row["input"], options)
            row.update(data=pixels.tobytes(), shape=np.array(pixels.shape))
            if thumbnail:
                row["input_thumbnail"] = input_thumbnail(source)
        if photo is not None:
            row.update(photo=photo.pixels.tobytes(), photo_frame=np.array(photo.frame, np.int64))
    except Exception as error:
        message = failure_message(error, "the CPU")
        # The core names a local file in its messages, not the bytes read from a URL.
        row["error"] = f"{row['input']}: {message}" if is_url(row["input"]) else message
    row["seconds"] = time.monotonic() - started
    return row


def input_thumbnail(source):
    """The input image shrunk for the contact sheet, as PNG bytes."""
    from ..core.preprocess import load_image

    pixels = np.asarray(load_image(source).convert("RGBA"))
    return png_bytes(preview.thumbnail(pixels, THUMBNAIL_SIZE))


def prepared_pixels(source, location, options):
    """The image (a path, or the bytes read from ``location``) cut out and centred, as the worker process
    prepares it for the encoder, and the photo it was framed from (or None)."""
    from ..core.errors import InvalidImageError
    from ..core.preprocess import prepare_input

    if file_name(location).lower().endswith((".exr", ".hdr")):
        raise InvalidImageError("EXR and HDR images are read by Blender: convert them without --ray.")
    prepared = prepare_input(
        source,
        remove_background=options.remove_background,
        foreground_ratio=options.foreground_ratio,
    )
    return np.asarray(prepared.image, dtype=np.uint8), prepared.photo


def photo_of(row):
    """The framed photo a row carries (``FramedPhoto.frame`` beside its pixels' bytes), or None: an image
    squashed whole, or scene codes saved without one."""
    from ..core.mesh import FramedPhoto

    return FramedPhoto.unpacked(row["photo"], row["photo_frame"]) if row["photo"] else None


def failure_message(error, device):
    """The worker's own message for a failure, with the fix that applies on a cluster."""
    from ..worker import pipeline

    if isinstance(error, ImportError):
        return (
            f"A node of the Ray cluster lacks a dependency ({error}): install requirements.txt and "
            "requirements-ray.txt in the Python the cluster runs."
        )
    return pipeline.describe_failure(error, device)[1]


class Converter:
    """A model worker (a Ray actor): loads the model once, then makes and writes each input's mesh."""

    def __init__(self, model, options, out, file_format, size, save_codes, run_tag, pictures):
        from ..worker import pipeline

        self.settings, self.options, self.pictures = model, options, pictures
        self.file_format, self.size = file_format, size
        self.folder = ArrowFolder(out)
        self.save_codes, self.run_tag = save_codes, run_tag
        self.model, self.load_error = None, ""
        try:
            self.model = pipeline.ModelCache().get(model, progress.ignore)
        except Exception as error:  # every input fails with it, as in the batch in Blender
            self.load_error = failure_message(error, model.device)

    def __call__(self, row):
        started = time.monotonic()
        error = row["error"] or self.load_error
        output, result = "", None
        if not error:
            try:
                output, result = self.convert(row)
            except Exception as failure:
                error = failure_message(failure, str(self.model.device))
        pictures = {kind: b"" for kind in contact_sheet.PICTURES}
        if result is not None and self.pictures is not None:
            drawn = result_pictures(result, self.pictures["preview"], self.pictures["turntable"])
            pictures.update(input=row["input_thumbnail"], **drawn)
        return {
            "position": row["position"],
            "status": "failed" if error else "done",
            "output": output,
            "error": error,
            "seconds": row["seconds"] + time.monotonic() - started,
            "faces": len(result.mesh.faces) if result is not None else 0,
            "vertices": len(result.mesh.vertices) if result is not None else 0,
            "notes": NOTE_SEPARATOR.join(result.notes) if result is not None else "",
            **pictures,
        }

    def convert(self, row):
        """One input's mesh, written; -> where its main file is, and the result."""
        from ..core import export
        from ..worker import pipeline

        scene, codes = self.encode(row)
        kept = codes if self.save_codes else None  # compressing them costs a second: only when saved
        # an image's photo or its saved codes', or why there is none: the image was squashed whole, or the
        # codes were saved without it
        why_no_photo = pipeline.PHOTO_SQUASHED if row["shape"].any() else pipeline.PHOTO_NOT_KEPT
        photo = photo_of(row)
        result = pipeline.mesh_from_scene(
            self.model, scene, self.options.mesh, progress.ignore, kept, photo, why_no_photo
        )
        if row["shape"].any():  # an image's: the contact sheet shows it as the model saw it
            prepared = np.frombuffer(row["data"], np.uint8).reshape(row["shape"])
            result = dataclasses.replace(result, prepared=prepared)
        files = export.files(row["name"], self.file_format, result.mesh, result.texture, self.size)
        if self.save_codes:
            files = {f"{row['name']}{CODES_SUFFIX}": with_photo(result.codes, photo), **files}
        return self.folder.write(files, self.run_tag), result

    def encode(self, row):
        """The scene codes of a prepared image, or those saved with --save-codes (this model's only)."""
        from PIL import Image

        from ..worker import pipeline

        if row["shape"].any():
            pixels = np.frombuffer(row["data"], np.uint8).reshape(row["shape"])
            scene = self.model.encode(Image.fromarray(pixels, "RGB"))
            return scene, pipeline.codes_of(self.model, scene, self.settings)
        return pipeline.scene_of(self.model, row["data"], self.settings, file_name(row["input"])), None


class ArrowFolder:
    """A folder on any of pyarrow's file systems: local (on a cluster: shared storage) or object storage."""

    def __init__(self, location):
        self.location = absolute(location)

    @functools.cached_property
    def _resolved(self):
        return resolve(self.location)  # object storage may answer only now: inside the checks' try

    @property
    def filesystem(self):
        return self._resolved[0]

    @property
    def path(self):
        return self._resolved[1]

    def __str__(self):
        return self.location

    def child(self, name):
        return (
            f"{self.location.rstrip('/')}/{name}"
            if is_url(self.location)
            else os.path.join(self.location, name)
        )

    def check_writable(self, option):
        try:
            probe = f"{self.path}/{STAGING_PREFIX}probe-{uuid.uuid4().hex[:12]}"
            kind = self.filesystem.get_file_info(self.path).type
            if kind == pyarrow.fs.FileType.File:
                raise OutputError(f"{option}: {self.location} is a file, not a folder")
            self.filesystem.create_dir(self.path, recursive=True)
            with self.filesystem.open_output_stream(probe) as stream:
                stream.write(b"")
            self.filesystem.delete_file(probe)
        except (OSError, pyarrow.ArrowException) as error:
            raise OutputError(
                f"{option}: cannot write to {self.location} ({error}); choose a folder you can write to"
            ) from None

    def existing(self):
        """The names of the files in the folder."""
        return {info.base_name for info in self._files()}

    def written_since(self, started):
        """The names of the files written since ``started`` (seconds since the epoch)."""
        return {info.base_name for info in self._files() if info.mtime and info.mtime.timestamp() >= started}

    def _files(self):
        return self.filesystem.get_file_info(pyarrow.fs.FileSelector(self.path, allow_not_found=True))

    def write(self, files, run_tag):
        """Write ``files`` ({name: content}, the main file last), each complete or not at all: on a local
        file system under a staging name first, then renamed; object storage shows an object only once whole.
        -> where the last one is."""
        for name, content in files.items():
            final = f"{self.path}/{name}"
            local = isinstance(self.filesystem, pyarrow.fs.LocalFileSystem)
            target = f"{self.path}/{STAGING_PREFIX}{run_tag}-{name}" if local else final
            with self.filesystem.open_output_stream(target) as stream:
                stream.write(content)
            if local:
                os.replace(target, final)
        return self.child(name)

    def remove_staging(self, run_tag):
        prefix = f"{STAGING_PREFIX}{run_tag}-"
        for name in self.existing():
            if name.startswith(prefix):
                self.filesystem.delete_file(f"{self.path}/{name}")

    @staticmethod
    def read(location):
        filesystem, path = resolve(location)
        with filesystem.open_input_file(path) as stream:
            return stream.read()


def resolve(location):
    """(pyarrow file system, path on it) for a URL, or for a local path."""
    if is_url(location):
        return pyarrow.fs.FileSystem.from_uri(location)
    return pyarrow.fs.LocalFileSystem(), Path(location).as_posix()


def expand_url(text, extensions, kind):
    """The files of one URL input: the file it names, or the files directly inside the folder it names."""
    if any(character in text for character in "*?["):
        return [], "patterns work on local paths: name the folder instead"
    try:
        filesystem, path = resolve(text)
        info = filesystem.get_file_info(path)
        if info.type == pyarrow.fs.FileType.File:
            return [text], None
        if info.type != pyarrow.fs.FileType.Directory:
            return [], "file not found"
        children = filesystem.get_file_info(pyarrow.fs.FileSelector(path))
    except (OSError, pyarrow.ArrowException) as error:
        return [], f"cannot read it: {error}"
    base = text.rstrip("/")
    found = sorted(
        f"{base}/{info.base_name}"
        for info in children
        if info.type == pyarrow.fs.FileType.File and info.base_name.lower().endswith(extensions)
    )
    return found, empty_folder(kind, extensions)


# The runner's side of batch.main: --out on any of pyarrow's file systems, and inputs that are URLs.
output_folder = ArrowFolder
