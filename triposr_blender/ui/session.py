"""The worker process every operator of this Blender session shares, the jobs the UI shows, and redrawing."""

import bpy

from .. import dependencies
from ..worker.backend import Backend, Job
from ..worker.client import WorkerClient
from ..worker.protocol import ModelState
from ..worker.remote import RemoteClient
from . import preference_values

# The editors that show the add-on's progress: the sidebar panel and the preferences.
AREAS_SHOWING_PROGRESS = ("VIEW_3D", "PREFERENCES")


class Session:
    """One worker (started on the first job, model loaded until Unload), or the TripoSR server the
    preferences name, and the jobs the UI follows."""

    def __init__(self):
        self.client: Backend | None = None
        self.active: list[Job] = []
        # The scene codes of the last generation, by its input: Adjust Last Operation re-meshes them.
        self.last_codes: dict[tuple, bytes] = {}

    def worker(self) -> Backend:
        """The client of where the model runs now: this computer's worker, or the server."""
        server = preference_values.server_connection(bpy.context)
        wanted = RemoteClient if server else WorkerClient
        if (
            isinstance(self.client, RemoteClient)
            and server
            and (self.client.url, self.client.token) != server
        ):
            self.stop()  # another server, or another token
        if self.client is not None and not isinstance(self.client, wanted):
            self.stop()  # the backend changed
        if self.client is None:
            self.client = (
                RemoteClient(*server)
                if server
                else WorkerClient(pythonpath=tuple(dependencies.dependency_paths()))
            )
        return self.client

    @property
    def model_state(self) -> ModelState:
        return self.client.model_state if self.client else ModelState()

    def current(self, kind: str) -> Job | None:
        return next((job for job in self.active if job.kind == kind), None)

    def cancel_all(self) -> None:
        """Cancel the jobs on the backend that runs them: never on a new one the preferences now name."""
        if self.client is None:
            return
        for job in list(self.active):
            self.client.cancel(job)

    def stop(self) -> None:
        if self.client is not None:
            self.client.stop()
        self.client = None
        self.active.clear()


SESSION = Session()


def redraw_progress_areas() -> None:
    """Redraw the panel and the preferences, which show the jobs' and the installer's progress."""
    for window in bpy.context.window_manager.windows:
        for area in window.screen.areas:
            if area.type in AREAS_SHOWING_PROGRESS:
                area.tag_redraw()
