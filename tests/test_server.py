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
from codes_files import codes_archive, npy, one_value_of_640_mb, with_photo_entries
from fixture_model import FIXTURE, IMAGE, NEW_THRESHOLD, OPTIONS, core_mesh, core_mesh_at, core_scene
from listeners import descendants, exposed, listening_addresses
from server_harness import (
    DONE_EVENT,
    JOB_TIMEOUT,
    REPO,
    TOKEN,
    Server,
    serving_result,
    stand_in_server,
    wait_for,
    write_token,
)

from triposr_blender.backends.backend import GENERATE
from triposr_blender.backends.remote import RemoteClient
from triposr_blender.backends.types import ModelSettings
from triposr_blender.core import result_archive
from triposr_blender.core.export import glb_bytes
from triposr_blender.core.scene_codes import SceneCodes
from triposr_blender.options import GenerateOptions, MeshOptions
from triposr_blender.server.app import STOPPING
from triposr_blender.server.guard import MAX_HEADER_BYTES
from triposr_blender.server.jobs import CANCELLED, DONE, FAILED, JobRequest, JobTable
from triposr_blender.worker.pipeline import PHOTO_SQUASHED

IDLE_TIMEOUT = 1.0  # the test servers drop a stalled client after this many seconds


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    server = Server(
        tmp_path_factory.mktemp("server"), "--max-upload-mb", "1", "--idle-timeout", str(IDLE_TIMEOUT)
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def open_server(tmp_path_factory):
    """A server without a token: this machine's own requests only."""
    server = Server(tmp_path_factory.mktemp("open"), "--idle-timeout", str(IDLE_TIMEOUT), token="")
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


def test_health_needs_no_token_and_names_the_model_devices_and_queue_but_no_server_path(server):
    health = requests.get(f"{server.url}/v1/health", timeout=10).json()
    assert health["status"] == "ok" and health["model"] == FIXTURE.name
    assert health["devices"] == ["cpu"] and health["queue"] == 0
    assert str(FIXTURE.parent) not in json.dumps(health)


def test_a_job_goes_from_upload_to_a_glb_and_an_npz_of_the_cores_mesh(server):
    submitted = server.submit()
    assert submitted.status_code == 202
    job_id = submitted.json()["id"]

    assert server.wait(job_id) == {
        "state": "done",
        "stage": "Done",
        "progress": 1.0,
        "position": None,
        "error": None,
        # the fixture image has no alpha and goes without background removal: nothing for Photo Texture
        "notes": [PHOTO_SQUASHED],
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


@needs_proc
def test_progress_is_streamed_as_server_sent_events_until_the_job_ends(own_server):
    worker = own_server.worker_pid()
    os.kill(worker, signal.SIGSTOP)  # the job cannot end before the stream is open
    job_id = own_server.submit().json()["id"]

    with own_server.request("GET", f"/v1/jobs/{job_id}/events", stream=True) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        os.kill(worker, signal.SIGCONT)
        events = [
            json.loads(line[6:])
            for line in stream.iter_lines(decode_unicode=True)
            if line.startswith("data: ")
        ]

    assert events[-1]["state"] == "done"
    assert any(event["state"] == "running" and event["stage"] not in ("Starting", "Done") for event in events)


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong-token-of-enough-length"}])
def test_every_request_but_health_needs_the_token_the_docs_and_schema_too(server, headers):
    job_id = server.submit().json()["id"]
    for method, path in [
        ("POST", "/v1/jobs"),
        ("GET", f"/v1/jobs/{job_id}"),
        ("GET", f"/v1/jobs/{job_id}/result.glb"),
        ("POST", f"/v1/jobs/{job_id}/cancel"),
        ("DELETE", f"/v1/jobs/{job_id}"),
        ("GET", "/docs"),
        ("GET", "/redoc"),
        ("GET", "/openapi.json"),
    ]:
        refused = server.request(method, path, headers=headers)
        assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer", path
    assert server.request("GET", "/openapi.json").status_code == 200


def test_an_unknown_job_is_404(server):
    assert server.request("GET", "/v1/jobs/not-a-job").status_code == 404


def test_an_upload_over_the_limit_is_413(server):
    assert server.submit(image=bytes(2 << 20)).status_code == 413


def test_a_chunked_upload_over_the_limit_is_413_too(server):
    body = (
        b'--x\r\nContent-Disposition: form-data; name="image"; filename="big.png"\r\n\r\n'
        + bytes(1 << 20)
        + b"\r\n--x--\r\n"
    )
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:65536], body[65536:]))
    answer = server.exchange(
        b"POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
        b"Content-Type: multipart/form-data; boundary=x\r\n"
        + f"Authorization: Bearer {TOKEN}\r\n\r\n".encode()
        + chunks
        + b"0\r\n\r\n"
    )
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]


@pytest.mark.parametrize(
    ("image", "fields", "status", "message"),
    [
        (b"plain text, not an image", {}, 400, "not an image"),
        (None, {"threshold": "nan"}, 422, "threshold: "),
        (None, {"resolution": "16"}, 422, "resolution: Input should be greater than or equal to 32"),
        (None, {"target_faces": "2"}, 422, "target_faces must be 0 (off) or at least 4"),
    ],
)
def test_an_image_that_cannot_be_used_is_400_and_an_option_out_of_range_422_in_one_shape(
    server, image, fields, status, message
):
    refused = server.submit(image=image, **fields)
    assert refused.status_code == status and message in refused.json()["detail"]
    assert isinstance(refused.json()["detail"], str)


def test_an_unknown_form_field_is_refused_rather_than_ignored(server):
    assert server.submit(resolutoin="64").status_code == 422


def test_quad_remesh_is_refused_as_blenders_own_step(server):
    refused = server.submit(quad_remesh="1000")
    assert refused.status_code == 422 and "Quad Remesh is Blender's QuadriFlow" in refused.json()["detail"]


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


# --- HTTP as clients expect it ------------------------------------------------------------------------------


def test_a_created_job_is_202_with_its_location(server):
    created = server.submit()
    assert created.status_code == 202
    assert created.headers["location"] == f"/v1/jobs/{created.json()['id']}"
    assert server.request("GET", created.headers["location"]).status_code == 200


def test_delete_deletes_a_finished_job_with_its_results(server):
    job_id = server.submit().json()["id"]
    server.wait(job_id)
    server.request("GET", f"/v1/jobs/{job_id}/result.glb")

    assert server.request("DELETE", f"/v1/jobs/{job_id}").status_code == 204
    assert server.request("GET", f"/v1/jobs/{job_id}/result.glb").status_code == 404
    assert server.request("DELETE", f"/v1/jobs/{job_id}").status_code == 404


def test_results_answer_head_with_their_size_and_no_body(server):
    job_id = server.submit().json()["id"]
    server.wait(job_id)
    for name, media_type in (("result.glb", "model/gltf-binary"), ("result.npz", "application/octet-stream")):
        full = server.request("GET", f"/v1/jobs/{job_id}/{name}")
        head = server.request("HEAD", f"/v1/jobs/{job_id}/{name}")
        assert head.status_code == 200 and head.content == b""
        assert head.headers["content-type"] == media_type
        assert head.headers["content-length"] == str(len(full.content))


def test_options_lists_every_method_of_a_path(server):
    job_id = server.submit().json()["id"]
    allowed = server.request("OPTIONS", f"/v1/jobs/{job_id}")
    assert allowed.status_code == 204 and allowed.headers["allow"] == "DELETE, GET, OPTIONS"


def test_a_body_that_is_not_multipart_is_415(server):
    refused = server.request("POST", "/v1/jobs", json={"image": "chair.png"})
    assert refused.status_code == 415 and "multipart/form-data" in refused.json()["detail"]


def test_an_image_and_codes_together_are_refused_rather_than_one_ignored(server):
    refused = server.request(
        "POST", "/v1/jobs", files={"image": ("a.png", IMAGE.read_bytes()), "codes": ("c.npz", b"codes")}
    )
    assert refused.status_code == 422 and "not both" in refused.json()["detail"]


@needs_proc
def test_events_carry_ids_and_rising_progress_and_resume_after_the_last_event_id(own_server):
    worker = own_server.worker_pid()
    os.kill(worker, signal.SIGSTOP)
    job_id = own_server.submit().json()["id"]
    with own_server.request("GET", f"/v1/jobs/{job_id}/events", stream=True) as stream:
        assert stream.headers["x-accel-buffering"] == "no" and stream.headers["cache-control"] == "no-cache"
        os.kill(worker, signal.SIGCONT)
        events = server_sent_events(stream)

    statuses = [json.loads(event["data"]) for event in events if "data" in event]
    ids = [int(event["id"]) for event in events if "id" in event]
    assert events[0] == {"retry": "1000"}
    assert all(event.get("event") == "status" for event in events[1:])
    assert ids == sorted(set(ids))
    progress = [status["progress"] for status in statuses]
    assert progress == sorted(progress) and progress[-1] == 1.0, progress

    with own_server.request(
        "GET",
        f"/v1/jobs/{job_id}/events",
        stream=True,
        headers={**own_server.headers, "Last-Event-ID": str(ids[-2])},
    ) as resumed:
        again = [event for event in server_sent_events(resumed) if "data" in event]
    assert [event["id"] for event in again] == [str(ids[-1])]


def server_sent_events(stream) -> list[dict]:
    """The events of a text/event-stream response, each as its fields; comments skipped."""
    events, current = [], {}
    for line in stream.iter_lines(decode_unicode=True):
        if not line:
            if current:
                events.append(current)
            current = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(": ")
            current[name] = value
    return events


# --- Under attack and misuse ---------------------------------------------------------------------------


def test_without_a_token_the_body_is_never_read(server):
    """An upload over the limit, or a body that is no form, gets 401 without a token: not 413 or 400, which
    would mean the server read (and spooled) a stranger's body first."""
    assert server.submit(image=bytes(2 << 20), headers={}).status_code == 401
    malformed = server.request(
        "POST",
        "/v1/jobs",
        headers={"Content-Type": "multipart/form-data; boundary=x"},
        data=b"--x\r\nnot a part",
    )
    assert malformed.status_code == 401


def test_headers_larger_than_the_limit_are_refused_before_they_are_kept(server):
    head = b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "
    # Just over the limit: the server has read every byte sent when it refuses, so its answer arrives whole.
    assert server.exchange(head + b"a" * MAX_HEADER_BYTES).startswith(b"HTTP/1.1 400 ")
    # Far over it: the server stops reading at the limit (the client may see its connection reset) and
    # serves on; it never kept the 32 MB.
    server.exchange(head + b"a" * (32 << 20))
    assert requests.get(f"{server.url}/v1/health", timeout=10).ok


def test_a_client_stalled_mid_headers_is_dropped(server):
    started = time.monotonic()
    answer = server.exchange(b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n", timeout=30)
    assert answer == b"" and time.monotonic() - started < 10 * IDLE_TIMEOUT


def test_a_client_stalled_mid_body_gets_408_and_is_dropped(server):
    started = time.monotonic()
    answer = server.exchange(
        b"POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n"
        b"Content-Type: multipart/form-data; boundary=x\r\n"
        + f"Authorization: Bearer {TOKEN}\r\n\r\n".encode()
        + b"--x\r\n",
        timeout=30,
    )
    assert answer.startswith(b"HTTP/1.1 408") and time.monotonic() - started < 10 * IDLE_TIMEOUT


@pytest.mark.parametrize(
    "headers",
    [
        {"Host": "attacker.example"},
        {"Origin": "http://attacker.example"},
        {"Host": "attacker.example", "Origin": "http://attacker.example"},
        {"Origin": "null"},  # a sandboxed frame, or a file: or data: page
    ],
)
def test_a_server_without_a_token_refuses_requests_from_other_sites(open_server, headers):
    """A web page can send a plain multipart POST anywhere, and DNS rebinding lets it read the answers."""
    assert open_server.submit(headers=headers).status_code == 403
    health = requests.get(f"{open_server.url}/v1/health", headers=headers, timeout=10)
    assert health.status_code == 403 and "model" not in health.text


def test_a_page_with_no_origin_of_its_own_needs_the_token(server):
    assert server.submit(headers={"Origin": "null"}).status_code == 401
    assert server.submit(headers={**server.headers, "Origin": "null"}).status_code == 202


def test_a_server_without_a_token_serves_this_machine_by_any_loopback_name(open_server):
    port = open_server.url.rsplit(":", 1)[1]
    for host in ("localhost", f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}"):
        headers = {"Host": host, "Origin": f"http://{host}"}
        assert requests.get(f"{open_server.url}/v1/health", headers=headers, timeout=10).ok, host
    assert open_server.submit().status_code == 202


def test_the_server_and_its_workers_listen_on_loopback_only(open_server):
    addresses = listening_addresses(descendants(open_server.process.pid))
    assert addresses and not exposed(addresses), addresses


def test_a_token_file_others_can_read_is_refused(tmp_path):
    token = write_token(tmp_path / "token")
    token.chmod(0o644)
    started = start_server("--token-file", token, "--host", "0.0.0.0")
    assert started.returncode == 2
    assert f"chmod 600 {token}" in started.stderr and "Traceback" not in started.stderr


def test_missing_tls_files_are_named(tmp_path):
    started = start_server("--tls-cert", tmp_path / "cert.pem", "--tls-key", tmp_path / "key.pem")
    assert started.returncode == 2
    assert f"--tls-cert {tmp_path / 'cert.pem'}: no such file" in started.stderr
    assert "Traceback" not in started.stderr


def start_server(*arguments):
    """A server that refuses to start: it never listens, so this returns at once."""
    return subprocess.run(
        [sys.executable, "-m", "triposr_blender.server", "--model", str(FIXTURE), *map(str, arguments)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_scene_codes_that_would_inflate_past_their_bound_are_refused(server):
    """Refused from the archive's directory, before anything is inflated (test_scene_codes measures the
    memory), and checked off the event loop."""
    codes = codes_archive(one_value_of_640_mb)
    refused = server.request("POST", "/v1/jobs", files={"codes": ("codes.triposr.npz", codes)})
    assert refused.status_code == 400 and "larger than scene codes are" in refused.json()["detail"]


def test_scene_codes_whose_version_is_no_whole_number_are_400_not_500(server):
    codes = codes_archive(lambda archive: archive.writestr("scene_codes.npy", npy(np.zeros(1))), 1 + 2j)
    refused = server.request("POST", "/v1/jobs", files={"codes": ("codes.triposr.npz", codes)})
    assert refused.status_code == 400 and "are damaged" in refused.json()["detail"]


def test_scene_codes_with_a_photo_off_its_frame_are_refused_before_they_are_queued(server):
    codes = SceneCodes(np.zeros((1, 3, 4, 8, 8), np.float32), "x").to_bytes()
    damaged = with_photo_entries(codes, npy(np.zeros((30, 20, 4), np.uint8)), (30, 20, 40, 30, 5))
    refused = server.request("POST", "/v1/jobs", files={"codes": ("codes.triposr.npz", damaged)})
    assert refused.status_code == 400
    assert refused.json()["detail"].startswith("The uploaded scene codes hold a damaged photo (a 20 × 30")


def test_this_models_codes_with_another_channel_count_fail_the_job_with_a_message(server):
    job_id = server.submit().json()["id"]
    server.wait(job_id)
    made = SceneCodes.from_bytes(server.request("GET", f"/v1/jobs/{job_id}/result.npz").content)
    seven = SceneCodes(np.zeros((1, 3, 7, *made.array.shape[3:]), np.float32), made.model_id, made.model_name)

    remesh = server.request("POST", "/v1/jobs", files={"codes": ("codes.triposr.npz", seven.to_bytes())})
    failed = server.wait(remesh.json()["id"])

    assert failed["state"] == FAILED and "have 7 channels" in failed["error"]


# --- Clients give up ------------------------------------------------------------------------------------


def test_the_servers_client_gives_up_on_a_server_that_never_says_how_the_job_goes():
    """The add-on's Server backend and batch --server: a bounded wait, then a message naming the server.
    This one takes a job, then answers its event stream with 200 and no events, again and again."""
    with stand_in_server(lambda path: b"") as url:
        job = RemoteClient(url, silence_limit=2.0).remesh(
            b"codes", MeshOptions(), ModelSettings(str(FIXTURE))
        )
        outcome = job.wait(timeout=30)
    assert outcome.event == "error" and f"The TripoSR server at {url} said nothing" in outcome.message


def test_the_client_deletes_a_job_on_the_server_once_its_result_is_here():
    """A server keeps a result until it expires (an hour by default): the client frees it at once."""
    heard = []
    with serving_result(result_archive_of(), lambda method, path: heard.append(f"{method} {path}")) as url:
        outcome = RemoteClient(url).remesh(b"codes", MeshOptions(), ModelSettings(str(FIXTURE))).wait(30)
    assert outcome.event == "result"
    assert heard[-2:] == ["GET /v1/jobs/job/result.npz", "DELETE /v1/jobs/job"]


def test_a_job_the_user_cancelled_ends_cancelled_even_when_the_server_finished_it_first():
    """The cancel reaches the server as its job ends (or reaches a server too old to cancel): no mesh is
    made from the result all the same."""
    cancel_arrived = threading.Event()

    def on_request(method, path):
        if (method, path) == ("POST", "/v1/jobs/job/cancel"):
            cancel_arrived.set()

    def answer_get(path):
        assert cancel_arrived.wait(30)
        return DONE_EVENT if path.endswith("/events") else result_archive_of()

    with stand_in_server(answer_get, on_request) as url:
        client = RemoteClient(url)
        job = client.remesh(b"codes", MeshOptions(), ModelSettings(str(FIXTURE)))
        client.cancel(job)
        outcome = job.wait(timeout=30)
    assert outcome.event == "cancelled"


def result_archive_of(**changes) -> bytes:
    """The fixture's mesh as a server's result.npz, with some arrays replaced."""
    mesh = core_mesh()
    arrays = {"vertices": mesh.vertices, "faces": mesh.faces, "vertex_colors": mesh.vertex_colors, **changes}
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "archive",
    [
        lambda: result_archive_of(faces=np.array([[0, 1, 1_000_000]])),
        lambda: result_archive_of(vertices=np.full((len(core_mesh().vertices), 3), np.nan, np.float32)),
        lambda: result_archive_of(
            texture=np.zeros((64, 64, 4), np.uint8), normal_map=np.zeros((9, 9), np.uint8)
        ),
        lambda: b"PK\x03\x04 not a zip file",
    ],
    ids=["faces past the vertices", "NaN vertices", "a texture nobody asked for", "not an archive"],
)
def test_a_servers_result_that_is_not_a_mesh_ends_the_job_with_one_message_naming_the_server(archive):
    with serving_result(archive()) as url:
        job = RemoteClient(url).remesh(b"codes", MeshOptions(), ModelSettings(str(FIXTURE)))
        outcome = job.wait(timeout=30)
    assert outcome.event == "error", outcome
    assert outcome.message.startswith(f"The TripoSR server at {url} sent a result that cannot be used: ")
    assert "Traceback" not in outcome.message


def test_a_result_larger_than_any_the_job_can_make_is_refused_before_it_is_read(monkeypatch):
    """The archive's entries are bounded before inflating; the download itself is bounded before reading."""
    monkeypatch.setattr(result_archive, "max_bytes", lambda resolution, texture_size: 1 << 20)
    with serving_result(bytes(2 << 20)) as url:
        outcome = (
            RemoteClient(url).remesh(b"codes", MeshOptions(), ModelSettings(str(FIXTURE))).wait(timeout=30)
        )
    assert outcome.event == "error"
    assert outcome.message.startswith(
        f"The TripoSR server at {url} sent more than 1 MB for /v1/jobs/job/result.npz"
    )


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
    assert own_server.request("GET", f"/v1/jobs/{queued}").json()["position"] == 0, "it runs next"
    assert own_server.request("GET", f"/v1/jobs/{running}").json()["position"] is None, "it runs"

    cancelled = own_server.request("POST", f"/v1/jobs/{running}/cancel")
    assert cancelled.status_code == 202
    assert own_server.wait(running)["state"] == "cancelled"
    assert own_server.wait(queued)["state"] == "done", "the worker stuck on the cancelled job was replaced"
    again = own_server.request("POST", f"/v1/jobs/{running}/cancel")
    assert again.status_code == 409 and again.json()["detail"].startswith("The job has ended already")


@needs_proc
def test_delete_forgets_a_running_job_at_once_and_a_client_following_it_hears_it_cancelled(own_server):
    os.kill(own_server.worker_pid(), signal.SIGSTOP)
    job_id = own_server.submit().json()["id"]
    own_server.wait(job_id, until=("running",))
    with own_server.request("GET", f"/v1/jobs/{job_id}/events", stream=True) as stream:
        deleted = own_server.request("DELETE", f"/v1/jobs/{job_id}")
        heard = [
            json.loads(line[6:]) for line in stream.iter_lines(decode_unicode=True) if line[:6] == "data: "
        ]

    assert deleted.status_code == 202
    assert own_server.request("GET", f"/v1/jobs/{job_id}").status_code == 404
    assert own_server.request("POST", f"/v1/jobs/{job_id}/cancel").status_code == 404
    assert heard[-1]["state"] == "cancelled"


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
def test_sigterm_ends_the_server_cleanly_and_a_client_following_a_job_hears_it_was_cancelled(own_server):
    worker = own_server.worker_pid()
    os.kill(worker, signal.SIGSTOP)
    job_id = own_server.submit().json()["id"]
    own_server.wait(job_id, until=("running",))
    heard = []

    def follow():
        with own_server.request("GET", f"/v1/jobs/{job_id}/events", stream=True) as stream:
            for line in stream.iter_lines(decode_unicode=True):
                if line.startswith("data: "):
                    heard.append(json.loads(line[6:]))

    follower = threading.Thread(target=follow)
    follower.start()
    wait_for(lambda: heard)

    own_server.process.send_signal(signal.SIGTERM)
    follower.join(timeout=JOB_TIMEOUT)

    assert heard[-1]["state"] == CANCELLED and heard[-1]["error"] == STOPPING
    assert own_server.process.wait(timeout=30) in (0, -signal.SIGTERM)
    wait_for(lambda: not process_runs(worker))


def process_runs(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, ended but not yet collected by its parent, does not)."""
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"


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
    table.close("stopping")

    assert table.get(done.id) is None
    assert (table.get(queued.id).state, table.get(queued.id).error) == (CANCELLED, "stopping")


def test_progress_rises_over_the_whole_job_though_each_stage_starts_at_zero():
    job = JobTable(max_queue=1, result_ttl=60.0).submit(JobRequest(GENERATE, b"", GenerateOptions()))
    seen = []
    for stage, fraction in [
        ("Preparing the image", 0.0),
        ("Preparing the image", 1.0),
        ("Encoding image", 0.0),  # a new stage starts at 0: the job does not go back
        ("Encoding image", 0.5),
        ("Some stage the list does not know", 0.9),  # moves nothing
        ("Extracting surface", 0.2),
        ("Encoding image", 1.0),  # reported late: moves nothing back
    ]:
        job.advance(stage, fraction)
        seen.append(job.progress)

    assert seen == sorted(seen) and seen[0] < seen[3] < seen[5], seen
    assert job.stage == "Encoding image" and seen[-1] == seen[-2]


def test_an_expired_result_is_gone_at_the_first_look_not_at_the_next_sweep():
    table = JobTable(max_queue=4, result_ttl=60.0)
    job = table.submit({"cmd": "generate"})
    table.finish(table.take(timeout=0), DONE)

    assert table.get(job.id, now=job.finished_at + 59) is job
    assert table.get(job.id, now=job.finished_at + 61) is None
    assert table.get(job.id) is None  # forgotten, not only hidden


@pytest.mark.parametrize("ending", ["done", "failed", "cancelled while queued", "cancelled at close"])
def test_a_job_lets_go_of_its_upload_when_it_ends(ending):
    table = JobTable(max_queue=4, result_ttl=60.0)
    job = table.submit(JobRequest(GENERATE, bytes(1 << 20), GenerateOptions()))
    if ending == "cancelled while queued":
        table.cancel(job)
    elif ending == "cancelled at close":
        table.close()
    else:
        table.finish(table.take(timeout=0), DONE if ending == "done" else FAILED)
    assert job.request is None


def test_a_job_cancelled_while_running_has_no_result_even_if_it_got_to_its_end_first():
    """A cancel answered 202: the result of a last step that was already running is not served."""
    table = JobTable(max_queue=4, result_ttl=60.0)
    job = table.submit({"cmd": "generate"})
    table.cancel(table.take(timeout=0))
    table.finish(job, DONE, result=object())
    assert (job.state, job.result) == (CANCELLED, None)


def test_delete_forgets_a_queued_job_at_once_and_it_ends_cancelled_for_whoever_follows_it():
    table = JobTable(max_queue=4, result_ttl=60.0)
    job = table.submit(JobRequest(GENERATE, b"image", GenerateOptions()))
    table.delete(job)
    assert (table.get(job.id), table.queued, job.state) == (None, 0, CANCELLED)


def test_job_ids_cannot_be_guessed():
    table = JobTable(max_queue=100, result_ttl=60.0)
    ids = [table.submit({"cmd": "generate"}).id for _ in range(100)]
    assert len(set(ids)) == 100 and all(len(job_id) >= 24 for job_id in ids)
