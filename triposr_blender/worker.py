"""The worker process that runs the TripoSR core for Blender: ``python -m triposr_blender.worker FOLDER``.

PyTorch runs here rather than inside Blender, so a crash or an out-of-memory error cannot take Blender
down, a cancel can always end in a kill, and stopping the process frees every byte of GPU memory. The
model loads once and stays loaded between jobs. Messages follow ``protocol``; FOLDER holds the .npy files
of the arrays they carry. Only the standard library, numpy and the core's torch-free errors are imported up
front: a worker started without the dependencies still answers, with an error that says how to install them.
"""

import os
import queue
import sys
import threading
import traceback
from pathlib import Path
from typing import TextIO

import numpy as np

from . import protocol
from .core.errors import Cancelled, TripoSRError

PREPARING = "Preparing the image"


def missing_dependency_message(error: ImportError) -> str:
    return (
        f"The TripoSR dependencies are not installed ({error}). Install them from the add-on's preferences "
        "(Edit > Preferences > Add-ons > TripoSR Image to 3D > Install dependencies)."
    )


def out_of_memory_message(device: str) -> str:
    return (
        f"Out of memory on {device}. Lower the mesh resolution or the chunk size (add-on preferences), "
        "close other programs using the GPU, or use the CPU."
    )


def is_out_of_memory(error: BaseException) -> bool:
    return isinstance(error, MemoryError) or "out of memory" in str(error).lower()


def offline_message(repo_id: str) -> str:
    return (
        f"The model {repo_id} is not downloaded yet and Blender's online access is off. Allow it in "
        "Preferences > System > Network > Allow Online Access, or set Model Source to a local folder "
        "holding config.yaml and model.ckpt."
    )


def check_downloaded(source: str) -> None:
    """With online access off, a model that is not on disk yet fails here with a message saying so."""
    if Path(source).expanduser().is_dir():
        return
    from huggingface_hub import try_to_load_from_cache

    from .core.errors import ModelLoadError

    try:
        cached = try_to_load_from_cache(source, "model.ckpt")
    except ValueError:  # not a repo id either: the core explains that
        return
    if not isinstance(cached, str):
        raise ModelLoadError(offline_message(source))


def pil_image(spec: dict):
    """The input as the core accepts it: a file path, or a PIL image made from Blender's pixels."""
    if "path" in spec:
        return spec["path"]
    from PIL import Image

    pixels = np.clip(np.nan_to_num(spec["pixels"]), 0.0, 1.0)
    return Image.fromarray((pixels * 255 + 0.5).astype(np.uint8), "RGBA" if pixels.shape[2] == 4 else "RGB")


class ModelCache:
    """Keeps one model loaded, reloading only when the source, the device or the int8 choice change."""

    def __init__(self):
        self.model = None
        self.key = None

    def get(self, settings: dict, progress):
        key = (settings["source"], settings["device"], settings["cpu_fast"])
        if self.model is None or key != self.key:
            self.unload()
            if settings["offline"]:
                check_downloaded(settings["source"])
            from .core import TripoSR

            self.model = TripoSR.from_pretrained(
                settings["source"],
                device=settings["device"],
                cpu_fast=settings["cpu_fast"],
                progress=progress,
            )
            self.key = key
        self.model.chunk_size = settings["chunk_size"]
        return self.model

    def unload(self) -> None:
        if self.model is not None:
            self.model.unload()
        self.model, self.key = None, None

    def state(self) -> dict:
        if self.model is None:
            return {"loaded": False}
        return {
            "loaded": True,
            "source": self.key[0],
            "device": str(self.model.device),
            "cpu_fast": self.model.cpu_fast,
            "memory_bytes": memory_in_use(self.model),
        }


def memory_in_use(model) -> int:
    """GPU memory PyTorch holds on CUDA; elsewhere the size of the weights."""
    import torch

    if model.device.type == "cuda":
        return int(torch.cuda.memory_reserved(model.device))
    return int(sum(tensor_bytes(value) for value in model.network.state_dict().values()))


def tensor_bytes(value) -> int:
    """Bytes in a state-dict entry; int8 layers keep their weights as a tuple, outside ``parameters()``."""
    if isinstance(value, tuple):
        return sum(tensor_bytes(item) for item in value)
    return value.numel() * value.element_size() if hasattr(value, "numel") else 0


def generate(models: ModelCache, request: dict, progress) -> dict:
    """Run one generation; the result holds the mesh arrays in TripoSR's model space."""
    from .core import preprocess_image

    options = request["options"]
    model = models.get(request["model"], progress)
    progress(PREPARING, 0.0)
    prepared = preprocess_image(
        pil_image(request["image"]),
        remove_background=options["remove_background"],
        foreground_ratio=options["foreground_ratio"],
        progress=progress,
    )
    scene = model.encode(prepared, progress=progress)
    mesh = model.extract_mesh(
        scene, resolution=options["resolution"], threshold=options["threshold"], progress=progress
    )
    return finish_mesh(model, scene, mesh, options, progress)


def finish_mesh(model, scene, mesh, options: dict, progress) -> dict:
    """Decimate to ``target_faces`` and bake a ``texture_size`` texture where the options ask (0: don't).

    Both happen here, beside the model that colours the new vertices and the texels, so a game-ready
    result takes one job; the result holds the mesh arrays (and the texture's) in TripoSR's model space.
    """
    from .core.decimate import decimate
    from .core.texture import bake_texture

    def color_fn(points: np.ndarray) -> np.ndarray:
        return model.query(scene, points)["color"].cpu().numpy()

    if options.get("target_faces"):
        mesh = decimate(mesh, options["target_faces"], color_fn, progress)
    result = {"mesh": {"vertices": mesh.vertices, "faces": mesh.faces, "vertex_colors": mesh.vertex_colors}}
    if options.get("texture_size"):
        baked = bake_texture(mesh, color_fn, options["texture_size"], progress=progress)
        result["texture"] = {"corner_uvs": baked.corner_uvs, "image": baked.image}
    return result


def load(models: ModelCache, request: dict, progress) -> dict:
    """Download (once) and load the model ahead of the first generation: the preferences' button."""
    models.get(request["model"], progress)
    return {"model": models.state()}


JOBS = {"generate": generate, "load": load}


class Worker:
    """Reads commands on one thread, runs jobs one at a time on the main thread, writes events."""

    def __init__(self, commands: TextIO, events: TextIO, folder: Path):
        self.commands = commands
        self.events = events
        self.folder = folder
        self.models = ModelCache()
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
        self.models.unload()

    def progress_for(self, job_id: int):
        def progress(stage: str, fraction: float) -> None:
            if job_id in self.cancelled or self.abandoned.is_set():
                raise Cancelled("Cancelled.")
            self.send("progress", id=job_id, stage=stage, fraction=float(fraction))

        return progress

    def run_job(self, command: dict) -> None:
        job_id = command["id"]
        progress = self.progress_for(job_id)
        state_before = self.models.state()
        try:
            progress("Starting", 0.0)
            self.send("result", id=job_id, **JOBS[command["cmd"]](self.models, command, progress))
        except Exception as error:  # every failure becomes a message; the worker lives on
            self.report_failure(job_id, command, error)
        finally:
            self.cancelled.discard(job_id)
            if self.models.state() != state_before:
                self.send("model", state=self.models.state())

    def report_failure(self, job_id: int, command: dict, error: Exception) -> None:
        if isinstance(error, Cancelled):
            self.send("cancelled", id=job_id)
            return
        traceback.print_exception(error, file=sys.stderr)
        if isinstance(error, ImportError):
            kind, message = "MissingDependencies", missing_dependency_message(error)
        elif is_out_of_memory(error):
            self.models.unload()
            device = command.get("model", {}).get("device", "the device")
            kind, message = "OutOfMemory", out_of_memory_message(device)
        elif isinstance(error, TripoSRError):
            kind, message = type(error).__name__, str(error)
        else:
            kind = "InternalError"
            message = f"Unexpected error in the TripoSR worker: {type(error).__name__}: {error}"
        self.send("error", id=job_id, kind=kind, message=message)


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
