"""Exceptions the core raises. Each message is written for the user: what went wrong, and what to do."""

from __future__ import annotations


class TripoSRError(Exception):
    """Base class: anything the core raises on purpose. ``str(error)`` is shown to the user as is."""


class InvalidImageError(TripoSRError):
    """The input is not a usable image (not an image, truncated, empty alpha, no foreground found)."""

    @classmethod
    def unreadable(cls, name: str, error: OSError) -> InvalidImageError:
        """A file that cannot be opened (missing, no permission), said the same wherever it is read."""
        return cls(f"{name} could not be opened: {error.strerror or error}.")


class ModelLoadError(TripoSRError):
    """The model could not be loaded: missing files, a checkpoint that does not fit its config, no network."""


class NoSurfaceError(TripoSRError):
    """The density field never crosses the threshold, so marching cubes found no surface."""


class Cancelled(TripoSRError):
    """The run was cancelled. A progress callback raises it to stop a long step between chunks."""
