"""A TripoSR server for tests: a real server process on 127.0.0.1 (never another address) with the tiny
fixture model, and requests to it with or without its token; and a stand-in that sends what a test wants."""

import contextlib
import http.server
import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import requests
from fixture_model import FIXTURE, IMAGE, OPTIONS

REPO = Path(__file__).resolve().parent.parent
TOKEN = "a-test-token-of-enough-length"
JOB_TIMEOUT = 120
FORM = {
    name: str(value).lower() if isinstance(value, bool) else str(value) for name, value in OPTIONS.items()
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """A server process on 127.0.0.1, and requests to it with (or without) its token."""

    def __init__(self, tmp_path: Path, *options: str, token: str = TOKEN):
        self.url = f"http://127.0.0.1:{free_port()}"
        arguments = [
            "--model",
            str(FIXTURE),
            "--devices",
            "cpu",
            "--port",
            self.url.rsplit(":", 1)[1],
            *options,
        ]
        if token:
            write_token(tmp_path / "token", token)
            arguments += ["--token-file", str(tmp_path / "token")]
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "triposr_blender.server", *arguments],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + JOB_TIMEOUT
        while not self.healthy():
            assert self.process.poll() is None, "the server did not start"
            assert time.monotonic() < deadline, "the server did not load its model"
            time.sleep(0.2)

    def healthy(self) -> bool:
        try:
            return requests.get(f"{self.url}/v1/health", timeout=5).json()["loaded"]
        except requests.ConnectionError:
            return False

    def request(self, method: str, path: str, **kwargs) -> requests.Response:
        kwargs.setdefault("headers", self.headers)
        return requests.request(method, self.url + path, timeout=60, **kwargs)

    def submit(self, image: bytes | None = None, headers: dict | None = None, **fields) -> requests.Response:
        """POST a job of the fixture image (or ``image``), with the token unless ``headers`` are given."""
        files = {"image": ("chair.png", IMAGE.read_bytes() if image is None else image)}
        headers = self.headers if headers is None else headers
        return self.request("POST", "/v1/jobs", data={**FORM, **fields}, files=files, headers=headers)

    def wait(self, job_id: str, until=("done", "failed", "cancelled")) -> dict:
        deadline = time.monotonic() + JOB_TIMEOUT
        while (status := self.request("GET", f"/v1/jobs/{job_id}").json())["state"] not in until:
            assert time.monotonic() < deadline, status
            time.sleep(0.05)
        return status

    def worker_pid(self) -> int:
        """The server's worker process (Linux: /proc lists a process's children)."""
        deadline = time.monotonic() + JOB_TIMEOUT
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        while not (pids := children.read_text().split()):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        return int(pids[0])

    def exchange(self, data: bytes, timeout: float = 30.0) -> bytes:
        """What the server answers to ``data`` sent as it is on a new connection, until it closes it."""
        return exchange(self.url, data, timeout)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def write_token(path: Path, token: str = TOKEN) -> Path:
    """A token file as the server takes it: its owner's alone."""
    path.write_text(token + "\n")
    path.chmod(0o600)
    return path


def exchange(url: str, data: bytes, timeout: float = 30.0) -> bytes:
    """Send raw bytes to a server, and read until it closes the connection (or resets it)."""
    address = urlsplit(url)
    answer = []
    with socket.create_connection((address.hostname, address.port), timeout=timeout) as connection:
        try:
            connection.sendall(data)
            while chunk := connection.recv(65536):
                answer.append(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # it stopped reading: what it answered before is in ``answer``
    return b"".join(answer)


def wait_for(check, finished: bool = False, timeout: float = JOB_TIMEOUT):
    """Ask ``check`` until it answers (truthy; with ``finished``: a status of a job that ended); return it."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            answer = check()
        except requests.ConnectionError:
            answer = None
        if answer and (not finished or answer["state"] in ("done", "failed", "cancelled")):
            return answer
        assert time.monotonic() < deadline, f"no answer within {timeout} s: {answer}"
        time.sleep(0.2)


@contextlib.contextmanager
def stand_in_server(answer_get, on_request=lambda method, path: None):
    """A stand-in for a TripoSR server on loopback: it takes any job (as "job") and any cancel, answers each
    GET with ``answer_get(path)``, 200, and each DELETE with 204; it tells ``on_request`` of each request
    before answering. Yields its URL."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"] or 0))
            self.answer(b'{"id": "job"}')

        def do_GET(self):
            self.answer(answer_get(self.path))

        def do_DELETE(self):
            on_request("DELETE", self.path)
            self.send_response(204)
            self.end_headers()

        def answer(self, body):
            on_request(self.command, self.path)
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_arguments):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


DONE = {"state": "done", "stage": "Done", "progress": 1.0, "position": None, "error": None}
DONE_EVENT = f"data: {json.dumps(DONE)}\n\n".encode()


def serving_result(archive: bytes, on_request=lambda method, path: None):
    """A stand-in server that says every job is done and sends ``archive`` as its result.npz."""
    return stand_in_server(lambda path: DONE_EVENT if path.endswith("/events") else archive, on_request)
