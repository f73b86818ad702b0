"""The benchmark field (fixtures/bench-field): Suzanne as a full-size triplane and an official-shape decoder.

It costs per query what the real model costs, and unlike random weights it holds one object, so surface
extraction can be measured and compared on it. scripts/make_bench_field.py made it; its README says how.
"""

from pathlib import Path

import numpy as np
import torch

from triposr_blender.core import TripoSR
from triposr_blender.core.config import load_config
from triposr_blender.core.model import build_network

FIXTURES = Path(__file__).resolve().parent / "fixtures"
FIELD = FIXTURES / "bench-field" / "field.npz"
OFFICIAL_CONFIG = FIXTURES / "official-config.yaml"
THRESHOLD = 25.0  # the product's default iso-level; the field was fitted around it


def load_bench_field(path: Path = FIELD) -> tuple[TripoSR, torch.Tensor]:
    """A TripoSR whose decoder is the fitted one, and the fitted scene codes [1, 3, 40, 64, 64] float32.

    Only the decoder holds weights: the rest of the network stays on the meta device (nothing allocated),
    so the model can query and extract meshes but not encode images.
    """
    arrays = np.load(path)
    network = build_network(load_config(OFFICIAL_CONFIG))
    decoder_weights = {
        key.removeprefix("decoder."): torch.from_numpy(value)
        for key, value in arrays.items()
        if key.startswith("decoder.")
    }
    network.decoder.load_state_dict(decoder_weights, assign=True)
    network.decoder.eval().requires_grad_(False)
    return TripoSR(network, torch.device("cpu")), torch.from_numpy(arrays["scene_codes"]).float()
