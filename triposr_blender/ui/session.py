"""The backend every operator of this Blender session shares, the jobs the UI shows, and redrawing."""

import bpy

from ..backends.backend import Backend, Job, backend_for
from ..backends.types import ModelState
from ..core.mesh import FramedPhoto
from . import preference_values

# The editors that show the add-on's progress: the sidebar panel and the preferences.
AREAS_SHOWING_PROGRESS = ("VIEW_3D", "PREFERENCES")


class Session:
    """The backend the preferences name (this computer's worker, started on the first job, model loaded until
    Unload, or a TripoSR server), and the jobs the UI follows."""

    def __init__(self):
        self.client: Backend | None = None
        self.active: list[Job] = []
        # The scene codes of the last generation and the photo they were encoded from, by its input: Adjust
        # Last Operation re-meshes them, projecting the photo again.
        self.last_codes: dict[tuple, tuple[bytes, FramedPhoto | None]] = {}

    def worker(self) -> Backend:
        """The backend that runs the model where the preferences say now: the one running, unless they
        changed (then it is stopped, and its jobs with it). BackendStartError if none can run there."""
        connection = preference_values.connection(bpy.context)
        if self.client is not None and self.client.connection != connection:
            self.stop()
        if self.client is None:
            self.client = backend_for(connection)
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
