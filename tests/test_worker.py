"""The worker process and its client (worker/), as Blender uses them, without bpy: a real worker process
running the real core on the tiny random-weight fixture model.

Tests that interrupt a job do it right after the job's first progress event on a fresh worker, while the
worker is still importing PyTorch and loading the model: a point every job passes, however fast the
machine or the mesh extraction."""

import errno
import io
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
from fixture_model import (
    FIXTURE,
    IMAGE,
    NEW_THRESHOLD,
    OPTIONS,
    core_mesh,
    core_mesh_at,
    core_scene,
    cut_out,
)
from PIL import Image

from triposr_blender.backends.types import (
    ImageFile,
    ImagePixels,
    ModelSettings,
    ModelState,
    Outcome,
    Progress,
)
from triposr_blender.core.model import ENCODE_STAGE
from triposr_blender.core.scene_codes import SceneCodes, with_photo
from triposr_blender.options import GenerateOptions, MeshOptions
from triposr_blender.worker import pipeline, protocol
from triposr_blender.worker.__main__ import Worker
from triposr_blender.worker.client import WorkerClient, WorkerStartError

MODEL = ModelSettings(str(FIXTURE), device="cpu")
FAST_MODEL = replace(MODEL, cpu_fast=True)
JOB_TIMEOUT = 120
FIRST_STAGE = "Starting"


def generate(client: WorkerClient, image=None, model=MODEL, **options):
    image = image or ImageFile(str(IMAGE))
    return client.generate(image, GenerateOptions(**{**OPTIONS, **options}), model)


def events_until_done(job) -> list[Progress | Outcome]:
    """Every event of the job, as its backend typed them: its progress, then how it ended."""
    events = []
    while not events or not isinstance(events[-1], Outcome):
        events.append(job.events.get(timeout=JOB_TIMEOUT))
    return events


def stages(events) -> list[str]:
    return [event.stage for event in events if isinstance(event, Progress)]


def started_job(client: WorkerClient):
    """A generation that has reported its first progress (on a fresh worker: before the model loads)."""
    job = generate(client)
    deadline = time.monotonic() + JOB_TIMEOUT
    while job.stage != FIRST_STAGE:
        assert job.poll() is None, f"the job ended before it started: {job.outcome}"
        assert time.monotonic() < deadline, f"no progress within {JOB_TIMEOUT} s"
        time.sleep(0.01)
    return job


def process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture(scope="module")
def client():
    """One worker shared by the tests that leave it running (a start costs a torch import)."""
    client = WorkerClient()
    yield client
    client.stop()


@pytest.fixture
def own_client():
    """A fresh worker for a test that interrupts, kills or stops it."""
    client = WorkerClient()
    yield client
    client.stop()


def test_a_job_reports_progress_then_returns_the_core_mesh(own_client):
    events = events_until_done(generate(own_client))

    *progress, outcome = events
    assert own_client.model_state.loaded, "the model the job loaded is known when the job ends"
    assert {type(event) for event in progress} == {Progress}
    assert stages(progress)[:2] == [FIRST_STAGE, "Loading model"]
    assert all(0.0 <= event.fraction <= 1.0 for event in progress)
    mesh, expected = outcome.result.mesh, core_mesh()
    np.testing.assert_array_equal(mesh.vertices, expected.vertices)
    np.testing.assert_array_equal(mesh.faces, expected.faces)
    np.testing.assert_array_equal(mesh.vertex_colors, expected.vertex_colors)


def test_the_model_stays_loaded_in_the_same_worker_between_jobs(client):
    generate(client).wait(JOB_TIMEOUT)
    pid = client.pid

    events = events_until_done(generate(client))

    assert client.pid == pid
    assert "Loading model" not in stages(events)
    assert client.model_state.loaded and client.model_state.device == "cpu"
    assert client.model_state.memory_bytes > 0


def test_the_faster_cpu_mode_reloads_the_model_with_int8_layers_and_generates(client):
    exact = client.load(MODEL).wait(JOB_TIMEOUT).model
    fast = client.load(FAST_MODEL).wait(JOB_TIMEOUT).model

    events = events_until_done(generate(client, model=FAST_MODEL))

    assert not exact.cpu_fast and fast.cpu_fast
    assert fast.memory_bytes < exact.memory_bytes, "int8 weights take less memory, and are counted"
    assert "Loading model" not in stages(events)
    assert events[-1].event == "result" and len(events[-1].result.mesh.faces) > 0


def test_an_image_can_be_sent_as_pixels(client):
    pixels = np.asarray(Image.open(IMAGE).convert("RGB"), dtype=np.float32) / 255

    from_pixels = generate(client, image=ImagePixels(pixels)).wait(JOB_TIMEOUT)

    np.testing.assert_array_equal(from_pixels.result.mesh.faces, core_mesh().faces)


@pytest.mark.parametrize(
    ("image", "options", "kind", "advice"),
    [
        ("not-an-image.png", {}, "InvalidImageError", "not an image"),
        # A file that cannot be read is explained before the recent images' cache reads it.
        ("a-folder.png", {}, "InvalidImageError", "a-folder.png could not be opened: Is a directory"),
        (IMAGE.name, {"threshold": 100.0}, "NoSurfaceError", "Lower the threshold"),
    ],
)
def test_a_failing_job_is_explained_and_the_worker_serves_on(client, tmp_path, image, options, kind, advice):
    (tmp_path / "not-an-image.png").write_text("plain text")
    (tmp_path / "a-folder.png").mkdir()
    path = IMAGE if image == IMAGE.name else tmp_path / image
    generate(client).wait(JOB_TIMEOUT)
    pid = client.pid

    outcome = generate(client, image=ImageFile(str(path)), **options).wait(JOB_TIMEOUT)

    assert outcome.event == "error" and outcome.kind == kind
    assert advice in outcome.message
    assert client.pid == pid and generate(client).wait(JOB_TIMEOUT).event == "result"


def test_a_model_that_cannot_be_loaded_offline_is_explained(own_client, tmp_path):
    def load_offline(source: str) -> dict:
        settings = ModelSettings(source, device="cpu", cache_dir=str(tmp_path), offline=True)
        return own_client.load(settings).wait(JOB_TIMEOUT)

    missing_folder = load_offline(str(tmp_path / "no-model"))
    not_downloaded = load_offline("someone/not-downloaded-yet")

    assert missing_folder.kind == not_downloaded.kind == "ModelLoadError"
    assert "neither a model folder nor a Hugging Face repository id" in missing_folder.message
    assert "Allow Online Access" in not_downloaded.message


def test_a_cancelled_job_stops_at_its_next_step_and_the_worker_serves_on(own_client):
    own_client.cancel_grace = JOB_TIMEOUT  # a busy test machine must not pass for a stuck worker
    job = started_job(own_client)
    pid = own_client.pid

    own_client.cancel(job)

    assert job.wait(JOB_TIMEOUT).event == "cancelled"
    assert own_client.pid == pid, "a worker that stops by itself is kept"
    assert generate(own_client).wait(JOB_TIMEOUT).event == "result"


class CancellingEvents:
    """The worker's event stream as Blender reads it, cancelling the job once ``stage`` is under way."""

    def __init__(self, stage: str):
        self.stage = stage
        self.received: list[dict] = []
        self.worker: Worker | None = None

    def write(self, line: str) -> None:
        event = protocol.decode(line)
        self.received.append(event)
        if event.get("stage") == self.stage and event["fraction"] > 0:
            self.worker.cancelled.add(event["id"])

    def flush(self) -> None:
        pass


def test_a_cancel_during_encoding_stops_the_encoder_between_layers(tmp_path):
    """Encoding takes half a minute on a CPU with the real model: a cancel must not wait for its end."""
    events = CancellingEvents(ENCODE_STAGE)
    events.worker = Worker(io.StringIO(), events, tmp_path)
    command = {"cmd": "generate", "id": 1, "model": asdict(MODEL), "image": {"path": str(IMAGE)}}

    events.worker.run_job({**command, "options": OPTIONS})

    progress = [event for event in events.received if event["event"] == "progress"]
    assert [event for event in events.received if event.get("id") == 1][-1] == {"event": "cancelled", "id": 1}
    assert progress[-1]["stage"] == ENCODE_STAGE and progress[-1]["fraction"] < 1.0


@pytest.mark.skipif(not hasattr(signal, "SIGSTOP"), reason="needs POSIX signals to freeze the worker")
def test_a_worker_that_ignores_a_cancel_is_killed_and_queued_jobs_run_on_a_new_one(own_client):
    job = started_job(own_client)
    queued = generate(own_client)
    frozen = own_client.pid
    os.kill(frozen, signal.SIGSTOP)  # as stuck as a worker can be

    own_client.cancel(job)

    assert job.wait(JOB_TIMEOUT).event == "cancelled"
    assert queued.wait(JOB_TIMEOUT).event == "result"
    assert own_client.pid != frozen and not process_exists(frozen)


def test_a_worker_killed_mid_job_fails_the_job_clearly_and_the_next_job_starts_a_new_worker(own_client):
    job = started_job(own_client)
    killed = own_client.pid

    os.kill(killed, signal.SIGKILL)
    outcome = job.wait(JOB_TIMEOUT)

    assert outcome.event == "error" and outcome.kind == "WorkerDied"
    assert "worker process was killed" in outcome.message
    assert "Generate again" in outcome.message
    assert not own_client.running and own_client.model_state == ModelState()
    assert generate(own_client).wait(JOB_TIMEOUT).event == "result"
    assert own_client.pid != killed


def test_unload_ends_the_worker_and_cancels_its_job(own_client):
    job = started_job(own_client)
    pid = own_client.pid

    own_client.stop()

    assert job.wait(JOB_TIMEOUT).event == "cancelled"
    assert not own_client.running and not process_exists(pid)
    assert own_client.model_state == ModelState()


def test_a_worker_that_cannot_start_is_explained_and_leaves_no_job_behind(tmp_path):
    client = WorkerClient(python=str(tmp_path / "no-python"))

    with pytest.raises(WorkerStartError, match="Could not start the TripoSR worker process"):
        generate(client)

    assert not client.busy and not client.running


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 23.65 GiB total capacity)"),
        RuntimeError(
            "[enforce fail at alloc_cpu.cpp:121] data. DefaultCPUAllocator: not enough memory: you tried to "
            "allocate 12582912000000 bytes."
        ),
        RuntimeError("MPS backend out of memory (MPS allocated: 17.00 GB, other allocations: 1.00 GB)"),
        RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"),
        RuntimeError("std::bad_alloc"),
        OSError(errno.ENOMEM, "Cannot allocate memory"),
        MemoryError(),
    ],
)
def test_every_wording_of_running_out_of_memory_is_recognised(error):
    kind, message = pipeline.describe_failure(error, "cuda")
    assert kind == "OutOfMemory" and "Lower the mesh resolution" in message


def test_dependencies_in_a_folder_named_with_spaces_and_accents_reach_the_worker(tmp_path):
    """C:\\Users\\José Núñez\\...: the worker's PYTHONPATH carries the name as it is."""
    deps = tmp_path / "José Núñez" / "TripoSR deps"
    deps.mkdir(parents=True)
    (deps / "sitecustomize.py").write_text("import sys\nsys.stderr.write('loaded from José Núñez\\n')\n")
    client = WorkerClient(pythonpath=(str(deps),))
    try:
        outcome = generate(client).wait(JOB_TIMEOUT)
        log = next(client._folder.glob("worker-*.log")).read_text(encoding="utf-8")
    finally:
        client.stop()

    assert outcome.event == "result"
    assert "loaded from José Núñez" in log


@pytest.mark.skipif(
    not Path("/proc/self/environ").is_file(), reason="reads the worker's environment in /proc"
)
def test_a_job_needing_another_environment_waits_for_the_busy_worker_then_gets_a_worker_of_its_own():
    """Turning online access off while a job runs: the next job must run offline, not in the old worker."""
    client = WorkerClient()
    try:
        first = generate(client)
        busy = client.pid
        os.kill(busy, signal.SIGSTOP)  # the first job cannot end before the second is queued
        second = generate(client, model=replace(MODEL, offline=True))
        os.kill(busy, signal.SIGCONT)

        assert first.wait(JOB_TIMEOUT).event == "result" and second.wait(JOB_TIMEOUT).event == "result"
        assert client.pid != busy
        assert b"HF_HUB_OFFLINE=1" in Path(f"/proc/{client.pid}/environ").read_bytes().split(b"\0")
    finally:
        client.stop()


def test_a_deferred_job_cancelled_before_it_was_sent_ends_at_once():
    client = WorkerClient()
    try:
        first = generate(client)
        os.kill(client.pid, signal.SIGSTOP)
        second = generate(client, model=replace(MODEL, offline=True))

        client.cancel(second)

        assert second.wait(1.0).event == "cancelled"
        os.kill(client.pid, signal.SIGCONT)
        assert first.wait(JOB_TIMEOUT).event == "result"
    finally:
        client.stop()


# --- Nothing hangs: noise, a broken connection, a silent worker, and what a killed client leaves -------


def test_a_library_printing_on_the_workers_stdout_does_not_disturb_the_jobs(tmp_path):
    """A sitecustomize.py (or a dependency) may print at import, before the worker can claim stdout."""
    (tmp_path / "sitecustomize.py").write_text('print("hello from sitecustomize")\nprint("{\\"not\\": 1}")\n')
    client = WorkerClient(pythonpath=(str(tmp_path),))
    try:
        outcome = generate(client).wait(JOB_TIMEOUT)
        log = next(client._folder.glob("worker-*.log")).read_text()
    finally:
        client.stop()

    assert outcome.event == "result"
    assert "[not a protocol message on stdout] hello from sitecustomize" in log


def test_any_failure_reading_the_worker_fails_its_job_with_one_message_and_the_next_job_works(
    own_client, monkeypatch
):
    def damaged(value):
        if isinstance(value, dict) and "mesh" in value:
            raise OSError("the arrays' file is gone")
        return loaded(value)

    loaded = protocol._load_arrays
    monkeypatch.setattr(protocol, "_load_arrays", damaged)
    outcome = generate(own_client).wait(JOB_TIMEOUT)
    monkeypatch.setattr(protocol, "_load_arrays", loaded)

    assert outcome.event == "error" and outcome.kind == "WorkerDied"
    assert outcome.message.startswith("The connection to the TripoSR worker broke (OSError: the arrays' file")
    assert not own_client.running
    own_client.stop()  # Unload
    assert generate(own_client).wait(JOB_TIMEOUT).event == "result"


@pytest.mark.skipif(not hasattr(signal, "SIGSTOP"), reason="needs POSIX signals to freeze the worker")
def test_a_worker_that_stops_answering_is_stopped_and_its_job_fails(tmp_path):
    client = WorkerClient(stall_timeout=2.0)
    try:
        job = started_job(client)
        frozen = client.pid
        os.kill(frozen, signal.SIGSTOP)

        outcome = job.wait(JOB_TIMEOUT)

        assert outcome.event == "error" and "gave no sign of life" in outcome.message
        # The job fails only once the killed worker has been reaped and forgotten.
        assert not client.running and not process_exists(frozen)
        client.stall_timeout = JOB_TIMEOUT
        assert generate(client).wait(JOB_TIMEOUT).event == "result"
    finally:
        client.stop()


def test_the_folder_of_a_killed_client_is_removed_by_the_next_one():
    code = (
        "import os, signal\n"
        "from triposr_blender.worker.client import WorkerClient\n"
        "from triposr_blender.backends.types import ModelSettings, ModelState\n"
        "client = WorkerClient()\n"
        "client.load(ModelSettings('no-such-model'))\n"
        "print(client._folder, flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    killed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=JOB_TIMEOUT)
    left_behind = Path(killed.stdout.strip())
    assert left_behind.is_dir()

    client = WorkerClient()
    try:
        generate(client).wait(JOB_TIMEOUT)
    finally:
        client.stop()
    assert not left_behind.exists()


def test_offline_a_photo_needing_a_background_model_not_downloaded_yet_is_explained(client, tmp_path):
    offline = replace(MODEL, offline=True, rembg_home=str(tmp_path / "rembg"))
    photo = ImageFile(str(Path(__file__).resolve().parent.parent / "examples" / "teapot.png"))

    outcome = generate(client, image=photo, model=offline, remove_background=True).wait(JOB_TIMEOUT)

    assert outcome.event == "error" and outcome.kind == "ModelLoadError"
    assert "online access is off" in outcome.message and str(tmp_path / "rembg") in outcome.message


# --- Iterate in seconds: the scene codes kept and re-meshed -------------------------------------------------


def test_a_second_generate_changing_only_mesh_options_reuses_the_encoded_image(client):
    generate(client).wait(JOB_TIMEOUT)

    events = events_until_done(generate(client, threshold=NEW_THRESHOLD))

    assert "Reusing the encoded image" in stages(events) and ENCODE_STAGE not in stages(events)
    np.testing.assert_array_equal(events[-1].result.mesh.faces, core_mesh_at(NEW_THRESHOLD).faces)


def test_a_result_keeps_its_scene_codes_and_remesh_makes_a_new_mesh_from_them_without_the_image(client):
    made = generate(client).wait(JOB_TIMEOUT).result
    codes = SceneCodes.from_bytes(made.codes)
    assert np.array_equal(codes.array, core_scene().numpy()) and codes.model_name == str(FIXTURE)

    outcome = client.remesh(
        made.codes, MeshOptions(resolution=OPTIONS["resolution"], threshold=NEW_THRESHOLD), MODEL
    )
    events = outcome.wait(JOB_TIMEOUT)

    expected = core_mesh_at(NEW_THRESHOLD)
    np.testing.assert_array_equal(events.result.mesh.vertices, expected.vertices)
    np.testing.assert_array_equal(events.result.mesh.faces, expected.faces)
    assert events.result.codes == b"", "the caller keeps the codes it sent"


def test_the_photo_a_generation_framed_comes_back_and_remesh_projects_it_again(client, tmp_path):
    """Photo Texture across the process boundary: Generate hands back the photo it framed (an image with
    transparency), and Re-mesh given it, or codes saved with it, fits the camera to it again; without it,
    the result says why not."""
    mesh_options = MeshOptions(
        resolution=OPTIONS["resolution"], threshold=OPTIONS["threshold"], texture_size=512
    )

    made = generate(client, ImageFile(str(cut_out(tmp_path))), texture_size=512).wait(JOB_TIMEOUT).result
    given = client.remesh(made.codes, mesh_options, MODEL, made.photo).wait(JOB_TIMEOUT).result
    saved = with_photo(made.codes, made.photo)
    kept_in_codes = client.remesh(saved, mesh_options, MODEL).wait(JOB_TIMEOUT).result
    without = client.remesh(made.codes, mesh_options, MODEL).wait(JOB_TIMEOUT).result

    assert made.photo.pixels.shape == (80, 80, 4) and made.photo.offset == made.photo.frame[3:]
    assert pipeline.PHOTO_NOT_KEPT not in given.notes and kept_in_codes.notes == given.notes
    assert without.notes == (pipeline.PHOTO_NOT_KEPT,)


def test_scene_codes_of_another_model_are_refused_by_remesh(client):
    made = generate(client).wait(JOB_TIMEOUT).result
    foreign = SceneCodes(
        SceneCodes.from_bytes(made.codes).array, "0123456789abcdef", "/models/other"
    ).to_bytes()

    outcome = client.remesh(foreign, MeshOptions(resolution=OPTIONS["resolution"]), MODEL).wait(JOB_TIMEOUT)

    assert outcome.event == "error" and outcome.kind == "SceneCodesError"
    assert "made with another model (/models/other)" in outcome.message
