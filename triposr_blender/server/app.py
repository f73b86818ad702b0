"""The server's HTTP API, version 1 (stable: clients outside this repository call exactly these):

    GET    /v1/health                 status, model, devices, queue length; no token needed
    POST   /v1/jobs                   multipart: the image file as ``image`` (or saved scene codes as
                                      ``codes``, for a new mesh without the encoder) and the options as form
                                      fields named as Generate's (booleans as true/false) -> 202 {"id": ...}
    GET    /v1/jobs/{id}              {"state", "stage", "progress", "position", "error"}
    GET    /v1/jobs/{id}/events       the same, as Server-Sent Events, until the job ends
    GET    /v1/jobs/{id}/result.glb   the coloured mesh (COLOR_0, or baseColorTexture when baked)
    GET    /v1/jobs/{id}/result.npz   the arrays Blender builds from, and the scene codes
    DELETE /v1/jobs/{id}              cancels the job

Every request but health needs ``Authorization: Bearer <token>`` when the server has a token (the docs and
the schema too), checked before the body is read; a server without one answers only this machine's requests
(``guard``). Errors: 401 (token), 403 (a request from beyond this machine to a server without a token), 404
(no such job, or expired), 408 (an upload that stalled), 413 (upload too large), 503 with Retry-After (queue
full), 400 (an image or options that cannot be used), 409 (no result yet). No file path is ever taken from a
client, and none is shown to one.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
import pydantic
from fastapi import FastAPI, Form, HTTPException, UploadFile
from fastapi.responses import JSONResponse, Response, StreamingResponse

from .. import options
from ..core.errors import InvalidImageError
from ..core.export import glb_bytes
from ..core.scene_codes import SceneCodes, SceneCodesError
from ..options import GenerateOptions, MeshOptions, OptionError
from ..worker.backend import GENERATE, REMESH
from .guard import RequestGuard
from .jobs import FINISHED, JobRequest, JobTable, ServerJob

API_VERSION = 1
EVENTS_INTERVAL = 0.1  # seconds between looks at a job for the event stream
KEEP_ALIVE = 15.0  # seconds between comments on a quiet event stream, so proxies keep it open
EXPIRE_INTERVAL = 30.0
RETRY_AFTER = 10  # seconds a client is asked to wait when the queue is full
MIN_TOKEN_LENGTH = 16
# What a job still following its events hears when the server stops.
STOPPING = "The server stopped: send the job again once it is back."
# The server's settings and their defaults, the same for `python -m triposr_blender.server` and Ray Serve.
DEFAULT_MAX_QUEUE = 64
DEFAULT_MAX_UPLOAD_MB = 32
DEFAULT_RESULT_TTL = 3600.0
DEFAULT_IDLE_TIMEOUT = 20.0  # seconds a client may stall in its request's head or body


class ServerConfigError(Exception):
    """The server cannot start as configured; the text says what to change."""


@dataclass(frozen=True)
class ServerSettings:
    model: str  # a Hugging Face repo id or a model folder, on the server's machine
    token: str = ""  # empty: no token (this machine's requests only)
    max_queue: int = DEFAULT_MAX_QUEUE
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_MB << 20
    result_ttl: float = DEFAULT_RESULT_TTL
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT

    @property
    def model_name(self) -> str:
        """The model as clients see it: a repo id as it is, a folder by its name alone (no server paths)."""
        return Path(self.model).name if Path(self.model).expanduser().is_dir() else self.model


def read_token(path: Path | None) -> str:
    """The token in ``path`` (none without a file). The file must be its owner's alone, as ssh asks of a key:
    a token other users of the machine can read opens the server to them."""
    if path is None:
        return ""
    try:
        token = path.read_text(encoding="utf-8").strip()
        mode = path.stat().st_mode
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or error
        raise ServerConfigError(f"Cannot read the token file {path}: {reason}.") from None
    if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ServerConfigError(
            f"The token file {path} can be read by other users of this machine (mode "
            f"{stat.filemode(mode)}): make it yours alone with `chmod 600 {path}`."
        )
    if len(token) < MIN_TOKEN_LENGTH:
        raise ServerConfigError(
            f"The token in {path} is too short: use at least {MIN_TOKEN_LENGTH} random characters."
        )
    return token


def options_form() -> type[pydantic.BaseModel]:
    """The POST /v1/jobs form: the upload, and every generation option of options.py as an optional text
    field, described as in the panel. Unknown fields are refused, so a typo is never silently ignored."""
    fields = {
        "image": (
            UploadFile | None,
            pydantic.Field(None, description="The image file (PNG, JPEG, WebP, ...)"),
        ),
        "codes": (
            UploadFile | None,
            pydantic.Field(
                None, description="Instead of an image: saved scene codes (.triposr.npz), re-meshed"
            ),
        ),
    }
    for option in (*options.IMAGE_OPTIONS, *options.MESH_OPTIONS):
        described = (
            f"{option.description} ({option.range_text if option.minimum is not None else 'true/false'})"
        )
        fields[option.name] = (str | None, pydantic.Field(None, description=described))
    return pydantic.create_model("JobForm", __config__=pydantic.ConfigDict(extra="forbid"), **fields)


JobForm = options_form()


def create_app(settings: ServerSettings, executor) -> FastAPI:
    """The app, running its jobs with ``executor``: start(table), stop(), devices, loaded()."""
    table = JobTable(settings.max_queue, settings.result_ttl)

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        executor.start(table)
        expiring = asyncio.create_task(expire_regularly(table))
        try:
            yield
        finally:  # the jobs ended already (end_jobs, at the signal); the workers stop
            expiring.cancel()
            end_jobs()
            await asyncio.to_thread(executor.stop)

    def end_jobs() -> None:
        """Stop taking jobs: queued ones end cancelled, running ones are cancelled, each with STOPPING, so
        the clients following them hear why before their streams close."""
        for job in table.close(STOPPING):
            job.cancel_requested.set()

    app = FastAPI(
        title="TripoSR server",
        version=str(API_VERSION),
        description="One image in, a coloured 3D mesh out, on the server's GPUs. "
        + (__doc__ or "").split("\n\n")[0],
        lifespan=lifespan,
    )
    app.state.table = table
    app.state.end_jobs = end_jobs

    def job_of(job_id: str) -> ServerJob:
        job = table.get(job_id)
        if job is None:
            raise HTTPException(404, "No such job (or its results expired).")
        return job

    @app.get("/v1/health")
    def health() -> dict:
        return {
            "status": "ok",
            "model": settings.model_name,
            "devices": executor.devices,
            "queue": table.queued,
            "loaded": executor.loaded(),
            "api": API_VERSION,
        }

    @app.post("/v1/jobs", status_code=202)
    async def submit(form: Annotated[JobForm, Form()]) -> JSONResponse:
        request = await job_request(form)
        job = table.submit(request)
        if job is None:
            raise HTTPException(503, "The queue is full; try again soon.", {"Retry-After": str(RETRY_AFTER)})
        return JSONResponse({"id": job.id}, status_code=202)

    @app.get("/v1/jobs/{job_id}")
    def status(job_id: str) -> dict:
        job = job_of(job_id)
        return job.status(table.position(job))

    @app.get("/v1/jobs/{job_id}/events")
    def events(job_id: str) -> StreamingResponse:
        job = job_of(job_id)

        async def stream():
            sent, quiet = None, 0.0
            while True:
                current = job.status(table.position(job))
                if current != sent:
                    sent, quiet = current, 0.0
                    yield f"data: {json.dumps(current)}\n\n"
                    if current["state"] in FINISHED:
                        return
                elif quiet >= KEEP_ALIVE:
                    quiet = 0.0
                    yield ": keep-alive\n\n"
                await asyncio.sleep(EVENTS_INTERVAL)
                quiet += EVENTS_INTERVAL

        return StreamingResponse(
            stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
        )

    @app.get("/v1/jobs/{job_id}/result.glb")
    async def result_glb(job_id: str) -> Response:
        job = finished_job(job_id)
        size = options.TARGET_SIZE.default
        data = await result_file(
            job, "result.glb", lambda: glb_bytes(job.result.mesh, job.result.texture, size)
        )
        return Response(data, media_type="model/gltf-binary")

    @app.get("/v1/jobs/{job_id}/result.npz")
    async def result_npz(job_id: str) -> Response:
        job = finished_job(job_id)
        data = await result_file(job, "result.npz", lambda: npz_bytes(job))
        return Response(data, media_type="application/octet-stream")

    @app.delete("/v1/jobs/{job_id}")
    def cancel(job_id: str) -> dict:
        job = job_of(job_id)
        table.cancel(job)
        return job.status(table.position(job))

    def finished_job(job_id: str) -> ServerJob:
        job = job_of(job_id)
        if job.result is None:
            raise HTTPException(409, f"The job has no result (it is {job.state}).")
        return job

    app.add_middleware(
        RequestGuard,
        token=settings.token,
        max_body=settings.max_upload_bytes,
        idle_timeout=settings.idle_timeout,
    )
    return app


async def result_file(job: ServerJob, name: str, make) -> bytes:
    if name not in job.files:
        job.files[name] = await asyncio.to_thread(make)
    return job.files[name]


async def job_request(form) -> JobRequest:
    """The job a POST asks for: a generation from the image, or a re-mesh of saved scene codes."""
    given = {
        name: value
        for name, value in form.model_dump(exclude={"image", "codes"}).items()
        if value is not None
    }
    try:
        values = {name: options.OPTIONS[name].parse(text) for name, text in given.items()}
        if form.codes is not None:
            unused = set(values) - set(MeshOptions.__dataclass_fields__)
            if unused:
                raise OptionError(f"{', '.join(sorted(unused))} only apply to an image, not to scene codes")
            codes = await form.codes.read()
            # Off the event loop: other clients, health checks included, never wait for it.
            await asyncio.to_thread(SceneCodes.from_bytes, codes, "The uploaded scene codes")
            return JobRequest(REMESH, codes, MeshOptions(**values))
        if form.image is None:
            raise OptionError(
                "Send the image file as the form field 'image' (or saved scene codes as 'codes')."
            )
        data = await form.image.read()
        await asyncio.to_thread(check_image, data)
        return JobRequest(GENERATE, data, GenerateOptions(**values))
    except (OptionError, InvalidImageError, SceneCodesError) as error:
        raise HTTPException(400, str(error)) from error


def check_image(data: bytes) -> None:
    """Refuse an upload that is no image the worker can read, or has more pixels than an input may have
    (core.defaults.MAX_IMAGE_PIXELS), before it takes a place in the queue."""
    from ..core.preprocess import load_image

    load_image(data)


def npz_bytes(job: ServerJob) -> bytes:
    """The arrays the add-on builds an object from, and the scene codes (core.scene_codes' entries)."""
    result = job.result
    arrays = {
        "vertices": result.mesh.vertices,
        "faces": result.mesh.faces,
        "vertex_colors": result.mesh.vertex_colors,
    }
    if result.texture is not None:
        arrays.update(corner_uvs=result.texture.corner_uvs, texture=result.texture.image)
    if result.codes:
        with np.load(io.BytesIO(result.codes), allow_pickle=False) as codes:
            arrays.update({name: codes[name] for name in codes.files})
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


async def expire_regularly(table: JobTable) -> None:
    while True:
        await asyncio.sleep(EXPIRE_INTERVAL)
        table.expire()
