"""The worker process and its client (jobs.py), as Blender uses them, without bpy: a real worker process
running the real core on the tiny random-weight fixture model."""

import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from triposr_blender.jobs import ModelSettings, WorkerClient, WorkerStartError

FIXTURE = Path(__file__).parent / "fixtures" / "triposr-tiny-a"
EXPECTED = np.load(FIXTURE / "expected.npz")
MODEL = ModelSettings(str(FIXTURE), device="cpu")
# The fixture's random field has a surface at this density on its resolution-48 grid (see its README).
FIXTURE_OPTIONS = {
    "remove_background": False,
    "foreground_ratio": 0.85,
    "resolution": 48,
    "threshold": 0.41453200578689575,
}
# Large enough that the density grid takes many progress steps, so there is time to interrupt it.
SLOW_OPTIONS = {"resolution": 160}
JOB_TIMEOUT = 120


def generate(client: WorkerClient, image=None, **options):
    image = image or {"path": str(FIXTURE / "input.png")}
    return client.submit("generate", MODEL, image=image, options={**FIXTURE_OPTIONS, **options})


def events_until_done(job) -> list[dict]:
    events = []
    while not events or events[-1]["event"] not in ("result", "error", "cancelled"):
        events.append(job.events.get(timeout=JOB_TIMEOUT))
    return events


def wait_for_stage(job, stage: str) -> None:
    deadline = time.monotonic() + JOB_TIMEOUT
    while job.stage != stage:
        assert job.poll() is None, f"the job ended before reaching {stage!r}: {job.outcome}"
        assert time.monotonic() < deadline, f"no {stage!r} progress within {JOB_TIMEOUT} s"
        time.sleep(0.02)


def process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture(scope="module")
def client():
    """One worker shared by the tests that leave it running (a start costs a torch import).

    Its long cancel grace lets a busy test machine never mistake a slow stop for a stuck worker."""
    client = WorkerClient(cancel_grace=JOB_TIMEOUT)
    yield client
    client.stop()


@pytest.fixture
def own_client():
    """A worker for a test that kills or stops it."""
    client = WorkerClient()
    yield client
    client.stop()


def test_a_job_reports_progress_then_returns_the_core_mesh(own_client):
    events = events_until_done(generate(own_client))

    *progress, result = events
    assert {event["event"] for event in progress} == {"progress"}
    stages = [event["stage"] for event in progress]
    assert "Loading model" in stages and "Computing density grid" in stages
    assert all(0.0 <= event["fraction"] <= 1.0 for event in progress)
    mesh = result["mesh"]
    assert mesh["vertices"].shape == EXPECTED["mesh_vertices"].shape
    assert mesh["faces"].shape == EXPECTED["mesh_faces"].shape
    assert mesh["vertex_colors"].dtype == np.float32 and mesh["faces"].dtype == np.int64


def test_the_model_stays_loaded_in_the_same_worker_between_jobs(client):
    generate(client).wait(JOB_TIMEOUT)
    pid = client.pid

    events = events_until_done(generate(client))

    assert client.pid == pid
    assert "Loading model" not in [event.get("stage") for event in events]
    assert client.model_state["loaded"] and client.model_state["device"] == "cpu"
    assert client.model_state["memory_bytes"] > 0


def test_an_image_can_be_sent_as_pixels(client):
    pixels = np.asarray(Image.open(FIXTURE / "input.png").convert("RGB"), dtype=np.float32) / 255

    from_pixels = generate(client, image={"pixels": pixels}).wait(JOB_TIMEOUT)
    from_file = generate(client).wait(JOB_TIMEOUT)

    np.testing.assert_array_equal(from_pixels["mesh"]["faces"], from_file["mesh"]["faces"])
    np.testing.assert_allclose(from_pixels["mesh"]["vertices"], from_file["mesh"]["vertices"], atol=1e-6)


@pytest.mark.parametrize(
    ("image", "options", "kind", "advice"),
    [
        ("not-an-image.png", {}, "InvalidImageError", "not an image"),
        ("input.png", {"threshold": 100.0}, "NoSurfaceError", "Lower the threshold"),
    ],
)
def test_a_failing_job_gives_the_core_message_and_the_worker_serves_on(
    client, tmp_path, image, options, kind, advice
):
    (tmp_path / "not-an-image.png").write_text("plain text")
    path = tmp_path / image if image != "input.png" else FIXTURE / image
    generate(client).wait(JOB_TIMEOUT)
    pid = client.pid

    outcome = generate(client, image={"path": str(path)}, **options).wait(JOB_TIMEOUT)

    assert outcome["event"] == "error" and outcome["kind"] == kind
    assert advice in outcome["message"]
    assert client.pid == pid and generate(client).wait(JOB_TIMEOUT)["event"] == "result"


def test_a_model_that_cannot_be_loaded_offline_is_explained(own_client, tmp_path):
    def load_offline(source: str) -> dict:
        settings = ModelSettings(source, device="cpu", cache_dir=str(tmp_path), offline=True)
        return own_client.submit("load", settings).wait(JOB_TIMEOUT)

    missing_folder = load_offline(str(tmp_path / "no-model"))
    not_downloaded = load_offline("someone/not-downloaded-yet")

    assert missing_folder["kind"] == not_downloaded["kind"] == "ModelLoadError"
    assert "neither a model folder nor a Hugging Face repository id" in missing_folder["message"]
    assert "Allow Online Access" in not_downloaded["message"]


def test_a_cancelled_job_stops_at_the_next_step_and_the_worker_serves_on(client):
    generate(client).wait(JOB_TIMEOUT)
    pid = client.pid
    job = generate(client, **SLOW_OPTIONS)
    wait_for_stage(job, "Computing density grid")

    client.cancel(job)

    assert job.wait(JOB_TIMEOUT)["event"] == "cancelled"
    assert client.pid == pid, "a worker that stops by itself is kept"
    assert generate(client).wait(JOB_TIMEOUT)["event"] == "result"


@pytest.mark.skipif(not hasattr(signal, "SIGSTOP"), reason="needs POSIX signals to freeze the worker")
def test_a_worker_that_ignores_a_cancel_is_killed_and_queued_jobs_run_on_a_new_one(own_client):
    job = generate(own_client, **SLOW_OPTIONS)
    queued = generate(own_client)
    wait_for_stage(job, "Computing density grid")
    frozen = own_client.pid
    os.kill(frozen, signal.SIGSTOP)  # a worker stuck in a long step that never reports progress

    own_client.cancel(job)

    assert job.wait(JOB_TIMEOUT)["event"] == "cancelled"
    assert queued.wait(JOB_TIMEOUT)["event"] == "result"
    assert own_client.pid != frozen and not process_exists(frozen)


def test_a_worker_killed_mid_job_fails_the_job_clearly_and_the_next_job_starts_a_new_worker(own_client):
    job = generate(own_client, **SLOW_OPTIONS)
    wait_for_stage(job, "Computing density grid")
    killed = own_client.pid

    os.kill(killed, signal.SIGKILL)
    outcome = job.wait(JOB_TIMEOUT)

    assert outcome["event"] == "error" and outcome["kind"] == "WorkerDied"
    assert "worker process was killed" in outcome["message"]
    assert "Generate again" in outcome["message"]
    assert not own_client.running and own_client.model_state == {"loaded": False}
    assert generate(own_client).wait(JOB_TIMEOUT)["event"] == "result"
    assert own_client.pid != killed


def test_unload_ends_the_worker_and_cancels_its_job(own_client):
    job = generate(own_client, **SLOW_OPTIONS)
    wait_for_stage(job, "Computing density grid")
    pid = own_client.pid

    own_client.stop()

    assert job.wait(JOB_TIMEOUT)["event"] == "cancelled"
    assert not own_client.running and not process_exists(pid)
    assert own_client.model_state == {"loaded": False}


def test_a_worker_that_cannot_start_is_explained_and_leaves_no_job_behind(tmp_path):
    client = WorkerClient(python=str(tmp_path / "no-python"))

    with pytest.raises(WorkerStartError, match="Could not start the TripoSR worker process"):
        generate(client)

    assert not client.busy and not client.running
