"""What a job does, typed: keep a model loaded, turn an image or saved scene codes into a ``MeshResult``,
explain failures.

``generate`` and ``remesh`` are the pipeline's API, called directly by everything that holds a model in its
own process: the worker process (through ``Jobs``, which alone turns messages into these types and back),
Ray Serve's replicas and the batch's Ray workers. Only the standard library, numpy and the core's torch-free
modules are imported up front: a worker started without the dependencies still answers, with an error that
says how to install them.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
from collections import OrderedDict
from pathlib import Path

import numpy as np

from ..backends.types import EncodedImage, ImageFile, ImageInput, MeshResult, ModelSettings, ModelState
from ..core.color import to_uint8
from ..core.errors import InvalidImageError, ModelLoadError, TripoSRError
from ..core.mesh import FramedPhoto
from ..core.progress import PHOTO_STAGE, PREPARING, REUSING_CODES, Progress
from ..core.scene_codes import SceneCodes, photo_in
from ..options import GenerateOptions, MeshOptions, OptionError
from . import protocol

# Scene codes kept in the worker, so that another Generate of a recent image changing only mesh options skips
# the encoder (2 MB each for the released model).
CODES_CACHE_SIZE = 16
# How PyTorch and the libraries below it say they ran out of memory (lower case): CUDA, MPS and HIP
# ("CUDA out of memory"), the CPU allocator ("DefaultCPUAllocator: not enough memory: you tried to allocate
# ..." or, in older builds, "can't allocate memory"), cuBLAS (CUBLAS_STATUS_ALLOC_FAILED), oneDNN and C++
# extensions ("failed to allocate", std::bad_alloc).
OUT_OF_MEMORY_WORDINGS = (
    "out of memory",
    "not enough memory",
    "can't allocate memory",
    "cannot allocate memory",
    "failed to allocate",
    "alloc_failed",
    "bad_alloc",
)


def missing_dependency_message(error: ImportError) -> str:
    return (
        f"The TripoSR dependencies are not installed ({error}). Install them from the add-on's preferences "
        "(Edit > Preferences > Add-ons > TripoSR Image to 3D > Install dependencies)."
    )


def out_of_memory_message(device: str) -> str:
    if device == "cpu":
        return (
            "Out of memory: the computer's memory ran out. Lower the mesh resolution, the texture size or "
            "the chunk size (add-on preferences), or close other programs."
        )
    return (
        f"Out of memory on {device}. Lower the mesh resolution or the chunk size (add-on preferences), "
        "close other programs using the GPU, or use the CPU."
    )


def is_out_of_memory(error: BaseException) -> bool:
    if isinstance(error, MemoryError) or type(error).__name__ == "OutOfMemoryError":  # torch's, all devices
        return True
    if isinstance(error, OSError) and error.errno == errno.ENOMEM:
        return True
    text = str(error).lower()
    return any(wording in text for wording in OUT_OF_MEMORY_WORDINGS)


def offline_message(repo_id: str) -> str:
    return (
        f"The model {repo_id} is not downloaded yet and Blender's online access is off. Allow it in "
        "Preferences > System > Network > Allow Online Access, or set Model Source to a local folder "
        "holding config.yaml and model.ckpt."
    )


def describe_failure(error: Exception, device: str) -> tuple[str, str]:
    """(kind, message for the user) for a job that raised ``error``; ``device`` is where the model ran."""
    if isinstance(error, ImportError):
        return "MissingDependencies", missing_dependency_message(error)
    if is_out_of_memory(error):
        return "OutOfMemory", out_of_memory_message(device)
    if isinstance(error, TripoSRError):
        return type(error).__name__, str(error)
    if isinstance(error, OptionError):
        return "InvalidOptions", str(error)
    return "InternalError", f"Unexpected error in the TripoSR worker: {type(error).__name__}: {error}"


def check_downloaded(source: str) -> None:
    """With online access off, a model that is not on disk yet fails here with a message saying so."""
    if Path(source).expanduser().is_dir():
        return
    from huggingface_hub import try_to_load_from_cache

    try:
        cached = try_to_load_from_cache(source, "model.ckpt")
    except ValueError:  # not a repo id either: the core explains that
        return
    if not isinstance(cached, str):
        raise ModelLoadError(offline_message(source))


def pil_image(image: ImageInput):
    """The input as the core accepts it: a file path, a file's bytes, or a PIL image of Blender's pixels."""
    if isinstance(image, ImageFile):
        return image.path
    if isinstance(image, EncodedImage):
        return image.data
    from PIL import Image

    pixels = to_uint8(image.pixels)
    return Image.fromarray(pixels, "RGBA" if pixels.shape[2] == 4 else "RGB")


class ModelCache:
    """Keeps one model loaded, reloading only when the source, the device or the int8 choice change."""

    def __init__(self):
        self.model = None
        self.key = None

    def get(self, settings: ModelSettings, progress: Progress):
        key = (settings.source, settings.device, settings.cpu_fast)
        if self.model is None or key != self.key:
            self.unload()
            if settings.offline:
                check_downloaded(settings.source)
            from ..core import TripoSR

            self.model = TripoSR.from_pretrained(
                settings.source, device=settings.device, cpu_fast=settings.cpu_fast, progress=progress
            )
            self.key = key
        self.model.chunk_size = settings.chunk_size
        return self.model

    def unload(self) -> None:
        if self.model is not None:
            self.model.unload()
        self.model, self.key = None, None

    def state(self) -> ModelState:
        if self.model is None:
            return ModelState()
        return ModelState(
            loaded=True,
            source=self.key[0],
            device=str(self.model.device),
            memory_bytes=memory_in_use(self.model),
            cpu_fast=self.model.cpu_fast,
        )


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


def encode_image(model, image, options: GenerateOptions, progress: Progress, allow_download: bool = True):
    """One image (a path or a PIL image) prepared on the model's device and encoded: its scene codes
    [1, 3, C, H, W], the prepared image (H, W, 3) uint8, and the photo it was framed from (None where the
    image was taken whole, squashed to a square).
    ``allow_download``: whether background removal may fetch its model (online access)."""
    from ..core.preprocess import prepare_input

    progress(PREPARING, 0.0)
    prepared = prepare_input(
        image,
        remove_background=options.remove_background,
        foreground_ratio=options.foreground_ratio,
        progress=progress,
        allow_download=allow_download,
        device=model.device,
    )
    scene = model.encode(prepared.image, progress=progress)
    return scene, np.asarray(prepared.image, np.uint8), prepared.photo


# Why Photo Texture was not applied, where there was no photo to fit.
PHOTO_SQUASHED = (
    "Photo Texture was not applied: with Remove Background off and no transparency in the image, nothing "
    "marks the object's outline. Turn Remove Background on, or use an image with a transparent background."
)
PHOTO_NOT_KEPT = (
    "Photo Texture was not applied: these scene codes came without their photo (the image was taken whole, "
    "without a cut-out, or an earlier version of the add-on saved them). Generate from the image again to "
    "project it."
)


def mesh_from_scene(
    model,
    scene,
    options: MeshOptions,
    progress: Progress,
    codes: SceneCodes | None = None,
    photo: FramedPhoto | None = None,
    why_no_photo: str = PHOTO_NOT_KEPT,
) -> MeshResult:
    """Scene codes to the finished mesh: extracted (smoothed), rid of floaters, decimated to ``target_faces``
    and baked into a ``texture_size`` texture where the options ask (0: don't); a decimated mesh's bake
    carries a normal map of the dense mesh's shading; with ``photo_texture`` the texture, or else the vertex
    colours, take the ``photo``'s detail where it shows the surface (or a note says why not:
    ``why_no_photo`` where there is no photo).
    ``codes``, the scene codes saved with their model, go along in the result, so the object made from it
    can be re-meshed later.

    Decimation and baking happen here, beside the model that colours the new vertices and the texels, so a
    game-ready result takes one job.
    """
    from ..core.decimate import decimate
    from ..core.floaters import remove_floaters
    from ..core.photo_texture import onto_vertices
    from ..core.texture import bake_texture

    def color_fn(points: np.ndarray) -> np.ndarray:
        return model.query(scene, points)["color"].cpu().numpy()

    mesh = model.extract_mesh(
        scene,
        resolution=options.resolution,
        threshold=options.threshold,
        progress=progress,
        smoothing=options.smoothing,
    )
    if options.remove_floaters:
        mesh = remove_floaters(mesh, options.floater_fraction)
    dense = mesh
    if options.target_faces:
        mesh = decimate(mesh, options.target_faces, color_fn, progress)
    projection, notes = (
        photo_projection(mesh, photo, why_no_photo, progress) if options.photo_texture else (None, ())
    )
    texture = None
    if options.texture_size:
        detail = dense if mesh is not dense else None  # a decimated mesh gets the dense one's shading back
        texture = bake_texture(
            mesh, color_fn, options.texture_size, progress=progress, dense=detail, photo=projection
        )
    elif projection is not None:
        mesh = onto_vertices(mesh, projection)
    return MeshResult(mesh, texture, codes.to_bytes() if codes is not None else b"", notes=notes)


def photo_projection(mesh, photo: FramedPhoto | None, why_no_photo: str, progress: Progress):
    """The photo as the camera fitted to the mesh's outline throws it, and no note; or None and the note
    that says why not."""
    from ..core.photo_texture import PhotoProjection, fit_camera

    if photo is None:
        return None, (why_no_photo,)
    progress(PHOTO_STAGE, 0.0)
    fit = fit_camera(mesh, photo)
    progress(PHOTO_STAGE, 1.0)
    if not fit.usable:
        return None, (fit.refusal(),)
    return PhotoProjection(mesh, photo, fit.camera), ()


def codes_of(model, scene, settings: ModelSettings) -> SceneCodes:
    """An encoded image's scene codes, marked with the model that reads them."""
    return SceneCodes(scene.cpu().numpy(), model.fingerprint, settings.source)


def scene_of(model, data: bytes, settings: ModelSettings, name: str = "The saved scene codes"):
    """Saved scene codes as the loaded model meshes them; another model's, or damaged ones, are refused."""
    import torch

    codes = SceneCodes.from_bytes(data, name)
    codes.check_model(model.fingerprint, settings.source, model.config.post_processor.out_channels)
    return torch.from_numpy(codes.array)


class CodesCache:
    """The scene codes of recent images, each with its prepared image and framed photo; least recently used
    first out."""

    def __init__(self, size: int = CODES_CACHE_SIZE):
        self.size = size
        self._codes: OrderedDict[str, object] = OrderedDict()

    def get(self, key: str):
        if key in self._codes:
            self._codes.move_to_end(key)
        return self._codes.get(key)

    def put(self, key: str, codes) -> None:
        self._codes[key] = codes
        self._codes.move_to_end(key)
        while len(self._codes) > self.size:
            self._codes.popitem(last=False)

    def clear(self) -> None:
        self._codes.clear()


def codes_key(image: ImageInput, options: GenerateOptions, settings: ModelSettings, model) -> str:
    """What the scene codes of an image depend on: its content (not its name), how it is prepared, and the
    model and precision that encode it."""
    digest = hashlib.sha256()
    if isinstance(image, ImageFile):
        try:
            digest.update(Path(image.path).read_bytes())
        except OSError as error:  # explained as the core explains a file it cannot open
            raise InvalidImageError.unreadable(f"The file {image.path}", error) from error
    elif isinstance(image, EncodedImage):
        digest.update(image.data)
    else:
        pixels = np.ascontiguousarray(image.pixels)
        digest.update(repr(pixels.shape).encode() + pixels.tobytes())
    encoding = [options.remove_background, options.foreground_ratio, settings.source, settings.device]
    encoding += [str(model.dtype), model.cpu_fast]
    digest.update(json.dumps(encoding).encode())
    return digest.hexdigest()


class Pipeline:
    """A model kept loaded (reloaded only when its settings change) and the scene codes of recent images."""

    def __init__(self):
        self.models = ModelCache()
        self.codes = CodesCache()

    def model(self, settings: ModelSettings, progress: Progress):
        loaded = self.models.model
        model = self.models.get(settings, progress)
        if model is not loaded:
            self.codes.clear()  # codes of another model, or precision, are of no more use
        return model

    def generate(
        self, image: ImageInput, options: GenerateOptions, settings: ModelSettings, progress: Progress
    ) -> MeshResult:
        """One image to a mesh, with its scene codes; the encoder is skipped for an image encoded
        recently, alike."""
        model = self.model(settings, progress)
        key = codes_key(image, options, settings, model)
        encoded = self.codes.get(key)
        if encoded is None:
            encoded = encode_image(model, pil_image(image), options, progress, not settings.offline)
            self.codes.put(key, encoded)
        else:
            progress(REUSING_CODES, 1.0)
        scene, prepared, photo = encoded
        codes = codes_of(model, scene, settings)
        result = mesh_from_scene(model, scene, options.mesh, progress, codes, photo, PHOTO_SQUASHED)
        return dataclasses.replace(result, prepared=prepared, photo=photo)

    def remesh(
        self,
        codes: bytes,
        options: MeshOptions,
        settings: ModelSettings,
        progress: Progress,
        photo: FramedPhoto | None = None,
    ) -> MeshResult:
        """A new mesh from saved scene codes, which must be the loaded model's, and for Photo Texture the
        ``photo`` kept with them (an object's), else the one their archive holds, if any. Neither codes nor
        photo in the result: the caller has them, and compressing them again would cost a second."""
        model = self.model(settings, progress)
        scene = scene_of(model, codes, settings)
        if photo is None and options.photo_texture:
            photo = photo_in(codes)
        return mesh_from_scene(model, scene, options, progress, photo=photo)

    def load(self, settings: ModelSettings, progress: Progress) -> ModelState:
        """Download (once) and load the model ahead of the first generation: the preferences' button."""
        self.model(settings, progress)
        return self.models.state()


class Jobs:
    """The worker process's commands: messages in, the pipeline's typed calls, messages out."""

    def __init__(self, pipeline: Pipeline | None = None):
        self.pipeline = pipeline or Pipeline()

    def generate(self, request: dict, progress: Progress) -> dict:
        options = GenerateOptions.from_dict(request["options"])
        image, settings = protocol.image_of(request["image"]), protocol.settings_of(request["model"])
        return protocol.result_message(self.pipeline.generate(image, options, settings, progress))

    def remesh(self, request: dict, progress: Progress) -> dict:
        options = MeshOptions.from_dict(request["options"])
        settings = protocol.settings_of(request["model"])
        photo = protocol.photo_of(request.get("photo"))
        return protocol.result_message(
            self.pipeline.remesh(request["codes"].tobytes(), options, settings, progress, photo)
        )

    def load(self, request: dict, progress: Progress) -> dict:
        state = self.pipeline.load(protocol.settings_of(request["model"]), progress)
        return {"model": protocol.model_state_message(state)}
