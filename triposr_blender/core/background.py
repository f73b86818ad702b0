"""Background removal: rembg's U²-Net mask, computed with torch on the model's device.

rembg runs its models with onnxruntime on the CPU, which on a GPU machine was the slowest per-image stage
(a second or more for u2net under load, while the GPU waited). Here the same model file rembg downloads is
run by ``onnx_graph`` on the device the model uses, with rembg's own pre- and post-processing, so the masks
are rembg's (a mean difference of well under 1/255; tests/test_background.py measures it). The choices:

- onnxruntime's GPU providers need a second onnxruntime wheel per CUDA version (none for MPS or ROCm in
  the same form), a download of hundreds of MB more;
- converting the ONNX file to a torch module needs the ``onnx`` package and a converter kept up with it;
- the graph runner reads the file itself and knows the dozen operators U²-Net uses, on every torch
  device, for no extra download.

On the CPU itself onnxruntime is the faster of the two (u2netp on a 512² image: 0.28 s against 0.40 s on a
2-core CPU, `.venv/bin/python scripts/bench.py`), so there rembg runs as before; the tests run the torch
path on the CPU, where it computes what it computes on a GPU. rembg also stays the download (same files,
same checksums) and the fallback: a model other than u2net and u2netp, or a device that fails (out of
memory, a missing kernel), goes through rembg on the CPU, with a warning in the log; the mask is rembg's
either way. A damaged model file is no case for the fallback (onnxruntime cannot run it either): it ends in
one message naming the file, and with downloads off it is never fetched again behind the user's back.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from .errors import ModelLoadError
from .onnx_graph import DamagedModelFile, OnnxGraph, UnsupportedGraph, read_onnx

LOG = logging.getLogger(__name__)

# The rembg models whose pre- and post-processing (rembg 2.0.67's U2netSession and U2netpSession) is
# repeated here: ImageNet normalisation at 320², then the first output min-max scaled to 0–255.
TORCH_MODELS = ("u2net", "u2netp")
# rembg's switch that makes its sessions use the model file present, unchecked, instead of fetching it again.
CHECKSUM_SWITCH = "MODEL_CHECKSUM_DISABLED"
MASK_INPUT_SIZE = (320, 320)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_cache: dict[tuple, Any] = {}
_cache_lock = threading.Lock()


def object_mask(
    image: Image.Image, model_name: str, device: str | torch.device = "cpu", allow_download: bool = True
) -> Image.Image:
    """rembg's mask ("L", the image's size) of the object in an RGB image, computed on ``device`` when it
    is a GPU (with onnxruntime on the CPU)."""
    if torch.device(device).type != "cpu" and model_name in TORCH_MODELS:
        try:
            return mask_model(model_name, device, allow_download).predict(image)
        except DamagedModelFile as error:  # onnxruntime could not run it either
            raise ModelLoadError(damaged_model_message(error, allow_download)) from error
        except (UnsupportedGraph, RuntimeError, NotImplementedError) as error:
            LOG.warning(
                "Background removal could not run on %s (%s); removing it with rembg on the CPU instead.",
                device,
                error,
            )
    rembg = import_rembg()
    return rembg.remove(image, session=rembg_session(model_name, allow_download), only_mask=True)


class MaskModel:
    """One of rembg's U²-Net models on one device, run as rembg runs it."""

    def __init__(self, graph: OnnxGraph, device: torch.device):
        self.device = device
        # channels_last: the convolutions' fastest layout on CPUs (oneDNN) and on GPUs alike.
        self.graph = graph.to(device)
        self.graph.weights = {
            name: value.contiguous(memory_format=torch.channels_last) if value.dim() == 4 else value
            for name, value in self.graph.weights.items()
        }
        self.mean = torch.tensor(IMAGENET_MEAN, device=device)
        self.std = torch.tensor(IMAGENET_STD, device=device)

    def predict(self, image: Image.Image) -> Image.Image:
        # The two Lanczos resizes are Pillow's, as rembg's: on the host, but at 320² and at the mask's size.
        small = np.asarray(image.convert("RGB").resize(MASK_INPUT_SIZE, Image.Resampling.LANCZOS))
        with torch.inference_mode():
            pixels = torch.from_numpy(small.copy()).to(self.device).float()
            pixels = pixels / pixels.max().clamp(min=1e-6)
            normalised = ((pixels - self.mean) / self.std).permute(2, 0, 1)[None]
            prediction = self.graph.run(normalised.contiguous(memory_format=torch.channels_last))[0][0, 0]
            low, high = prediction.min(), prediction.max()
            scaled = ((prediction - low) / (high - low)).nan_to_num(0.0).clamp(0.0, 1.0)
            mask = (scaled * 255).to(torch.uint8).cpu().numpy()
        return Image.fromarray(mask, mode="L").resize(image.size, Image.Resampling.LANCZOS)


def mask_model(model_name: str, device: str | torch.device, allow_download: bool = True) -> MaskModel:
    """The model read once per device and kept: reading u2net's 176 MB takes a second."""
    device = torch.device(device)
    with _cache_lock:
        key = ("torch", model_name, str(device))
        if key not in _cache:
            _cache[key] = MaskModel(read_onnx(rembg_model_file(model_name, allow_download)), device)
        return _cache[key]


def rembg_session(model_name: str, allow_download: bool = True) -> Any:
    """rembg's own session for ``model_name``, created once and reused: creating one loads the ONNX model."""
    with _cache_lock:
        key = ("rembg", model_name)
        if key not in _cache:
            path = rembg_model_file(model_name, allow_download)
            try:
                with _no_download_unless(allow_download):
                    _cache[key] = import_rembg().new_session(model_name)
            except Exception as error:  # onnxruntime's errors for a damaged file share no narrower base
                raise ModelLoadError(damaged_model_message(f"{path} ({error})", allow_download)) from error
        return _cache[key]


def damaged_model_message(what, allow_download: bool) -> str:
    """What to do about a model file that cannot be loaded; ``what`` names it and says why."""
    fix = (
        "Delete it to have it downloaded again"
        if allow_download
        else "Delete it and allow online access (Preferences > System > Network > Allow Online Access) to "
        "have it downloaded again, or copy a good copy in its place"
    )
    return (
        f"The background-removal model could not be loaded: {what}. {fix}, or turn background removal off "
        "and use an image with a transparent background."
    )


@contextlib.contextmanager
def _no_download_unless(allow_download: bool):
    """rembg's session checks its file through pooch, which downloads the file again when the check fails.
    With downloads off, the file present is used as it is (rembg's own MODEL_CHECKSUM_DISABLED), so a
    damaged one fails to load and says so instead."""
    if allow_download or CHECKSUM_SWITCH in os.environ:
        yield
        return
    os.environ[CHECKSUM_SWITCH] = "1"
    try:
        yield
    finally:
        del os.environ[CHECKSUM_SWITCH]


def rembg_model_file(model_name: str, allow_download: bool = True) -> Path:
    """The model file rembg uses for ``model_name``, downloaded by rembg (with its checksum) if missing."""
    rembg = import_rembg()
    sessions = {session.name(): session for session in rembg.sessions.sessions_class}
    if model_name not in sessions:
        raise ModelLoadError(
            f"Unknown background-removal model {model_name!r}; choose one of {', '.join(sessions)}."
        )
    model_folder = Path(rembg.sessions.base.BaseSession.u2net_home())
    path = model_folder / f"{model_name}.onnx"
    if path.is_file():
        return path
    if not allow_download:
        raise ModelLoadError(
            f"Background removal needs rembg's {model_name} model, which is not downloaded yet, and online "
            "access is off. Allow it in Preferences > System > Network > Allow Online Access (the model is "
            f"downloaded once, 176 MB for u2net), or copy {model_name}.onnx into {model_folder}, or turn "
            "Remove Background off and use an image with a transparent background."
        )
    try:
        return Path(sessions[model_name].download_models())
    except Exception as error:
        # A missing network, a failed checksum or a full disk surface as requests, pooch or OS errors that
        # share no base class but Exception.
        raise ModelLoadError(
            f"The background-removal model {model_name!r} could not be downloaded ({error}). rembg downloads "
            f"it into {model_folder} on first use: connect to the internet once, or copy "
            f"{model_name}.onnx there (the U2NET_HOME environment variable picks another folder). "
            "Or turn background removal off and use an image with a transparent background."
        ) from error


def import_rembg() -> Any:
    """Import rembg on first use only: its first import ever compiles numba code for about a minute."""
    try:
        import rembg
    except ImportError as error:
        raise ModelLoadError(
            f"Background removal needs the rembg package, which cannot be imported ({error}). "
            "Install the add-on's dependencies, or turn background removal off and use an image "
            "with a transparent background."
        ) from error
    return rembg
