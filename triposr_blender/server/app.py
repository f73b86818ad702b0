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

Every request but health needs ``Authorization: Bearer <token>`` when the server has a token (compared in
constant time); a server without one listens on loopback only (``__main__`` refuses otherwise). Errors: 401
(token), 404 (no such job, or expired), 413 (upload too large), 503 with Retry-After (queue full), 400 (an
image or options that cannot be used), 409 (no result yet). No file path is ever taken from a client.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import secrets
from dataclasses import dataclass
from typing import Annotated

import numpy as np
import pydantic
from fastapi import Depends, FastAPI, Form, HTTPException, Request, UploadFile
from fastapi.responses import JSONResponse, Response, StreamingResponse

from .. import options
from ..core.errors import InvalidImageError
from ..core.export import glb_bytes
from ..core.scene_codes import SceneCodes, SceneCodesError
from ..options import GenerateOptions, MeshOptions, OptionError
from .jobs import FINISHED, JobTable, ServerJob

API_VERSION = 1
EVENTS_INTERVAL = 0.1  # seconds between looks at a job for the event stream
KEEP_ALIVE = 15.0  # seconds between comments on a quiet event stream, so proxies keep it open
EXPIRE_INTERVAL = 30.0
RETRY_AFTER = 10  # seconds a client is asked to wait when the queue is full


@dataclass(frozen=True)
class ServerSettings:
    model: str  # a Hugging Face repo id or a model folder, on the server's machine
    token: str = ""  # empty: no token (loopback only)
    max_queue: int = 64
    max_upload_bytes: int = 32 << 20
    result_ttl: float = 3600.0


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


class UploadLimit:
    """ASGI middleware: a request body over ``limit`` bytes gets 413 before it is read into memory."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and int(declared) > self.limit:
            return await self.too_large(send)
        received = 0

        async def counted():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                raise UploadTooLarge
            return message

        try:
            await self.app(scope, counted, send)
        except UploadTooLarge:
            await self.too_large(send)

    async def too_large(self, send):
        body = json.dumps({"detail": f"The upload is larger than the server takes ({self.limit >> 20} MB)."})
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body.encode()})


class UploadTooLarge(Exception):
    pass


def create_app(settings: ServerSettings, executor) -> FastAPI:
    """The app, running its jobs with ``executor``: start(table), stop(), devices, loaded()."""
    table = JobTable(settings.max_queue, settings.result_ttl)

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        executor.start(table)
        expiring = asyncio.create_task(expire_regularly(table))
        try:
            yield
        finally:  # SIGTERM: the queued jobs end cancelled, the running ones are cancelled, the workers stop
            expiring.cancel()
            for job in table.close():
                job.cancel_requested.set()
            await asyncio.to_thread(executor.stop)

    app = FastAPI(
        title="TripoSR server",
        version=str(API_VERSION),
        description="One image in, a coloured 3D mesh out, on the server's GPUs. "
        + (__doc__ or "").split("\n\n")[0],
        lifespan=lifespan,
    )
    app.state.table = table

    def authorised(request: Request) -> None:
        if not settings.token:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(token.encode(), settings.token.encode()):
            raise HTTPException(
                401, "A valid token is needed: Authorization: Bearer <token>.", {"WWW-Authenticate": "Bearer"}
            )

    def job_of(job_id: str) -> ServerJob:
        job = table.get(job_id)
        if job is None:
            raise HTTPException(404, "No such job (or its results expired).")
        return job

    @app.get("/v1/health")
    def health() -> dict:
        return {
            "status": "ok",
            "model": settings.model,
            "devices": executor.devices,
            "queue": table.queued,
            "loaded": executor.loaded(),
            "api": API_VERSION,
        }

    @app.post("/v1/jobs", status_code=202, dependencies=[Depends(authorised)])
    async def submit(form: Annotated[JobForm, Form()]) -> JSONResponse:
        request = await job_request(form)
        job = table.submit(request)
        if job is None:
            raise HTTPException(503, "The queue is full; try again soon.", {"Retry-After": str(RETRY_AFTER)})
        return JSONResponse({"id": job.id}, status_code=202)

    @app.get("/v1/jobs/{job_id}", dependencies=[Depends(authorised)])
    def status(job_id: str) -> dict:
        job = job_of(job_id)
        return job.status(table.position(job))

    @app.get("/v1/jobs/{job_id}/events", dependencies=[Depends(authorised)])
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

    @app.get("/v1/jobs/{job_id}/result.glb", dependencies=[Depends(authorised)])
    async def result_glb(job_id: str) -> Response:
        job = finished_job(job_id)
        size = options.TARGET_SIZE.default
        data = await result_file(
            job, "result.glb", lambda: glb_bytes(job.result.mesh, job.result.texture, size)
        )
        return Response(data, media_type="model/gltf-binary")

    @app.get("/v1/jobs/{job_id}/result.npz", dependencies=[Depends(authorised)])
    async def result_npz(job_id: str) -> Response:
        job = finished_job(job_id)
        data = await result_file(job, "result.npz", lambda: npz_bytes(job))
        return Response(data, media_type="application/octet-stream")

    @app.delete("/v1/jobs/{job_id}", dependencies=[Depends(authorised)])
    def cancel(job_id: str) -> dict:
        job = job_of(job_id)
        table.cancel(job)
        return job.status(table.position(job))

    def finished_job(job_id: str) -> ServerJob:
        job = job_of(job_id)
        if job.result is None:
            raise HTTPException(409, f"The job has no result (it is {job.state}).")
        return job

    app.add_middleware(UploadLimit, limit=settings.max_upload_bytes)
    return app


async def result_file(job: ServerJob, name: str, make) -> bytes:
    if name not in job.files:
        job.files[name] = await asyncio.to_thread(make)
    return job.files[name]


async def job_request(form) -> dict:
    """The worker command for a POST: a generation from the image, or a re-mesh of saved scene codes."""
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
            SceneCodes.from_bytes(codes, source="The uploaded scene codes")
            return {"cmd": "remesh", "codes": codes, "options": MeshOptions(**values)}
        if form.image is None:
            raise OptionError(
                "Send the image file as the form field 'image' (or saved scene codes as 'codes')."
            )
        data = await form.image.read()
        await asyncio.to_thread(check_image, data)
        return {
            "cmd": "generate",
            "image": {"data": np.frombuffer(data, np.uint8)},
            "options": GenerateOptions(**values),
        }
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
