"""What a batch run converts, where each output goes, and the report of what became of each input.

The batch's two ways of running share this: in Blender (``in_blender``) and on a Ray cluster (``on_ray``).
No bpy, and nothing third-party but numpy: Blender's Python and a Ray environment both run it.
"""

import glob
import json
import os
import signal
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..backends.types import MeshResult, ModelSettings
from ..core import preview
from ..core.export import apng_bytes, png_bytes
from ..options import IMAGE_EXTENSIONS
from . import contact_sheet

# --save-codes writes each image's scene codes beside its output under this suffix; --from-codes reads them.
CODES_SUFFIX = ".triposr.npz"
SHEET_INTERVAL = 30.0  # seconds between rewrites of the contact sheet during a run
PREVIEW_SIZE = 320  # pixels, each of the preview's four views
TURNTABLE_SIZE = 256
THUMBNAIL_SIZE = 256
TURNTABLE_SECONDS = 4  # one turn, whatever the number of frames
STATUSES = ("done", "skipped", "failed")  # and "pending" for inputs an interruption left untouched
# Outputs are staged under .triposr-<pid of the run>-<random> beside them and moved into place when whole.
STAGING_PREFIX = ".triposr-"


@dataclass
class Item:
    """One input of the run and what became of it; the report lists these as they are."""

    input: str
    output: str | None = None
    status: str = "pending"  # pending, done, skipped or failed
    error: str | None = None
    seconds: float = 0.0
    faces: int | None = None
    vertices: int | None = None
    # The contact sheet's pictures of it (contact_sheet.PICTURES), by kind: paths relative to the report.
    pictures: dict[str, str] = field(default_factory=dict)
    # What its job did otherwise than asked, and why (e.g. Photo Texture not applied).
    notes: list[str] = field(default_factory=list)


def is_url(location: str) -> bool:
    """Object storage and other file systems named by URL (s3://, gs://, file://), which only the Ray batch
    reads and writes."""
    scheme, separator, _ = str(location).partition("://")
    return bool(separator) and scheme.isalnum() and len(scheme) > 1  # C:\\ is a Windows drive, not a scheme


def file_name(location) -> str:
    """The last part of a local path or of a URL."""
    return str(location).rstrip("/").rsplit("/", 1)[-1] if is_url(location) else Path(location).name


def expand_inputs(inputs, extensions=IMAGE_EXTENSIONS, kind="images", expand_url=None):
    """Input paths in command-line order (folders and patterns sorted), and the inputs not converted: a
    failed Item per input that gave none, a skipped one per input that is another's file again. Folders and
    patterns pick files by ``extensions`` (images, or saved scene codes). ``expand_url(text, extensions,
    kind)`` does the same for a URL, to the URLs of its files, when the run reads object storage."""
    found, problems = [], []
    for text in inputs:
        if is_url(text) and expand_url is not None:
            images, problem = expand_url(text, extensions, kind)
        else:
            images, problem = expand_path(text, extensions, kind)
        found.extend(images)
        if not images:
            problems.append(Item(input=text, status="failed", error=problem))
    unique, repeated = _without_duplicates(found)
    return unique, problems + repeated


def expand_path(text, extensions, kind):
    """One local input's files, or none and why."""
    path = Path(text)
    if path.is_dir():
        try:
            images = sorted(child for child in path.iterdir() if _has_extension(child, extensions))
        except OSError as error:
            return [], f"cannot read the folder: {error.strerror or error}"
        return images, empty_folder(kind, extensions)
    if path.is_file():
        return [path], None
    if glob.has_magic(text):
        images = sorted(Path(match) for match in glob.glob(text, recursive=True))
        images = [image for image in images if _has_extension(image, extensions)]
        return images, f"the pattern matched no {kind}"
    return [], "file not found"


def empty_folder(kind, extensions):
    """Why a folder gave no input."""
    return f"no {kind} in folder (looked for {', '.join(extensions)})"


def _has_extension(path, extensions):
    return path.is_file() and path.name.lower().endswith(extensions)


def _without_duplicates(paths):
    """Each file once: the paths to convert, and a skipped Item for each other name of a file already
    there (a link, a second spelling). A path named twice, by a folder and a pattern say, is simply merged."""
    first_of, unique, repeated = {}, [], []
    for path in paths:
        identity = _identity(path)
        if identity not in first_of:
            first_of[identity] = path
            unique.append(path)
            continue
        first = first_of[identity]
        if str(first) != str(path) and os.path.abspath(first) != os.path.abspath(path):
            repeated.append(Item(input=str(path), status="skipped", error=f"the same file as {first}"))
    return unique, repeated


def _identity(location):
    """What names one file however it is spelt: a local path, or a file:// URL of it (other URLs as they
    are)."""
    if isinstance(location, str):
        if not location.startswith("file://"):
            return location
        path = Path(urllib.request.url2pathname(urllib.parse.urlparse(location).path))
    else:
        path = location
    try:
        status = path.stat()
    except OSError:
        return str(location)
    return status.st_dev, status.st_ino


def output_names(inputs):
    """A distinct output name per input: its file name without extension (chair.triposr.npz: chair),
    numbered when names collide."""
    taken, names = set(), []
    for location in inputs:
        full = file_name(location)
        stem = full.removesuffix(CODES_SUFFIX) if full.endswith(CODES_SUFFIX) else Path(full).stem
        name, number = stem, 1
        # Case-insensitive, since Windows and macOS file systems would merge Chair.glb and chair.glb.
        while name.lower() in taken:
            number += 1
            name = f"{stem}_{number}"
        taken.add(name.lower())
        names.append(name)
    return names


class ProgressBar:
    """One line on stderr: images finished of the total, and the current image's stage with its own bar.

    On a terminal the line is redrawn in place as the percentage changes; in a log (not a terminal) each new
    stage gets a line of its own. Calls take the core's progress arguments: stage text, fraction of it done.
    """

    WIDTH = 20

    def __init__(self, total, stream=None):
        self.total = total
        self.stream = stream or sys.stderr
        self.in_place = self.stream.isatty()
        self.finished = 0
        self.name = ""
        self.shown = None

    def start(self, name):
        self.name = name

    def __call__(self, stage, fraction):
        percent = int(100 * min(max(fraction, 0.0), 1.0))
        shown = (stage, percent) if self.in_place else stage
        if shown == self.shown:
            return
        self.shown = shown
        line = (
            f"[{self.finished}/{self.total} {self._bar(self.finished / max(self.total, 1))}] "
            f"{self.name}: {stage} {self._bar(percent / 100)} {percent:3d}%"
        )
        self.stream.write(f"\r{line}\x1b[K" if self.in_place else f"{line}\n")
        self.stream.flush()

    def finish(self, status):
        self.finished += 1
        self.shown = None
        self(status, 1.0 if status == "done" else 0.0)  # a failed image's bar is not full
        if self.in_place:
            self.stream.write("\n")

    def _bar(self, fraction):
        filled = round(self.WIDTH * fraction)
        return "#" * filled + "-" * (self.WIDTH - filled)


class Report:
    """The run's items, summarised on stderr at the end and kept as JSON in ``--report`` after each image."""

    def __init__(self, items, path, settings):
        self.items = items
        self.path = path
        self.settings = settings
        self.started = time.monotonic()
        self.sheet_written = self.started

    def counts(self):
        return {status: sum(item.status == status for item in self.items) for status in STATUSES}

    def seconds_per_image(self):
        done = [item.seconds for item in self.items if item.status == "done"]
        return sum(done) / len(done) if done else 0.0

    def save(self, final=False):
        """The JSON report, after every image; its contact sheet every ``SHEET_INTERVAL`` s, and at the end
        (``final``)."""
        if self.path is None:
            return
        summary = {
            **self.counts(),
            "seconds": round(time.monotonic() - self.started, 3),
            "seconds_per_image": round(self.seconds_per_image(), 3),
        }
        content = {"settings": self.settings, "summary": summary, "images": [asdict(i) for i in self.items]}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_name(self.path.name + ".partial")
        partial.write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")
        os.replace(partial, self.path)
        if final or time.monotonic() - self.sheet_written >= SHEET_INTERVAL:
            contact_sheet.write(self.path, content)
            self.sheet_written = time.monotonic()

    def print_summary(self, stream=None):
        stream = stream or sys.stderr
        counts = self.counts()
        elapsed = time.monotonic() - self.started
        stream.write(
            f"TripoSR batch: {counts['done']} done, {counts['skipped']} skipped, {counts['failed']} failed "
            f"in {elapsed:.1f} s ({self.seconds_per_image():.1f} s per converted image)\n"
        )
        # An error that many inputs share (a model that does not load) is said once, naming them all.
        inputs_of = {}
        for item in self.items:
            if item.error and item.status in ("failed", "skipped"):
                inputs_of.setdefault((item.status, item.error), []).append(item.input)
            for note in item.notes:
                inputs_of.setdefault(("note", note), []).append(item.input)
        for (status, error), inputs in inputs_of.items():
            shown = ", ".join(inputs[:3]) + (f" and {len(inputs) - 3} more" if len(inputs) > 3 else "")
            stream.write(f"  {status}: {shown}: {error}\n")
        if counts["done"]:
            stream.write(f"Outputs: {self.settings['target']}\n")
        if self.path is not None:
            stream.write(f"Report: {self.path}\n")
            stream.write(f"Contact sheet: {contact_sheet.sheet_path(self.path)}\n")


class OutputError(Exception):
    """An output cannot be written, or would replace a file this run did not make; a usage error."""


class LocalFolder:
    """An output folder on this computer, as ``check_outputs`` asks about it."""

    def __init__(self, location):
        self.path = Path(location)

    def __str__(self):
        return str(self.path)

    def check_writable(self, option):
        if self.path.exists() and not self.path.is_dir():
            raise OutputError(f"{option}: {self.path} is a file, not a folder")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=self.path):
                pass
        except OSError as error:
            raise OutputError(
                f"{option}: cannot write to {self.path} ({error.strerror or error}); choose a folder you can "
                "write to"
            ) from None

    def existing(self):
        """The names of the files in the folder."""
        return {child.name for child in self.path.iterdir()} if self.path.is_dir() else set()


def check_outputs(args, names, output_folder=LocalFolder):
    """Before the first image: every output folder writable, and no file replaced without --overwrite.
    ``output_folder(location)`` is the folder ``--out`` names, on this computer or in object storage."""
    if args.report is not None:
        LocalFolder(args.report.parent).check_writable("--report")
        if args.report.is_dir():
            raise OutputError(f"--report {args.report} is a folder; name a file")
    outputs = []
    if args.one_blend:
        folder = LocalFolder(args.one_blend.parent)
        folder.check_writable("--one-blend")
        if args.one_blend.exists() and not args.one_blend.is_file():
            raise OutputError(f"--one-blend {args.one_blend} is not a file; name a .blend file")
        # an existing .blend is added to, not replaced
    else:
        folder = output_folder(args.out)
        folder.check_writable("--out")
        outputs = [f"{name}.{args.format}" for name in names]
    if args.save_codes:
        outputs += [f"{name}{CODES_SUFFIX}" for name in names]
    # Compared case-insensitively, as Windows and macOS file systems do: nothing replaced by surprise there.
    present = {name.lower() for name in folder.existing()}
    existing = [output for output in outputs if output.lower() in present]
    if existing and not (args.skip_existing or args.overwrite):
        shown = ", ".join(existing[:5]) + (f" and {len(existing) - 5} more" if len(existing) > 5 else "")
        raise OutputError(
            f"{len(existing)} output(s) already exist in {folder} ({shown}): add --skip-existing to keep "
            "them and convert the rest, or --overwrite to replace them"
        )


class Interruption:
    """Ctrl+C, remembered for the length of the run.

    Blender turns a KeyboardInterrupt raised inside an operator (an exporter, a save) into a RuntimeError,
    which would fail one image and start the next; the batch asks this instead whether the user interrupted.
    """

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self):
        self._previous = signal.signal(signal.SIGINT, self._interrupt)
        return self

    def __exit__(self, *_exception):
        signal.signal(signal.SIGINT, self._previous)

    def _interrupt(self, _signum, _frame):
        self.requested = True
        raise KeyboardInterrupt


def model_settings(args, device):
    """The model a batch run loads, as its arguments ask, on ``device``."""
    return ModelSettings(source=args.model, device=device, cpu_fast=args.cpu_fast)


def result_pictures(
    result: MeshResult, preview_views: bool, turntable_frames: int | None
) -> dict[str, bytes]:
    """A result's pictures for the contact sheet, as PNG bytes by kind: the input as the model saw it (when
    the result has it), and the preview and turntable the options ask for."""
    pictures = {}
    if result.prepared is not None:
        pictures["cleaned"] = png_bytes(preview.thumbnail(result.prepared, THUMBNAIL_SIZE))
    if preview_views:
        pictures["preview"] = png_bytes(preview.preview_strip(result.mesh, PREVIEW_SIZE, result.texture))
    if turntable_frames:
        frames = preview.turntable(result.mesh, turntable_frames, TURNTABLE_SIZE, result.texture)
        pictures["turntable"] = apng_bytes(frames, TURNTABLE_SECONDS * 1000 // turntable_frames)
    return pictures
