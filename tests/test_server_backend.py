"""The add-on and the batch with the Server backend (worker/remote.py), in the real bpy: Generate and Re-mesh
through a live TripoSR server on 127.0.0.1, with no PyTorch needed on this side."""

import io
import os
import signal
import subprocess
import sys
import time

import bpy
import numpy as np
import pytest
from fixture_model import FIXTURE, IMAGE, NEW_THRESHOLD, OPTIONS, core_mesh, core_mesh_at, cut_out
from glb import read_glb
from server_harness import REPO, TOKEN, Server, serving_result

from triposr_blender import dependencies
from triposr_blender.backends.remote import RemoteClient
from triposr_blender.backends.types import ImageFile, ModelSettings
from triposr_blender.batch import command as batch_cli
from triposr_blender.blender import source
from triposr_blender.options import GenerateOptions
from triposr_blender.ui import status
from triposr_blender.ui.session import SESSION
from triposr_blender.worker.pipeline import PHOTO_NOT_KEPT, PHOTO_SQUASHED

pytestmark = pytest.mark.blender


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = Server(tmp_path_factory.mktemp("server"))
    yield server
    server.stop()


@pytest.fixture
def server_backend(extension, server, monkeypatch):
    """The add-on set to use the server, as TRIPOSR_SERVER and TRIPOSR_SERVER_TOKEN set it."""
    monkeypatch.setenv("TRIPOSR_SERVER", server.url)
    monkeypatch.setenv("TRIPOSR_SERVER_TOKEN", TOKEN)
    SESSION.stop()
    yield
    SESSION.stop()


def mesh_faces(obj):
    corners = np.empty(len(obj.data.loops), np.int32)
    obj.data.loops.foreach_get("vertex_index", corners)
    return corners.reshape(-1, 3)


def test_generate_and_remesh_run_on_the_server(server_backend, new_objects):
    assert bpy.ops.triposr.generate(filepath=str(IMAGE)) == {"FINISHED"}
    obj = bpy.context.active_object

    assert isinstance(SESSION.client, RemoteClient)
    np.testing.assert_array_equal(mesh_faces(obj), core_mesh().faces)
    assert source.is_triposr_object(obj), "the server's scene codes came along: Re-mesh works on it too"

    assert bpy.ops.triposr.remesh(threshold=NEW_THRESHOLD) == {"FINISHED"}
    np.testing.assert_array_equal(mesh_faces(obj), core_mesh_at(NEW_THRESHOLD).faces)


def test_an_image_without_a_file_goes_to_the_server_as_a_png(server_backend, new_objects):
    source_image = bpy.data.images.load(str(IMAGE))
    painted = bpy.data.images.new("Painted", *source_image.size, alpha=True)
    painted.pixels.foreach_set(np.array(source_image.pixels[:], np.float32))
    bpy.data.images.remove(source_image)

    assert bpy.ops.triposr.generate(image_name="Painted") == {"FINISHED"}

    np.testing.assert_array_equal(mesh_faces(bpy.context.active_object), core_mesh().faces)
    bpy.data.images.remove(painted)


def test_with_the_server_backend_nothing_needs_installing_here(server_backend, monkeypatch):
    monkeypatch.setenv(dependencies.ENV_REQUIRED_MODULES, "a_module_this_machine_does_not_have")
    monkeypatch.setattr(dependencies, "_status", None)

    class Box:
        def __init__(self):
            self.labels = []

        def label(self, text="", icon="NONE"):
            self.labels.append(text)

    box = Box()
    assert status.draw_dependencies(box, bpy.context) is True
    assert box.labels == [
        f"Model runs on the TripoSR server at {SESSION.worker().url}: nothing to install here."
    ]


def test_a_wrong_token_is_explained(server_backend, monkeypatch, new_objects):
    monkeypatch.setenv("TRIPOSR_SERVER_TOKEN", "not-the-token-of-this-server")

    with pytest.raises(RuntimeError, match="refused the token"):
        bpy.ops.triposr.generate(filepath=str(IMAGE))


def test_a_server_that_cannot_be_reached_is_explained(extension, monkeypatch, new_objects):
    monkeypatch.setenv("TRIPOSR_SERVER", "http://127.0.0.1:9")  # the discard port: nothing listens
    SESSION.stop()

    with pytest.raises(RuntimeError, match="Could not reach the TripoSR server at http://127.0.0.1:9"):
        bpy.ops.triposr.generate(filepath=str(IMAGE))
    SESSION.stop()


def test_the_batch_runs_on_the_server_with_server(server, tmp_path):
    arguments = [
        "--resolution",
        OPTIONS["resolution"],
        "--threshold",
        repr(OPTIONS["threshold"]),
        "--no-remove-bg",
    ]
    command = [
        sys.executable,
        "-m",
        "triposr_blender.batch",
        "--",
        IMAGE,
        "--out",
        tmp_path,
        "--server",
        server.url,
    ]
    result = subprocess.run(
        list(map(str, [*command, *arguments])),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TRIPOSR_SERVER_TOKEN": TOKEN},
    )

    assert result.returncode == 0, result.stderr
    document, _ = read_glb(tmp_path / f"{IMAGE.stem}.glb")
    (primitive,) = document["meshes"][0]["primitives"]
    assert document["accessors"][primitive["indices"]]["count"] == 3 * len(core_mesh().faces)


def test_a_batch_on_a_server_that_sends_a_broken_result_writes_nothing_and_says_why(tmp_path):
    """A normal map of the wrong shape once ended `batch --server` with a traceback."""
    mesh, buffer = core_mesh(), io.BytesIO()
    np.savez_compressed(
        buffer, vertices=mesh.vertices, faces=mesh.faces, vertex_colors=mesh.vertex_colors,
        corner_uvs=np.zeros((len(mesh.faces), 3, 2), np.float32), texture=np.zeros((512, 512, 4), np.uint8),
        normal_map=np.zeros((9, 9), np.uint8),
    )  # fmt: skip
    with serving_result(buffer.getvalue()) as url:
        command = [sys.executable, "-m", "triposr_blender.batch", "--", IMAGE, "--out", tmp_path / "out",
                   "--server", url, "--texture-size", "512", "--no-remove-bg"]  # fmt: skip
        result = subprocess.run(
            list(map(str, command)), cwd=REPO, capture_output=True, text=True, timeout=300
        )
    assert result.returncode == batch_cli.EXIT_FAILED, result.stderr
    assert f"The TripoSR server at {url} sent a result that cannot be used: its normal map" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    written = sorted(path.name for path in (tmp_path / "out").iterdir())
    assert written == ["report.html", "report.json"], "no mesh and no picture: only the run's report"


def test_what_a_server_job_did_otherwise_than_asked_comes_with_its_mesh(server):
    """Photo Texture has nothing to fit on an image with no alpha when Remove Background is off: the server's
    job says so in its status, and the client hands the note on with the mesh."""
    client = RemoteClient(server.url, TOKEN)
    options = GenerateOptions(**OPTIONS, texture_size=512)

    outcome = client.generate(ImageFile(str(IMAGE)), options, ModelSettings(str(FIXTURE))).wait(120)

    assert outcome.event == "result" and outcome.result.texture is not None
    assert outcome.result.notes == (PHOTO_SQUASHED,)


def test_the_servers_result_brings_its_photo_and_a_re_mesh_there_sends_it_back_to_project_again(
    server, tmp_path
):
    """Photo Texture through a server: the result carries the photo the image was framed from (the object
    keeps it), and a Re-mesh on the server sends it with the scene codes; without it, the job says why not."""
    client = RemoteClient(server.url, TOKEN)
    options = GenerateOptions(**OPTIONS, texture_size=512)
    model = ModelSettings(str(FIXTURE))

    made = client.generate(ImageFile(str(cut_out(tmp_path))), options, model).wait(120).result
    again = client.remesh(made.codes, options.mesh, model, made.photo).wait(120).result
    without = client.remesh(made.codes, options.mesh, model).wait(120).result

    assert made.photo.pixels.shape == (80, 80, 4) and again.notes != without.notes
    assert PHOTO_NOT_KEPT not in again.notes and without.notes == (PHOTO_NOT_KEPT,)


def until(job, condition, timeout=60):
    """Follow ``job``'s progress until ``condition(job)`` holds."""
    deadline = time.monotonic() + timeout
    while not condition(job):
        assert job.poll() is None and time.monotonic() < deadline, job.stage
        time.sleep(0.05)


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="finds the server's worker through /proc")
def test_the_clients_cancel_reaches_the_server_and_a_waiting_job_shows_its_place_in_the_queue(tmp_path):
    server = Server(tmp_path)
    try:
        os.kill(server.worker_pid(), signal.SIGSTOP)  # the first job runs and stays running
        client = RemoteClient(server.url, TOKEN)
        options = GenerateOptions(**OPTIONS)
        running = client.generate(ImageFile(str(IMAGE)), options, ModelSettings(str(FIXTURE)))
        until(running, lambda job: job.stage not in ("Sending to the server", "Waiting in the queue"))
        waiting = client.generate(ImageFile(str(IMAGE)), options, ModelSettings(str(FIXTURE)))
        until(waiting, lambda job: "queue" in job.stage)

        client.cancel(running)

        assert running.wait(60).event == "cancelled"
        assert waiting.stage == "Waiting in the server's queue (position 1)"
        assert waiting.wait(120).event == "result"
    finally:
        server.stop()


# --- Switching backends ------------------------------------------------------------------------------------


def test_cancel_reaches_the_backend_running_the_jobs_after_the_preference_changed(
    extension, server, monkeypatch
):
    """Cancel (and loading a file) must cancel where the jobs run, never start the newly chosen backend."""
    SESSION.stop()
    worker = SESSION.worker()  # this computer's worker: no server is set yet
    job = worker.generate(
        ImageFile(str(IMAGE)), GenerateOptions(**OPTIONS), ModelSettings(str(FIXTURE), "cpu")
    )
    SESSION.active.append(job)
    monkeypatch.setenv("TRIPOSR_SERVER", server.url)  # the preference changes while the job runs

    SESSION.cancel_all()

    try:
        assert SESSION.client is worker
        assert job.wait(60).event == "cancelled"
    finally:
        SESSION.stop()


def test_a_server_on_the_network_is_not_used_with_online_access_off(server):
    """Blender's Allow Online Access governs the Server backend too (a server on this computer is fine)."""
    offline = ModelSettings(str(FIXTURE), offline=True)
    beyond = RemoteClient("http://gpu-box.studio.example:8700", TOKEN)

    refused = beyond.generate(ImageFile(str(IMAGE)), GenerateOptions(**OPTIONS), offline).wait(10)

    assert refused.event == "error" and "Blender's online access is off" in refused.message
    local = RemoteClient(server.url, TOKEN).generate(
        ImageFile(str(IMAGE)), GenerateOptions(**OPTIONS), offline
    )
    assert local.wait(120).event == "result"
