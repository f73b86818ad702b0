"""The messages Blender and the worker process exchange: one JSON object per line, arrays in .npy files.

Commands (Blender -> worker) carry ``cmd`` and, except ``quit``, a job ``id``:

* ``generate``: ``image`` ({"path": file} or {"pixels": (H, W, 3|4) float array, top row first, sRGB}),
  ``options`` (remove_background, foreground_ratio, resolution, threshold; optional target_faces and
  texture_size, 0 or absent for none) and ``model`` (ModelSettings).
* ``load``: ``model``; downloads the model if needed and loads it, ahead of the first generation.
* ``cancel``: stop job ``id`` at the next progress step.
* ``quit``: exit (closing the worker's stdin does the same).

Events (worker -> Blender) carry ``event`` and, except the first two, the job ``id``:

* ``ready`` (``pid``) once at start-up; ``model`` (``state``: loaded, source, device, cpu_fast,
  memory_bytes) whenever the loaded model changes.
* ``progress`` (``stage`` text, ``fraction`` 0..1 of that stage).
* one of ``result`` (``mesh``: vertices, faces, vertex_colors, and with a texture_size ``texture``:
  corner_uvs, image, as the core's ``bake_texture`` makes them; or ``model``: the state after ``load``),
  ``error`` (``kind``: the exception's class name, ``message``: text for the user) or ``cancelled``.

A numpy array anywhere in a message travels as {"npy": path}: pipes are slow for megabytes, files are not.
The receiving side loads it and deletes the file.
"""

import itertools
import json
import os
from pathlib import Path

import numpy as np

TERMINAL_EVENTS = frozenset({"result", "error", "cancelled"})
_file_numbers = itertools.count()


def encode(message: dict, folder: Path) -> str:
    """One protocol line for ``message``, with its arrays saved as .npy files in ``folder``."""
    return json.dumps(_save_arrays(message, folder)) + "\n"


def decode(line: str) -> dict:
    """The message in one protocol line, with its arrays loaded back (and their files deleted)."""
    return _load_arrays(json.loads(line))


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
