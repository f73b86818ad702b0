"""The batch's command line: its arguments, one top-level handler, then one runner (``in_blender`` or
``on_ray``), which share ``plan``. ``__main__`` runs it; the package's docstring says how."""

import argparse
import difflib
import os
import sys
import traceback
from pathlib import Path

from .. import options
from ..core.defaults import CPU_FAST_DESCRIPTION, DEFAULT_MODEL_SOURCE
from ..core.errors import TripoSRError
from ..options import ENV_DEBUG, ENV_MODEL, ENV_SERVER, IMAGE_EXTENSIONS, absolute_model_source
from .plan import (
    CODES_SUFFIX,
    Interruption,
    Item,
    OutputError,
    Report,
    check_outputs,
    expand_inputs,
    is_url,
    output_names,
)

# Formats Blender's exporters write; the core's own writer (core/export.py) writes those of RAY_FORMATS too.
FORMATS = ("glb", "obj", "ply", "fbx", "usd", "blend")
RAY_FORMATS = ("glb", "obj", "ply")
DEFAULT_REPORT = "report.json"
# The options the worker takes, then how the objects are made, as the command line offers them.
COMMAND_LINE_OPTIONS = (
    *options.IMAGE_OPTIONS,
    *options.MESH_OPTIONS,
    options.QUAD_REMESH,
    options.TARGET_SIZE,
)
# What the batch adds to an option's own help text.
COMMAND_LINE_NOTES = {
    "texture_size": "Bakes a texture with a UV layout instead of vertex colours; glTF and FBX embed it "
    "(glTF: baseColorTexture), OBJ refers to a PNG beside it, USD to one in textures/; PLY holds no texture",
    "quad_remesh": "In Blender only (not with --ray); an image QuadriFlow cannot remesh fails, saying why",
}
# What only the batch on Ray takes.
RAY_ONLY_OPTIONS = ("--concurrency", "--gpus-per-worker", "--cpus-per-worker")
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

DESCRIPTION = """\
Turn images into coloured 3D meshes with TripoSR, without the user interface.

INPUT is any mix of image files, folders and glob patterns. A folder contributes the images directly inside
it (not its subfolders; use a pattern such as 'art/**/*.png', quoted, to recurse). Folders and patterns
pick files by extension ({extensions}); a file named explicitly is always tried.

Each image becomes <out>/<image name>.<format>, exported by Blender's own exporter with the vertex colours
(glTF: COLOR_0). Images whose names collide get a numbered suffix (chair.png and chair.jpg give chair.glb
and chair_2.glb).

With --ray, the images go through a Ray cluster instead, one model per GPU (or CPU workers where the
cluster has no GPU), and each mesh is written by the extension's own writer (glb, obj, ply) without Blender.
Inputs and --out may then be URLs of object storage too (s3://bucket/photos, gs://...), which the workers
read and write; local paths must be the same on every node of the cluster (shared storage).
"""

EPILOG = """\
examples:
  python -m triposr_blender.batch -- photos/ --out meshes --format obj --preview
  blender -b --python batch/__main__.py -- 'concept/*.png' --one-blend props.blend --skip-existing
  python -m triposr_blender.batch -- photos/ --out meshes --threshold 20 --overwrite
  python -m triposr_blender.batch -- chair.png --model ./TripoSR --device cpu --report report.json
  python -m triposr_blender.batch -- s3://studio/photos --out s3://studio/meshes --ray --report run.json

The exit status is 0 when every image was converted or skipped, 1 when any failed, 2 for a usage error
and 130 when interrupted (Ctrl+C); the report and the outputs written so far are kept.
"""


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
            help=f"Turn {option.label} off; it is on by default ({option.description}).{notes}",
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
    bpy = sys.modules.get("bpy")  # imported already when Blender runs this file
    inside_blender = bpy is not None and bool(bpy.app.binary_path)  # empty in the bpy wheel
    prog = (
        "blender -b --python batch/__main__.py --" if inside_blender else "python -m triposr_blender.batch --"
    )
    parser = _Parser(
        prog=prog,
        description=DESCRIPTION.format(extensions=" ".join(IMAGE_EXTENSIONS)),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders or glob patterns")
    parser.add_argument(
        "--out",
        default=".",
        metavar="DIR",
        help="folder for the outputs; with --ray also a URL such as s3://bucket/meshes (default: .)",
    )
    target = parser.add_mutually_exclusive_group()
    target.add_argument(
        "--format", choices=FORMATS, default="glb", help="file format of each output (default: glb)"
    )
    target.add_argument(
        "--one-blend",
        type=local_path,
        metavar="FILE",
        help="put every mesh in this one .blend instead, side by side, one object per image; an existing "
        "file is opened and added to (--overwrite starts it afresh)",
    )
    parser.add_argument(
        "--model",
        metavar="SOURCE",
        type=absolute_model_source,  # argparse applies it to the default too
        default=os.environ.get(ENV_MODEL) or DEFAULT_MODEL_SOURCE,
        help="Hugging Face repo id or a folder holding config.yaml and model.ckpt "
        f"(default: $TRIPOSR_MODEL, else {DEFAULT_MODEL_SOURCE}, downloaded on first use)",
    )
    parser.add_argument(
        "--server",
        metavar="URL",
        default=os.environ.get(ENV_SERVER) or None,
        help="run the model on this TripoSR server (python -m triposr_blender.server) instead of here, with "
        "the token in $TRIPOSR_SERVER_TOKEN; the server's model is used and --model, --device and --cpu-fast "
        "do not apply (default: $TRIPOSR_SERVER, else this computer)",
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
        type=local_path,
        metavar="FILE",
        help="the JSON report: each image's input, output, status (done, skipped, failed, or pending if "
        "interrupted first), error, faces, vertices and seconds, updated after every image; its contact "
        "sheet (FILE with .html, its pictures in a folder beside it) shows each image's card, failures first "
        f"(default: {DEFAULT_REPORT} in --out, or beside the --one-blend file; none when --out is a URL)",
    )
    parser.add_argument(
        "--preview",
        action="store_true",
        help="draw each mesh from the front, three-quarter, side and back onto its card in the contact sheet "
        "(about a second an image)",
    )
    parser.add_argument(
        "--turntable",
        type=positive(int),
        metavar="N",
        help="also N views around each mesh, played as an animation on its card (an animated PNG)",
    )
    add_ray_arguments(parser.add_argument_group("the batch on a Ray cluster"))
    return parser


def add_ray_arguments(group):
    group.add_argument(
        "--ray",
        nargs="?",
        const="",
        metavar="ADDRESS",
        help="run on a Ray cluster: without ADDRESS, the one $RAY_ADDRESS names or `ray start` began on this "
        "machine, else a new Ray on this machine, listening on 127.0.0.1 only; 'auto' (an existing cluster "
        "only), HOST:PORT, or ray://HOST:10001 (a remote cluster, through Ray Client). Formats glb, obj and "
        "ply",
    )
    group.add_argument(
        "--concurrency",
        type=positive(int),
        metavar="N",
        help="model workers, each holding one model (default: one per GPU of the cluster, or one per node "
        "when it has no GPU)",
    )
    group.add_argument(
        "--gpus-per-worker",
        type=positive(float, zero=True),
        metavar="G",
        help="GPUs each worker holds; 0.5 puts two models on a GPU, 0 runs on CPUs (default: 1 where the "
        "cluster has GPUs, else 0)",
    )
    group.add_argument(
        "--cpus-per-worker",
        type=positive(float),
        metavar="C",
        help="CPUs each worker holds (default: 1, or less where the workers would leave under half the "
        "cluster's CPUs to the tasks that read and prepare the images)",
    )


def positive(kind, zero=False):
    """argparse's type for a number above 0 (or at least 0)."""

    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text}") from None
        if not (value >= 0 if zero else value > 0) or value != value:
            raise argparse.ArgumentTypeError(f"must be {'at least' if zero else 'more than'} 0, not {text}")
        return value

    parse.__name__ = kind.__name__
    return parse


def local_path(text):
    """argparse's type for a file this computer writes (the report, a .blend)."""
    if is_url(text):
        raise argparse.ArgumentTypeError(f"{text} is a URL; this file is written here, give a path")
    return Path(text)


def batch_arguments(argv):
    """The arguments after ``--``: before it, Blender's own (``-b --python …/__main__.py``) or Python's."""
    if "--" in argv:
        return argv[argv.index("--") + 1 :]
    return argv[1:]


def main(argv=None):
    """Run the batch; ``argv`` is the batch's own arguments (default: those after ``--`` in sys.argv).

    Every way it ends is one message and an exit status: a failure the user can act on (a cluster that does
    not answer, a folder that cannot be read) is one line, never a traceback.
    """
    try:
        return run(argv)
    except TripoSRError as error:
        return failed(str(error))
    except OSError as error:
        return failed(os_error_message(error))
    except Exception as error:  # a bug: one line, and the traceback for a report when asked for
        if os.environ.get(ENV_DEBUG):
            traceback.print_exc()
        return failed(
            f"Unexpected error ({type(error).__name__}: {error}). This is a bug: please report it with the "
            f"command you ran; {ENV_DEBUG}=1 prints the traceback."
        )


def failed(message):
    sys.stderr.write(f"error: {message}\n")
    return EXIT_FAILED


def os_error_message(error):
    where = f" {error.filename}" if error.filename else ""
    return f"cannot use{where}: {error.strerror or error}"


def run(argv):
    """The batch, from its arguments to its exit status.

    A runner (``in_blender`` or ``on_ray``) offers ``run(args, plan, report, interruption)``, the
    ``output_folder`` class that checks --out, and ``expand_url`` for inputs in object storage (or None).
    """
    parser = build_parser()
    args = parser.parse_args(batch_arguments(sys.argv) if argv is None else argv)
    runner = ray_runner(args, parser) if args.ray is not None else blender_runner(args, parser)
    kind = ((CODES_SUFFIX,), "scene codes") if args.from_codes else (IMAGE_EXTENSIONS, "images")
    inputs, problems = expand_inputs(args.inputs, *kind, expand_url=runner.expand_url)
    names = output_names(inputs)
    try:
        check_outputs(args, names, runner.output_folder)
    except OutputError as error:
        parser.error(str(error))
    plan = [(Item(input=str(location)), name) for location, name in zip(inputs, names, strict=True)]
    args.report = args.report or default_report(args)
    report = Report([item for item, _ in plan] + problems, args.report, _settings(args))
    with Interruption() as interruption:
        try:
            runner.run(args, plan, report, interruption)
        except KeyboardInterrupt:
            sys.stderr.write("\nInterrupted: the outputs written so far are kept; --skip-existing resumes.\n")
            return EXIT_INTERRUPTED
        finally:
            report.save(final=True)
            report.print_summary()
    return EXIT_FAILED if report.counts()["failed"] else 0


def blender_runner(args, parser):
    """The batch in Blender (``in_blender``), after refusing what only the Ray batch does."""
    refuse_ray_only_arguments(args, parser)
    from . import in_blender

    return in_blender


def refuse_ray_only_arguments(args, parser):
    urls = [location for location in [*args.inputs, args.out] if is_url(location)]
    if urls:
        parser.error(
            f"{urls[0]}: URLs of object storage are read and written by the batch on Ray only: add --ray, or "
            "copy the files to this computer first"
        )
    given = [flag for flag in RAY_ONLY_OPTIONS if getattr(args, flag[2:].replace("-", "_")) is not None]
    if given:
        parser.error(f"{given[0]} sets the workers of the batch on Ray: add --ray, or leave it out")
    check_texture_format(args, parser)


def ray_runner(args, parser):
    """The batch on a Ray cluster (``on_ray``), after refusing what needs Blender or this computer."""
    needs_blender = "--one-blend" if args.one_blend else f"--format {args.format}"
    if args.one_blend or args.format not in RAY_FORMATS:
        parser.error(
            f"{needs_blender} needs Blender's exporters: run the batch without --ray for it (the batch on "
            f"Ray writes {', '.join(RAY_FORMATS)})"
        )
    if args.server:
        parser.error("--server and --ray both say where the model runs: choose one")
    if args.quad_remesh:
        parser.error(
            "--quad-remesh runs Blender's QuadriFlow: run the batch without --ray for quads (the batch on "
            "Ray writes triangle meshes)"
        )
    check_texture_format(args, parser)
    try:
        from . import on_ray
    except ImportError as error:
        parser.error(
            f"--ray needs Ray, which is not installed in this Python ({error}): install the extra with "
            "`pip install -r requirements-ray.txt` (or `pip install .[ray]`) in a Python of its own, not "
            "in Blender's"
        )
    return on_ray


def check_texture_format(args, parser):
    if args.texture_size and args.format == "ply" and not args.one_blend:
        parser.error("--texture-size: a PLY file holds no texture; leave it out, or choose glb or obj")
    if args.texture_size and args.quad_remesh:
        parser.error(
            "--quad-remesh with --texture-size: the quads carry colors per vertex, not a baked texture; "
            "leave one of them out"
        )


def default_report(args):
    """Where the report goes when --report names no file: beside the outputs, where they are on this
    computer."""
    if args.one_blend:
        return args.one_blend.with_name(f"{args.one_blend.stem}-{DEFAULT_REPORT}")
    return None if is_url(args.out) else Path(args.out) / DEFAULT_REPORT


def _settings(args):
    """The options that shaped the outputs, as the report records them."""
    names = ("model", "server", "ray", "device", "cpu_fast", "resolution", "threshold")
    settings = {name: getattr(args, name) for name in names}
    settings.update(remove_background=args.remove_background, foreground_ratio=args.foreground_ratio)
    settings["target"] = str(args.one_blend) if args.one_blend else f"{args.out}/*.{args.format}"
    return settings
