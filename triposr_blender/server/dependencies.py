"""What the routes take from the app they serve in, as FastAPI dependencies: its job table, settings and
executor (on ``app.state``, set by ``create_app``), a job by the id in the path, and the token's scheme."""

from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPBearer

from .jobs import JobTable, ServerJob
from .settings import ServerSettings

# Documents the bearer token (Swagger UI's Authorize button); the guard checks it, before any body is read.
bearer = HTTPBearer(auto_error=False, description="The server's token (--token-file)")


def job_table(request: Request) -> JobTable:
    return request.app.state.table


def server_settings(request: Request) -> ServerSettings:
    return request.app.state.settings


def job_executor(request: Request) -> Any:
    """What runs the jobs: start(table), stop(), devices, loaded() (server.local or server.ray_serve)."""
    return request.app.state.executor


Table = Annotated[JobTable, Depends(job_table)]
Settings = Annotated[ServerSettings, Depends(server_settings)]
Executor = Annotated[Any, Depends(job_executor)]


def job_of(job_id: str, table: Table) -> ServerJob:
    job = table.get(job_id)
    if job is None:
        raise HTTPException(404, "No such job (or its results expired).")
    return job


JobOf = Annotated[ServerJob, Depends(job_of)]


def finished_job(job: JobOf) -> ServerJob:
    if job.result is None:
        raise HTTPException(409, f"The job has no result (it is {job.state}).")
    return job


FinishedJob = Annotated[ServerJob, Depends(finished_job)]
