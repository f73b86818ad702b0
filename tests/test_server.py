"""The TripoSR server (python -m triposr_blender.server), as clients use it: a real server process on loopback
(127.0.0.1 only) with the tiny fixture model, spoken to over HTTP."""

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import requests
from fixture_model import FIXTURE, NEW_THRESHOLD, OPTIONS, core_mesh, core_mesh_at, core_scene
from server_harness import JOB_TIMEOUT, REPO, Server

from triposr_blender.core.export import glb_bytes
from triposr_blender.core.scene_codes import SceneCodes
from triposr_blender.server.jobs import CANCELLED, DONE, JobTable


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = Server(tmp_path_factory.mktemp("server"), "--max-upload-mb", "1")
    yield server
    server.stop()


@pytest.fixture
def own_server(tmp_path):
    """A server of its own, for a test that freezes or kills its worker; its queue holds one job."""
    server = Server(tmp_path, "--max-queue", "1")
    yield server
    server.stop()


needs_proc = pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="finds the worker through /proc")


# --- The API ------------------------------------------------------------------------------------------------


def test_health_needs_no_token_and_names_the_model_devices_and_queue(server):
    health = requests.get(f"{server.url}/v1/health", timeout=10).json()
    assert health["status"] == "ok" and health["model"] == str(FIXTURE)
    assert health["devices"] == ["cpu"] and health["queue"] == 0


def test_a_job_goes_from_upload_to_a_glb_and_an_npz_of_the_cores_mesh(server):
    submitted = server.submit()
    assert submitted.status_code == 202
    job_id = submitted.json()["id"]

    assert server.wait(job_id) == {
        "state": "done",
        "stage": "Done",
        "progress": 1.0,
        "position": 0,
        "error": None,
    }
    npz = np.load(io.BytesIO(server.request("GET", f"/v1/jobs/{job_id}/result.npz").content))
    glb = server.request("GET", f"/v1/jobs/{job_id}/result.glb")

    expected = core_mesh()
    np.testing.assert_array_equal(npz["vertices"], expected.vertices)
    np.testing.assert_array_equal(npz["faces"], expected.faces)
    np.testing.assert_array_equal(npz["vertex_colors"], expected.vertex_colors)
    np.testing.assert_array_equal(npz["scene_codes"], core_scene().numpy())
    assert glb.headers["content-type"] == "model/gltf-binary" and glb.content == glb_bytes(expected, size=2.0)


def test_saved_scene_codes_are_remeshed_without_the_image(server):
    done = server.submit()
    job_id = done.json()["id"]
    server.wait(job_id)
    codes = SceneCodes.from_bytes(server.request("GET", f"/v1/jobs/{job_id}/result.npz").content).to_bytes()

    remesh = server.request(
        "POST",
        "/v1/jobs",
        data={"resolution": str(OPTIONS["resolution"]), "threshold": str(NEW_THRESHOLD)},
        files={"codes": ("chair.triposr.npz", codes)},
    )
    server.wait(remesh.json()["id"])

    npz = np.load(io.BytesIO(server.request("GET", f"/v1/jobs/{remesh.json()['id']}/result.npz").content))
    np.testing.assert_array_equal(npz["faces"], core_mesh_at(NEW_THRESHOLD).faces)


def test_progress_is_streamed_as_server_sent_events_until_the_job_ends(server):
    job_id = server.submit().json()["id"]

    with server.request("GET", f"/v1/jobs/{job_id}/events", stream=True) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        events = [
            json.loads(line[6:])
            for line in stream.iter_lines(decode_unicode=True)
            if line.startswith("data: ")
        ]

    assert events[-1]["state"] == "done"
    assert any(event["state"] == "running" and event["stage"] not in ("Starting", "Done") for event in events)


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong-token-of-enough-length"}])
def test_every_request_but_health_needs_the_token(server, headers):
    job_id = server.submit().json()["id"]
    for method, path in [
        ("POST", "/v1/jobs"),
        ("GET", f"/v1/jobs/{job_id}"),
        ("GET", f"/v1/jobs/{job_id}/result.glb"),
    ]:
        refused = server.request(method, path, headers=headers)
        assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"


def test_an_unknown_job_is_404(server):
    assert server.request("GET", "/v1/jobs/not-a-job").status_code == 404


def test_an_upload_over_the_limit_is_413(server):
    assert server.submit(image=bytes(2 << 20)).status_code == 413


@pytest.mark.parametrize(
    ("image", "fields", "message"),
    [
        (b"plain text, not an image", {}, "not an image"),
        (None, {"threshold": "nan"}, "threshold must be a finite number"),
        (None, {"resolution": "16"}, "resolution must be from 32 to 1024"),
    ],
)
def test_an_image_or_options_that_cannot_be_used_are_400_with_a_message(server, image, fields, message):
    refused = server.submit(image=image, **fields)
    assert refused.status_code == 400 and message in refused.json()["detail"]


def test_an_unknown_form_field_is_refused_rather_than_ignored(server):
    assert server.submit(resolutoin="64").status_code == 422


def test_twenty_clients_at_once_are_all_served(server):
    outcomes = [None] * 20

    def client(index):
        job_id = server.submit().json()["id"]
        server.wait(job_id)
        outcomes[index] = np.load(io.BytesIO(server.request("GET", f"/v1/jobs/{job_id}/result.npz").content))[
            "faces"
        ]

    threads = [threading.Thread(target=client, args=(index,)) for index in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=JOB_TIMEOUT)

    assert all(faces is not None and np.array_equal(faces, core_mesh().faces) for faces in outcomes)


# --- When things go wrong ----------------------------------------------------------------------------------


@needs_proc
def test_a_full_queue_is_503_with_retry_after_and_a_cancel_ends_a_running_job(own_server):
    worker = own_server.worker_pid()
    os.kill(worker, signal.SIGSTOP)  # the first job runs, and stays running
    running = own_server.submit().json()["id"]
    own_server.wait(running, until=("running",))
    queued = own_server.submit().json()["id"]

    full = own_server.submit()
    assert full.status_code == 503 and int(full.headers["retry-after"]) > 0
    assert own_server.request("GET", f"/v1/jobs/{queued}").json()["position"] == 0

    cancelled = own_server.request("DELETE", f"/v1/jobs/{running}")
    assert cancelled.status_code == 200
    assert own_server.wait(running)["state"] == "cancelled"
    assert own_server.wait(queued)["state"] == "done", "the worker stuck on the cancelled job was replaced"


@needs_proc
def test_a_killed_worker_fails_its_job_and_the_next_job_succeeds(own_server):
    worker = own_server.worker_pid()
    os.kill(worker, signal.SIGSTOP)
    job_id = own_server.submit().json()["id"]
    own_server.wait(job_id, until=("running",))

    os.kill(worker, signal.SIGKILL)

    failed = own_server.wait(job_id)
    assert failed["state"] == "failed" and "worker process was killed" in failed["error"]
    assert own_server.wait(own_server.submit().json()["id"])["state"] == "done"


@needs_proc
def test_sigterm_ends_the_server_cleanly_with_its_jobs_and_worker(own_server):
    worker = own_server.worker_pid()
    os.kill(worker, signal.SIGSTOP)
    own_server.submit()

    own_server.process.send_signal(signal.SIGTERM)

    assert own_server.process.wait(timeout=30) in (0, -signal.SIGTERM)
    time.sleep(0.5)
    assert not Path(f"/proc/{worker}").exists() or "Z" in Path(f"/proc/{worker}/stat").read_text().split()[2]


# --- Starting it -------------------------------------------------------------------------------------------


def test_a_server_beyond_loopback_refuses_to_start_without_a_token():
    """It refuses before it listens: nothing is ever bound to 0.0.0.0 here."""
    started = subprocess.run(
        [sys.executable, "-m", "triposr_blender.server", "--model", str(FIXTURE), "--host", "0.0.0.0"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert started.returncode == 2
    assert "Refusing to listen on 0.0.0.0 without a token" in started.stderr


def test_a_server_on_loopback_without_a_token_asks_for_none(tmp_path):
    server = Server(tmp_path, token="")
    try:
        assert server.submit().status_code == 202
    finally:
        server.stop()


# --- Results expire --------------------------------------------------------------------------------------


def test_finished_jobs_are_forgotten_after_their_time_and_queued_ones_are_cancelled_at_close():
    table = JobTable(max_queue=4, result_ttl=60.0)
    done, queued = table.submit({"cmd": "generate"}), table.submit({"cmd": "generate"})
    table.finish(table.take(timeout=0), DONE)

    table.expire(now=time.monotonic() + 61)
    table.close()

    assert table.get(done.id) is None and table.get(queued.id).state == CANCELLED


def test_job_ids_cannot_be_guessed():
    table = JobTable(max_queue=100, result_ttl=60.0)
    ids = [table.submit({"cmd": "generate"}).id for _ in range(100)]
    assert len(set(ids)) == 100 and all(len(job_id) >= 24 for job_id in ids)
