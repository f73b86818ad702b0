"""Reading the radiance field out of the triplanes: point queries, and volume rendering along camera rays.

A point's feature is the bilinear sample of each of the three axis-aligned planes at its projection
(xy, xz, yz), concatenated or averaged, and decoded by the NeRF MLP. The arithmetic mirrors the reference
operation for operation (including its rescaling steps) so that densities agree to float rounding.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "none": lambda x: x,
    "exp": torch.exp,
    # trunc_exp only clamps the gradient during training; its forward pass is exp.
    "trunc_exp": torch.exp,
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "softplus": F.softplus,
    "relu": F.relu,
    "silu": F.silu,
    "gelu": F.gelu,
    "elu": F.elu,
    "leaky_relu": F.leaky_relu,
    "mish": F.mish,
}
FEATURE_REDUCTIONS = ("concat", "mean")


def scale_tensor(
    data: torch.Tensor, source: tuple[float, float], target: tuple[float, float]
) -> torch.Tensor:
    """Affine map of ``source`` range onto ``target`` range, in the reference's order of operations."""
    data = (data - source[0]) / (source[1] - source[0])
    return data * (target[1] - target[0]) + target[0]


class TriplaneNeRFRenderer(nn.Module):
    @dataclass(frozen=True)
    class Config:
        radius: float
        feature_reduction: str = "concat"
        density_activation: str = "trunc_exp"
        density_bias: float = -1.0
        color_activation: str = "sigmoid"
        num_samples_per_ray: int = 128
        randomized: bool = False  # training-time jitter of ray samples; never used for inference

        def __post_init__(self):
            if self.feature_reduction not in FEATURE_REDUCTIONS:
                raise ValueError(f"feature_reduction must be one of {', '.join(FEATURE_REDUCTIONS)}")
            for field in ("density_activation", "color_activation"):
                if getattr(self, field) not in ACTIVATIONS:
                    raise ValueError(f"{field} must be one of {', '.join(ACTIVATIONS)}")
            if self.radius <= 0 or self.num_samples_per_ray < 1:
                raise ValueError("radius and num_samples_per_ray must be positive")

    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg

    def query_triplane(
        self, decoder: nn.Module, positions: torch.Tensor, triplane: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``positions`` [N, 3] in model space, ``triplane`` [3, C, H, W] -> (density [N], color [N, 3]).

        Density is after the density bias and activation, colour after the colour activation.
        """
        radius = self.cfg.radius
        unit = scale_tensor(positions, (-radius, radius), (-1, 1))
        plane_coords = torch.stack((unit[..., [0, 1]], unit[..., [0, 2]], unit[..., [1, 2]]), dim=-3)
        sampled = F.grid_sample(triplane, plane_coords.unsqueeze(1), align_corners=False, mode="bilinear")
        sampled = sampled.squeeze(2)  # [3, C, N]
        if self.cfg.feature_reduction == "concat":
            features = sampled.permute(2, 0, 1).reshape(sampled.shape[2], -1)
        else:
            features = sampled.mean(dim=0).transpose(0, 1)
        raw = decoder(features)
        density = ACTIVATIONS[self.cfg.density_activation](raw[:, 0] + self.cfg.density_bias)
        color = ACTIVATIONS[self.cfg.color_activation](raw[:, 1:4])
        return density, color

    def query(
        self,
        decoder: nn.Module,
        positions: torch.Tensor,
        triplane: torch.Tensor,
        chunk_size: int = 0,
        on_chunk: Callable[[float], None] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``query_triplane`` over ``chunk_size`` points at a time (0: all at once) to bound peak memory."""
        count = positions.shape[0]
        step = chunk_size if chunk_size > 0 else max(count, 1)
        densities, colors = [], []
        for start in range(0, count, step):
            density, color = self.query_triplane(decoder, positions[start : start + step], triplane)
            densities.append(density)
            colors.append(color)
            if on_chunk is not None:
                on_chunk(min(start + step, count) / count)
        if not densities:
            return positions.new_zeros(0), positions.new_zeros(0, 3)
        return torch.cat(densities), torch.cat(colors)

    def render_rays(
        self,
        decoder: nn.Module,
        triplane: torch.Tensor,
        rays_o: torch.Tensor,
        rays_d: torch.Tensor,
        chunk_size: int = 0,
    ) -> torch.Tensor:
        """Volume rendering over a white background: rays [..., 3] -> RGB [..., 3].

        Samples sit at the midpoints of ``num_samples_per_ray`` equal steps between the ray's entry and exit
        of the bounding cube. Like the reference, the step length used in the opacity is the normalised
        ``1 / S`` rather than the metric distance between samples.
        """
        rays_shape = rays_o.shape[:-1]
        rays_o, rays_d = rays_o.reshape(-1, 3), rays_d.reshape(-1, 3)
        t_near, t_far, rays_valid = rays_intersect_bbox(rays_o, rays_d, self.cfg.radius)
        t_near, t_far = t_near[rays_valid], t_far[rays_valid]

        t_vals = torch.linspace(0, 1, self.cfg.num_samples_per_ray + 1, device=triplane.device)
        t_mid = (t_vals[:-1] + t_vals[1:]) / 2.0
        z_vals = t_near * (1 - t_mid[None]) + t_far * t_mid[None]
        xyz = rays_o[rays_valid][:, None, :] + z_vals[..., None] * rays_d[rays_valid][:, None, :]

        density, color = self.query(decoder, xyz.reshape(-1, 3), triplane, chunk_size)
        density = density.view(xyz.shape[:2])
        color = color.view(*xyz.shape[:2], 3)

        deltas = t_vals[1:] - t_vals[:-1]
        alpha = 1 - torch.exp(-deltas * density)
        eps = 1e-10
        transmittance = torch.cat(
            [torch.ones_like(alpha[:, :1]), torch.cumprod(1 - alpha[:, :-1] + eps, dim=-1)], dim=-1
        )
        weights = alpha * transmittance

        rgb = torch.zeros(rays_o.shape[0], 3, dtype=color.dtype, device=color.device)
        opacity = torch.zeros(rays_o.shape[0], dtype=color.dtype, device=color.device)
        rgb[rays_valid] = (weights[..., None] * color).sum(dim=-2)
        opacity[rays_valid] = weights.sum(dim=-1)
        rgb += 1 - opacity[..., None]
        return rgb.view(*rays_shape, 3)


def rays_intersect_bbox(
    rays_o: torch.Tensor, rays_d: torch.Tensor, radius: float, near: float = 0.0, valid_thresh: float = 0.01
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Slab test against the cube [-radius, radius]^3 -> (t_near [N, 1], t_far [N, 1], hits [N])."""
    rays_d_valid = torch.where(rays_d.abs() < 1e-6, torch.full_like(rays_d, 1e-6), rays_d)
    bounds = torch.tensor([[-radius, radius]] * 3, dtype=torch.float32, device=rays_o.device)
    bounds = (1.0 - 1.0e-3) * bounds  # a hair inside, so that entry and exit points lie in the cube
    inter0 = (bounds[..., 1] - rays_o) / rays_d_valid
    inter1 = (bounds[..., 0] - rays_o) / rays_d_valid
    t_near = torch.minimum(inter0, inter1).amax(dim=-1).clamp_min(near)
    t_far = torch.maximum(inter0, inter1).amin(dim=-1)
    valid = t_far - t_near > valid_thresh
    t_near[~valid] = 0.0
    t_far[~valid] = 0.0
    return t_near[:, None], t_far[:, None], valid


def spherical_cameras(
    n_views: int, elevation_deg: float, camera_distance: float, fovy_deg: float, height: int, width: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cameras evenly spaced in azimuth, looking at the origin, +z up -> rays_o, rays_d [V, H, W, 3]."""
    azimuth_deg = torch.linspace(0, 360.0, n_views + 1)[:n_views]
    elevation_deg_t = torch.full_like(azimuth_deg, elevation_deg)
    distances = torch.full_like(elevation_deg_t, camera_distance)
    elevation = elevation_deg_t * math.pi / 180
    azimuth = azimuth_deg * math.pi / 180
    positions = torch.stack(
        [
            distances * torch.cos(elevation) * torch.cos(azimuth),
            distances * torch.cos(elevation) * torch.sin(azimuth),
            distances * torch.sin(elevation),
        ],
        dim=-1,
    )
    up = torch.as_tensor([0, 0, 1], dtype=torch.float32)[None, :].repeat(n_views, 1)
    fovy = torch.full_like(elevation_deg_t, fovy_deg) * math.pi / 180
    lookat = F.normalize(torch.zeros_like(positions) - positions, dim=-1)
    right = F.normalize(torch.cross(lookat, up, dim=-1), dim=-1)
    up = F.normalize(torch.cross(right, lookat, dim=-1), dim=-1)
    rotation = torch.stack([right, up, -lookat], dim=-1)  # camera-to-world

    focal_length = 0.5 * height / torch.tan(0.5 * fovy)
    directions = ray_directions_unit_focal(height, width)[None].repeat(n_views, 1, 1, 1)
    directions[..., :2] = directions[..., :2] / focal_length[:, None, None, None]
    rays_d = F.normalize((directions[:, :, :, None, :] * rotation[:, None, None, :, :]).sum(-1), dim=-1)
    rays_o = positions[:, None, None, :].expand(rays_d.shape)
    return rays_o, rays_d


def ray_directions_unit_focal(height: int, width: int) -> torch.Tensor:
    """Unit camera-space directions through pixel centres at focal length 1 (x right, y up, -z forward)."""
    i, j = torch.meshgrid(
        torch.arange(width, dtype=torch.float32) + 0.5,
        torch.arange(height, dtype=torch.float32) + 0.5,
        indexing="xy",
    )
    directions = torch.stack([(i - width / 2), -(j - height / 2), -torch.ones_like(i)], -1)
    return F.normalize(directions, dim=-1)
