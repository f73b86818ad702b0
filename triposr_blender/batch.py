"""Headless batch: many images in, one coloured mesh file out per image (or all of them in one .blend).

Run it with Blender, or with Python and the ``bpy`` wheel; the batch's own arguments follow ``--``::

    blender -b --python <extension folder>/batch.py -- INPUT... [options]
    python -m triposr_blender.batch -- INPUT... [options]

``--help`` documents every option. The model loads once per run. A bad image is reported and skipped and
the run goes on; the exit status is 1 when any image failed, 2 for a usage error and 130 when interrupted.
Each output is written to a temporary name first and moved into place when complete, so ``--skip-existing``
can resume an interrupted run without trusting a half-written file. A file the run did not make is never
replaced unless ``--overwrite`` says so, and every output folder is checked before the first image.
"""

import argparse
import dataclasses
import difflib
import functools
import glob
import importlib
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NoReturn


def _import_package():
    """The extension package this file belongs to, when Blender runs the file as a plain script.

    Installed, the package is ``bl_ext.<repository>.triposr_blender`` and is already imported when the
    extension is enabled; otherwise it is imported from its folder under its folder's name.
    """
    folder = Path(__file__).resolve().parent
    for module in list(sys.modules.values()):
        module_file = getattr(module, "__file__", None)
        if module_file and Path(module_file).resolve() == folder / "__init__.py":
            return module
    sys.path.insert(0, str(folder.parent))
    return importlib.import_module(folder.name)


if __name__ == "__main__" and not __package__:
    # Run as a script (``blender -b --python batch.py``), this file is outside its package and its relative
    # imports below would fail: run the package's own copy of this module instead.
    sys.exit(importlib.import_module(_import_package().__name__ + ".batch").main())

import bpy

from . import options
from .blender import materials, mesh_builder
from .blender.image_input import InputError, file_input
from .blender.placement import ROW_SPACING, Destination
from .core.defaults import CPU_FAST_DESCRIPTION, DEFAULT_MODEL_SOURCE
from .dependencies import dependency_paths
from .options import IMAGE_EXTENSIONS, GenerateOptions
from .worker.client import WorkerClient, process_alive
from .worker.protocol import ModelSettings

# --save-codes writes each image's scene codes beside its output under this suffix; --from-codes reads them.
CODES_SUFFIX = ".triposr.npz"
STATUSES = ("done", "skipped", "failed")  # and "pending" for images an interruption left untouched
FORMATS = ("glb", "obj", "fbx", "usd", "blend")
# The worker's error kinds (exception class names) that would fail every image alike.
ERRORS_THAT_STOP_THE_BATCH = frozenset({"ModelLoadError", "MissingDependencies"})
PROGRESS_INTERVAL = 0.1  # seconds between progress bar updates
# The options the worker takes, then how the objects are made, as the command line offers them.
COMMAND_LINE_OPTIONS = (*options.IMAGE_OPTIONS, *options.MESH_OPTIONS, options.TARGET_SIZE)
# What the batch adds to an option's own help text.
COMMAND_LINE_NOTES = {
    "texture_size": "Bakes a texture with a UV layout instead of vertex colours; glTF and FBX embed it "
    "(glTF: baseColorTexture), OBJ refers to a PNG beside it, USD to one in textures/",
}
# Exporters that need a baked texture as a file beside them: OBJ refers to it, FBX embeds a copy. glTF and
# USD write the packed image themselves, a .blend packs it.
FORMATS_WITH_TEXTURE_FILES = ("obj", "fbx")
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
# Exports are staged in .triposr-<pid of the run>-<random> beside their output; the pid tells the folders of
# runs that were killed mid-export from those of runs still going.
STAGING_PREFIX = ".triposr-"
STAGING_PATTERN = re.compile(rf"{re.escape(STAGING_PREFIX)}(\d+)-")

DESCRIPTION = """\
Turn images into coloured 3D meshes with TripoSR, without the user interface.

INPUT is any mix of image files, folders and glob patterns. A folder contributes the images directly inside
it (not its subfolders; use a pattern such as 'art/**/*.png', quoted, to recurse). Folders and patterns
pick files by extension ({extensions}); a file named explicitly is always tried.

Each image becomes <out>/<image name>.<format>, exported by Blender's own exporter with the vertex colours
(glTF: COLOR_0). Images whose names collide get a numbered suffix (chair.png and chair.jpg give chair.glb
and chair_2.glb).
"""

EPILOG = """\
examples:
  python -m triposr_blender.batch -- photos/ --out meshes --format obj
  blender -b --python batch.py -- 'concept/*.png' --one-blend props.blend --skip-existing
  python -m triposr_blender.batch -- photos/ --out meshes --threshold 20 --overwrite
  python -m triposr_blender.batch -- chair.png --model ./TripoSR --device cpu --report report.json

The exit status is 0 when every image was converted or skipped, 1 when any failed, 2 for a usage error
and 130 when interrupted (Ctrl+C); the report and the outputs written so far are kept.
"""


@dataclass
class Item:
    """One image of the run and what became of it; the report lists these as they are."""

    input: str
    output: str | None = None
    status: str = "pending"  # pending, done, skipped or failed
    error: str | None = None
    seconds: float = 0.0


class _Parser(argparse.ArgumentParser):
    """argparse, with a hint that names the closest option when an argument is not recognised."""

    def parse_args(self, args=None, namespace=None):
        parsed, unknown = self.parse_known_args(args, namespace)
        if unknown:
            self.error(self._unknown_arguments_message(unknown))
        return parsed

    def error(self, message):
        hint = f"Run `{self.prog} --help` for all options; the batch's arguments go after `--`."
        super().error(f"{message}\n{hint}")

    def _unknown_arguments_message(self, unknown):
        known = list(self._option_string_actions)
        parts = []
        for argument in unknown:
            close = difflib.get_close_matches(argument.split("=")[0], known, n=1)
            parts.append(f"{argument} (did you mean {close[0]}?)" if close else argument)
        return "unrecognized arguments: " + " ".join(parts)


def option_value(option):
    """argparse's type for ``option``: its range checked; its ``off`` value refused, since leaving the flag
    out is how the command line turns the option off."""

    def parse(text):
        try:
            value = option.parse(text)
        except options.OptionError as error:
            raise argparse.ArgumentTypeError(str(error).removeprefix(f"{option.name} ")) from None
        if option.off is not None and value == option.off:
            raise argparse.ArgumentTypeError(
                f"leave {option.cli_flag} out to turn it off, rather than {text}"
            )
        return value

    parse.__name__ = option.name  # argparse names the type in its "invalid value" message
    return parse


def add_option(parser, option):
    """One generation option on the command line, with the panel's tooltip as its help."""
    notes = f" {COMMAND_LINE_NOTES[option.name]}." if option.name in COMMAND_LINE_NOTES else ""
    if isinstance(option.default, bool) and option.cli_flag.startswith("--no-"):
        parser.add_argument(  # the flag only turns it off
            option.cli_flag,
            dest=option.name,
            action="store_false",
            help=f"{option.description} (default: on; this flag turns it off).{notes}",
        )
        return
    if isinstance(option.default, bool):
        parser.add_argument(  # --remove-floaters / --no-remove-floaters
            option.cli_flag,
            dest=option.name,
            action=argparse.BooleanOptionalAction,
            default=option.default,
            help=f"{option.description} (default: {'on' if option.default else 'off'}).{notes}",
        )
        return
    default = option.off if option.off is not None else option.default
    shown = "off" if option.off is not None else f"{default:g}"
    help_text = f"{option.description}.{notes} {option.range_text.capitalize()} (default: {shown})"
    parser.add_argument(
        option.cli_flag,
        dest=option.name,
        type=option_value(option),
        default=default,
        metavar=option.name.upper(),
        # argparse %-formats help texts: a percent sign in a description must be doubled
        help=help_text.replace("%", "%%"),
    )


def build_parser():
    inside_blender = bool(bpy.app.binary_path)  # empty in the bpy wheel
    prog = "blender -b --python batch.py --" if inside_blender else "python -m triposr_blender.batch --"
    parser = _Parser(
        prog=prog,
        description=DESCRIPTION.format(extensions=" ".join(IMAGE_EXTENSIONS)),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders or glob patterns")
    parser.add_argument(
        "--out", type=Path, default=Path("."), metavar="DIR", help="folder for the outputs (default: .)"
    )
    target = parser.add_mutually_exclusive_group()
    target.add_argument(
        "--format", choices=FORMATS, default="glb", help="file format of each output (default: glb)"
    )
    target.add_argument(
        "--one-blend",
        type=Path,
        metavar="FILE",
        help="put every mesh in this one .blend instead, side by side, one object per image; an existing "
        "file is opened and added to (--overwrite starts it afresh)",
    )
    parser.add_argument(
        "--model",
        metavar="SOURCE",
        default=os.environ.get("TRIPOSR_MODEL") or DEFAULT_MODEL_SOURCE,
        help="Hugging Face repo id or a folder holding config.yaml and model.ckpt "
        f"(default: $TRIPOSR_MODEL, else {DEFAULT_MODEL_SOURCE}, downloaded on first use)",
    )
    parser.add_argument(
        "--device",
        default="auto",
        help="auto (CUDA, else Apple MPS, else CPU), cpu, cuda, cuda:N or mps (default: auto)",
    )
    parser.add_argument(
        "--cpu-fast",
        action="store_true",
        # argparse %-formats help texts: the description's percent sign must be doubled
        help=f"{CPU_FAST_DESCRIPTION.replace('%', '%%')} (default: off)",
    )
    for option in COMMAND_LINE_OPTIONS:
        add_option(parser, option)
    existing = parser.add_mutually_exclusive_group()
    existing.add_argument(
        "--skip-existing",
        action="store_true",
        help="skip images whose output already exists, to resume an interrupted run",
    )
    existing.add_argument(
        "--overwrite",
        action="store_true",
        help="replace outputs that already exist (without it, a run that would replace a file stops before "
        "the first image)",
    )
    codes = parser.add_mutually_exclusive_group()
    codes.add_argument(
        "--save-codes",
        action="store_true",
        help=f"also write each image's scene codes (its encoding, with the model's fingerprint) beside its "
        f"output as <name>{CODES_SUFFIX}, so a later run can make new meshes from them with --from-codes",
    )
    codes.add_argument(
        "--from-codes",
        action="store_true",
        help=f"the inputs are scene codes saved by --save-codes ({CODES_SUFFIX} files, or folders and "
        "patterns of them): make their meshes again with these mesh options, without the images or the "
        "encoder; the model must be the one that saved them",
    )
    parser.add_argument(
        "--report",
        type=Path,
        metavar="FILE",
        help="write a JSON report: each image's input, output, status (done, skipped, failed, or pending "
        "if interrupted first), error and seconds, updated after every image",
    )
    return parser


def batch_arguments(argv):
    """The arguments after ``--``: before it, Blender's own (``-b --python batch.py``) or Python's."""
    if "--" in argv:
        return argv[argv.index("--") + 1 :]
    return argv[1:]


def expand_inputs(inputs, extensions=IMAGE_EXTENSIONS, kind="images"):
    """Input paths in command-line order (folders and patterns sorted), and the inputs not converted: a
    failed Item per input that gave none, a skipped one per input that is another's file again. Folders and
    patterns pick files by ``extensions`` (images, or saved scene codes)."""
    found, problems = [], []
    for text in inputs:
        path = Path(text)
        if path.is_dir():
            images = sorted(child for child in path.iterdir() if _has_extension(child, extensions))
            problem = f"no {kind} in folder (looked for {', '.join(extensions)})"
        elif path.is_file():
            images, problem = [path], None
        elif glob.has_magic(text):
            images = sorted(Path(match) for match in glob.glob(text, recursive=True))
            images = [image for image in images if _has_extension(image, extensions)]
            problem = f"the pattern matched no {kind}"
        else:
            images, problem = [], "file not found"
        found.extend(images)
        if not images:
            problems.append(Item(input=text, status="failed", error=problem))
    unique, repeated = _without_duplicates(found)
    return unique, problems + repeated


def _has_extension(path, extensions):
    return path.is_file() and path.name.lower().endswith(extensions)


def _without_duplicates(paths):
    """Each file once: the paths to convert, and a skipped Item for each other name of a file already
    there (a link, a second spelling). A path named twice, by a folder and a pattern say, is simply merged."""
    first_of, unique, repeated = {}, [], []
    for path in paths:
        status = path.stat()
        first = first_of.setdefault((status.st_dev, status.st_ino), path)
        if first is path:
            unique.append(path)
        elif os.path.abspath(first) != os.path.abspath(path):
            repeated.append(Item(input=str(path), status="skipped", error=f"the same file as {first}"))
    return unique, repeated


def output_names(images):
    """A distinct output name per input: its file name without extension (chair.triposr.npz: chair),
    numbered when names collide."""
    taken, names = set(), []
    for image in images:
        stem = image.name.removesuffix(CODES_SUFFIX) if image.name.endswith(CODES_SUFFIX) else image.stem
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
        self(status, 1.0)
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

    def counts(self):
        return {status: sum(item.status == status for item in self.items) for status in STATUSES}

    def seconds_per_image(self):
        done = [item.seconds for item in self.items if item.status == "done"]
        return sum(done) / len(done) if done else 0.0

    def save(self):
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

    def print_summary(self, stream=None):
        stream = stream or sys.stderr
        counts = self.counts()
        elapsed = time.monotonic() - self.started
        stream.write(
            f"TripoSR batch: {counts['done']} done, {counts['skipped']} skipped, {counts['failed']} failed "
            f"in {elapsed:.1f} s ({self.seconds_per_image():.1f} s per converted image)\n"
        )
        for item in self.items:
            if item.error and item.status in ("failed", "skipped"):
                stream.write(f"  {item.status}: {item.input}: {item.error}\n")
        if counts["done"]:
            stream.write(f"Outputs: {self.settings['target']}\n")
        if self.path is not None:
            stream.write(f"Report: {self.path}\n")


def main(argv=None):
    """Run the batch; ``argv`` is the batch's own arguments (default: those after ``--`` in sys.argv)."""
    parser = build_parser()
    args = parser.parse_args(batch_arguments(sys.argv) if argv is None else argv)
    kind = ((CODES_SUFFIX,), "scene codes") if args.from_codes else (IMAGE_EXTENSIONS, "images")
    images, problems = expand_inputs(args.inputs, *kind)
    names = output_names(images)
    try:
        check_outputs(args, names)
    except OutputError as error:
        parser.error(str(error))
    plan = [(Item(input=str(image)), name) for image, name in zip(images, names, strict=True)]
    report = Report([item for item, _ in plan] + problems, args.report, _settings(args))
    with Interruption() as interruption:
        try:
            Batch(args, report, interruption).run(plan)
        except KeyboardInterrupt:
            sys.stderr.write("\nInterrupted: the outputs written so far are kept; --skip-existing resumes.\n")
            return EXIT_INTERRUPTED
        finally:
            report.save()
            report.print_summary()
    return EXIT_FAILED if report.counts()["failed"] else 0


class OutputError(Exception):
    """An output cannot be written, or would replace a file this run did not make; a usage error."""


def check_outputs(args, names):
    """Before the first image: every output folder writable, and no file replaced without --overwrite."""
    if args.report is not None:
        check_writable_folder(args.report.parent, "--report")
        if args.report.is_dir():
            raise OutputError(f"--report {args.report} is a folder; name a file")
    if args.one_blend:
        folder = args.one_blend.parent
        check_writable_folder(folder, "--one-blend")
        if args.one_blend.exists() and not args.one_blend.is_file():
            raise OutputError(f"--one-blend {args.one_blend} is not a file; name a .blend file")
        outputs = []  # an existing .blend is added to, not replaced
    else:
        folder = args.out
        check_writable_folder(folder, "--out")
        outputs = [folder / f"{name}.{args.format}" for name in names]
    if args.save_codes:
        outputs += [folder / f"{name}{CODES_SUFFIX}" for name in names]
    existing = [path.name for path in outputs if path.exists()]
    if existing and not (args.skip_existing or args.overwrite):
        shown = ", ".join(existing[:5]) + (f" and {len(existing) - 5} more" if len(existing) > 5 else "")
        raise OutputError(
            f"{len(existing)} output(s) already exist in {folder} ({shown}): add --skip-existing to keep "
            "them and convert the rest, or --overwrite to replace them"
        )


def check_writable_folder(folder, option):
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{option}: {folder} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise OutputError(
            f"{option}: cannot write to {folder} ({error.strerror or error}); choose a folder you can write "
            "to"
        ) from None


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


def _settings(args):
    """The options that shaped the outputs, as the report records them."""
    names = ("model", "device", "cpu_fast", "resolution", "threshold")
    settings = {name: getattr(args, name) for name in names}
    settings.update(remove_background=args.remove_background, foreground_ratio=args.foreground_ratio)
    settings["target"] = str(args.one_blend) if args.one_blend else f"{args.out}/*.{args.format}"
    return settings


class GenerationError(Exception):
    """The worker could not make a mesh from this image; the text says why, for the user."""


class StopBatch(Exception):
    """A failure no later image can escape: the model does not load, or the dependencies are missing."""


class Batch:
    """Converts the images one after another in this Blender session.

    The model runs in the extension's worker process, as Generate's does: it loads once and serves every
    image, and a crash in PyTorch fails one image instead of the run (the next image gets a new worker).
    """

    def __init__(self, args, report, interruption):
        self.args = args
        self.report = report
        self.interruption = interruption
        self.progress = ProgressBar(len(report.items))
        self.model = ModelSettings(source=args.model, device=args.device, cpu_fast=args.cpu_fast)
        self.options = GenerateOptions(
            **{name: getattr(args, name) for name in GenerateOptions.__dataclass_fields__}
        )
        self.worker = None

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
            remove_staging_of_ended_runs(self.args.out)

    def _convert(self, item, name):
        output = self.args.one_blend or self.args.out / f"{name}.{self.args.format}"
        if self.args.skip_existing and self._exists(output, name):
            item.status, item.output = "skipped", str(output)
            return
        started = time.monotonic()
        try:
            self._generate_and_write(Path(item.input), name, output)
            item.status, item.output = "done", str(output)
        except GenerationError as error:
            item.status, item.error = "failed", str(error)
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

    def _generate_and_write(self, image_path, name, output):
        obj = self._generate(image_path, name, output)
        try:
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
            save_codes(result.codes, output.parent / f"{name}{CODES_SUFFIX}")
        if output.suffix != ".blend":
            result = dataclasses.replace(result, codes=b"")  # other formats would carry them as properties
        self.progress("Building the mesh", 0.0)
        return mesh_builder.build_object(bpy.context, name, result, self._destination(), options=self.options)

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
            self.worker = WorkerClient(pythonpath=tuple(dependency_paths()))
        return self.worker

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
        EXPORTERS[file_format](filepath=str(staged))
        # OBJ writes its .mtl beside the .obj, under the same name, so the files move together.
        for written in sorted(Path(staging).iterdir(), key=lambda path: path == staged):
            move_into(written, output.parent)


def remove_staging_of_ended_runs(folder):
    """Remove the staging folders that runs killed mid-export left in ``folder``."""
    for staging in folder.glob(f"{STAGING_PREFIX}*"):
        match = STAGING_PATTERN.match(staging.name)
        if match and staging.is_dir() and not process_alive(int(match[1])):
            shutil.rmtree(staging, ignore_errors=True)


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
    "glb": functools.partial(
        bpy.ops.export_scene.gltf, export_format="GLB", use_selection=True, export_vertex_color="ACTIVE"
    ),
    # Textures: OBJ refers to the PNG export_object saved beside it by name alone; FBX carries a copy inside.
    "obj": functools.partial(
        bpy.ops.wm.obj_export, export_selected_objects=True, export_colors=True, path_mode="STRIP"
    ),
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


if __name__ == "__main__":
    exit_bpy_module(main())
