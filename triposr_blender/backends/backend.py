"""The contract of a place where the model runs, the job it hands back, and the one choice of backend.

Blender's operators and panel, the drop handler (through Generate), the batch and the server's executors
hold a ``Backend`` and nothing more concrete. Which one runs is chosen here alone, from a ``Connection`` (the
preferences', or the batch's arguments): each backend class says which connections it serves, and every
subclass that is imported takes part, so a third backend (a cloud service, another model family behind the
same jobs) is one subclass in a module of its own (ARCHITECTURE.md). Only the standard library and this
package's types: Blender's own Python imports this.
"""

from __future__ import annotations

import abc
import inspect
import queue
import threading
import time
from dataclasses import dataclass, field

from ..core.mesh import FramedPhoto
from ..options import GenerateOptions, MeshOptions
from .types import ImageInput, ModelSettings, ModelState, Outcome, Progress

GENERATE, REMESH, LOAD = "generate", "remesh", "load"


class BackendStartError(Exception):
    """The backend could not start (no worker process, no backend for the address); the text says why."""


@dataclass(frozen=True)
class Connection:
    """Where the model is to run, as the preferences or the batch's arguments say: a server's address and
    token, or no address for this computer's worker, which imports the dependencies from ``pythonpath``."""

    address: str = ""
    token: str = ""
    pythonpath: tuple[str, ...] = ()

    @property
    def runs_here(self) -> bool:
        """Whether the model runs on this computer (which then needs the dependencies installed)."""
        return not self.address


@dataclass(eq=False)  # a job is itself, whatever it holds
class Job:
    """One request to a backend (``kind``: generate, remesh or load) and what has come back so far: its
    backend puts ``Progress`` and then one ``Outcome`` on ``events``, from any thread."""

    id: int
    kind: str
    stage: str = "Waiting for the worker"
    fraction: float = 0.0
    outcome: Outcome | None = None  # how it ended, once polled
    cancel_requested: bool = False
    events: queue.Queue[Progress | Outcome] = field(default_factory=queue.Queue, repr=False)
    finished: threading.Event = field(default_factory=threading.Event, repr=False)

    def poll(self) -> Outcome | None:
        """Take in the events that arrived (without waiting); the outcome once there is one."""
        while self.outcome is None:
            try:
                self._take(self.events.get_nowait())
            except queue.Empty:
                break
        return self.outcome

    def wait(self, timeout: float | None = None) -> Outcome:
        """Block until the outcome arrives; TimeoutError after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.outcome is None:
            remaining = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            try:
                self._take(self.events.get(timeout=remaining))
            except queue.Empty:
                raise TimeoutError(f"Job {self.id} did not finish within {timeout} s.") from None
        return self.outcome

    def _take(self, event: Progress | Outcome) -> None:
        if isinstance(event, Progress):
            self.stage, self.fraction = event.stage, event.fraction
        else:
            self.outcome = event


class Backend(abc.ABC):
    """Where the model runs. Every method returns at once; a job's events arrive on its own queue, from any
    thread, and the caller drains them (Blender: on its main thread, from a timer)."""

    model_state: ModelState
    connection: Connection  # what it was made for: a backend serves one connection for its whole life

    @classmethod
    @abc.abstractmethod
    def serves(cls, connection: Connection) -> bool:
        """Whether this kind of backend runs the model for ``connection`` (an address it understands)."""

    @classmethod
    @abc.abstractmethod
    def connect(cls, connection: Connection) -> Backend:
        """A new backend for ``connection``; it starts nothing until its first job."""

    @abc.abstractmethod
    def generate(self, image: ImageInput, options: GenerateOptions, model: ModelSettings) -> Job:
        """Queue an image's mesh; ``model`` is how this computer's preferences ask for the model, online
        access included."""

    @abc.abstractmethod
    def remesh(
        self, codes: bytes, options: MeshOptions, model: ModelSettings, photo: FramedPhoto | None = None
    ) -> Job:
        """Queue a new mesh from saved scene codes (``core.scene_codes`` bytes): no image, no encoder; with
        ``photo``, the photo kept with them, for Photo Texture."""

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


def backend_for(connection: Connection) -> Backend:
    """A new backend for ``connection``, of the kind that serves it (the one defined last, if several do);
    BackendStartError when none does."""
    kinds = [kind for kind in backend_kinds() if kind.serves(connection)]
    if not kinds:
        raise BackendStartError(
            f"No backend runs the model at {connection.address!r}: give the address of a TripoSR server "
            "(http:// or https://), or none to run the model on this computer."
        )
    return kinds[-1].connect(connection)


def backend_kinds(base: type[Backend] = Backend) -> list[type[Backend]]:
    """Every concrete subclass of ``base`` imported so far, each before its own subclasses."""
    kinds = []
    for kind in base.__subclasses__():
        kinds += [kind] if not inspect.isabstract(kind) else []
        kinds += backend_kinds(kind)
    return kinds
