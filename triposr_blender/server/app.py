"""The server's HTTP API, version 1 (stable: clients outside this repository call exactly these). The
OpenAPI document at /openapi.json is the contract, and ``schema`` declares it:

    GET    /v1/health                   status, model, devices, queue length; no token needed
    POST   /v1/jobs                     multipart/form-data: the image file as ``image`` (or saved scene codes
                                        as ``codes``) and Generate's options as typed fields
                                        -> 202 {"id"}, Location: /v1/jobs/{id}
    GET    /v1/jobs/{id}                {"state", "stage", "progress", "position", "error"}
    GET    /v1/jobs/{id}/events         the same as Server-Sent Events; Last-Event-ID resumes
    GET    /v1/jobs/{id}/result.glb     the coloured mesh (COLOR_0, or baseColorTexture when baked); HEAD too
    GET    /v1/jobs/{id}/result.npz     the arrays Blender builds from, and the scene codes; HEAD too
    POST   /v1/jobs/{id}/cancel         cancels a queued or running job (202); it ends as "cancelled"
    DELETE /v1/jobs/{id}                forgets the job and its results (204), cancelling it first if it has
                                        not ended (202)

Every request but health needs ``Authorization: Bearer <token>`` when the server has a token (the docs and
the schema too), checked before the body is read; a server without one answers only this machine's requests
(``guard``). Every error is {"detail": "..."}: 400 (an image or scene codes that cannot be used), 401
(token), 403 (a request from beyond this machine to a server without a token), 404 (no such job, or
expired), 408 (an upload that stalled), 409 (no result yet, or nothing left to cancel), 413 (upload too
large), 415 (not multipart), 422 (an unknown field, or a value out of range), 503 with Retry-After (queue
full). No file path is ever taken
from a client, and none is shown to one.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from fastapi import FastAPI, Header, HTTPException, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.routing import APIRoute
from fastapi.security import HTTPBearer

from .. import options
from ..core import result_archive
from ..core.errors import InvalidImageError
from ..core.export import glb_bytes
from ..core.scene_codes import SceneCodes, SceneCodesError
from ..options import GenerateOptions, MeshOptions, OptionError
from ..worker.backend import GENERATE, REMESH
from .guard import RequestGuard
from .jobs import FINISHED, JobRequest, JobTable, ServerJob
from .schema import (
    ERROR_STATUSES,
    FORM_FIELDS,
    GUARDED,
    MESH_FIELDS,
    MULTIPART,
    SERVER_SENT_EVENT,
    Error,
    Health,
    JobCreated,
    JobStatus,
    add_form_rules,
    as_the_server_answers,
    binary,
    errors,
    job_form_parameters,
    part_bytes,
)

API_VERSION = 1
EVENTS_INTERVAL = 0.1  # seconds between looks at a job for the event stream
KEEP_ALIVE = 15.0  # seconds between comments on a quiet event stream, so proxies keep it open
RECONNECT_MS = 1000  # the event stream's retry: how soon a client whose stream broke opens it again
EXPIRE_INTERVAL = 30.0
RETRY_AFTER = 10  # seconds a client is asked to wait when the queue is full
MIN_TOKEN_LENGTH = 16
# Documents the bearer token (Swagger UI's Authorize button); the guard checks it, before any body is read.
bearer = HTTPBearer(auto_error=False, description="The server's token (--token-file)")
DESCRIPTION = """One image in, a coloured 3D mesh out, on the server's GPUs (TripoSR).

1. `POST /v1/jobs` with the image file as `image` (multipart/form-data) and any of Generate's options:
   202, its `id`, and its URL in `Location`. Saved scene codes as `codes` make a new mesh without the encoder.
2. Follow it: `GET /v1/jobs/{id}` now and then, or its Server-Sent Events at `/v1/jobs/{id}/events`.
3. Once `done`: `GET /v1/jobs/{id}/result.glb` (or `result.npz`).
4. `POST /v1/jobs/{id}/cancel` stops a job (it ends `cancelled`); `DELETE /v1/jobs/{id}` forgets it and its
   results (a job that has not ended is cancelled first).

With a token (`--token-file`), every request but `/v1/health` sends `Authorization: Bearer <token>`.
Every error is `{"detail": "..."}`. Results are kept until they expire (`--result-ttl`).
"""
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
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.table = table
    app.state.end_jobs = end_jobs

    def job_of(job_id: str) -> ServerJob:
        job = table.get(job_id)
        if job is None:
            raise HTTPException(404, "No such job (or its results expired).")
        return job

    def finished_job(job_id: str) -> ServerJob:
        job = job_of(job_id)
        if job.result is None:
            raise HTTPException(409, f"The job has no result (it is {job.state}).")
        return job

    protected = {"dependencies": [Security(bearer)]} if settings.token else {}

    @app.get("/v1/health", response_model=Health, responses=errors(403))
    def health() -> dict:
        return {
            "status": "ok",
            "model": settings.model_name,
            "devices": executor.devices,
            "queue": table.queued,
            "loaded": executor.loaded(),
            "api": API_VERSION,
        }

    async def submit(request: Request, **form) -> JSONResponse:
        if request.headers.get("content-type", "").partition(";")[0].strip().lower() != MULTIPART:
            raise HTTPException(415, "Send the job as multipart/form-data: the image file and the options.")
        unknown = sorted(set((await request.form()).keys()) - FORM_FIELDS)
        if unknown:
            raise HTTPException(422, unknown_fields_message(unknown))
        job = table.submit(await job_request(form))
        if job is None:
            raise HTTPException(503, "The queue is full; try again soon.", {"Retry-After": str(RETRY_AFTER)})
        return JSONResponse({"id": job.id}, status_code=202, headers={"Location": f"/v1/jobs/{job.id}"})

    request_parameter = inspect.Parameter(
        "request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Request
    )
    # FastAPI reads a route's parameters from its signature: here, one form field per option of options.py.
    submit.__signature__ = inspect.Signature([request_parameter, *job_form_parameters()])
    app.post(
        "/v1/jobs",
        status_code=202,
        response_model=JobCreated,
        responses={
            202: {"headers": {"Location": {"description": "The job's URL", "schema": {"type": "string"}}}},
            **errors(*GUARDED, 400, 408, 413, 415, 422),
            503: {
                "model": Error,
                "description": ERROR_STATUSES[503],
                "headers": {"Retry-After": {"schema": {"type": "integer"}}},
            },
        },
        **protected,
    )(submit)

    @app.get("/v1/jobs/{job_id}", response_model=JobStatus, responses=errors(*GUARDED, 404), **protected)
    def status(job_id: str) -> dict:
        return table.status(job_of(job_id))

    @app.get(
        "/v1/jobs/{job_id}/events",
        response_class=StreamingResponse,
        responses={
            200: {
                "description": "Server-Sent Events: each a JobStatus as JSON (event: status), with the job's "
                "revision as its id, until the job ends; send Last-Event-ID to resume",
                "content": {"text/event-stream": {"schema": SERVER_SENT_EVENT}},
            },
            **errors(*GUARDED, 404),
        },
        **protected,
    )
    def events(job_id: str, last_event_id: Annotated[int | None, Header()] = None) -> StreamingResponse:
        job = job_of(job_id)
        return StreamingResponse(
            event_stream(table, job, last_event_id),
            media_type="text/event-stream",
            # proxies (nginx) must pass each event on as it comes
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    def result_route(name: str, media_type: str, description: str, make):
        responses = {**binary(media_type, description), **errors(*GUARDED, 404, 409)}

        async def result(job_id: str) -> Response:
            job = finished_job(job_id)
            return Response(await result_file(job, name, lambda: make(job)), media_type=media_type)

        for method in ("get", "head"):  # HEAD: the size and type, without the body
            getattr(app, method)(
                f"/v1/jobs/{{job_id}}/{name}",
                response_class=Response,
                responses=responses,
                operation_id=f"{method}_{name.replace('.', '_')}",
                **protected,
            )(result)

    size = options.TARGET_SIZE.default
    result_route(
        "result.glb",
        "model/gltf-binary",
        "The coloured mesh as binary glTF 2.0 (COLOR_0, or baseColorTexture when baked)",
        lambda job: glb_bytes(job.result.mesh, job.result.texture, size),
    )
    result_route(
        "result.npz",
        "application/octet-stream",
        "The arrays Blender builds from, and the scene codes: a numpy .npz",
        npz_bytes,
    )

    @app.post(
        "/v1/jobs/{job_id}/cancel",
        status_code=202,
        response_model=JobStatus,
        responses=errors(*GUARDED, 404, 409),
        **protected,
    )
    def cancel(job_id: str) -> dict:
        job = job_of(job_id)
        if job.state in FINISHED:
            raise HTTPException(409, f"The job has ended already (it is {job.state}): nothing to cancel.")
        table.cancel(job)
        return table.status(job)

    @app.delete(
        "/v1/jobs/{job_id}",
        status_code=202,
        response_model=JobStatus,
        responses={
            204: {"description": "The finished job and its results are deleted"},
            **errors(*GUARDED, 404),
        },
        **protected,
    )
    def delete(job_id: str) -> Response:
        job = job_of(job_id)
        finished = job.state in FINISHED
        table.delete(job)
        return Response(status_code=204) if finished else JSONResponse(table.status(job), status_code=202)

    @app.options("/{path:path}", include_in_schema=False)
    def allowed_methods(path: str) -> Response:
        """OPTIONS: the methods a path takes (Allow), as HTTP asks; 404 for a path the API does not have."""
        methods = set()
        for route in app.routes:
            if isinstance(route, APIRoute) and route.path_regex.match(f"/{path}"):
                methods |= route.methods
        if not methods:
            raise HTTPException(404, "No such path.")
        return Response(status_code=204, headers={"Allow": ", ".join(sorted(methods | {"OPTIONS"}))})

    @app.exception_handler(RequestValidationError)
    async def one_error_shape(_request, error: RequestValidationError) -> JSONResponse:
        """422 in the shape of every other error: {"detail": "field: what is wrong; ..."}."""
        problems = [
            f"{error_field(problem)}: {problem['msg']}" if error_field(problem) else problem["msg"]
            for problem in error.errors()
        ]
        return JSONResponse({"detail": "; ".join(problems)}, status_code=422)

    generated_openapi = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            # FastAPI keeps the document it made: amended once.
            as_the_server_answers(add_form_rules(generated_openapi()))
        return app.openapi_schema

    app.openapi = openapi
    app.add_middleware(
        RequestGuard,
        token=settings.token,
        max_body=settings.max_upload_bytes,
        idle_timeout=settings.idle_timeout,
    )
    return app


async def event_stream(table: JobTable, job: ServerJob, last_event_id: int | None):
    """The job's status as Server-Sent Events: one each time it changes, with its revision as the id, until
    it ends. A client that sends Last-Event-ID hears only what is newer; a comment keeps a quiet stream open
    through proxies."""
    yield f"retry: {RECONNECT_MS}\n\n"
    sent = last_event_id if last_event_id is not None and last_event_id <= job.revision else -1
    if job.state in FINISHED and sent >= job.revision:
        return  # the client has the last event already
    quiet = 0.0
    while True:
        revision = job.revision
        if revision > sent:
            current = table.status(job)  # as new as the revision, or newer: the next one comes round again
            sent, quiet = revision, 0.0
            yield f"id: {revision}\nevent: status\ndata: {json.dumps(current)}\n\n"
            if current["state"] in FINISHED:
                return
        elif quiet >= KEEP_ALIVE:
            quiet = 0.0
            yield ": keep-alive\n\n"
        await asyncio.sleep(EVENTS_INTERVAL)
        quiet += EVENTS_INTERVAL


async def result_file(job: ServerJob, name: str, make) -> bytes:
    if name not in job.files:
        job.files[name] = await asyncio.to_thread(make)
    return job.files[name]


async def job_request(form: dict) -> JobRequest:
    """The job a POST asks for: a generation from the image, or a re-mesh of saved scene codes."""
    image, codes = form.pop("image"), form.pop("codes")
    values = {name: value for name, value in form.items() if value is not None}
    try:
        if image is not None and codes is not None:
            raise OptionError("Send the image or saved scene codes, not both.")
        if codes is not None:
            unused = sorted(set(values) - MESH_FIELDS)
            if unused:
                raise OptionError(f"{', '.join(unused)} only apply to an image, not to scene codes.")
            mesh_options = MeshOptions(**values)
        elif image is not None:
            generate_options = GenerateOptions(**values)
        else:
            raise OptionError(
                "Send the image file as the form field 'image' (or saved scene codes as 'codes')."
            )
    except OptionError as error:
        raise HTTPException(422, str(error)) from error
    try:
        if codes is not None:
            data = await part_bytes(codes)
            # Off the event loop: other clients, health checks included, never wait for it.
            await asyncio.to_thread(SceneCodes.from_bytes, data, "The uploaded scene codes")
            return JobRequest(REMESH, data, mesh_options)
        data = await part_bytes(image)
        await asyncio.to_thread(check_image, data)
        return JobRequest(GENERATE, data, generate_options)
    except (InvalidImageError, SceneCodesError) as error:
        raise HTTPException(400, str(error)) from error


def error_field(problem: dict) -> str:
    """The form field a validation problem is about ("threshold"), or "" for the request as a whole."""
    location = [
        str(part) for part in problem.get("loc", ()) if part not in ("body", "query", "header", "path")
    ]
    return ".".join(location)


def check_image(data: bytes) -> None:
    """Refuse an upload that is no image the worker can read, or has more pixels than an input may have
    (core.defaults.MAX_IMAGE_PIXELS), before it takes a place in the queue."""
    from ..core.preprocess import load_image

    load_image(data)


def unknown_fields_message(unknown: list[str]) -> str:
    message = f"Unknown form field(s): {', '.join(unknown)}."
    if options.QUAD_REMESH.name in unknown:
        message += (
            " Quad Remesh is Blender's QuadriFlow: the server makes triangle meshes; remesh them in Blender."
        )
    return message


def npz_bytes(job: ServerJob) -> bytes:
    """The arrays the add-on builds an object from, and the scene codes (core.result_archive)."""
    return result_archive.to_bytes(job.result.mesh, job.result.texture, job.result.codes)


async def expire_regularly(table: JobTable) -> None:
    while True:
        await asyncio.sleep(EXPIRE_INTERVAL)
        table.expire()
