"""What crosses the seam between Blender (the panel, the batch) and any backend, typed: the image to make a
mesh of, the model's settings and state, a job's progress and how it ended. No message dicts: those exist
only at the worker process's boundary (``worker.protocol``). numpy and the core's torch-free modules only:
Blender's own Python imports this."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.defaults import DEFAULT_CHUNK_SIZE
from ..core.mesh import BakedTexture, FramedPhoto, Mesh


@dataclass(frozen=True)
class ImageFile:
    """An image file on this computer, read where the model runs (a path, never sent to a server)."""

    path: str


@dataclass(frozen=True)
class EncodedImage:
    """An image file's bytes (an upload, or a file read here)."""

    data: bytes


@dataclass(frozen=True, eq=False)
class ImagePixels:
    """Pixels Blender decoded: (H, W, 3|4) display (sRGB) colours in [0, 1], straight alpha, top row first."""

    pixels: np.ndarray


ImageInput = ImageFile | EncodedImage | ImagePixels


@dataclass(frozen=True)
class ModelSettings:
    """Which model the backend loads and how (the add-on preferences, or the batch's options, resolved)."""

    source: str  # a folder with config.yaml and model.ckpt, or a Hugging Face repo id
    device: str = "auto"
    chunk_size: int = DEFAULT_CHUNK_SIZE
    cpu_fast: bool = False  # encode with int8 layers on the CPU (core/cpu_fast.py)
    cache_dir: str = ""  # empty: Hugging Face's default cache
    offline: bool = False  # Blender's Allow Online Access is off: use only what is downloaded
    rembg_home: str = ""  # where background removal keeps its model; empty: rembg's own (U2NET_HOME)

    def environment(self) -> dict[str, str]:
        """Variables huggingface_hub and rembg read once: a change needs a new worker."""
        variables = {"HF_HUB_CACHE": self.cache_dir} if self.cache_dir else {}
        if self.rembg_home:
            variables["U2NET_HOME"] = self.rembg_home
        if self.offline:
            variables["HF_HUB_OFFLINE"] = "1"
        return variables


@dataclass(frozen=True)
class ModelState:
    """The model as the panel shows it: loaded or not, which, where, and the memory it holds here."""

    loaded: bool = False
    source: str = ""
    device: str = ""  # where it runs, for people: "cpu", "cuda:0", "the server (cuda:0, cuda:1)"
    memory_bytes: int | None = None  # None where it holds none of this computer's memory (a server)
    cpu_fast: bool = False  # whether the encoder runs with int8 layers


# The most notes a result carries, and the longest: bounds on what a server may send.
MAX_NOTES = 8
MAX_NOTE_CHARS = 1000


@dataclass(frozen=True)
class MeshResult:
    """What a generation gives back: the mesh in TripoSR's model space, its baked texture if asked for, and
    the scene codes it was made from (``core.scene_codes`` bytes; empty when not kept)."""

    mesh: Mesh
    texture: BakedTexture | None = None
    codes: bytes = b""
    # A generation's input as the model saw it, (H, W, 3) uint8: the object cut out and centred on grey; None
    # for a re-mesh, and from a server (the batch's contact sheet shows it).
    prepared: np.ndarray | None = None
    # What the job did otherwise than asked, and why, for the user (the panel, the log, the batch report):
    # e.g. Photo Texture not applied.
    notes: tuple[str, ...] = ()
    # A generation's photo as it was framed, which the object keeps so that Re-mesh projects it again; None
    # for an image squashed whole, a re-mesh, and from a server.
    photo: FramedPhoto | None = None


@dataclass(frozen=True)
class Progress:
    """A job's news while it runs: ``fraction`` (0..1) of ``stage``, text for people."""

    stage: str
    fraction: float


RESULT, ERROR, CANCELLED = "result", "error", "cancelled"


@dataclass(frozen=True)
class Outcome:
    """How a job ended: with its result, with an error for the user, or cancelled."""

    event: str  # RESULT, ERROR or CANCELLED
    result: MeshResult | None = None  # a generation's
    model: ModelState | None = None  # a load's: the model's state
    kind: str = ""  # an error's: what failed (ModelLoadError, WorkerDied, ...)
    message: str = ""  # an error's: what to tell the user

    @classmethod
    def failed(cls, kind: str, message: str) -> Outcome:
        return cls(ERROR, kind=kind, message=message)
