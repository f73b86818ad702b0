"""How long steps tell their caller how far they are, and how the caller stops them.

A step takes ``progress(stage, fraction)``: ``stage`` names what it is doing ("Encoding image"), ``fraction``
is how much of that stage is done, 0 to 1. The callback may raise ``Cancelled`` to stop the step at that
point, which is how a cancel reaches the middle of a long computation.
"""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[str, float], None]


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
