"""The server's jobs: a bounded FIFO queue, each job's state and progress, and results until they expire.

Thread-safe: the HTTP handlers submit, read and cancel jobs while the executors' threads take and finish them.
"""

from __future__ import annotations

import itertools
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from ..backends.backend import GENERATE, REMESH
from ..backends.types import MeshResult
from ..core.progress import job_fraction
from ..options import GenerateOptions, MeshOptions

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
# Every change of any job's status takes the next number (next() on a count is atomic): the threads that
# change a job never lose one another's change, and a job's numbers only rise.
REVISIONS = itertools.count(1)
FINISHED = frozenset({DONE, FAILED, CANCELLED})
TAKE_TIMEOUT = 0.5  # seconds an executor's idle thread waits for a job before it looks whether it must stop


@dataclass(frozen=True)
class JobRequest:
    """What a client asked for: the mesh of an image (``GENERATE``), or a new mesh of saved scene codes
    (``REMESH``), with the options for it."""

    kind: str
    data: bytes  # the image file as uploaded, or the scene codes (core.scene_codes bytes)
    options: GenerateOptions | MeshOptions

    def __post_init__(self):
        if self.kind not in (GENERATE, REMESH):
            raise ValueError(f"A server job generates or remeshes, not {self.kind!r}.")


@dataclass(eq=False)  # a job is itself, whatever it holds
class ServerJob:
    """One client's request and what has become of it."""

    request: JobRequest | None  # None once the job has ended: its upload is not kept as long as its result
    id: str = field(default_factory=lambda: secrets.token_urlsafe(18))  # 144 random bits: not guessable
    state: str = QUEUED
    stage: str = "Waiting in the queue"
    progress: float = 0.0
    error: str = ""
    result: MeshResult | None = None
    finished_at: float = 0.0
    cancel_requested: threading.Event = field(default_factory=threading.Event, repr=False)
    files: dict[str, bytes] = field(default_factory=dict, repr=False)  # result.glb, result.npz, once made
    revision: int = 0  # rises with each change of its status: the event stream's ids

    def advance(self, stage: str, fraction: float) -> None:
        """Its executor's news: ``fraction`` of ``stage``, folded into progress over the whole job, which
        only rises (a new stage starts at 0, the job does not go back)."""
        overall = job_fraction(stage, fraction)
        progress = max(self.progress, overall) if overall is not None else self.progress
        if (stage, progress) != (self.stage, self.progress):
            self.stage, self.progress = stage, progress
            self.revision = next(REVISIONS)

    def status(self, position: int | None) -> dict:
        return {
            "state": self.state,
            "stage": self.stage,
            "progress": round(self.progress, 4),
            "position": position,
            "error": self.error or None,
            "notes": list(self.result.notes) if self.result is not None else [],
        }


class JobTable:
    """The queue (at most ``max_queue`` waiting) and every job not yet expired, by id."""

    def __init__(self, max_queue: int, result_ttl: float):
        self.max_queue = max_queue
        self.result_ttl = result_ttl
        self._queue: deque[ServerJob] = deque()
        self._jobs: dict[str, ServerJob] = {}
        self._changed = threading.Condition()
        self._closed = False
        self._closing_reason = ""

    @property
    def queued(self) -> int:
        return len(self._queue)

    def submit(self, request: JobRequest) -> ServerJob | None:
        """The new job, queued last; None when the queue is full (or the server is stopping)."""
        with self._changed:
            if self._closed or len(self._queue) >= self.max_queue:
                return None
            job = ServerJob(request)
            self._jobs[job.id] = job
            self._queue.append(job)
            self._changed.notify()
            return job

    def take(self, timeout: float) -> ServerJob | None:
        """The first queued job, now running; None after ``timeout`` seconds without one."""
        with self._changed:
            if not self._queue:
                self._changed.wait(timeout)
            if not self._queue or self._closed:
                return None
            job = self._queue.popleft()
            job.state, job.stage = RUNNING, "Starting"
            job.revision = next(REVISIONS)
            for waiting in self._queue:  # each moved up a place
                waiting.revision = next(REVISIONS)
            return job

    def get(self, job_id: str, now: float | None = None) -> ServerJob | None:
        """The job, unless its result has expired (then it is forgotten now, not at the next sweep)."""
        with self._changed:
            job = self._jobs.get(job_id)
            if job is not None and self._expired(job, time.monotonic() if now is None else now):
                del self._jobs[job_id]
                return None
            return job

    def position(self, job: ServerJob) -> int | None:
        """How many jobs wait before it (0: it runs next); None once it is no longer queued."""
        with self._changed:
            return self._queue.index(job) if job in self._queue else None

    def status(self, job: ServerJob) -> dict:
        return job.status(self.position(job))

    def delete(self, job: ServerJob) -> None:
        """Forget the job, its result and its files, now; one that has not ended is cancelled first (a
        client still following its events hears it end)."""
        with self._changed:
            self.cancel(job)
            self._jobs.pop(job.id, None)

    def cancel(self, job: ServerJob) -> None:
        """A queued job ends at once; a running one when its executor sees the request; an ended one stays
        as it ended."""
        with self._changed:
            if job in self._queue:
                self._queue.remove(job)
                for waiting in self._queue:
                    waiting.revision = next(REVISIONS)
                self._end(job, CANCELLED, "")
            elif job.state == RUNNING:
                job.cancel_requested.set()

    def finish(self, job: ServerJob, state: str, result: MeshResult | None = None, error: str = "") -> None:
        with self._changed:
            if state == DONE and job.cancel_requested.is_set():
                # The client was told (202) that the job is cancelled: a result that came first is dropped.
                state, result = CANCELLED, None
            job.result = result
            self._end(job, state, error)

    def expire(self, now: float | None = None) -> None:
        """Forget finished jobs older than ``result_ttl``: their results are memory no client came for."""
        now = time.monotonic() if now is None else now
        with self._changed:
            for job in [job for job in self._jobs.values() if self._expired(job, now)]:
                del self._jobs[job.id]

    def _expired(self, job: ServerJob, now: float) -> bool:
        return job.state in FINISHED and now - job.finished_at > self.result_ttl

    def close(self, reason: str = "") -> list[ServerJob]:
        """Stop taking jobs: the queued ones end cancelled, and so will the running ones, which are returned
        to be cancelled; ``reason`` becomes each one's error, for the clients following them."""
        with self._changed:
            self._closed, self._closing_reason = True, reason
            while self._queue:
                self._end(self._queue.popleft(), CANCELLED, "")
            self._changed.notify_all()
            return [job for job in self._jobs.values() if job.state == RUNNING]

    def _end(self, job: ServerJob, state: str, error: str) -> None:
        if state == CANCELLED and self._closed:
            error = error or self._closing_reason
        job.state, job.error, job.finished_at = state, error, time.monotonic()
        job.request = None  # the upload: megabytes no one needs once the job has ended
        job.stage = {DONE: "Done", FAILED: "Failed", CANCELLED: "Cancelled"}[state]
        job.progress = 1.0 if state == DONE else job.progress
        job.revision = next(REVISIONS)
