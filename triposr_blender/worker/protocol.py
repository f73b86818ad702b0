"""The messages between a worker client (Blender, the batch) and the worker process, and their types.

One JSON object per line. A numpy array anywhere in a message travels as {"npy": path}: pipes are slow for
megabytes, files are not. The receiving side loads it and deletes the file.

Commands (client -> worker) carry ``cmd`` and, except ``quit``, a job ``id``:

* ``generate``: ``image`` ({"path": file}, {"data": the file's bytes as a uint8 array}, or {"pixels": (H, W,
  3|4) float array, top row first, sRGB}),
  ``options`` (``GenerateOptions``) and ``model`` (``ModelSettings``). A recent image's scene codes are
  reused when only mesh options changed.
* ``remesh``: ``codes`` (saved scene codes, as a uint8 array of ``SceneCodes.to_bytes``), ``options``
  (``MeshOptions``) and ``model``: a new mesh from the codes, without the image or the encoder (its result
  carries no codes: the caller has them).
* ``load``: ``model``; downloads the model if needed and loads it, ahead of the first generation.
* ``cancel``: stop job ``id`` at the next progress step.
* ``quit``: exit (closing the worker's stdin does the same).

Events (worker -> client) carry ``event`` and, except the first two, the job ``id``:

* ``ready`` (``pid``) once at start-up; ``model`` (``state``: loaded, source, device, cpu_fast,
  memory_bytes) whenever the loaded model changes.
* ``progress`` (``stage`` text, ``fraction`` 0..1 of that stage).
* one of ``result`` (a generation's or re-mesh's ``MeshResult``, or ``model``: the state after ``load``),
  ``error`` (``kind``: what failed, ``message``: text for the user) or ``cancelled``.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.defaults import DEFAULT_CHUNK_SIZE
from ..core.mesh import BakedTexture, Mesh
from ..options import GenerateOptions, MeshOptions

TERMINAL_EVENTS = frozenset({"result", "error", "cancelled"})
_file_numbers = itertools.count()


@dataclass(frozen=True)
class ModelSettings:
    """Which model the worker loads and how (the add-on preferences, or the batch's options, resolved)."""

    source: str  # a folder with config.yaml and model.ckpt, or a Hugging Face repo id
    device: str = "auto"
    chunk_size: int = DEFAULT_CHUNK_SIZE
    cpu_fast: bool = False  # encode with int8 layers on the CPU (core/cpu_fast.py)
    cache_dir: str = ""  # empty: Hugging Face's default cache
    offline: bool = False  # Blender's Allow Online Access is off: use only what is downloaded
    rembg_home: str = ""  # where background removal keeps its model; empty: rembg's own (U2NET_HOME)

    def as_message(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_message(cls, message: dict) -> ModelSettings:
        return cls(**message)

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

    def as_message(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_message(cls, message: dict) -> ModelState:
        return cls(**message)


@dataclass(frozen=True)
class MeshResult:
    """What a generation gives back: the mesh in TripoSR's model space, its baked texture if asked for, and
    the scene codes it was made from (``core.scene_codes`` bytes; empty when not kept)."""

    mesh: Mesh
    texture: BakedTexture | None = None
    codes: bytes = b""

    def as_message(self) -> dict:
        # Not dataclasses.asdict, which deep-copies every array: the arrays are handed on as they are.
        message = {"mesh": _fields_of(self.mesh)}
        if self.texture is not None:
            message["texture"] = _fields_of(self.texture)
        if self.codes:
            message["codes"] = np.frombuffer(self.codes, np.uint8)
        return message

    @classmethod
    def from_message(cls, message: dict) -> MeshResult:
        texture = message.get("texture")
        codes = message["codes"].tobytes() if "codes" in message else b""
        return cls(Mesh(**message["mesh"]), BakedTexture(**texture) if texture else None, codes)


def _fields_of(instance) -> dict:
    """A dataclass instance's fields by name, the values themselves (no copies)."""
    return {field.name: getattr(instance, field.name) for field in dataclasses.fields(instance)}


@dataclass(frozen=True)
class Outcome:
    """How a job ended: with its result, with an error for the user, or cancelled."""

    event: str  # "result", "error" or "cancelled"
    result: MeshResult | None = None  # a generation's
    model: ModelState | None = None  # a load's: the model's state
    kind: str = ""  # an error's: what failed (ModelLoadError, WorkerDied, ...)
    message: str = ""  # an error's: what to tell the user

    @classmethod
    def from_event(cls, event: dict) -> Outcome:
        if event["event"] == "error":
            return cls("error", kind=event["kind"], message=event["message"])
        if event["event"] == "result" and "mesh" in event:
            return cls("result", result=MeshResult.from_message(event))
        model = event.get("model")
        return cls(event["event"], model=ModelState.from_message(model) if model is not None else None)


def generate_command(image: dict, options: GenerateOptions, model: ModelSettings) -> dict:
    return {"cmd": "generate", "image": image, "options": options.as_dict(), "model": model.as_message()}


def remesh_command(codes: bytes, options: MeshOptions, model: ModelSettings) -> dict:
    return {
        "cmd": "remesh",
        "codes": np.frombuffer(codes, np.uint8),
        "options": options.as_dict(),
        "model": model.as_message(),
    }


def load_command(model: ModelSettings) -> dict:
    return {"cmd": "load", "model": model.as_message()}


def encode(message: dict, folder: Path) -> str:
    """One protocol line for ``message``, with its arrays saved as .npy files in ``folder``."""
    return json.dumps(_save_arrays(message, folder)) + "\n"


def decode(line: str) -> dict | None:
    """The message in one protocol line, with its arrays loaded back (and their files deleted); None for a
    line that is no message, such as what a library printed on the worker's stdout."""
    try:
        message = json.loads(line)
    except ValueError:
        return None
    if not isinstance(message, dict) or not message.keys() & {"event", "cmd"}:
        return None
    return _load_arrays(message)


def _save_arrays(value, folder: Path):
    if isinstance(value, np.ndarray):
        path = folder / f"{os.getpid()}-{next(_file_numbers)}.npy"
        np.save(path, value, allow_pickle=False)
        return {"npy": str(path)}
    if isinstance(value, dict):
        return {key: _save_arrays(item, folder) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_save_arrays(item, folder) for item in value]
    return value


def _load_arrays(value):
    if isinstance(value, dict):
        if value.keys() == {"npy"}:
            path = Path(value["npy"])
            array = np.load(path, allow_pickle=False)
            path.unlink(missing_ok=True)
            return array
        return {key: _load_arrays(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_load_arrays(item) for item in value]
    return value
