"""The worker process that runs the TripoSR core: ``python -m triposr_blender.worker FOLDER``.

PyTorch runs here rather than inside Blender, so a crash or an out-of-memory error cannot take Blender
down, a cancel can always end in a kill, and stopping the process frees every byte of GPU memory. The
model loads once and stays loaded between jobs. Messages follow ``protocol``; FOLDER holds the .npy files
of the arrays they carry. What each job does is ``pipeline``'s.
"""

import os
import queue
import sys
import threading
import traceback
from pathlib import Path
from typing import TextIO

from ..core.errors import Cancelled
from . import pipeline, protocol


class Worker:
    """Reads commands on one thread, runs jobs one at a time on the main thread, writes events."""

    def __init__(self, commands: TextIO, events: TextIO, folder: Path):
        self.commands = commands
        self.events = events
        self.folder = folder
        self.jobs = pipeline.Jobs()
        self.pending: queue.Queue[dict] = queue.Queue()
        self.cancelled: set[int] = set()
        self.abandoned = threading.Event()
        self.write_lock = threading.Lock()

    def send(self, event: str, **fields) -> None:
        line = protocol.encode({"event": event, **fields}, self.folder)
        with self.write_lock:
            self.events.write(line)
            self.events.flush()

    def read_commands(self) -> None:
        """Cancels take effect at once; everything else waits its turn in ``pending``.

        The end of the input (Blender quit or crashed) cancels everything: nobody is left to get results.
        """
        for line in self.commands:
            command = protocol.decode(line)
            if command is None:
                continue
            if command["cmd"] == "cancel":
                self.cancelled.add(command["id"])
            else:
                self.pending.put(command)
        self.abandoned.set()
        self.pending.put({"cmd": "quit"})

    def serve(self) -> None:
        threading.Thread(target=self.read_commands, name="commands", daemon=True).start()
        self.send("ready", pid=os.getpid())
        while (command := self.pending.get())["cmd"] != "quit":
            self.run_job(command)
        self.jobs.pipeline.models.unload()

    def progress_for(self, job_id: int):
        def progress(stage: str, fraction: float) -> None:
            if job_id in self.cancelled or self.abandoned.is_set():
                raise Cancelled("Cancelled.")
            self.send("progress", id=job_id, stage=stage, fraction=float(fraction))

        return progress

    def run_job(self, command: dict) -> None:
        job_id = command["id"]
        progress = self.progress_for(job_id)
        models = self.jobs.pipeline.models
        state_before = models.state()
        try:
            progress("Starting", 0.0)
            event, fields = "result", getattr(self.jobs, command["cmd"])(command, progress)
        except Exception as error:  # every failure becomes a message; the worker lives on
            event, fields = self.failure(command, error)
        finally:
            self.cancelled.discard(job_id)
        # The model's state goes first: a client that sees the job end knows the model the job left behind.
        if models.state() != state_before:
            self.send("model", state=protocol.model_state_message(models.state()))
        self.send(event, id=job_id, **fields)

    def failure(self, command: dict, error: Exception) -> tuple[str, dict]:
        """The event that ends a failed job, and its fields."""
        if isinstance(error, Cancelled):
            return "cancelled", {}
        traceback.print_exception(error, file=sys.stderr)
        kind, message = pipeline.describe_failure(error, command.get("model", {}).get("device", "the device"))
        if kind == "OutOfMemory":
            self.jobs.pipeline.models.unload()
        return "error", {"kind": kind, "message": message}


def claim_stdout() -> TextIO:
    """Keep the real stdout for protocol messages and send everything else printed there to stderr.

    Libraries print (progress bars, warnings); a stray line on the protocol stream would be unreadable.
    """
    protocol_stream = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8", buffering=1)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr
    return protocol_stream


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        sys.exit("usage: python -m triposr_blender.worker FOLDER  (started by the add-on, not by hand)")
    events = claim_stdout()
    Worker(sys.stdin, events, Path(argv[0])).serve()
    events.flush()
    sys.stderr.flush()
    # Skip the interpreter's teardown: with torch loaded it takes seconds and has nothing left to save.
    os._exit(0)


if __name__ == "__main__":
    main()
