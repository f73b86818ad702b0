"""The API's contract as OpenAPI publishes it, and its text, written here once: the description, the job form
(made from options.py), the response models, the error shape, and the statuses each operation answers with.
Clients generated from ``/openapi.json`` and API tools rely on exactly this, so the routes in ``routes`` are
declared with it and the tests hold the server's answers to it (Schemathesis).
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
from typing import Annotated, Literal

from fastapi import File, Form, UploadFile
from pydantic import BaseModel, Field

from .. import options
from ..backends.types import MAX_NOTE_CHARS, MAX_NOTES
from ..options import GenerateOptions
from .jobs import CANCELLED, DONE, FAILED, QUEUED, RUNNING

MULTIPART = "multipart/form-data"


class Error(BaseModel):
    """Every error, whatever its status: one sentence for people, naming the field at fault if any."""

    detail: str = Field(examples=["threshold: Input should be less than or equal to 100"])


class JobState(enum.StrEnum):
    queued = QUEUED
    running = RUNNING
    done = DONE
    failed = FAILED
    cancelled = CANCELLED


class JobStatus(BaseModel):
    """Where a job is; the event stream sends the same, as each change happens."""

    state: JobState
    stage: str = Field(description="What it is doing now, for people")
    progress: float = Field(ge=0, le=1, description="Over the whole job; it only rises, and is 1 once done")
    position: int | None = Field(
        ge=0, description="While queued: how many jobs wait before it (0: it runs next); else null"
    )
    error: str | None = Field(description="Why it failed, or why it was cancelled by the server")
    notes: list[Annotated[str, Field(max_length=MAX_NOTE_CHARS)]] = Field(
        default_factory=list,
        max_length=MAX_NOTES,
        description="Once done: what the job did otherwise than asked, and why, for people (e.g. Photo "
        "Texture not applied)",
    )


class JobCreated(BaseModel):
    id: str = Field(description="The job's id: random, and its only handle (GET /v1/jobs/{id})")


class Health(BaseModel):
    status: Literal["ok"]
    model: str = Field(description="The model: a Hugging Face repo id, or a folder's name")
    devices: list[str]
    queue: int = Field(ge=0, description="Jobs waiting")
    loaded: bool = Field(description="Whether every device has its model loaded")
    api: int = Field(description="The API's version: 1")


# One event of /v1/jobs/{id}/events, as an event-stream parser hands it over (the first carries retry only).
SERVER_SENT_EVENT = {
    "type": "object",
    "properties": {
        "id": {
            "type": "string",
            "description": "The job's revision: send it back as Last-Event-ID to resume",
        },
        "event": {"type": "string", "enum": ["status"]},
        "data": {"type": "string", "description": "A JobStatus, as JSON"},
        "retry": {"type": "integer", "description": "Milliseconds to wait before reconnecting"},
    },
}


def errors(*statuses: int) -> dict:
    """OpenAPI's description of these error statuses, all in the one error shape."""
    return {status: {"model": Error, "description": ERROR_STATUSES[status]} for status in statuses}


API_VERSION = 1
DESCRIPTION = """One image in, a coloured 3D mesh out, on the server's GPUs (TripoSR).

1. `POST /v1/jobs` with the image file as `image` (multipart/form-data) and any of Generate's options:
   202, its `id`, and its URL in `Location`. Saved scene codes as `codes` (a job's `result.npz` holds them,
   with the photo for `photo_texture`) make a new mesh without the encoder.
2. Follow it: `GET /v1/jobs/{id}` now and then, or its Server-Sent Events at `/v1/jobs/{id}/events`.
3. Once `done`: `GET /v1/jobs/{id}/result.glb` (or `result.npz`).
4. `POST /v1/jobs/{id}/cancel` stops a job (it ends `cancelled`); `DELETE /v1/jobs/{id}` forgets it and its
   results (a job that has not ended is cancelled first).

With a token (`--token-file`), every request but `/v1/health` sends `Authorization: Bearer <token>`.
Every error is `{"detail": "..."}`. Results are kept until they expire (`--result-ttl`).
"""

ERROR_STATUSES = {
    400: "The image or the scene codes cannot be used (not an image, damaged codes, another model's)",
    401: "A token is needed: Authorization: Bearer <token>",
    403: "Refused: a server without a token answers this machine's requests only",
    404: "No such job, or its results expired",
    408: "The upload stalled",
    409: "The job has no result (yet), or has ended already (nothing to cancel)",
    413: "The upload is larger than the server takes",
    415: "The body is not multipart/form-data",
    422: "A form field is unknown, or its value is out of range",
    503: "The queue is full: try again after Retry-After seconds",
}
# What any request may be refused with before it reaches its route (the guard).
GUARDED = (401, 403)


def binary(media_type: str, description: str) -> dict:
    return {
        200: {
            "description": description,
            "content": {media_type: {"schema": {"type": "string", "format": "binary"}}},
        }
    }


def job_form_parameters() -> list[inspect.Parameter]:
    """POST /v1/jobs's multipart form: ``image`` or ``codes`` (files), and every option of Generate as a
    field of its own type and range, from options.py."""
    files = [
        inspect.Parameter(
            name,
            inspect.Parameter.KEYWORD_ONLY,
            default=File(None, description=description),
            # A client may send a binary part without a filename, and then it arrives as text (part_bytes)
            annotation=UploadFile | str | None,
        )
        for name, description in (
            ("image", "The image file (PNG, JPEG, WebP, TIFF or BMP). Send this or codes"),
            (
                "codes",
                "Instead of an image: saved scene codes (a batch's .triposr.npz, or a job's result.npz), "
                "meshed again without the encoder; the photo they hold is projected again (photo_texture)",
            ),
        )
    ]
    defaults = GenerateOptions()
    fields = [
        inspect.Parameter(
            option.name,
            inspect.Parameter.KEYWORD_ONLY,
            default=None,
            annotation=Annotated[
                type(option.default) | None,
                Form(
                    description=f"{option.description} ({describe_values(option)}; default: "
                    f"{shown(getattr(defaults, option.name))})",
                    **limits(option),
                ),
            ],
        )
        for option in (*options.IMAGE_OPTIONS, *options.MESH_OPTIONS)
    ]
    return files + fields


def shown(value) -> str:
    """A default as a client sends it (booleans as true/false)."""
    return str(value).lower() if isinstance(value, bool) else f"{value:g}"


def describe_values(option: options.Option) -> str:
    return "true or false" if isinstance(option.default, bool) else option.range_text


def limits(option: options.Option) -> dict:
    """The option's range as JSON Schema can say it; the gap between an ``off`` value and the minimum is
    options.py's to refuse (422, in the same shape)."""
    if isinstance(option.default, bool):
        return {}
    bounds = {"ge": option.off if option.off is not None else option.minimum, "le": option.maximum}
    bounds = {name: value for name, value in bounds.items() if value is not None}
    return {**bounds, "allow_inf_nan": False} if isinstance(option.default, float) else bounds


def add_form_rules(document: dict) -> dict:
    """What the generated form schema cannot say by itself, added to the OpenAPI document: send ``image`` or
    ``codes`` (not both; the image's options go with an image only), and an option with an ``off`` value
    takes that value or its range, nothing between; no other field."""
    request_body = document["paths"]["/v1/jobs"]["post"]["requestBody"]
    request_body["required"] = True
    content = request_body["content"][MULTIPART]
    body = document["components"]["schemas"][content["schema"]["$ref"].rsplit("/", 1)[-1]]
    image_only = ["image", *(option.name for option in options.IMAGE_OPTIONS)]
    body["additionalProperties"] = False  # a misspelt option is refused, never ignored
    body["oneOf"] = [
        {"required": ["image"], "not": {"required": ["codes"]}},
        {"required": ["codes"], "not": {"anyOf": [{"required": [name]} for name in image_only]}},
    ]
    for option in (*options.IMAGE_OPTIONS, *options.MESH_OPTIONS):
        if option.off is None:
            continue
        kind = "integer" if isinstance(option.default, int) else "number"
        on = {"type": kind, "minimum": option.minimum}
        on.update({"maximum": option.maximum} if option.maximum is not None else {})
        body["properties"][option.name]["anyOf"] = [{"type": kind, "const": option.off}, on]
    for field in body["properties"].values():
        without_null(field)
    for name in ("image", "codes"):
        body["properties"][name]["minLength"] = 1  # an empty part counts as none
    return document


def as_the_server_answers(document: dict) -> dict:
    """What FastAPI documents by default, set to what the server does: one error shape for every status,
    header parameters as a client sends them, and links from a created job to every operation on it."""
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    jobs = document["paths"]["/v1/jobs"]["post"]["responses"]["202"]
    jobs["links"] = {}
    for path, methods in document["paths"].items():
        for operation in methods.values():
            # FastAPI documents its validation-error array; the server answers {"detail": "..."} instead.
            if "422" in operation["responses"]:
                operation["responses"]["422"]["content"] = error
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "header":
                    without_null(parameter["schema"])  # a header is sent or not: it has no null
            if path.startswith("/v1/jobs/{job_id}"):
                jobs["links"][operation["operationId"]] = {
                    "operationId": operation["operationId"],
                    "parameters": {"job_id": "$response.body#/id"},
                }
    for name in ("HTTPValidationError", "ValidationError"):
        document["components"]["schemas"].pop(name, None)
    return document


def without_null(field: dict) -> None:
    """A form field is sent or left out (its default): multipart has no null to send, so the schema of an
    optional field (``T | None`` in Python) is T's alone."""
    kinds = [kind for kind in field.get("anyOf", []) if kind != {"type": "null"}]
    if len(kinds) == 1:
        del field["anyOf"]
        field.update(kinds[0])
    elif kinds:
        field["anyOf"] = kinds


FORM_FIELDS = frozenset(
    ["image", "codes", *(option.name for option in (*options.IMAGE_OPTIONS, *options.MESH_OPTIONS))]
)
MESH_FIELDS = frozenset(field.name for field in dataclasses.fields(options.MeshOptions))


async def part_bytes(part: UploadFile | str) -> bytes:
    """A binary form part's bytes: an uploaded file's, or those of a part sent without a filename, which
    Starlette hands over as text decoded as UTF-8 where the bytes are valid UTF-8, else as Latin-1."""
    if not isinstance(part, str):
        return await part.read()
    try:
        as_latin1 = part.encode("latin-1")
    except UnicodeEncodeError:
        return part.encode("utf-8")  # a character beyond Latin-1: it was decoded as UTF-8
    try:
        as_latin1.decode("utf-8")
    except UnicodeDecodeError:
        return as_latin1  # not UTF-8: decoded as Latin-1, which gives the bytes back exactly
    return part.encode("utf-8")  # valid UTF-8 was decoded as UTF-8 (ASCII alike either way)
