"""Fit the benchmark field: a full-size TripoSR triplane and decoder that describe a real object.

Random weights give noise, not objects, so they say nothing about how much of the grid a surface
extraction can skip. This script fits the official decoder shape and a full-size triplane
(3 × 40 × 64 × 64) to Blender's Suzanne (subdivided once) for a few hundred Adam steps, so that
`density_act = exp(raw - 1)` is far above the product threshold 25 inside and far below it outside,
with colours that vary over the surface. The result goes to tests/fixtures/bench-field/field.npz.

Run:  .venv/bin/python scripts/make_bench_field.py   (about 10 minutes on 2 cores; needs bpy)
"""

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from bench_field import FIELD, OBJECT_HALF_EXTENT, OFFICIAL_CONFIG, THRESHOLD, suzanne_triangles  # noqa: E402

from triposr_blender.core.config import load_config  # noqa: E402
from triposr_blender.core.networks import NeRFMLP  # noqa: E402
from triposr_blender.core.renderer import TriplaneNeRFRenderer  # noqa: E402

CONFIG = load_config(OFFICIAL_CONFIG)
RENDERER = TriplaneNeRFRenderer(CONFIG.renderer)
RADIUS = CONFIG.renderer.radius
PLANE_CHANNELS, PLANE_SIZE = CONFIG.post_processor.out_channels, 64  # 64: the official triplane size
SHARPNESS = 100.0  # raw density units per model-space unit of signed distance near the surface
RAW_MARGIN = 8.0  # target raw density saturates this far from the threshold on either side
COLOR_WEIGHT = 10.0  # colour MSE is ~100x smaller than the density loss; this balances their pull


def signed_distances(points: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Distance to the surface, positive inside: the side comes from the nearest face's outward normal,
    which also gives Suzanne's open eye sockets a side."""
    import bpy  # noqa: F401  (makes mathutils importable)
    from mathutils.bvhtree import BVHTree

    verts = triangles.reshape(-1, 3)
    tree = BVHTree.FromPolygons(verts.tolist(), np.arange(len(verts)).reshape(-1, 3).tolist())
    out = np.empty(len(points))
    for n, p in enumerate(points.tolist()):
        nearest, normal, _, distance = tree.find_nearest(p)
        outside = (
            (p[0] - nearest[0]) * normal[0]
            + (p[1] - nearest[1]) * normal[1]
            + (p[2] - nearest[2]) * normal[2]
        )
        out[n] = -distance if outside > 0 else distance
    return out


def training_points(triangles: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Uniform points in the box plus points jittered around the surface, where the field must be exact."""
    uniform = rng.uniform(-RADIUS, RADIUS, (200_000, 3))
    areas = np.linalg.norm(
        np.cross(triangles[:, 1] - triangles[:, 0], triangles[:, 2] - triangles[:, 0]), axis=1
    )
    picks = rng.choice(len(triangles), 300_000, p=areas / areas.sum())
    u, v = rng.random((2, len(picks), 1))
    flip = (u + v) > 1
    u, v = np.where(flip, 1 - u, u), np.where(flip, 1 - v, v)
    t = triangles[picks]
    on_surface = t[:, 0] + u * (t[:, 1] - t[:, 0]) + v * (t[:, 2] - t[:, 0])
    sigma = np.where(np.arange(len(picks))[:, None] % 2 == 0, 0.02, 0.004)
    near = np.clip(on_surface + rng.normal(size=on_surface.shape) * sigma, -RADIUS, RADIUS)
    return np.concatenate([uniform, near])


def target_fields(points: np.ndarray, triangles: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw density (before bias and exp) from the signed distance, and a colour that varies with position."""
    signed = torch.from_numpy(signed_distances(points, triangles))
    raw_threshold = math.log(THRESHOLD) - CONFIG.renderer.density_bias
    raw = raw_threshold + (signed * SHARPNESS).clamp(-RAW_MARGIN, RAW_MARGIN)
    p = torch.from_numpy(points) / OBJECT_HALF_EXTENT
    color = torch.stack([0.5 + 0.4 * p[:, 0], 0.5 + 0.4 * torch.sin(3 * p[:, 1]), 0.5 - 0.4 * p[:, 2]], -1)
    return raw.float(), color.clamp(0, 1).float()


def official_decoder() -> NeRFMLP:
    """The core's NeRFMLP in the official shape (120 -> 64 x 9 SiLU layers -> 4), initialised for training."""
    decoder = NeRFMLP(CONFIG.decoder)
    for layer in decoder.layers[::2]:
        # The reference's weight_init; PyTorch's default shrinks the signal ~1e6-fold over 10 SiLU layers.
        torch.nn.init.kaiming_uniform_(layer.weight, nonlinearity="relu")
    return decoder


def raw_fields(
    planes: torch.Tensor, decoder: NeRFMLP, points: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The core's own query (so the fit is of exactly what the benchmark evaluates), with the density
    activation undone: raw density before bias and exp, and the colour after its sigmoid."""
    density, color = RENDERER.query_triplane(decoder, points, planes)
    return torch.log(density.clamp_min(1e-30)) - CONFIG.renderer.density_bias, color


def positional_planes(generator: torch.Generator) -> torch.Tensor:
    """Start each channel as a random plane wave over its plane: the decoder sees position from step one."""
    u, v = torch.meshgrid(*[torch.linspace(-1, 1, PLANE_SIZE)] * 2, indexing="ij")
    frequency, angle, phase = (torch.rand(3, PLANE_CHANNELS, 1, 1, generator=generator) for _ in range(3))
    waves = torch.sin(
        math.pi
        * (1 + 5 * frequency)
        * (u * torch.cos(2 * math.pi * angle) + v * torch.sin(2 * math.pi * angle))
        + 2 * math.pi * phase
    )
    return 0.5 * waves


def fit(points, raw_target, color_target, steps: int, batch: int, seed: int):
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    planes = torch.nn.Parameter(positional_planes(generator))
    decoder = official_decoder()
    optimiser = torch.optim.Adam(
        [{"params": [planes], "lr": 3e-2}, {"params": decoder.parameters(), "lr": 3e-3}]
    )
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, steps)
    points = torch.from_numpy(points).float()
    for step in range(steps):
        pick = torch.randint(len(points), (batch,), generator=generator)
        raw, color = raw_fields(planes, decoder, points[pick])
        density_loss = F.smooth_l1_loss(raw, raw_target[pick])
        color_loss = F.mse_loss(color, color_target[pick])
        loss = density_loss + COLOR_WEIGHT * color_loss
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        if step % 50 == 0 or step == steps - 1:
            print(
                f"step {step:4d}  density loss {density_loss.item():.4f}  colour loss {color_loss.item():.5f}"
            )
    return planes.detach(), decoder


def sign_agreement(planes, decoder, points, raw_target) -> float:
    """Fraction of held-out points on the correct side of the threshold."""
    with torch.no_grad():
        raw = torch.cat(
            [raw_fields(planes, decoder, p)[0] for p in torch.from_numpy(points).float().split(65536)]
        )
    threshold = math.log(THRESHOLD) - CONFIG.renderer.density_bias
    return ((raw > threshold) == (raw_target > threshold)).float().mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--batch", type=int, default=16384)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=FIELD)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    triangles = suzanne_triangles()
    print(f"Suzanne: {len(triangles)} triangles")
    points = training_points(triangles, rng)
    raw_target, color_target = target_fields(points, triangles)
    held_out = training_points(triangles, np.random.default_rng(args.seed + 1))[::10]
    held_out_raw, _ = target_fields(held_out, triangles)

    planes, decoder = fit(points, raw_target, color_target, args.steps, args.batch, args.seed)
    agreement = sign_agreement(planes, decoder, held_out, held_out_raw)
    print(f"held-out points on the correct side of the threshold: {agreement:.4f}")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    arrays = {"scene_codes": planes[None].half().numpy()}
    arrays |= {f"decoder.{key}": value.numpy() for key, value in decoder.state_dict().items()}
    np.savez(args.out, **arrays)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
