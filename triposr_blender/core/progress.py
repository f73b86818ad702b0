"""How long steps tell their caller how far they are, and how the caller stops them.

A step takes ``progress(stage, fraction)``: ``stage`` names what it is doing ("Encoding image"), ``fraction``
is how much of that stage is done, 0 to 1. The callback may raise ``Cancelled`` to stop the step at that
point, which is how a cancel reaches the middle of a long computation.
"""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[str, float], None]

# The stages of a job, named as progress reports them, in the order a job meets them (most skip some).
DOWNLOAD_STAGE = "Downloading model"
LOAD_STAGE = "Loading model"
PREPARING = "Preparing the image"
REMOVING_BACKGROUND = "Removing background"
ENCODE_STAGE = "Encoding image"
REUSING_CODES = "Reusing the encoded image"
QUERY_STAGE = "Querying the field"
GRID_STAGE = "Computing density grid"
SURFACE_STAGE = "Extracting surface"
COLOR_STAGE = "Coloring vertices"
DECIMATE_STAGE = "Decimating mesh"
UNWRAP_STAGE = "Unwrapping UVs"
RASTERIZE_STAGE = "Rasterizing UV layout"
PHOTO_STAGE = "Fitting the photo"
BAKE_STAGE = "Baking texture"
JOB_STAGES = (
    DOWNLOAD_STAGE,
    LOAD_STAGE,
    PREPARING,
    REMOVING_BACKGROUND,
    ENCODE_STAGE,
    REUSING_CODES,
    QUERY_STAGE,
    GRID_STAGE,
    SURFACE_STAGE,
    COLOR_STAGE,
    DECIMATE_STAGE,
    UNWRAP_STAGE,
    RASTERIZE_STAGE,
    PHOTO_STAGE,
    BAKE_STAGE,
)


def job_fraction(stage: str, fraction: float) -> float | None:
    """How far a whole job is at ``fraction`` of ``stage`` (None for a stage not in JOB_STAGES): each stage
    of the list gets an equal share, so a later stage always counts for more than an earlier one."""
    if stage not in JOB_STAGES:
        return None
    return (JOB_STAGES.index(stage) + min(max(fraction, 0.0), 1.0)) / len(JOB_STAGES)


def ignore(_stage: str, _fraction: float) -> None:
    """The progress callback of a caller that shows none (a Ray worker, a Serve replica)."""


def report(progress: Progress | None, stage: str, fraction: float) -> None:
    if progress is not None:
        progress(stage, fraction)


def scaled(
    progress: Progress | None, stage: str, start: float = 0.0, end: float = 1.0
) -> Callable[[float], None] | None:
    """A per-step callback that maps a sub-step's 0..1 onto [start, end] of ``stage``."""
    if progress is None:
        return None
    return lambda fraction: progress(stage, start + (end - start) * fraction)
