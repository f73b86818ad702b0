"""The messages between a worker client (Blender, the batch) and the worker process: the one place where the
seam's types (``backends.types``) become dicts, and back.

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
from pathlib import Path

import numpy as np

from ..backends.types import (
    CANCELLED,
    ERROR,
    RESULT,
    EncodedImage,
    ImageFile,
    ImageInput,
    ImagePixels,
    MeshResult,
    ModelSettings,
    ModelState,
    Outcome,
    Progress,
)
from ..core.mesh import BakedTexture, FramedPhoto, Mesh
from ..options import GenerateOptions, MeshOptions

TERMINAL_EVENTS = frozenset({RESULT, ERROR, CANCELLED})
_file_numbers = itertools.count()


def generate_command(image: ImageInput, options: GenerateOptions, model: ModelSettings) -> dict:
    return {
        "cmd": "generate",
        "image": image_message(image),
        "options": options.as_dict(),
        "model": dataclasses.asdict(model),
    }


def remesh_command(
    codes: bytes, options: MeshOptions, model: ModelSettings, photo: FramedPhoto | None = None
) -> dict:
    command = {
        "cmd": "remesh",
        "codes": np.frombuffer(codes, np.uint8),
        "options": options.as_dict(),
        "model": dataclasses.asdict(model),
    }
    if photo is not None:
        command["photo"] = photo_message(photo)
    return command


def load_command(model: ModelSettings) -> dict:
    return {"cmd": "load", "model": dataclasses.asdict(model)}


def image_message(image: ImageInput) -> dict:
    if isinstance(image, ImageFile):
        return {"path": image.path}
    if isinstance(image, EncodedImage):
        return {"data": np.frombuffer(image.data, np.uint8)}
    return {"pixels": image.pixels}


def image_of(message: dict) -> ImageInput:
    if "path" in message:
        return ImageFile(message["path"])
    if "data" in message:
        return EncodedImage(message["data"].tobytes())
    return ImagePixels(message["pixels"])


def settings_of(message: dict) -> ModelSettings:
    return ModelSettings(**message)


def model_state_message(state: ModelState) -> dict:
    return dataclasses.asdict(state)


def model_state_of(message: dict) -> ModelState:
    return ModelState(**message)


def result_message(result: MeshResult) -> dict:
    """A generation's result as the worker sends it: the arrays themselves, never copies (not
    ``dataclasses.asdict``, which deep-copies every array)."""
    message = {"mesh": _fields_of(result.mesh)}
    if result.texture is not None:
        message["texture"] = _fields_of(result.texture)
    if result.codes:
        message["codes"] = np.frombuffer(result.codes, np.uint8)
    if result.prepared is not None:
        message["prepared"] = result.prepared
    if result.notes:
        message["notes"] = list(result.notes)
    if result.photo is not None:
        message["photo"] = photo_message(result.photo)
    return message


def result_of(message: dict) -> MeshResult:
    texture = message.get("texture")
    codes = message["codes"].tobytes() if "codes" in message else b""
    texture = BakedTexture(**texture) if texture else None
    notes = tuple(message.get("notes", ()))
    photo = photo_of(message.get("photo"))
    return MeshResult(Mesh(**message["mesh"]), texture, codes, message.get("prepared"), notes, photo)


def photo_message(photo: FramedPhoto) -> dict:
    return {"pixels": photo.pixels, "frame": np.array(photo.frame, np.int64)}


def photo_of(message: dict | None) -> FramedPhoto | None:
    """A framed photo from its message (checked: a Re-mesh's comes from a saved .blend), or None."""
    if message is None:
        return None
    return FramedPhoto.unpacked(np.ascontiguousarray(message["pixels"], np.uint8).tobytes(), message["frame"])


def _fields_of(instance) -> dict:
    """A dataclass instance's fields by name, the values themselves (no copies)."""
    return {field.name: getattr(instance, field.name) for field in dataclasses.fields(instance)}


def event_of(message: dict) -> Progress | Outcome:
    """A job's event as the worker sent it, typed: its progress, or how it ended."""
    event = message["event"]
    if event == "progress":
        return Progress(message["stage"], message["fraction"])
    if event == ERROR:
        return Outcome.failed(message["kind"], message["message"])
    if event == RESULT and "mesh" in message:
        return Outcome(RESULT, result=result_of(message))
    model = message.get("model")
    return Outcome(event, model=model_state_of(model) if model is not None else None)


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
