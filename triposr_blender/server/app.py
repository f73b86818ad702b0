"""The server's HTTP API, version 1 (stable: clients outside this repository call exactly these), assembled:
one router per resource (``routes``), the request guard, one error shape, and the OpenAPI document as the
server answers. The API's text (what each operation and status means) is written once, in ``schema``.

Every request but health needs ``Authorization: Bearer <token>`` when the server has a token (the docs and
the schema too), checked before the body is read; a server without one answers only this machine's requests
(``guard``). No file path is ever taken from a client, and none is shown to one.
"""

from __future__ import annotations

import asyncio
import contextlib

from fastapi import FastAPI, HTTPException, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.routing import Match

from .dependencies import bearer
from .guard import RequestGuard
from .jobs import JobTable
from .routes import events, health, jobs, results
from .schema import API_VERSION, DESCRIPTION, add_form_rules, as_the_server_answers
from .settings import ServerSettings

EXPIRE_INTERVAL = 30.0
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
# What a job still following its events hears when the server stops.
STOPPING = "The server stopped: send the job again once it is back."


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
        title="TripoSR server", version=str(API_VERSION), description=DESCRIPTION, lifespan=lifespan
    )
    app.state.table, app.state.settings, app.state.executor = table, settings, executor
    app.state.end_jobs = end_jobs
    protected = [Security(bearer)] if settings.token else []
    app.include_router(health.router)
    for resource in (jobs, events, results):
        app.include_router(resource.router, dependencies=protected)

    @app.options("/{path:path}", include_in_schema=False)
    def allowed_methods(path: str) -> Response:
        """OPTIONS: the methods a path takes (Allow), as HTTP asks; 404 for a path the API does not have."""
        methods = {
            method
            for method in HTTP_METHODS
            for route in app.routes
            if route.matches({"type": "http", "path": f"/{path}", "method": method, "root_path": ""})[0]
            == Match.FULL
        }
        if not methods:
            raise HTTPException(404, "No such path.")
        return Response(status_code=204, headers={"Allow": ", ".join(sorted(methods | {"OPTIONS"}))})

    app.add_exception_handler(RequestValidationError, one_error_shape)
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


async def one_error_shape(_request, error: RequestValidationError) -> JSONResponse:
    """422 in the shape of every other error: {"detail": "field: what is wrong; ..."}."""
    problems = [
        f"{error_field(problem)}: {problem['msg']}" if error_field(problem) else problem["msg"]
        for problem in error.errors()
    ]
    return JSONResponse({"detail": "; ".join(problems)}, status_code=422)


def error_field(problem: dict) -> str:
    """The form field a validation problem is about ("threshold"), or "" for the request as a whole."""
    location = [
        str(part) for part in problem.get("loc", ()) if part not in ("body", "query", "header", "path")
    ]
    return ".".join(location)


async def expire_regularly(table: JobTable) -> None:
    while True:
        await asyncio.sleep(EXPIRE_INTERVAL)
        table.expire()
