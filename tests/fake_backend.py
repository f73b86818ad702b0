"""A third backend, of the test's own, for ``test_fake_backend``: it claims addresses fake://…, "runs the
model" by handing back an octahedron at once, and records what it was asked. Nothing else in the package
knows of it: importing this module is all it takes for the panel and the batch to reach it."""

import itertools
from typing import ClassVar

import numpy as np

from triposr_blender.backends.backend import Backend, Connection, Job
from triposr_blender.backends.types import RESULT, ImageFile, MeshResult, ModelState, Outcome, Progress
from triposr_blender.core.mesh import FramedPhoto, Mesh

SCHEME = "fake://"
OCTAHEDRON = Mesh(
    vertices=np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], np.float32)
    * 0.4,
    faces=np.array([[0, 2, 4], [2, 1, 4], [1, 3, 4], [3, 0, 4], [2, 0, 5], [1, 2, 5], [3, 1, 5], [0, 3, 5]]),
    vertex_colors=np.full((6, 3), 0.25, np.float32),
)
STAGE = "Asking the fake farm"
CODES = b"the fake farm's scene codes"
# The photo its generations were framed from: 5 × 3 pixels on an 8-pixel canvas.
PHOTO = FramedPhoto(np.arange(60, dtype=np.uint8).reshape(3, 5, 4), 8, (1, 2))


class FakeBackend(Backend):
    asked: ClassVar[list[tuple[str, str]]] = []  # (the image file, the address), every instance's
    remeshed_with: ClassVar[list[tuple[bytes, FramedPhoto | None]]] = []  # (the codes, the photo) of Re-mesh

    def __init__(self, connection: Connection):
        self.connection = connection
        self.model_state = ModelState(loaded=True, source="fake", device="the fake farm")
        self._ids = itertools.count(1)

    @classmethod
    def serves(cls, connection: Connection) -> bool:
        return connection.address.startswith(SCHEME)

    @classmethod
    def connect(cls, connection: Connection) -> "FakeBackend":
        return cls(connection)

    def generate(self, image, options, model) -> Job:
        assert isinstance(image, ImageFile)
        FakeBackend.asked.append((image.path, self.connection.address))
        return self._ended(Outcome(RESULT, result=MeshResult(OCTAHEDRON, codes=CODES, photo=PHOTO)))

    def remesh(self, codes, options, model, photo=None) -> Job:
        FakeBackend.remeshed_with.append((codes, photo))
        return self._ended(Outcome(RESULT, result=MeshResult(OCTAHEDRON)))

    def load(self, model) -> Job:
        return self._ended(Outcome(RESULT, model=self.model_state))

    def _ended(self, outcome: Outcome) -> Job:
        job = Job(next(self._ids), "generate")
        job.events.put(Progress(STAGE, 1.0))
        job.events.put(outcome)
        job.finished.set()
        return job

    def cancel(self, job: Job) -> None:
        job.cancel_requested = True

    def stop(self) -> None:
        pass

    @property
    def busy(self) -> bool:
        return False

    @property
    def can_unload(self) -> bool:
        return False
