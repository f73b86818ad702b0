"""GET /v1/jobs/{id}/events: a job's status as Server-Sent Events, resumable with Last-Event-ID."""

import asyncio
import json
from typing import Annotated

from fastapi import APIRouter, Header
from fastapi.responses import StreamingResponse

from ..dependencies import JobOf, Table
from ..jobs import FINISHED, JobTable, ServerJob
from ..schema import GUARDED, SERVER_SENT_EVENT, errors

EVENTS_INTERVAL = 0.1  # seconds between looks at a job for the event stream
KEEP_ALIVE = 15.0  # seconds between comments on a quiet event stream, so proxies keep it open
RECONNECT_MS = 1000  # the event stream's retry: how soon a client whose stream broke opens it again

router = APIRouter()


@router.get(
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
)
def events(
    job: JobOf, table: Table, last_event_id: Annotated[int | None, Header()] = None
) -> StreamingResponse:
    return StreamingResponse(
        event_stream(table, job, last_event_id),
        media_type="text/event-stream",
        # proxies (nginx) must pass each event on as it comes
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


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
