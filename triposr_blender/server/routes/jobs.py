"""The jobs: POST /v1/jobs queues one (202 and its Location), GET /v1/jobs/{id} is its status,
POST /v1/jobs/{id}/cancel stops it, DELETE /v1/jobs/{id} forgets it and its results."""

import asyncio
import inspect

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse, Response

from ... import options
from ...backends.backend import GENERATE, REMESH
from ...core.errors import InvalidImageError
from ...core.scene_codes import SceneCodes, SceneCodesError, photo_in
from ...options import GenerateOptions, MeshOptions, OptionError
from ..dependencies import JobOf, Table
from ..jobs import FINISHED, JobRequest
from ..schema import (
    ERROR_STATUSES,
    FORM_FIELDS,
    GUARDED,
    MESH_FIELDS,
    MULTIPART,
    Error,
    JobCreated,
    JobStatus,
    errors,
    job_form_parameters,
    part_bytes,
)

RETRY_AFTER = 10  # seconds a client is asked to wait when the queue is full

router = APIRouter(prefix="/v1/jobs")


async def submit(request: Request, table: Table, **form) -> JSONResponse:
    if request.headers.get("content-type", "").partition(";")[0].strip().lower() != MULTIPART:
        raise HTTPException(415, "Send the job as multipart/form-data: the image file and the options.")
    unknown = sorted(set((await request.form()).keys()) - FORM_FIELDS)
    if unknown:
        raise HTTPException(422, unknown_fields_message(unknown))
    job = table.submit(await job_request(form))
    if job is None:
        raise HTTPException(503, "The queue is full; try again soon.", {"Retry-After": str(RETRY_AFTER)})
    return JSONResponse({"id": job.id}, status_code=202, headers={"Location": f"/v1/jobs/{job.id}"})


# FastAPI reads a route's parameters from its signature: here, one form field per option of options.py.
submit.__signature__ = inspect.Signature(
    [
        inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=annotation)
        for name, annotation in (("request", Request), ("table", Table))
    ]
    + job_form_parameters()
)
router.post(
    "",
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
)(submit)


@router.get("/{job_id}", response_model=JobStatus, responses=errors(*GUARDED, 404))
def status(job: JobOf, table: Table) -> dict:
    return table.status(job)


@router.post(
    "/{job_id}/cancel", status_code=202, response_model=JobStatus, responses=errors(*GUARDED, 404, 409)
)
def cancel(job: JobOf, table: Table) -> dict:
    if job.state in FINISHED:
        raise HTTPException(409, f"The job has ended already (it is {job.state}): nothing to cancel.")
    table.cancel(job)
    return table.status(job)


@router.delete(
    "/{job_id}",
    status_code=202,
    response_model=JobStatus,
    responses={
        204: {"description": "The finished job and its results are deleted"},
        **errors(*GUARDED, 404),
    },
)
def delete(job: JobOf, table: Table) -> Response:
    finished = job.state in FINISHED
    table.delete(job)
    return Response(status_code=204) if finished else JSONResponse(table.status(job), status_code=202)


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
            await asyncio.to_thread(check_codes, data)
            return JobRequest(REMESH, data, mesh_options)
        data = await part_bytes(image)
        await asyncio.to_thread(check_image, data)
        return JobRequest(GENERATE, data, generate_options)
    except (InvalidImageError, SceneCodesError) as error:
        raise HTTPException(400, str(error)) from error


def check_codes(data: bytes) -> None:
    """Refuse scene codes, or a photo kept with them, that the worker could not use, before they take a place
    in the queue."""
    source = "The uploaded scene codes"
    SceneCodes.from_bytes(data, source)
    photo_in(data, source)


def check_image(data: bytes) -> None:
    """Refuse an upload that is no image the worker can read, or has more pixels than an input may have
    (core.defaults.MAX_IMAGE_PIXELS), before it takes a place in the queue."""
    from ...core.preprocess import load_image

    load_image(data)


def unknown_fields_message(unknown: list[str]) -> str:
    message = f"Unknown form field(s): {', '.join(unknown)}."
    if options.QUAD_REMESH.name in unknown:
        message += (
            " Quad Remesh is Blender's QuadriFlow: the server makes triangle meshes; remesh them in Blender."
        )
    return message
