"""Finding the model files (a local folder or a Hugging Face repo) and loading the checkpoint safely.

Checkpoints are untrusted: ``torch.load(weights_only=True)`` only rebuilds tensors and plain containers,
never arbitrary objects, so a file cannot run code. Loading is strict: every tensor the model expects must be
present with its exact shape, and nothing else may be in the file, so a wrong file never loads half-way.
"""

from __future__ import annotations

import io
import pickle
import socket
import threading
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from .errors import ModelLoadError
from .progress import DOWNLOAD_STAGE, Progress

HALF_DTYPES = (torch.float16, torch.bfloat16)
# How long the hub's host name may take to resolve before the download is simply tried.
RESOLVE_TIMEOUT_S = 5.0
CONFIG_NAME = "config.yaml"
WEIGHTS_NAME = "model.ckpt"
LOCAL_ALTERNATIVE = (
    "download config.yaml and model.ckpt from https://huggingface.co/stabilityai/TripoSR into a folder "
    "and use that folder instead (TRIPOSR_MODEL=<folder>, or the model folder in the add-on preferences)"
)


@dataclass(frozen=True)
class ModelFiles:
    config: Path
    weights: Path


def locate_model(source: str | Path, progress: Progress | None = None) -> ModelFiles:
    """``source`` is a folder holding config.yaml and model.ckpt, or else a Hugging Face repo id."""
    folder = Path(source).expanduser()
    if folder.is_dir():
        return files_in_folder(folder)
    return download_from_hub(str(source), progress)


def files_in_folder(folder: Path) -> ModelFiles:
    files = ModelFiles(folder / CONFIG_NAME, folder / WEIGHTS_NAME)
    missing = [path.name for path in (files.config, files.weights) if not path.exists()]
    if missing:
        raise ModelLoadError(
            f"The model folder {folder} has no {' and no '.join(missing)}. A TripoSR model folder needs both "
            f"{CONFIG_NAME} and {WEIGHTS_NAME}."
        )
    for path in (files.config, files.weights):
        check_regular_file(path)
    return files


def check_regular_file(path: Path) -> None:
    """Only regular files are read: a FIFO or a device in a model folder would block or never end."""
    if not path.is_file():
        raise ModelLoadError(
            f"{path} is not a regular file (a folder, a pipe or a device). Put the real {path.name} there."
        )


def download_from_hub(repo_id: str, progress: Progress | None) -> ModelFiles:
    """Fetch into the standard Hugging Face cache; a cached copy is used without touching the network.

    huggingface_hub resumes interrupted downloads from their ``.incomplete`` file and checks the received size
    against the server's metadata before moving the file into place.
    """
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    try:
        return fetch_from_hub(repo_id, local_files_only=True, progress=None)
    except LocalEntryNotFoundError:
        pass  # not cached yet
    except HFValidationError as error:
        raise ModelLoadError(
            f"'{repo_id}' is neither a model folder nor a Hugging Face repository id "
            "(like stabilityai/TripoSR)."
        ) from error
    if not hub_host_resolves():
        raise ModelLoadError(no_network_message(repo_id))
    try:
        return fetch_from_hub(repo_id, local_files_only=False, progress=progress)
    except Exception as error:
        message = hub_error_message(repo_id, error)
        if message is None:
            raise
        raise ModelLoadError(message) from error


def hub_host_resolves() -> bool:
    """False only when the hub's host name certainly does not resolve (no network, no DNS), which
    huggingface_hub would otherwise retry for half a minute. Behind a proxy, the proxy resolves names; a
    slow answer counts as resolving, and the download then says what goes wrong."""
    from huggingface_hub import constants

    if {"https", "all"} & set(urllib.request.getproxies()):
        return True
    host = urllib.parse.urlparse(constants.ENDPOINT).hostname
    answer = {}

    def resolve():
        try:
            socket.getaddrinfo(host, 443)
            answer["resolves"] = True
        except OSError:
            answer["resolves"] = False

    thread = threading.Thread(target=resolve, name="resolve-hub", daemon=True)
    thread.start()
    thread.join(RESOLVE_TIMEOUT_S)
    return answer.get("resolves", True)


def no_network_message(repo_id: str) -> str:
    return (
        f"Could not download the model '{repo_id}': there is no network connection (or Hugging Face "
        "cannot be reached) and it is not in the download cache yet. Connect and try again, or "
        f"{LOCAL_ALTERNATIVE}."
    )


def fetch_from_hub(repo_id: str, local_files_only: bool, progress: Progress | None) -> ModelFiles:
    from huggingface_hub import hf_hub_download

    config = hf_hub_download(repo_id, CONFIG_NAME, local_files_only=local_files_only)
    weights = hf_hub_download(
        repo_id,
        WEIGHTS_NAME,
        local_files_only=local_files_only,
        tqdm_class=download_progress_bar(progress) if progress is not None else None,
    )
    return ModelFiles(Path(config), Path(weights))


def hub_error_message(repo_id: str, error: Exception) -> str | None:
    """A user-facing explanation of a failed download, or None for errors that are not about the download."""
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    if isinstance(error, LocalEntryNotFoundError):
        return no_network_message(repo_id)
    if isinstance(error, RepositoryNotFoundError):
        return (
            f"'{repo_id}' is not a model folder on this computer, and Hugging Face has no (public) "
            f"repository of that name. Check the spelling, or {LOCAL_ALTERNATIVE}."
        )
    if isinstance(error, EntryNotFoundError):
        return (
            f"The Hugging Face repository '{repo_id}' has no {CONFIG_NAME} or {WEIGHTS_NAME}; "
            "it is not a TripoSR model."
        )
    if isinstance(error, HfHubHTTPError):
        return f"Downloading the model '{repo_id}' failed ({error}). Try again later, or {LOCAL_ALTERNATIVE}."
    if isinstance(error, OSError):
        return f"Could not save the downloaded model (is the disk full?): {error}"
    return None


def download_progress_bar(progress: Progress) -> type[tqdm]:
    """A tqdm class for huggingface_hub that reports the fraction done to ``progress``, printing nothing."""

    class DownloadProgress(tqdm):
        def __init__(self, *args, **kwargs):
            kwargs["disable"] = False  # a disabled bar stops counting
            kwargs["file"] = io.StringIO()
            super().__init__(*args, **kwargs)

        def update(self, n=1):
            displayed = super().update(n)
            if self.total:
                progress(DOWNLOAD_STAGE, min(1.0, self.n / self.total))
            return displayed

    return DownloadProgress


def read_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """The checkpoint's tensors, memory-mapped rather than read into a second copy.

    Tensors saved in half precision come back as float32: the model computes in float32 (a GPU halves its
    encoder itself), and a half-precision decoder would lose the iso-surface's precision.
    """
    check_regular_file(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as error:
        raise ModelLoadError(
            f"{path} was refused: it holds Python objects besides plain tensors, and loading those could "
            f"run code. Use the official {WEIGHTS_NAME}."
        ) from error
    except (RuntimeError, OSError, EOFError, ValueError) as error:
        raise ModelLoadError(
            f"{path} is not a readable PyTorch checkpoint (truncated or damaged?): {error}"
        ) from error
    if not isinstance(state, dict) or not all(
        isinstance(name, str) and isinstance(tensor, torch.Tensor) for name, tensor in state.items()
    ):
        raise ModelLoadError(
            f"{path} is not a TripoSR checkpoint: expected a plain mapping of names to tensors."
        )
    return {name: tensor.float() if tensor.dtype in HALF_DTYPES else tensor for name, tensor in state.items()}


def check_state_dict(expected: Mapping[str, Sequence[int]], found: Mapping[str, torch.Tensor]) -> None:
    """Raise ModelLoadError naming missing, unexpected, mis-shaped or non-float tensors (a few of each)."""
    missing = [name for name in expected if name not in found]
    unexpected = [name for name in found if name not in expected]
    common = [name for name in expected if name in found]
    misshaped = [
        f"{name} {list(found[name].shape)} (expected {list(expected[name])})"
        for name in common
        if tuple(found[name].shape) != tuple(expected[name])
    ]
    not_float = [name for name in common if not found[name].is_floating_point()]
    problems = [
        f"{label}: {summarize(names)}"
        for label, names in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("wrong shape", misshaped),
            ("not floating point", not_float),
        )
        if names
    ]
    if problems:
        raise ModelLoadError(
            f"{WEIGHTS_NAME} does not match {CONFIG_NAME} ({'; '.join(problems)}). "
            f"Use the {CONFIG_NAME} that came with this {WEIGHTS_NAME}."
        )


def summarize(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(names[:limit])
    return f"{shown} and {len(names) - limit} more" if len(names) > limit else shown


def expected_layout(network: nn.Module) -> dict[str, torch.Size]:
    return {name: tensor.shape for name, tensor in network.state_dict().items()}


def load_weights(network: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """Strictly check ``state`` against ``network``, then adopt its tensors as the parameters."""
    check_state_dict(expected_layout(network), state)
    check_finite(state)
    network.load_state_dict(state, strict=True, assign=True)


def check_finite(state: Mapping[str, torch.Tensor]) -> None:
    """A NaN or infinite weight makes every density NaN, which would pass for "no surface found" later.

    One sum per tensor finds them: any NaN or infinity makes it non-finite, and summing in float64 cannot
    overflow. 0.2 s for the released model's 419M weights on 2 CPU cores, 6x less than ``isfinite().all()``.
    """
    broken = [
        name
        for name, tensor in state.items()
        if not tensor.is_meta and not bool(torch.isfinite(tensor.sum(dtype=torch.float64)))
    ]
    if broken:
        raise ModelLoadError(
            f"{WEIGHTS_NAME} holds NaN or infinite values ({summarize(broken)}): the file is damaged. "
            "Download it again."
        )
