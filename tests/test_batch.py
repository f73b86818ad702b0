"""The headless batch (``python -m triposr_blender.batch``), run as users run it: a real process with the tiny
fixture model, the real bpy wheel and Blender's own exporters."""

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import bpy
import numpy as np
import pytest
import torch
from batch_harness import TINY_MODEL_ARGS, image_copies, image_folder, run_batch, run_python, statuses
from conftest import FIXTURE_IMAGE, FIXTURE_MODEL, REPO
from fixture_model import NEW_THRESHOLD, cut_out, mesh_of, write_exr
from glb import read_glb

from triposr_blender.backends.types import ImageFile, MeshResult
from triposr_blender.batch import command as batch_cli
from triposr_blender.batch import in_blender, plan
from triposr_blender.batch.plan import expand_inputs
from triposr_blender.blender import mesh_builder, source
from triposr_blender.blender.placement import Destination
from triposr_blender.core.mesh import Mesh
from triposr_blender.core.scene_codes import SceneCodes, photo_in
from triposr_blender.worker.pipeline import PHOTO_NOT_KEPT

pytestmark = [pytest.mark.blender, pytest.mark.usefixtures("own_dependency_folder")]


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    """One batch over a folder of good and bad images; several tests read its results."""
    root = tmp_path_factory.mktemp("batch")
    images = image_folder(root / "images")
    out, report = root / "out", root / "report.json"
    result = run_batch(images, "--out", out, "--report", report, *TINY_MODEL_ARGS)
    return result, images, out, report


# The command line


def test_help_documents_every_option():
    result = run_python("-m", "triposr_blender.batch", "--help")
    assert result.returncode == 0
    for option in ("INPUT", "--out", "--format", "--one-blend", "--model", "--device", "--cpu-fast",
                   "--resolution", "--threshold", "--no-remove-bg", "--foreground-ratio", "--size",
                   "--skip-existing", "--overwrite", "--report", "--remove-floaters", "--no-remove-floaters",
                   "--floater-fraction", "--save-codes", "--from-codes"):  # fmt: skip
        assert option in result.stdout


def test_run_as_a_script_by_its_path_as_blender_runs_it_the_batch_finds_its_package(tmp_path):
    # `blender -b --python <extension>/batch/__main__.py -- ...` runs the file outside its package; from
    # another folder, the package is not importable by name either.
    script = REPO / "triposr_blender" / "batch" / "__main__.py"
    result = run_python(script, "--", "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "--one-blend" in result.stdout


def test_an_unknown_argument_is_a_usage_error_that_names_the_closest_option(tmp_path):
    result = run_batch(FIXTURE_IMAGE, "--fromat", "obj")
    assert result.returncode == batch_cli.EXIT_USAGE
    assert "unrecognized arguments: --fromat (did you mean --format?)" in result.stderr
    assert "--help" in result.stderr


def test_a_model_folder_named_relative_to_where_the_batch_started_is_passed_on_absolute(
    tmp_path, monkeypatch
):
    (tmp_path / "tsr").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TRIPOSR_MODEL", "tsr")
    assert batch_cli.build_parser().parse_args(["a.png"]).model == str(tmp_path / "tsr")
    assert batch_cli.build_parser().parse_args(["a.png", "--model", "tsr"]).model == str(tmp_path / "tsr")


def test_arguments_are_those_after_the_double_dash():
    blender_command = ["blender", "-b", "--python", "batch/__main__.py", "--", "a.png", "--format", "obj"]
    assert batch_cli.batch_arguments(blender_command) == ["a.png", "--format", "obj"]
    assert batch_cli.batch_arguments(["__main__.py", "a.png"]) == ["a.png"]


# Inputs and output names


def test_a_folder_gives_its_images_sorted_but_not_its_subfolders(tmp_path):
    (tmp_path / "b.png").touch()
    (tmp_path / "A.JPG").touch()
    (tmp_path / "notes.txt").touch()
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.png").touch()
    images, problems = plan.expand_inputs([str(tmp_path)])
    assert [image.name for image in images] == ["A.JPG", "b.png"]
    assert problems == []


def test_patterns_recurse_with_double_star_and_a_file_named_twice_is_converted_once(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.png").touch()
    (tmp_path / "d.webp").touch()
    inputs = [f"{tmp_path}/**/*.png", str(tmp_path / "sub" / "c.png"), str(tmp_path)]
    images, _ = plan.expand_inputs(inputs)
    assert [image.relative_to(tmp_path).as_posix() for image in images] == ["sub/c.png", "d.webp"]


def test_inputs_that_give_no_image_are_reported_as_failed(tmp_path):
    (tmp_path / "empty").mkdir()
    inputs = [str(tmp_path / "missing.png"), str(tmp_path / "*.jpg"), str(tmp_path / "empty")]
    images, problems = plan.expand_inputs(inputs)
    assert images == []
    assert [(item.input, item.status) for item in problems] == [(text, "failed") for text in inputs]
    assert [item.error for item in problems] == [
        "file not found",
        "the pattern matched no images",
        "no images in folder (looked for .png, .jpg, .jpeg, .webp, .bmp, .tif, .tiff, .exr)",
    ]


def test_images_with_the_same_name_get_numbered_outputs():
    images = [Path("a/chair.png"), Path("b/chair.png"), Path("Chair.jpg"), Path("table.png")]
    assert plan.output_names(images) == ["chair", "chair_2", "Chair_3", "table"]


def test_the_worker_reads_image_files_itself_and_gets_exr_pixels_read_by_blender(tmp_path):
    exr = write_exr(tmp_path / "render.exr")
    images = set(bpy.data.images)

    assert in_blender.image_for_worker(FIXTURE_IMAGE) == ImageFile(str(FIXTURE_IMAGE))
    assert in_blender.image_for_worker(exr).pixels.shape == (96, 96, 4)
    assert set(bpy.data.images) == images


# Exporters


@pytest.fixture
def fixture_object():
    """An object built from the fixture's reference mesh, the only selected one, as the batch exports it."""
    arrays = np.load(FIXTURE_MODEL / "expected.npz")
    generated = MeshResult(Mesh(arrays["mesh_vertices"], arrays["mesh_faces"], arrays["mesh_vertex_colors"]))
    obj = mesh_builder.build_object(bpy.context, "chair", generated, Destination())
    yield obj
    mesh_builder.remove_object(obj)


IMPORTERS = {
    "glb": lambda path: bpy.ops.import_scene.gltf(filepath=str(path)),
    "obj": lambda path: bpy.ops.wm.obj_import(filepath=str(path)),
    "ply": lambda path: bpy.ops.wm.ply_import(filepath=str(path)),
    "fbx": lambda path: bpy.ops.import_scene.fbx(filepath=str(path)),
    "usd": lambda path: bpy.ops.wm.usd_import(filepath=str(path)),
}


@pytest.mark.parametrize("file_format", sorted(IMPORTERS))
def test_each_format_exports_the_mesh_with_its_vertex_colours(fixture_object, file_format, tmp_path):
    output = tmp_path / f"chair.{file_format}"
    in_blender.export_object(output, file_format)
    existing = set(bpy.data.objects)
    IMPORTERS[file_format](output)
    (imported,) = [obj for obj in bpy.data.objects if obj not in existing and obj.type == "MESH"]
    try:
        assert len(imported.data.polygons) == len(fixture_object.data.polygons)
        assert imported.data.color_attributes, f"{file_format} lost the vertex colours"
    finally:
        mesh_builder.remove_object(imported)


def test_blend_export_holds_the_object(fixture_object, tmp_path):
    output = tmp_path / "chair.blend"
    in_blender.export_object(output, "blend")
    with bpy.data.libraries.load(str(output)) as (data_from, _data_to):
        assert "chair" in data_from.objects


def test_exporting_leaves_only_the_finished_files(fixture_object, tmp_path):
    in_blender.export_object(tmp_path / "chair.obj", "obj")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["chair.mtl", "chair.obj"]


# Whole runs with the tiny model


def test_a_batch_converts_the_good_images_and_reports_the_bad_ones(first_run):
    result, _images, out, report = first_run
    assert result.returncode == batch_cli.EXIT_FAILED, result.stderr
    assert sorted(path.name for path in out.iterdir()) == ["disc.glb", "square.glb"]
    items = statuses(report)
    assert set(items) == {"disc.png", "square.png", "truncated.png", "notes.png"}
    for name in ("disc.png", "square.png"):
        assert items[name]["status"] == "done"
        assert items[name]["error"] is None
        assert items[name]["seconds"] > 0
    for name in ("truncated.png", "notes.png"):
        assert items[name]["status"] == "failed"
        assert items[name]["error"]
        assert name in items[name]["error"]
    assert "2 done, 0 skipped, 2 failed" in result.stderr


def test_the_exporters_log_lines_stay_out_of_the_batchs_output(first_run):
    result = first_run[0]
    assert "glTF" not in result.stdout + result.stderr and "Draco" not in result.stdout + result.stderr


def test_the_help_of_a_flag_that_turns_an_option_off_says_so():
    result = run_batch("--help")
    assert "--no-remove-bg        Turn Remove Background off; it is on by default" in result.stdout


def test_glb_outputs_carry_vertex_colours_as_color_0(first_run):
    _result, _images, out, _report = first_run
    for output in out.glob("*.glb"):
        primitives = [primitive for mesh in read_glb(output)[0]["meshes"] for primitive in mesh["primitives"]]
        assert primitives
        assert all("COLOR_0" in primitive["attributes"] for primitive in primitives)


def test_skip_existing_does_no_work_the_second_time(first_run, tmp_path):
    _result, images, out, _report = first_run
    written = {path.name: path.stat().st_mtime_ns for path in out.iterdir()}
    report = tmp_path / "again.json"
    result = run_batch(images, "--out", out, "--report", report, "--skip-existing", *TINY_MODEL_ARGS)
    items = statuses(report)
    assert items["disc.png"]["status"] == items["square.png"]["status"] == "skipped"
    assert {path.name: path.stat().st_mtime_ns for path in out.iterdir()} == written
    assert "0 done, 2 skipped, 2 failed" in result.stderr
    # The bad images are tried again, and fail again.
    assert result.returncode == batch_cli.EXIT_FAILED
    assert items["notes.png"]["status"] == "failed"


def test_one_blend_collects_every_mesh_and_resumes(tmp_path):
    images = image_folder(tmp_path / "images")
    blend = tmp_path / "all.blend"
    first = run_batch(images / "disc.png", "--one-blend", blend, *TINY_MODEL_ARGS)
    assert first.returncode == 0, first.stderr
    report = tmp_path / "report.json"
    second = run_batch(
        images / "disc.png", images / "square.png", "--one-blend", blend, "--skip-existing",
        "--report", report, *TINY_MODEL_ARGS,
    )  # fmt: skip
    assert second.returncode == 0, second.stderr
    assert [item["status"] for item in statuses(report).values()] == ["skipped", "done"]
    with bpy.data.libraries.load(str(blend)) as (data_from, data_to):
        data_to.objects = sorted(data_from.objects)
    try:
        assert [obj.name for obj in data_to.objects] == ["disc", "square"]
        # Side by side along +X, 1.5 sizes (2 units each) apart, so they do not overlap.
        assert [tuple(obj.location) for obj in data_to.objects] == [(0, 0, 0), (3, 0, 0)]
    finally:
        for obj in data_to.objects:
            mesh_builder.remove_object(obj)


def test_a_model_that_cannot_load_stops_the_run_at_once_with_its_message_said_once(tmp_path):
    """The offline newcomer's first run: one message, no traceback, the model tried once (not per image)."""
    report = tmp_path / "report.json"
    images = image_copies(tmp_path / "images", 3)
    result = run_batch(images, "--model", tmp_path / "no-model", "--report", report, "--out", tmp_path)
    assert result.returncode == batch_cli.EXIT_FAILED
    items = statuses(report).values()
    assert {item["status"] for item in items} == {"failed"}
    assert all("no-model" in item["error"] and "StopBatch" not in item["error"] for item in items)
    assert "Traceback" not in result.stderr
    assert result.stderr.count("no-model") == 1, result.stderr
    assert "100%" not in result.stderr


def test_a_folder_that_cannot_be_read_is_reported_not_raised(tmp_path, monkeypatch):
    folder = tmp_path / "locked"
    folder.mkdir()
    real_iterdir = Path.iterdir

    def iterdir(path):
        if path == folder:  # tests run as root, whom no permission stops: the denial is simulated
            raise PermissionError(13, "Permission denied", str(path))
        return real_iterdir(path)

    monkeypatch.setattr(Path, "iterdir", iterdir)
    inputs, problems = expand_inputs([str(folder)])

    assert inputs == []
    assert [(item.status, item.error) for item in problems] == [
        ("failed", "cannot read the folder: Permission denied")
    ]


# Nothing lost: files the run did not make, folders checked first, interruptions, litter


def blend_with_an_object(path, name):
    """A user's .blend holding one object of their own."""
    bpy.ops.wm.read_homefile(use_empty=True)
    bpy.context.scene.collection.objects.link(bpy.data.objects.new(name, None))
    bpy.ops.wm.save_as_mainfile(filepath=str(path))
    bpy.ops.wm.read_homefile(use_empty=True)


def objects_in(blend):
    with bpy.data.libraries.load(str(blend)) as (data_from, _data_to):
        return sorted(data_from.objects)


def test_one_blend_onto_an_existing_file_adds_to_it_and_keeps_the_users_scene(tmp_path):
    blend = tmp_path / "props.blend"
    blend_with_an_object(blend, "UsersLamp")

    result = run_batch(FIXTURE_IMAGE, "--one-blend", blend, *TINY_MODEL_ARGS)

    assert result.returncode == 0, result.stderr
    assert objects_in(blend) == ["UsersLamp", FIXTURE_IMAGE.stem]


def test_one_blend_with_overwrite_starts_the_file_afresh(tmp_path):
    blend = tmp_path / "props.blend"
    blend_with_an_object(blend, "UsersLamp")

    result = run_batch(FIXTURE_IMAGE, "--one-blend", blend, "--overwrite", *TINY_MODEL_ARGS)

    assert result.returncode == 0, result.stderr
    assert objects_in(blend) == [FIXTURE_IMAGE.stem]


def test_an_existing_output_is_never_replaced_unless_overwrite_says_so(tmp_path):
    (tmp_path / f"{FIXTURE_IMAGE.stem}.glb").write_bytes(b"the user's own file")

    refused = run_batch(FIXTURE_IMAGE, "--out", tmp_path, *TINY_MODEL_ARGS)
    assert refused.returncode == batch_cli.EXIT_USAGE
    assert "1 output(s) already exist" in refused.stderr and "--overwrite to replace them" in refused.stderr
    assert (tmp_path / f"{FIXTURE_IMAGE.stem}.glb").read_bytes() == b"the user's own file"

    replaced = run_batch(FIXTURE_IMAGE, "--out", tmp_path, "--overwrite", *TINY_MODEL_ARGS)
    assert replaced.returncode == 0, replaced.stderr
    assert read_glb(tmp_path / f"{FIXTURE_IMAGE.stem}.glb")[0]["meshes"]


@pytest.mark.parametrize(
    ("out", "message"),
    [("a-file", "--out: {out} is a file, not a folder"), ("a-file/meshes", "--out: cannot write to {out}")],
)
def test_an_output_folder_that_cannot_be_written_stops_the_run_before_the_first_image(tmp_path, out, message):
    (tmp_path / "a-file").write_text("not a folder")

    result = run_batch(FIXTURE_IMAGE, "--out", tmp_path / out, *TINY_MODEL_ARGS)

    assert result.returncode == batch_cli.EXIT_USAGE
    assert message.format(out=tmp_path / out) in result.stderr
    assert "Loading model" not in result.stderr


def test_another_name_for_an_image_already_in_the_run_is_reported_as_skipped(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    shutil.copy(FIXTURE_IMAGE, images / "disc.png")
    (images / "also-disc.png").symlink_to(images / "disc.png")
    report = tmp_path / "report.json"

    result = run_batch(images, "--out", tmp_path / "out", "--report", report, *TINY_MODEL_ARGS)

    assert result.returncode == 0, result.stderr
    skipped = statuses(report)["disc.png"]
    assert skipped["status"] == "skipped" and skipped["error"].startswith("the same file as")
    assert "1 done, 1 skipped, 0 failed" in result.stderr
    assert f"skipped: {images / 'disc.png'}: the same file as" in result.stderr


def test_a_nan_threshold_is_a_usage_error():
    result = run_batch(FIXTURE_IMAGE, "--threshold", "nan")
    assert result.returncode == batch_cli.EXIT_USAGE
    assert "argument --threshold: must be a finite number, not nan" in result.stderr


def test_a_run_leaves_no_temporary_folders_and_clears_those_of_killed_runs(tmp_path):
    temp, out = tmp_path / "tmp", tmp_path / "out"
    temp.mkdir()
    out.mkdir()
    (out / ".triposr-999999999-abc").mkdir()  # a run killed mid-export left it: that process is gone
    (out / ".triposr-999999999-abc" / "half.glb").write_bytes(b"half written")
    (out / f".triposr-{os.getpid()}-xyz").mkdir()  # a run still going (this process) keeps its own

    command = [
        sys.executable,
        "-m",
        "triposr_blender.batch",
        "--",
        FIXTURE_IMAGE,
        "--out",
        out,
        *TINY_MODEL_ARGS,
    ]
    result = subprocess.run(
        list(map(str, command)),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TMPDIR": str(temp)},
    )

    assert result.returncode == 0, result.stderr
    assert sorted(path.name for path in out.iterdir()) == [
        f".triposr-{os.getpid()}-xyz",
        f"{FIXTURE_IMAGE.stem}.glb",
        "report-pictures",  # the contact sheet's, beside its report: every run writes them
        "report.html",
        "report.json",
    ]
    left = [path.name for path in temp.iterdir() if path.name.startswith(("blender_", "triposr-"))]
    assert left == [], "Blender's session folder and the worker's folder are removed"


class InterruptedExporter(bpy.types.Operator):
    """An exporter that the user interrupts with Ctrl+C while it writes."""

    bl_idname = "test.interrupted_export"
    bl_label = "Interrupted export"

    def execute(self, context):
        # What Python does when Ctrl+C arrives mid-write: the SIGINT handler runs here, inside the operator.
        signal.getsignal(signal.SIGINT)(signal.SIGINT, None)
        return {"FINISHED"}


def test_ctrl_c_during_an_export_stops_the_run_with_exit_130(tmp_path, monkeypatch):
    """Blender turns a KeyboardInterrupt inside an operator into a RuntimeError; that must not pass for a
    failed image."""
    bpy.utils.register_class(InterruptedExporter)
    monkeypatch.setitem(in_blender.EXPORTERS, "glb", lambda filepath: bpy.ops.test.interrupted_export())
    images, report = image_folder(tmp_path / "images"), tmp_path / "report.json"
    arguments = [images / "disc.png", images / "square.png", "--out", tmp_path / "out", "--report", report]
    try:
        code = batch_cli.main(list(map(str, [*arguments, *TINY_MODEL_ARGS])))
    finally:
        bpy.utils.unregister_class(InterruptedExporter)

    assert code == batch_cli.EXIT_INTERRUPTED
    assert [item["status"] for item in json.loads(report.read_text())["images"]] == ["pending", "pending"]


# Scene codes: save them once, make new meshes from them without the encoder


def test_saved_scene_codes_make_new_meshes_at_a_new_threshold_without_the_encoder_and_keep_the_photo(
    tmp_path,
):
    """--save-codes keeps each image's photo beside its codes, so --from-codes projects it again."""
    image = cut_out(tmp_path)
    first = run_batch(image, "--out", tmp_path / "first", "--save-codes", *TINY_MODEL_ARGS)
    assert first.returncode == 0, first.stderr
    saved = (tmp_path / "first" / f"{image.stem}.triposr.npz").read_bytes()
    assert photo_in(saved).pixels.shape == (80, 80, 4)

    again = run_batch(
        tmp_path / "first",
        "--from-codes",
        "--out",
        tmp_path / "again",
        *TINY_MODEL_ARGS[:-2],
        "--threshold",
        "0.40",
    )

    assert again.returncode == 0, again.stderr
    assert "Encoding image" not in again.stderr and "Removing background" not in again.stderr
    document, _ = read_glb(tmp_path / "again" / f"{image.stem}.glb")
    (primitive,) = document["meshes"][0]["primitives"]
    expected = mesh_of(torch.from_numpy(SceneCodes.from_bytes(saved).array), NEW_THRESHOLD)
    assert document["accessors"][primitive["indices"]]["count"] == 3 * len(expected.faces)
    (item,) = statuses(tmp_path / "again" / "report.json").values()
    assert PHOTO_NOT_KEPT not in item["notes"], "the camera was fitted to the saved photo"


def test_scene_codes_are_kept_in_a_blend_output_and_not_carried_into_other_formats(tmp_path):
    blend = tmp_path / "all.blend"
    assert run_batch(FIXTURE_IMAGE, "--one-blend", blend, *TINY_MODEL_ARGS).returncode == 0
    assert run_batch(FIXTURE_IMAGE, "--out", tmp_path, "--format", "usd", *TINY_MODEL_ARGS).returncode == 0

    with bpy.data.libraries.load(str(blend)) as (_data_from, data_to):
        data_to.objects = [FIXTURE_IMAGE.stem]
    try:
        assert source.is_triposr_object(data_to.objects[0]), "re-meshable later, in Blender"
    finally:
        mesh_builder.remove_object(data_to.objects[0])
    assert (
        tmp_path / f"{FIXTURE_IMAGE.stem}.usd"
    ).stat().st_size < 200_000, "no megabytes of codes in the USD"
