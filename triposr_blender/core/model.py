"""TripoSR: one image -> triplane scene codes -> density and colour anywhere -> a coloured triangle mesh."""

from __future__ import annotations

import dataclasses
import gc
import hashlib
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig, load_config
from .cpu_fast import quantize_encoder
from .defaults import DEFAULT_CHUNK_SIZE, DEFAULT_MODEL_SOURCE, DEFAULT_RESOLUTION, DEFAULT_THRESHOLD
from .device import resolve_device, resolve_dtype
from .errors import InvalidImageError, ModelLoadError
from .isosurface import extract_dense
from .mesh import Mesh
from .networks import NeRFMLP, TriplaneUpsampleNetwork
from .progress import (
    COLOR_STAGE,
    ENCODE_STAGE,
    GRID_STAGE,
    LOAD_STAGE,
    QUERY_STAGE,
    SURFACE_STAGE,
    Progress,
    report,
    scaled,
)
from .renderer import TriplaneNeRFRenderer, spherical_cameras
from .smoothing import scaled_to_volume, smoothed_triplane, volume_ratio
from .sparse_isosurface import extract_sparse
from .tokenizers import DINOSingleImageTokenizer, Triplane1DTokenizer
from .transformer import Transformer1D
from .weights import load_weights, locate_model, read_checkpoint

# "sparse" queries only the blocks of the grid the surface passes through and gives the dense mesh
# (see sparse_isosurface.py for the one case it differs); "dense" queries every point, as the reference.
MESH_EXTRACTORS = {"sparse": extract_sparse, "dense": extract_dense}

# Share of the encoding work done by the image encoder; the triplane transformer does the rest.
IMAGE_ENCODER_SHARE = 0.1


class TripoSRNetwork(nn.Module):
    """All learned parts, under the names of the official checkpoint (``image_tokenizer.model...``)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.image_tokenizer = DINOSingleImageTokenizer(config.image_tokenizer, config.vit)
        self.tokenizer = Triplane1DTokenizer(config.tokenizer)
        self.backbone = Transformer1D(config.backbone)
        self.post_processor = TriplaneUpsampleNetwork(config.post_processor)
        self.decoder = NeRFMLP(config.decoder)
        self.renderer = TriplaneNeRFRenderer(config.renderer)

    def tokenize_image(
        self, rgb_cond: torch.Tensor, on_step: Callable[[float], None] | None = None
    ) -> torch.Tensor:
        """Resized images [B, H, W, 3] in [0, 1] -> image tokens [B, 1, C, tokens]."""
        return self.image_tokenizer(rgb_cond.permute(0, 3, 1, 2).unsqueeze(1), on_step)

    def triplane_tokens(
        self, image_tokens: torch.Tensor, on_step: Callable[[float], None] | None = None
    ) -> torch.Tensor:
        """Image tokens [B, 1, C, T] -> refined triplane tokens [B, C', 3*P*P]."""
        batch, views, channels, tokens = image_tokens.shape
        encoder_states = image_tokens.permute(0, 1, 3, 2).reshape(batch, views * tokens, channels)
        return self.backbone(self.tokenizer(batch), encoder_states, on_step)

    def scene_codes(self, triplane_tokens: torch.Tensor) -> torch.Tensor:
        """Triplane tokens -> upsampled triplanes [B, 3, C, H, W]."""
        return self.post_processor(self.tokenizer.detokenize(triplane_tokens))

    def forward(self, rgb_cond: torch.Tensor) -> torch.Tensor:
        return self.scene_codes(self.triplane_tokens(self.tokenize_image(rgb_cond)))

    def set_encoder_dtype(self, dtype: torch.dtype) -> None:
        """Run image -> scene codes in ``dtype`` (half precision on GPUs).

        The decoder stays float32: after exp() densities can leave float16's range (above 65504), and the
        iso-surface threshold needs more than float16's three significant digits.
        """
        for part in (self.image_tokenizer, self.tokenizer, self.backbone, self.post_processor):
            part.to(dtype)


def build_network(config: ModelConfig, device: str | torch.device = "meta") -> TripoSRNetwork:
    """On the meta device nothing is allocated: the checkpoint's tensors are adopted later, not copied."""
    with torch.device(device):
        return TripoSRNetwork(config)


class TripoSR:
    """The inference API. Long methods take ``progress(stage, fraction)``; it may raise ``Cancelled``."""

    def __init__(self, network: TripoSRNetwork, device: torch.device, chunk_size: int = DEFAULT_CHUNK_SIZE):
        self._network: TripoSRNetwork | None = network
        self._device = device
        # Precision of the image encoder and backbone; scene codes and field queries are always float32.
        self.dtype = network.backbone.proj_in.weight.dtype
        self.chunk_size = chunk_size
        self.load_seconds = 0.0
        self.cpu_fast = False  # whether the encoder runs with int8 layers (only ever on the CPU)
        self._fingerprint: str | None = None

    @classmethod
    def from_pretrained(
        cls,
        source: str | Path = DEFAULT_MODEL_SOURCE,
        device: str | torch.device = "auto",
        dtype: str | torch.dtype | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        progress: Progress | None = None,
        cpu_fast: bool = False,
    ) -> TripoSR:
        """Load from a folder with config.yaml + model.ckpt, or a Hugging Face repo id (downloaded once).

        ``cpu_fast``: on the CPU, encode with int8 linear layers, faster but no longer the reference's
        numbers (see cpu_fast.py); ignored on GPUs.
        """
        chosen_device = resolve_device(device)
        chosen_dtype = resolve_dtype(dtype, chosen_device)
        files = locate_model(source, progress)
        started = time.perf_counter()
        report(progress, LOAD_STAGE, 0.0)
        network = build_network(load_config(files.config))
        load_weights(network, read_checkpoint(files.weights))
        network.to(chosen_device).eval().requires_grad_(False)
        network.set_encoder_dtype(chosen_dtype)
        quantised = cpu_fast and chosen_device.type == "cpu"
        if quantised:
            quantize_encoder(network)
        if chosen_device.type == "cuda":
            # Tensor cores for float32 products (the decoder; the encoder too unless in half precision):
            # about 1e-3 relative, far less than moves a surface, and several times faster.
            torch.backends.cuda.matmul.fp32_precision = "tf32"
        model = cls(network, chosen_device, chunk_size)
        model.cpu_fast = quantised
        model.load_seconds = time.perf_counter() - started
        report(progress, LOAD_STAGE, 1.0)
        return model

    @property
    def network(self) -> TripoSRNetwork:
        if self._network is None:
            raise ModelLoadError("This model was unloaded. Load it again with TripoSR.from_pretrained.")
        return self._network

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def config(self) -> ModelConfig:
        return self.network.config

    @property
    def fingerprint(self) -> str:
        """What identifies the reader of this model's scene codes: a hash of the decoder's weights and the
        renderer's settings. Saved codes mesh alike with every model of the same fingerprint, and into
        nonsense with any other (core/scene_codes.py refuses them). The decoder is small: hashing takes ms.
        """
        if self._fingerprint is None:
            digest = hashlib.sha256(
                json.dumps(dataclasses.asdict(self.config.renderer), sort_keys=True).encode()
            )
            for name, tensor in sorted(self.network.decoder.state_dict().items()):
                digest.update(name.encode())
                digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
            self._fingerprint = digest.hexdigest()[:16]
        return self._fingerprint

    def unload(self) -> None:
        """Release the weights (and cached GPU memory) now rather than whenever the object is collected."""
        self._network = None
        gc.collect()
        if self._device.type == "cuda":
            torch.cuda.empty_cache()
        elif self._device.type == "mps":
            torch.mps.empty_cache()

    def prepare_images(self, images: Sequence[PIL.Image.Image]) -> torch.Tensor:
        """RGB images -> [B, S, S, 3] in [0, 1], S = cond_image_size, resized as the reference does."""
        size = self.config.cond_image_size
        resized = [resize_image(image_to_tensor(image), size) for image in images]
        return torch.stack(resized).to(self._device, self.dtype)

    def encode(
        self, image: PIL.Image.Image | Sequence[PIL.Image.Image], progress: Progress | None = None
    ) -> torch.Tensor:
        """Prepared RGB image(s) (see ``preprocess_image``) -> scene codes [B, 3, C, H, W]."""
        images = [image] if isinstance(image, PIL.Image.Image) else list(image)
        network = self.network
        with torch.inference_mode():
            report(progress, ENCODE_STAGE, 0.0)
            rgb_cond = self.prepare_images(images)
            image_tokens = network.tokenize_image(
                rgb_cond, scaled(progress, ENCODE_STAGE, 0.0, IMAGE_ENCODER_SHARE)
            )
            tokens = network.triplane_tokens(
                image_tokens, scaled(progress, ENCODE_STAGE, IMAGE_ENCODER_SHARE, 1.0)
            )
            return network.scene_codes(tokens).float()

    def query(
        self, scene: torch.Tensor, points: torch.Tensor | np.ndarray, progress: Progress | None = None
    ) -> dict[str, torch.Tensor]:
        """Points (N, 3) in model space -> {"density": (N,), "color": (N, 3)}, float32 on the model's device.

        Density is after the configured bias and activation, colour after the colour activation (sigmoid).
        """
        triplane = self._triplane(scene)
        points = torch.as_tensor(points)
        if points.ndim != 2 or points.shape[1] != 3:
            raise ValueError(f"points must have shape (N, 3), got {tuple(points.shape)}")
        with torch.inference_mode():
            density, color = self._query(triplane, points, scaled(progress, QUERY_STAGE))
        return {"density": density, "color": color}

    def extract_mesh(
        self,
        scene: torch.Tensor,
        resolution: int = DEFAULT_RESOLUTION,
        threshold: float = DEFAULT_THRESHOLD,
        method: str = "sparse",
        progress: Progress | None = None,
        smoothing: float = 0.0,
    ) -> Mesh:
        """The surface ``density == threshold`` as a vertex-coloured mesh in model space.

        ``smoothing`` > 0: the surface of the triplane low-passed over that many texels (see smoothing.py),
        scaled to the volume of the unsmoothed one, coloured from the original triplane. Raises
        NoSurfaceError, with advice on the threshold, when the field never crosses it.
        """
        if method not in MESH_EXTRACTORS:
            raise ValueError(
                f"Unknown mesh extraction method '{method}'; use one of {', '.join(MESH_EXTRACTORS)}."
            )
        if resolution < 2:
            raise ValueError("resolution must be at least 2")
        triplane = self._triplane(scene)
        radius = self.config.renderer.radius
        with torch.inference_mode():
            shape = smoothed_triplane(triplane, smoothing) if smoothing > 0 else triplane

            def density_fn(points: torch.Tensor) -> torch.Tensor:
                return self._query(shape, points)[0]

            vertices, faces = MESH_EXTRACTORS[method](
                density_fn, resolution, radius, threshold, scaled(progress, GRID_STAGE)
            )
            vertices = torch.from_numpy(vertices).to(self._device)
            if smoothing > 0:

                def original_fn(points: torch.Tensor) -> torch.Tensor:
                    return self._query(triplane, points)[0]

                ratio = volume_ratio(original_fn, density_fn, radius, threshold, self._device)
                vertices = scaled_to_volume(vertices, ratio)
            report(progress, SURFACE_STAGE, 1.0)
            colors = self._query(triplane, vertices, scaled(progress, COLOR_STAGE))[1]
        return Mesh(vertices=vertices.cpu().numpy(), faces=faces, vertex_colors=colors.cpu().numpy())

    def render(
        self,
        scene: torch.Tensor,
        n_views: int,
        elevation_deg: float = 0.0,
        camera_distance: float = 1.9,
        fovy_deg: float = 40.0,
        height: int = 256,
        width: int = 256,
    ) -> torch.Tensor:
        """Volume-rendered views around the object, as the reference renders them -> [B, n_views, H, W, 3]."""
        rays_o, rays_d = spherical_cameras(n_views, elevation_deg, camera_distance, fovy_deg, height, width)
        rays_o, rays_d = rays_o.to(self._device), rays_d.to(self._device)
        renderer, decoder = self.network.renderer, self.network.decoder
        images = []
        with torch.inference_mode():
            for triplane in scene.to(self._device, torch.float32):
                views = [
                    renderer.render_rays(decoder, triplane, rays_o[view], rays_d[view], self.chunk_size)
                    for view in range(n_views)
                ]
                images.append(torch.stack(views))
        return torch.stack(images)

    def _triplane(self, scene: torch.Tensor) -> torch.Tensor:
        if scene.ndim == 5:
            if scene.shape[0] != 1:
                raise ValueError("Pass one scene at a time, e.g. scene[i : i + 1].")
            scene = scene[0]
        if scene.ndim != 4 or scene.shape[0] != 3:
            raise ValueError(f"scene must have shape [1, 3, C, H, W], got {tuple(scene.shape)}")
        return scene.to(self._device, torch.float32)

    def _query(
        self, triplane: torch.Tensor, points: torch.Tensor, on_chunk: Callable[[float], None] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        network = self.network
        points = points.to(self._device, torch.float32)
        return network.renderer.query(network.decoder, points, triplane, self.chunk_size, on_chunk)


def image_to_tensor(image: PIL.Image.Image) -> torch.Tensor:
    if not isinstance(image, PIL.Image.Image):
        raise InvalidImageError(f"encode expects PIL images, got {type(image).__name__}.")
    if image.mode != "RGB":
        raise InvalidImageError(
            f"encode expects an RGB image but got mode {image.mode}. Prepare it with preprocess_image first."
        )
    return torch.from_numpy(np.array(image).astype(np.float32) / 255.0)


def resize_image(image: torch.Tensor, size: int) -> torch.Tensor:
    """[H, W, 3] -> [size, size, 3], bilinear with antialiasing; on the CPU for the same result everywhere."""
    resized = F.interpolate(
        image.permute(2, 0, 1).unsqueeze(0),
        (size, size),
        mode="bilinear",
        align_corners=False,
        antialias=True,
    )
    return resized[0].permute(1, 2, 0)
