"""The worker-process backend, without bpy: start the process, send jobs, collect their events, cancel, stop.

A reader thread turns the worker's output into events on each job's own queue; the caller (a modal
operator's timer on Blender's main thread, or a blocking ``Job.wait``) drains them. Nothing here touches
bpy, so the reader thread is safe. The worker starts on the first job and stays alive, model loaded,
until ``stop`` (Unload). A cancelled job that the worker does not give up within ``cancel_grace`` seconds
gets the worker killed; jobs queued behind it are sent again to a fresh worker. A worker that dies on its
own fails its jobs with a message that quotes the end of its log; the next job starts a new worker.

Nothing waits for ever: a line on the worker's stdout that is no message (a library printing at import) is
logged and skipped; if reading fails in any way, the worker is stopped and its jobs fail with one message;
and a worker that gives no sign of life for ``stall_timeout`` seconds while it has jobs is stopped too.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..backends.backend import GENERATE, LOAD, REMESH, Backend, BackendStartError, Connection, Job
from ..backends.types import CANCELLED, ImageInput, ModelSettings, ModelState, Outcome
from ..core.mesh import FramedPhoto
from ..options import GenerateOptions, MeshOptions
from ..vendor_install import no_console_window, remove_folders_of_ended_processes
from . import protocol

PACKAGE_DIR = Path(__file__).resolve().parent.parent
WORKER_MODULE = f"{PACKAGE_DIR.name}.worker"
LOG_TAIL_LINES = 12
STOP_TIMEOUT = 3.0
# The longest a worker with jobs may stay silent before it counts as hung. Its longest silent steps are a
# UV unwrap of a million triangles and rembg's first compile, each some minutes.
STALL_TIMEOUT = 20 * 60.0
# Each client's folder for the arrays in transit: triposr-<pid of the client>-<random>, so that the folders of
# clients that were killed can be told apart from those of running ones, and removed.
FOLDER_PREFIX = "triposr-"


class WorkerStartError(BackendStartError):
    """The worker process could not be started; the text says why."""


@dataclass(eq=False)
class WorkerJob(Job):
    """A job of the worker process: the command it sends, and the environment the worker needs for it."""

    command: dict = field(default_factory=dict, repr=False)
    environment: dict[str, str] = field(default_factory=dict, repr=False)


@dataclass
class _Process:
    """A started worker and its bookkeeping."""

    popen: subprocess.Popen
    log_path: Path
    environment: dict[str, str]
    killed_to_cancel: bool = False
    last_heard: float = field(default_factory=time.monotonic)  # its last line, or the last job sent to it
    failure: str = ""  # why the client stopped it (a broken connection, a stall), for the jobs' message
    retiring: bool = False  # told to quit so that deferred jobs get a worker of their own environment


class WorkerClient(Backend):
    """Runs jobs on one persistent worker process, started when needed."""

    def __init__(
        self,
        python: str | None = None,
        pythonpath: tuple[str, ...] = (),
        cancel_grace: float = 1.0,
        stall_timeout: float = STALL_TIMEOUT,
    ):
        self.connection = Connection(pythonpath=pythonpath)
        self.python = python or sys.executable
        self.pythonpath = (str(PACKAGE_DIR.parent), *pythonpath)
        self.cancel_grace = cancel_grace
        self.stall_timeout = stall_timeout
        self.model_state = ModelState()
        self._folder: Path | None = None
        self._process: _Process | None = None
        self._readers: list[threading.Thread] = []
        self._jobs: dict[int, WorkerJob] = {}
        # Jobs that need another environment than the running worker's, sent once its jobs have ended.
        self._deferred: list[WorkerJob] = []
        self._job_ids = itertools.count(1)
        self._starts = itertools.count(1)
        self._lock = threading.RLock()

    @classmethod
    def serves(cls, connection: Connection) -> bool:
        return connection.runs_here

    @classmethod
    def connect(cls, connection: Connection) -> WorkerClient:
        return cls(pythonpath=connection.pythonpath)

    @property
    def running(self) -> bool:
        process = self._process
        return process is not None and process.popen.poll() is None

    @property
    def can_unload(self) -> bool:
        return self.running

    @property
    def pid(self) -> int | None:
        process = self._process
        return process.popen.pid if process else None

    @property
    def busy(self) -> bool:
        return bool(self._jobs)

    def generate(self, image: ImageInput, options: GenerateOptions, model: ModelSettings) -> Job:
        return self._submit(GENERATE, protocol.generate_command(image, options, model), model)

    def remesh(
        self, codes: bytes, options: MeshOptions, model: ModelSettings, photo: FramedPhoto | None = None
    ) -> Job:
        return self._submit(REMESH, protocol.remesh_command(codes, options, model, photo), model)

    def load(self, model: ModelSettings) -> Job:
        return self._submit(LOAD, protocol.load_command(model), model)

    def _submit(self, kind: str, command: dict, model: ModelSettings) -> WorkerJob:
        """Queue a command on the worker (starting one if needed) and return its job."""
        environment = model.environment()
        process = self._process
        if process is not None and process.environment != environment and not self.busy:
            self.stop()  # the cache folder or online access changed, and nothing runs: a new worker now
        job_id = next(self._job_ids)
        job = WorkerJob(job_id, kind, command={**command, "id": job_id}, environment=environment)
        with self._lock:  # the reader thread sees the job only once it is tracked, when the lock is free
            process = self._process
            if process is not None and (process.environment != environment or self._deferred):
                self._jobs[job.id] = job
                self._deferred.append(job)  # after the running worker's jobs, on a worker of its own
                self._retire_for_deferred_jobs()  # at once, if those ended meanwhile
            else:
                self._send_job(job)  # may raise WorkerStartError: then the job is not tracked
                self._jobs[job.id] = job
        return job

    def cancel(self, job: Job) -> None:
        """Ask the worker to drop ``job``; kill the worker if it has not within ``cancel_grace`` seconds."""
        with self._lock:
            if job.finished.is_set() or job.cancel_requested:
                return
            job.cancel_requested = True
            if job in self._deferred:  # never sent: it ends here
                self._deferred.remove(job)
                self._finish(job, Outcome(CANCELLED))
                return
            process = self._process
            self._send({"cmd": "cancel", "id": job.id})
        if process is not None:
            timer = threading.Timer(self.cancel_grace, self._kill_unless_finished, (job, process))
            timer.daemon = True
            timer.start()

    def stop(self) -> None:
        """Stop the worker, cancelling its jobs; frees everything the model held (Unload)."""
        with self._lock:
            process, readers = self._process, list(self._readers)
            for job in self._deferred:
                job.cancel_requested = True  # ended as cancelled when the worker has gone
            self._deferred.clear()
            for job in self._jobs.values():
                job.cancel_requested = True
                self._send({"cmd": "cancel", "id": job.id})
            if process is not None:
                self._send({"cmd": "quit"})
                close_quietly(process.popen.stdin)
        if process is not None:
            try:
                process.popen.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.popen.kill()
        for reader in readers:
            reader.join(timeout=STOP_TIMEOUT)
        with self._lock:
            if process is not None and self._process is process:  # its reader did not get to say so
                self._worker_exited(process, process.popen.wait())
            if self._folder is not None and not self._jobs:
                shutil.rmtree(self._folder, ignore_errors=True)
                self._folder = None

    # ``_lock`` guards the process, the job table and the folder against the reader threads.

    def _send_job(self, job: WorkerJob) -> None:
        if self._process is None:
            self._start(job.environment)
        elif not self._jobs:
            self._process.last_heard = time.monotonic()  # an idle worker's silence is no stall
        self._send(job.command)

    def _send(self, message: dict) -> None:
        process = self._process
        if process is None:
            return
        try:
            process.popen.stdin.write(protocol.encode(message, self._folder))
            process.popen.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            pass  # the worker is gone; its reader thread reports that to the jobs

    def _start(self, environment: dict[str, str]) -> None:
        if self._folder is None:
            remove_folders_of_ended_processes(Path(tempfile.gettempdir()), FOLDER_PREFIX)
            self._folder = Path(tempfile.mkdtemp(prefix=f"{FOLDER_PREFIX}{os.getpid()}-"))
        log_path = self._folder / f"worker-{next(self._starts)}.log"
        try:
            # Appending: the reader adds the lines on stdout that are no message.
            with open(log_path, "a", encoding="utf-8") as log:
                popen = subprocess.Popen(
                    # -P: never import from the current folder, which may hold another copy of the package
                    [self.python, "-P", "-m", WORKER_MODULE, str(self._folder)],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=log,
                    env=worker_environment(self.pythonpath, environment),
                    text=True,
                    encoding="utf-8",
                    bufsize=1,
                    **no_console_window(),
                )
        except OSError as error:
            raise WorkerStartError(
                f"Could not start the TripoSR worker process ({self.python}): {error}"
            ) from error
        self._process = _Process(popen, log_path, environment)
        reader = threading.Thread(target=self._read_events, args=(self._process,), name="triposr-events")
        reader.daemon = True
        self._readers = [thread for thread in self._readers if thread.is_alive()] + [reader]
        reader.start()
        watchdog = threading.Thread(target=self._watch, args=(self._process,), name="triposr-watchdog")
        watchdog.daemon = True
        watchdog.start()

    def _read_events(self, process: _Process) -> None:
        """Every line of the worker's stdout until it closes; whatever goes wrong, the jobs hear of it."""
        try:
            for line in process.popen.stdout:
                process.last_heard = time.monotonic()
                event = protocol.decode(line)
                if event is None:
                    append_to_log(process.log_path, f"[not a protocol message on stdout] {line.rstrip()}")
                else:
                    self._dispatch(event)
        except Exception as error:  # a broken file, a damaged array: the worker's results cannot be trusted
            process.failure = (
                f"The connection to the TripoSR worker broke ({type(error).__name__}: {error}). Nothing was "
                "added to the scene; try again to start a new worker."
            )
            process.popen.kill()
        finally:
            self._worker_exited(process, process.popen.wait())

    def _watch(self, process: _Process) -> None:
        """Stop a worker that has jobs but gives no sign of life for ``stall_timeout`` seconds."""
        while process.popen.poll() is None:
            time.sleep(min(1.0, self.stall_timeout / 4))
            silent = time.monotonic() - process.last_heard
            with self._lock:
                stalled = self._process is process and self._jobs and silent > self.stall_timeout
                if stalled:
                    process.failure = (
                        f"The TripoSR worker gave no sign of life for {silent / 60:.0f} minutes and was "
                        "stopped. Nothing was added to the scene; try again to start a new worker."
                    )
            if stalled:
                process.popen.kill()

    def _dispatch(self, message: dict) -> None:
        if message["event"] == "model":
            self.model_state = protocol.model_state_of(message["state"])
            return
        with self._lock:
            job = self._jobs.get(message.get("id"))
            if job is None:
                return
            if message["event"] in protocol.TERMINAL_EVENTS:
                del self._jobs[job.id]
                job.finished.set()
                self._retire_for_deferred_jobs()
        job.events.put(protocol.event_of(message))

    def _retire_for_deferred_jobs(self) -> None:
        """Once the worker has only deferred jobs left, ask it to quit: they go to a new one (on its exit)."""
        process = self._process
        if process is not None and self._deferred and set(self._jobs.values()) <= set(self._deferred):
            process.retiring = True
            self._send({"cmd": "quit"})

    def _worker_exited(self, process: _Process, exit_code: int) -> None:
        with self._lock:
            if self._process is not process:
                return  # accounted for already (by stop), and the jobs now are a successor's
            self._process = None
            self.model_state = ModelState()
            orphans = list(self._jobs.values())
            self._deferred.clear()
            for job in orphans:
                if job.cancel_requested:
                    self._finish(job, Outcome(CANCELLED))
                elif process.killed_to_cancel or process.retiring:
                    self._resend(job)  # queued behind a cancelled job, or deferred: on a fresh worker
                else:
                    message = process.failure or worker_died_message(exit_code, process.log_path)
                    self._finish(job, Outcome.failed("WorkerDied", message))

    def _resend(self, job: WorkerJob) -> None:
        try:
            self._send_job(job)
        except WorkerStartError as error:
            self._finish(job, Outcome.failed("WorkerDied", str(error)))

    def _finish(self, job: Job, outcome: Outcome) -> None:
        del self._jobs[job.id]
        job.finished.set()
        job.events.put(outcome)

    def _kill_unless_finished(self, job: Job, process: _Process) -> None:
        with self._lock:
            if job.finished.is_set() or process.popen.poll() is not None:
                return
            process.killed_to_cancel = True
        process.popen.kill()


def append_to_log(log_path: Path, line: str) -> None:
    with contextlib.suppress(OSError), open(log_path, "a", encoding="utf-8") as log:
        log.write(line + "\n")


def worker_environment(pythonpath: tuple[str, ...], variables: dict[str, str]) -> dict[str, str]:
    """The worker sees the package and the installed dependencies, but not the user's own site-packages."""
    env = {**os.environ, **variables}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [*pythonpath, env.get("PYTHONPATH", "")]))
    env["PYTHONNOUSERSITE"] = "1"
    env["PYTHONIOENCODING"] = "utf-8"
    return env


def worker_died_message(exit_code: int, log_path: Path) -> str:
    if exit_code < 0:
        try:
            how = f"was killed by signal {signal.Signals(-exit_code).name}"
        except ValueError:
            how = f"was killed by signal {-exit_code}"
        if exit_code == -getattr(signal, "SIGKILL", 9):
            how += " (often the system running out of memory)"
    else:
        how = f"exited with status {exit_code}"
    tail = log_tail(log_path)
    details = f" Its last output: {tail}" if tail else ""
    return (
        f"The TripoSR worker process {how}. Nothing was added to the scene; Generate again to start a "
        f"new worker. Full log: {log_path}.{details}"
    )


def log_tail(log_path: Path) -> str:
    try:
        lines = log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(line.strip() for line in lines[-LOG_TAIL_LINES:] if line.strip())


def close_quietly(stream) -> None:
    with contextlib.suppress(OSError):
        stream.close()
