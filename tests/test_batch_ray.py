"""The batch on a Ray cluster (``--ray``, on_ray.py): a local Ray of 2 CPUs on 127.0.0.1 only, the tiny
fixture model, and the batch in Blender to hold it to."""

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from batch_harness import TINY_MODEL_ARGS, image_copies, image_folder, run_batch, statuses
from conftest import FIXTURE_IMAGE, REPO
from fixture_model import NEW_THRESHOLD, core_mesh_at, cut_out
from glb import assert_same_coloured_mesh
from listeners import descendants, exposed, listening_addresses
from ray_harness import without_a_cluster
from server_harness import free_port

from triposr_blender.batch import command as batch_cli
from triposr_blender.batch.plan import expand_inputs
from triposr_blender.core.scene_codes import photo_in
from triposr_blender.worker.pipeline import PHOTO_NOT_KEPT

ray = pytest.importorskip("ray")

pytestmark = pytest.mark.usefixtures("own_dependency_folder")

# Two model workers on the 2 CPUs leave one for the tasks that read and prepare the images.
WORKERS = ["--concurrency", "2", "--cpus-per-worker", "0.5"]


def run_on_ray(*arguments, workers=WORKERS, model=TINY_MODEL_ARGS):
    """The batch with --ray in this process, which is connected to the local Ray already."""
    return batch_cli.main(list(map(str, [*arguments, "--ray", *workers, *model])))


@pytest.fixture(scope="module")
def both_runs(tmp_path_factory, local_ray):
    """One folder of good and bad images, converted by the batch in Blender and by the batch on Ray."""
    root = tmp_path_factory.mktemp("both")
    images = image_folder(root / "images")
    report = root / "blender.json"
    in_blender = run_batch(images, "--out", root / "blender", "--report", report, *TINY_MODEL_ARGS)
    assert in_blender.returncode == batch_cli.EXIT_FAILED, in_blender.stderr
    exit_code = run_on_ray(images, "--out", root / "ray", "--report", root / "ray.json")
    return root, images, exit_code


def test_a_folder_converted_on_ray_gives_the_outputs_of_the_batch_in_blender(both_runs):
    root, _images, _exit_code = both_runs
    names = sorted(path.name for path in (root / "ray").iterdir())
    assert names == sorted(path.name for path in (root / "blender").iterdir()) == ["disc.glb", "square.glb"]
    for name in names:
        assert_same_coloured_mesh(root / "ray" / name, root / "blender" / name)


def test_a_bad_image_fails_alone_and_the_report_names_it(both_runs):
    root, _images, exit_code = both_runs
    on_ray, in_blender = statuses(root / "ray.json"), statuses(root / "blender.json")

    assert exit_code == batch_cli.EXIT_FAILED
    assert (
        {name: item["status"] for name, item in on_ray.items()}
        == {name: item["status"] for name, item in in_blender.items()}
        == {"disc.png": "done", "square.png": "done", "truncated.png": "failed", "notes.png": "failed"}
    )
    for name in ("truncated.png", "notes.png"):
        assert name in on_ray[name]["error"]
        assert on_ray[name]["error"] == in_blender[name]["error"]
    assert on_ray["disc.png"]["output"] == str(root / "ray" / "disc.glb")


def test_skip_existing_resumes_a_run_where_it_stopped(both_runs, tmp_path):
    root, images, _exit_code = both_runs
    out = shutil.copytree(root / "ray", tmp_path / "out")
    (out / "disc.glb").unlink()  # the run stopped before this one
    square = (out / "square.glb").stat().st_mtime_ns

    exit_code = run_on_ray(images, "--out", out, "--skip-existing", "--report", tmp_path / "report.json")

    items = statuses(tmp_path / "report.json")
    assert (items["disc.png"]["status"], items["square.png"]["status"]) == ("done", "skipped")
    assert (out / "square.glb").stat().st_mtime_ns == square
    assert_same_coloured_mesh(out / "disc.glb", root / "ray" / "disc.glb")
    assert exit_code == batch_cli.EXIT_FAILED, "the bad images are tried again, and fail again"


def test_scene_codes_saved_on_ray_make_new_meshes_in_another_format_through_file_system_urls(
    local_ray, tmp_path
):
    """... and keep the photo of each image that had one, for Photo Texture."""
    images, first, again = tmp_path / "images", tmp_path / "first", tmp_path / "again"
    images.mkdir()
    shutil.copy(FIXTURE_IMAGE, images / "disc.png")
    cut_out(images)

    saved = run_on_ray(f"file://{images}", "--out", f"file://{first}", "--format", "obj", "--save-codes")
    model_args = TINY_MODEL_ARGS[:-2]
    remeshed = run_on_ray(
        f"file://{first}", "--from-codes", "--out", again, "--format", "ply", "--threshold", NEW_THRESHOLD,
        model=model_args,
    )  # fmt: skip

    assert saved == remeshed == 0
    assert sorted(path.name for path in first.iterdir()) == [
        "cut-out.obj", "cut-out.triposr.npz", "disc.obj", "disc.triposr.npz"
    ]  # fmt: skip
    header = (again / "disc.ply").read_bytes().split(b"end_header\n")[0].decode()
    assert f"element face {len(core_mesh_at(NEW_THRESHOLD).faces)}" in header
    assert photo_in((first / "cut-out.triposr.npz").read_bytes()).pixels.shape == (80, 80, 4)
    notes = {name: item["notes"] for name, item in statuses(again / "report.json").items()}
    assert notes["disc.triposr.npz"] == [PHOTO_NOT_KEPT], "its image had no alpha: nothing was framed"
    assert PHOTO_NOT_KEPT not in notes["cut-out.triposr.npz"], "the camera was fitted to the saved photo"


def test_the_command_joins_a_cluster_at_its_address_and_ctrl_c_stops_its_job(local_ray, tmp_path):
    images, out, report = image_copies(tmp_path / "images", 40), tmp_path / "out", tmp_path / "report.json"
    arguments = [images, "--out", out, "--report", report, "--ray", local_ray, "--concurrency", "1"]
    command = [sys.executable, "-m", "triposr_blender.batch", "--", *arguments, *TINY_MODEL_ARGS]
    run = subprocess.Popen(list(map(str, command)), cwd=REPO, stderr=subprocess.PIPE, text=True)

    assert wait_until(lambda: any(out.glob("*.glb")), interval=0.02), "it converts on the cluster"
    run.send_signal(signal.SIGINT)  # Ctrl+C
    _, stderr = run.communicate(timeout=120)

    assert run.returncode == batch_cli.EXIT_INTERRUPTED, stderr
    items = statuses(report).values()
    done = sorted(item["output"] for item in items if item["status"] == "done")
    assert done and "pending" in {item["status"] for item in items}
    assert sorted(str(path) for path in out.iterdir()) == done, "finished outputs only, no staging files"
    assert wait_until(lambda: ray.available_resources().get("CPU") == 2.0), "its model workers are stopped"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the worker's process in /proc")
def test_a_model_worker_that_dies_is_started_again_and_the_run_finishes(local_ray, tmp_path):
    images, out, report = image_copies(tmp_path / "images", 12), tmp_path / "out", tmp_path / "report.json"
    killed = []

    def kill_the_model_worker():  # as a node lost, or the kernel's out-of-memory killer, would
        wait_until(lambda: any(out.glob("*.glb")), interval=0.02)
        killed.extend(model_worker_pids())
        for pid in killed:
            os.kill(pid, signal.SIGKILL)

    threading.Thread(target=kill_the_model_worker, daemon=True).start()
    exit_code = run_on_ray(images, "--out", out, "--report", report, workers=["--concurrency", "1"])

    assert killed, "the model worker was killed mid-run"
    assert exit_code == 0
    assert {item["status"] for item in statuses(report).values()} == {"done"}
    assert sorted(path.name for path in out.iterdir()) == [f"image{number:03}.glb" for number in range(12)]


def model_worker_pids():
    """The processes of Ray Data's model workers (process title ray::MapWorker(...))."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            if cmdline.read_bytes().startswith(b"ray::MapWorker"):
                pids.append(int(cmdline.parent.name))
    return pids


def wait_until(condition, timeout=120.0, interval=0.2):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--ray", "--format", "fbx"], "--format fbx needs Blender's exporters: run the batch without --ray"),
        (["--ray", "--one-blend", "all.blend"], "--one-blend needs Blender's exporters"),
        (["--out", "s3://studio/meshes"], "s3://studio/meshes: URLs of object storage are read and "
                                          "written by the batch on Ray only: add --ray"),
        (["--concurrency", "2"], "--concurrency sets the workers of the batch on Ray: add --ray"),
        (["--ray", "--server", "http://127.0.0.1:9"], "--server and --ray both say where the model runs"),
        (["--ray", "--report", "s3://studio/run.json"], "is a URL; this file is written here"),
        (["--format", "ply", "--texture-size", "512"], "a PLY file holds no texture"),
        (["--ray", "--out", "file:///proc/meshes"], "--out: cannot write to file:///proc/meshes"),
    ],
)  # fmt: skip
def test_what_a_run_cannot_do_is_a_usage_error_that_says_what_to_do(arguments, message, capsys):
    with pytest.raises(SystemExit) as stopped:
        batch_cli.main([str(FIXTURE_IMAGE), *arguments])

    assert stopped.value.code == batch_cli.EXIT_USAGE
    assert message in capsys.readouterr().err


# --- Nothing exposed, nothing hangs ------------------------------------------------------------------------


def test_the_ray_a_batch_starts_listens_on_loopback_only(tmp_path):
    """Every listening socket of every process of the run (the driver, Ray's GCS, raylet, workers), sampled
    while it runs: an unauthenticated Ray on the network runs anyone's code (CVE-2023-48022)."""
    images = image_copies(tmp_path / "images", 2)
    command = [
        sys.executable,
        "-m",
        "triposr_blender.batch",
        "--",
        images,
        "--out",
        tmp_path / "out",
        "--ray",
    ]
    run = subprocess.Popen(
        list(map(str, [*command, *TINY_MODEL_ARGS])),
        cwd=REPO,
        env=without_a_cluster(),
        stderr=subprocess.PIPE,
        text=True,
    )
    seen = set()
    while run.poll() is None:
        seen |= listening_addresses(descendants(run.pid))
        time.sleep(0.2)

    assert run.returncode == 0, run.stderr.read()
    assert len(seen) > 3, "Ray's servers were seen"
    assert not exposed(seen), sorted(exposed(seen))


def run_without_a_cluster(out, *arguments):
    """The batch of one image into ``out``, as run by a user with no Ray cluster on this machine."""
    command = [
        sys.executable,
        "-m",
        "triposr_blender.batch",
        "--",
        str(FIXTURE_IMAGE),
        "--out",
        str(out),
        *arguments,
    ]
    return subprocess.run(
        command, cwd=REPO, env=without_a_cluster(), capture_output=True, text=True, timeout=120
    )


def test_an_address_where_no_cluster_answers_fails_in_seconds_with_one_message(tmp_path):
    address = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    run = run_without_a_cluster(tmp_path, "--ray", address)
    assert run.returncode == batch_cli.EXIT_FAILED
    assert f"error: No Ray cluster answers at {address}" in run.stderr and "Traceback" not in run.stderr
    assert time.monotonic() - started < 60


def test_ray_auto_without_a_cluster_says_how_to_start_one(tmp_path):
    run = run_without_a_cluster(tmp_path, "--ray", "auto")
    assert run.returncode == batch_cli.EXIT_FAILED
    assert "error: No Ray cluster runs on this machine" in run.stderr and "ray start --head" in run.stderr
    assert "Traceback" not in run.stderr


def test_an_image_named_as_a_path_and_as_a_file_url_is_converted_once():
    from triposr_blender.batch import on_ray

    inputs, problems = expand_inputs(
        [str(FIXTURE_IMAGE), f"file://{FIXTURE_IMAGE}"], expand_url=on_ray.expand_url
    )
    assert inputs == [FIXTURE_IMAGE]
    assert [(item.input, item.status) for item in problems] == [(f"file://{FIXTURE_IMAGE}", "skipped")]
