"""The TripoSR-server backend: the jobs of ``backend.Backend`` (generate, remesh, load, cancel), run by a
server, so Blender's operators, the batch and the panel run unchanged against one (an http:// or https://
address: the Server backend of the preferences, ``TRIPOSR_SERVER``, ``batch --server``). Only the standard
library and numpy: it runs in Blender's own Python, where no PyTorch needs to be installed.

The server runs its own model; of the model settings it takes, one applies here: with Blender's online
access off, only a server on this computer is used.

Each job has a thread that uploads, follows the job's status as the server streams it (Server-Sent Events:
its place in the queue, then its stage and progress) and downloads the result; its progress and outcome go
to the job's queue, typed, as the worker's do. Cancel goes out at once, on a request of its own. Nothing
waits for ever: every request has a timeout, and a server that says nothing of the job for
``silence_limit`` seconds fails it, naming the server: out of reach, or answering without events (a status
or the stream's keep-alive, which comes every 15 s, is a sign of life; a stream that closes without one is
not).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import itertools
import json
import secrets
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

from ..core import result_archive, scene_codes
from ..core.color import to_uint8
from ..core.errors import TripoSRError
from ..core.export import png_bytes
from ..core.mesh import FramedPhoto
from ..options import GenerateOptions, MeshOptions
from .addresses import is_loopback
from .backend import GENERATE, LOAD, REMESH, Backend, Connection, Job
from .types import (
    CANCELLED,
    MAX_NOTE_CHARS,
    MAX_NOTES,
    RESULT,
    EncodedImage,
    ImageFile,
    ImageInput,
    MeshResult,
    ModelSettings,
    ModelState,
    Outcome,
    Progress,
)

REQUEST_TIMEOUT = 60.0  # seconds for one HTTP request (an upload of a large image included), or stream line
RECONNECT_INTERVAL = 1.0
SILENCE_LIMIT = 60.0  # seconds the server may say nothing of a job before the job is given up
FINISHED = {"done", "failed", "cancelled"}


class ServerError(Exception):
    """The server refused a request or could not be reached; the text says why, for the user."""


def notes_of(status: dict) -> tuple[str, ...]:
    """A finished job's notes (what it did otherwise than asked), read as untrusted input: at most
    ``MAX_NOTES`` strings, each cut to ``MAX_NOTE_CHARS``; an older server sends none."""
    notes = status.get("notes")
    if not isinstance(notes, list):
        return ()
    return tuple(note[:MAX_NOTE_CHARS] for note in notes[:MAX_NOTES] if isinstance(note, str))


class RemoteClient(Backend):
    """Runs jobs on a TripoSR server at ``url`` (``http(s)://host:port``), sending ``token`` if given."""

    def __init__(self, url: str, token: str = "", silence_limit: float = SILENCE_LIMIT):
        self.connection = Connection(url, token)
        self.url = url.rstrip("/")
        self.token = token
        self.silence_limit = silence_limit
        self.model_state = ModelState()
        self._server_ids: dict[int, str] = {}  # our job id -> the server's, once submitted
        self._jobs: dict[int, Job] = {}
        self._job_ids = itertools.count(1)
        self._lock = threading.Lock()

    @property
    def busy(self) -> bool:
        return bool(self._jobs)

    @property
    def can_unload(self) -> bool:
        return False  # the model lives on the server: nothing of this computer's to free

    @classmethod
    def serves(cls, connection: Connection) -> bool:
        return urllib.parse.urlsplit(connection.address).scheme.lower() in ("http", "https")

    @classmethod
    def connect(cls, connection: Connection) -> RemoteClient:
        return cls(connection.address, connection.token)

    def generate(self, image: ImageInput, options: GenerateOptions, model: ModelSettings) -> Job:
        """Upload ``image`` with ``options``."""
        return self._start(GENERATE, model, {"image": ("image.png", image_bytes(image))}, options)

    def remesh(
        self, codes: bytes, options: MeshOptions, model: ModelSettings, photo: FramedPhoto | None = None
    ) -> Job:
        """Upload saved scene codes for a new mesh, with the photo the object keeps for Photo Texture: the
        server needs neither the image nor its encoder."""
        upload = scene_codes.with_photo(codes, photo)
        return self._start(REMESH, model, {"codes": ("codes.triposr.npz", upload)}, options)

    def load(self, model: ModelSettings) -> Job:
        """The server's model state (it loads its model itself, at start)."""
        job = self._new_job(LOAD)
        if not self._refuse_offline(job, model):
            threading.Thread(target=self._check, args=(job,), name="triposr-server", daemon=True).start()
        return job

    def cancel(self, job: Job) -> None:
        """Ask the server to cancel the job (at once if it was submitted, else as soon as it is)."""
        job.cancel_requested = True
        server_id = self._server_ids.get(job.id)
        if server_id is not None:
            threading.Thread(target=self._cancel_on_server, args=(server_id,), daemon=True).start()

    def _cancel_on_server(self, server_id: str) -> None:
        with contextlib.suppress(ServerError):  # gone or unreachable: the job's thread reports how it ended
            self._request("POST", f"/v1/jobs/{server_id}/cancel", raw=True)

    def _forget_on_server(self, server_id: str) -> None:
        """The job has ended and its result is here: the server need not keep it until it expires."""
        with contextlib.suppress(ServerError):
            self._request("DELETE", f"/v1/jobs/{server_id}", raw=True)  # 204: no body

    def stop(self) -> None:
        for job in list(self._jobs.values()):
            self.cancel(job)

    def health(self) -> dict:
        return self._request("GET", "/v1/health")

    def _new_job(self, kind: str) -> Job:
        job = Job(next(self._job_ids), kind)
        with self._lock:
            self._jobs[job.id] = job
        return job

    def _refuse_offline(self, job: Job, model: ModelSettings) -> bool:
        """With online access off, a server beyond this computer is not used: the job ends saying so."""
        if not model.offline or is_loopback(urllib.parse.urlsplit(self.url).hostname or ""):
            return False
        message = (
            f"Blender's online access is off, and the TripoSR server at {self.url} is on the network. Allow "
            "it in Preferences > System > Network > Allow Online Access, or use a server on this computer."
        )
        self._end(job, Outcome.failed("Offline", message))
        return True

    def _start(self, kind: str, model: ModelSettings, files: dict, options: MeshOptions) -> Job:
        job = self._new_job(kind)
        if self._refuse_offline(job, model):
            return job
        job.stage = "Sending to the server"
        thread = threading.Thread(
            target=self._follow, args=(job, files, options), name="triposr-server", daemon=True
        )
        thread.start()
        return job

    def _check(self, job: Job) -> None:
        try:
            state = self.health()
        except ServerError as error:
            self._end(job, Outcome.failed("ServerError", str(error)))
            return
        self.model_state = server_model_state(state)
        self._end(job, Outcome(RESULT, model=self.model_state))

    def _follow(self, job: Job, files: dict, options: MeshOptions) -> None:
        """Upload, follow, download: the job's whole life on the server, as events."""
        try:
            server_id = self._request("POST", "/v1/jobs", form=(options.as_dict(), files))["id"]
            self._server_ids[job.id] = server_id
            if job.cancel_requested:  # cancelled while it was uploading
                self._cancel_on_server(server_id)
            status = self._until_finished(job, server_id)
            if status["state"] == "cancelled" or job.cancel_requested:  # a result that came first is dropped
                ending = Outcome(CANCELLED)
            elif status["state"] == "done":
                limit = result_archive.max_bytes(options.resolution, options.texture_size)
                archive = self._request("GET", f"/v1/jobs/{server_id}/result.npz", raw=True, limit=limit)
                result = dataclasses.replace(self._mesh_result(archive, options), notes=notes_of(status))
                ending = Outcome(RESULT, result=result)
            else:
                ending = Outcome.failed("ServerJobFailed", status["error"])
            self._forget_on_server(server_id)
            self._end(job, ending)
        except ServerError as error:
            self._end(job, Outcome.failed("ServerError", str(error)))
        except Exception as error:  # a damaged answer: the job must end, with a message
            message = f"The TripoSR server's answer could not be read ({type(error).__name__}: {error})."
            self._end(job, Outcome.failed("ServerError", message))

    def _mesh_result(self, archive: bytes, options: MeshOptions) -> MeshResult:
        """The server's result, checked as untrusted input before anything is built from it."""
        try:
            mesh, texture, codes, photo = result_archive.from_bytes(
                archive, options.resolution, options.texture_size
            )
            return MeshResult(mesh, texture, codes, photo=photo)
        except TripoSRError as error:
            raise ServerError(
                f"The TripoSR server at {self.url} sent a result that cannot be used: {error}. Nothing was "
                "made; check that the server runs this version of the add-on, and its log."
            ) from error

    def _until_finished(self, job: Job, server_id: str) -> dict:
        """The job's last status, following its event stream; a stream that ends early is opened again, until
        the server has said nothing of the job for ``silence_limit`` seconds."""
        answered = time.monotonic()
        unreachable = None
        while time.monotonic() - answered <= self.silence_limit:
            try:
                for status in self._events(server_id):
                    answered = time.monotonic()
                    if status is None:  # the stream's keep-alive
                        continue
                    if status["state"] in FINISHED:
                        return status
                    stage = status["stage"]
                    if status["state"] == "queued":
                        stage = f"Waiting in the server's queue (position {status['position'] + 1})"
                    job.events.put(Progress(stage, status["progress"]))
                unreachable = None
            except ServerUnreachable as error:
                unreachable = error
            time.sleep(RECONNECT_INTERVAL)
        if unreachable is not None:
            raise unreachable
        raise ServerError(
            f"The TripoSR server at {self.url} said nothing of the job for {self.silence_limit:g} s: it "
            "answers without sending the job's progress. Check that the address is a TripoSR server and "
            "that it works (its log), then try again."
        )

    def _events(self, server_id: str):
        """The statuses the server streams for a job (Server-Sent Events), and None for each keep-alive,
        until the job ends or the stream does."""
        request = urllib.request.Request(f"{self.url}/v1/jobs/{server_id}/events", headers=self._headers())
        try:
            with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT) as stream:
                for line in stream:
                    if line.startswith(b"data: "):
                        yield json.loads(line[6:])
                    elif line.startswith(b":"):
                        yield None
        except urllib.error.HTTPError as error:
            raise ServerError(refusal_message(self.url, error)) from error
        except (urllib.error.URLError, OSError) as error:
            raise ServerUnreachable(unreachable_message(self.url, error)) from error

    def _end(self, job: Job, outcome: Outcome) -> None:
        with self._lock:
            self._jobs.pop(job.id, None)
            self._server_ids.pop(job.id, None)
        job.finished.set()
        job.events.put(outcome)

    def _headers(self) -> dict:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def _request(
        self, method: str, path: str, form: tuple | None = None, raw: bool = False, limit: int | None = None
    ):
        """The answer's body (JSON, or the bytes when ``raw``); a body over ``limit`` bytes is refused."""
        headers = self._headers()
        body = None
        if form is not None:
            body, content_type = multipart(*form)
            headers["Content-Type"] = content_type
        request = urllib.request.Request(self.url + path, data=body, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT) as response:
                data = response.read() if limit is None else response.read(limit + 1)
        except urllib.error.HTTPError as error:
            raise ServerError(refusal_message(self.url, error)) from error
        except (urllib.error.URLError, OSError) as error:
            raise ServerUnreachable(unreachable_message(self.url, error)) from error
        if limit is not None and len(data) > limit:
            raise ServerError(
                f"The TripoSR server at {self.url} sent more than {limit >> 20} MB for {path}, more than "
                "such a result can be: nothing was made. Check that it runs this version of the add-on, and "
                "its log."
            )
        return data if raw else json.loads(data)


class ServerUnreachable(ServerError):
    """No answer from the server (network down, server stopped, wrong address)."""


def unreachable_message(url: str, error: Exception) -> str:
    return (
        f"Could not reach the TripoSR server at {url} ({getattr(error, 'reason', error)}). Check the server "
        "address in the add-on's preferences (or TRIPOSR_SERVER), and that the server runs."
    )


def refusal_message(url: str, error: urllib.error.HTTPError) -> str:
    try:
        detail = json.loads(error.read()).get("detail")
    except (ValueError, AttributeError, OSError):
        detail = None
    detail = detail if isinstance(detail, str) else error.reason
    if error.code == 401:
        return (
            f"The TripoSR server at {url} refused the token: set the right one in the preferences ({detail})."
        )
    if error.code == 503:
        return f"The TripoSR server at {url} is busy: its queue is full. Try again in a moment."
    return f"The TripoSR server at {url} refused the job ({error.code}): {detail}"


def server_model_state(health: dict) -> ModelState:
    """The panel's model line for a server: where the model runs, and no memory of this computer's."""
    devices = ", ".join(health.get("devices", [])) or "its devices"
    loaded = bool(health.get("loaded", True))
    return ModelState(loaded=loaded, source=health.get("model", ""), device=f"the server ({devices})")


def image_bytes(image: ImageInput) -> bytes:
    """The image as the server takes it: the file's own bytes, or Blender's pixels as a PNG."""
    if isinstance(image, ImageFile):
        with open(image.path, "rb") as file:
            return file.read()
    if isinstance(image, EncodedImage):
        return image.data
    return png_bytes(to_uint8(image.pixels))


def multipart(fields: dict, files: dict) -> tuple[bytes, str]:
    """A multipart/form-data body: text fields (booleans as true/false) and files as (name, bytes)."""
    boundary = secrets.token_hex(16)
    body = io.BytesIO()
    for name, value in fields.items():
        text = str(value).lower() if isinstance(value, bool) else str(value)
        body.write(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{text}\r\n'.encode()
        )
    for name, (filename, data) in files.items():
        body.write(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n".encode()
        )
        body.write(data + b"\r\n")
    body.write(f"--{boundary}--\r\n".encode())
    return body.getvalue(), f"multipart/form-data; boundary={boundary}"
