"""The contract of a place where the model runs, and the job it hands back.

Two backends keep it: this computer's worker process (``client.WorkerClient``) and a TripoSR server
(``remote.RemoteClient``). Blender's operators and panel, the batch and the server's executors depend on
``Backend`` alone, so a third (a cloud service, another model family behind the same jobs) is one subclass:
ARCHITECTURE.md says what it must do. Only the standard library: Blender's own Python imports this.
"""

from __future__ import annotations

import abc
import queue
import threading
import time
from dataclasses import dataclass, field

from ..options import GenerateOptions, MeshOptions
from .protocol import TERMINAL_EVENTS, ModelSettings, ModelState, Outcome

GENERATE, REMESH, LOAD = "generate", "remesh", "load"


@dataclass(eq=False)  # a job is itself, whatever it holds
class Job:
    """One request to a backend (``kind``: generate, remesh or load) and what has come back so far."""

    id: int
    kind: str
    stage: str = "Waiting for the worker"
    fraction: float = 0.0
    outcome: Outcome | None = None  # how it ended, once polled
    cancel_requested: bool = False
    events: queue.Queue = field(default_factory=queue.Queue, repr=False)
    finished: threading.Event = field(default_factory=threading.Event, repr=False)

    def poll(self) -> Outcome | None:
        """Take in the events that arrived (without waiting); the final event once there is one."""
        while self.outcome is None:
            try:
                self._take(self.events.get_nowait())
            except queue.Empty:
                break
        return self.outcome

    def wait(self, timeout: float | None = None) -> Outcome:
        """Block until the final event arrives; TimeoutError after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.outcome is None:
            remaining = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            try:
                self._take(self.events.get(timeout=remaining))
            except queue.Empty:
                raise TimeoutError(f"Job {self.id} did not finish within {timeout} s.") from None
        return self.outcome

    def _take(self, event: dict) -> None:
        if event["event"] == "progress":
            self.stage, self.fraction = event["stage"], event["fraction"]
        elif event["event"] in TERMINAL_EVENTS:
            self.outcome = Outcome.from_event(event)


class Backend(abc.ABC):
    """Where the model runs. Every method returns at once; a job's events arrive on its own queue, from any
    thread, and the caller drains them (Blender: on its main thread, from a timer)."""

    model_state: ModelState

    @abc.abstractmethod
    def generate(self, image: dict, options: GenerateOptions, model: ModelSettings) -> Job:
        """Queue an image's mesh: ``image`` is {"path"}, {"data"} or {"pixels"} (``protocol``); ``model``
        is how this computer's preferences ask for the model, online access included."""

    @abc.abstractmethod
    def remesh(self, codes: bytes, options: MeshOptions, model: ModelSettings) -> Job:
        """Queue a new mesh from saved scene codes (``core.scene_codes`` bytes): no image, no encoder."""

    @abc.abstractmethod
    def load(self, model: ModelSettings) -> Job:
        """Queue the model's download and load ahead of the first generation; its result is the state."""

    @abc.abstractmethod
    def cancel(self, job: Job) -> None:
        """Ask for ``job`` to end; it ends with a "cancelled" outcome (or its result, if already made)."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Cancel every job and let go of everything this computer holds for the model (Unload)."""

    @property
    @abc.abstractmethod
    def busy(self) -> bool:
        """Whether any job has not ended."""

    @property
    @abc.abstractmethod
    def can_unload(self) -> bool:
        """Whether ``stop`` would free memory on this computer (a model loaded here)."""
