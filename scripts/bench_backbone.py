"""The 16-block triplane transformer against the reference's, interleaved, on the same weights and inputs.

Both backbones get the official shapes (1024 channels, 16 heads of 64, cross-attention to 768-wide image
tokens, 3 × 32 × 32 triplane tokens and 1025 image tokens). The reference's is built by its own code from a
TripoSR checkout; its random weights are saved in the checkpoint format and loaded into ours as the product
loads a checkpoint (memory-mapped, adopted on the meta device). Runs alternate, A B then B A, so a load
that drifts over the run falls on both alike; wall and CPU seconds (this process, all threads) are printed
for each run.

    .venv/bin/python scripts/bench_backbone.py --reference /path/to/TripoSR [--runs 4] [--layers 16]

The reference's ``tsr.utils`` imports packages the product does not need (omegaconf, trimesh, imageio);
a stand-in for its ``BaseModule`` is put in its place, so only the transformer's own files are used.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
import types
from pathlib import Path

import torch
from torch import nn

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from triposr_blender.core.transformer import Transformer1D  # noqa: E402

TOKENS, IMAGE_TOKENS = 3 * 32 * 32, 1025


def reference_backbone_class(checkout: Path):
    class BaseModule(nn.Module):
        @dataclasses.dataclass
        class Config:
            pass

        def __init__(self, cfg=None):
            super().__init__()
            self.cfg = self.Config(**(cfg or {}))
            self.configure()

    sys.modules["tsr.utils"] = types.SimpleNamespace(BaseModule=BaseModule)
    sys.path.insert(0, str(checkout))
    from tsr.models.transformer.transformer_1d import Transformer1D as Reference

    return Reference


def timed(action) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    action()
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--reference", type=Path, required=True, help="a checkout of VAST-AI-Research/TripoSR"
    )
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--layers", type=int, default=16)
    args = parser.parse_args()

    config = dict(
        in_channels=1024,
        num_attention_heads=16,
        attention_head_dim=64,
        num_layers=args.layers,
        cross_attention_dim=768,
    )
    torch.manual_seed(0)
    reference = reference_backbone_class(args.reference)(config).eval().requires_grad_(False)
    with tempfile.TemporaryDirectory(prefix="triposr-backbone-") as folder:
        checkpoint = Path(folder) / "backbone.ckpt"
        torch.save(reference.state_dict(), checkpoint)
        weights = torch.load(checkpoint, mmap=True, weights_only=True)
        with torch.device("meta"):
            ours = Transformer1D(Transformer1D.Config(**config))
        ours.load_state_dict(weights, assign=True)
        ours.eval().requires_grad_(False)

        tokens, image_tokens = torch.randn(1, 1024, TOKENS), torch.randn(1, IMAGE_TOKENS, 768)
        with torch.inference_mode():
            difference = ours(tokens, image_tokens) - reference(tokens, encoder_hidden_states=image_tokens)
        runs = {
            "reference (torch.no_grad)": (
                torch.no_grad,
                lambda: reference(tokens, encoder_hidden_states=image_tokens),
            ),
            "ours (torch.inference_mode)": (torch.inference_mode, lambda: ours(tokens, image_tokens)),
        }
        figures = {name: [] for name in runs}
        for run in range(args.runs):
            # A B, then B A: whichever goes second in a pair gets warmer caches, so the pairs alternate.
            for name in list(runs)[:: 1 if run % 2 == 0 else -1]:
                mode, action = runs[name]
                with mode():
                    figures[name].append(timed(action))

    print(f"{args.layers}-block backbone, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"largest difference between the two outputs: {difference.abs().max().item():.3g}")
    for name, runs in figures.items():
        walls = " ".join(f"{wall:.2f}" for wall, _ in runs)
        cpus = " ".join(f"{cpu:.2f}" for _, cpu in runs)
        mean = sum(wall for wall, _ in runs) / len(runs)
        print(f"{name:28} wall s: {walls}  (mean {mean:.2f})   CPU s: {cpus}")


if __name__ == "__main__":
    main()
