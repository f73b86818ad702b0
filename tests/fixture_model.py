"""The tiny random-weight fixture model as the worker and extension tests use it, and the core's own mesh
from it: what the worker and Generate must hand over unchanged."""

import functools
from pathlib import Path

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "triposr-tiny-a"
IMAGE = FIXTURE / "input.png"
# The fixture's random field has a surface at this density on its resolution-48 grid (see its README).
OPTIONS = {
    "remove_background": False,
    "foreground_ratio": 0.85,
    "resolution": 48,
    "threshold": 0.41453200578689575,
}


@functools.cache
def core_mesh():
    """The mesh the core makes in this process from IMAGE with OPTIONS, in TripoSR's model space."""
    from triposr_blender.core import TripoSR, preprocess_image

    model = TripoSR.from_pretrained(FIXTURE, device="cpu")
    image = preprocess_image(IMAGE, OPTIONS["remove_background"], OPTIONS["foreground_ratio"])
    return model.extract_mesh(
        model.encode(image), resolution=OPTIONS["resolution"], threshold=OPTIONS["threshold"]
    )
