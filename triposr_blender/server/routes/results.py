"""GET and HEAD /v1/jobs/{id}/result.glb and result.npz: a finished job's mesh, made once and kept.

No ``from __future__ import annotations`` here: FastAPI reads the routes' annotations, and Ray Serve ships the
app to its replicas by value, where a closure keeps only the globals its code names, not those a string
annotation would.
"""

import asyncio

from fastapi import APIRouter
from fastapi.responses import Response

from ... import options
from ...core import result_archive
from ...core.export import glb_bytes
from ..dependencies import FinishedJob
from ..jobs import ServerJob
from ..schema import GUARDED, binary, errors

router = APIRouter()


def result_route(name: str, media_type: str, description: str, make) -> None:
    responses = {**binary(media_type, description), **errors(*GUARDED, 404, 409)}

    async def result(job: FinishedJob) -> Response:
        return Response(await result_file(job, name, lambda: make(job)), media_type=media_type)

    for method in ("get", "head"):  # HEAD: the size and type, without the body
        getattr(router, method)(
            f"/v1/jobs/{{job_id}}/{name}",
            response_class=Response,
            responses=responses,
            operation_id=f"{method}_{name.replace('.', '_')}",
        )(result)


async def result_file(job: ServerJob, name: str, make) -> bytes:
    if name not in job.files:
        job.files[name] = await asyncio.to_thread(make)
    return job.files[name]


def npz_bytes(job: ServerJob) -> bytes:
    """The arrays the add-on builds an object from, the scene codes and their photo (core.result_archive)."""
    result = job.result
    return result_archive.to_bytes(result.mesh, result.texture, result.codes, result.photo)


result_route(
    "result.glb",
    "model/gltf-binary",
    "The coloured mesh as binary glTF 2.0 (COLOR_0, or baseColorTexture when baked)",
    lambda job: glb_bytes(job.result.mesh, job.result.texture, options.TARGET_SIZE.default),
)
result_route(
    "result.npz",
    "application/octet-stream",
    "The arrays Blender builds from, the scene codes and the photo they were encoded from: a numpy .npz "
    "(sent back as codes, it makes a new mesh with the photo projected again)",
    npz_bytes,
)
