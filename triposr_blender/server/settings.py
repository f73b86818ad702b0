"""The server's settings and their defaults, the same for ``python -m triposr_blender.server`` and Ray Serve,
and the token file they may name."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

DEFAULT_MAX_QUEUE = 64
DEFAULT_MAX_UPLOAD_MB = 32
DEFAULT_RESULT_TTL = 3600.0
DEFAULT_IDLE_TIMEOUT = 20.0  # seconds a client may stall in its request's head or body
MIN_TOKEN_LENGTH = 16


class ServerConfigError(Exception):
    """The server cannot start as configured; the text says what to change."""


@dataclass(frozen=True)
class ServerSettings:
    model: str  # a Hugging Face repo id or a model folder, on the server's machine
    token: str = ""  # empty: no token (this machine's requests only)
    max_queue: int = DEFAULT_MAX_QUEUE
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_MB << 20
    result_ttl: float = DEFAULT_RESULT_TTL
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT

    @property
    def model_name(self) -> str:
        """The model as clients see it: a repo id as it is, a folder by its name alone (no server paths)."""
        return Path(self.model).name if Path(self.model).expanduser().is_dir() else self.model


def read_token(path: Path | None) -> str:
    """The token in ``path`` (none without a file). The file must be its owner's alone, as ssh asks of a key:
    a token other users of the machine can read opens the server to them."""
    if path is None:
        return ""
    try:
        token = path.read_text(encoding="utf-8").strip()
        mode = path.stat().st_mode
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or error
        raise ServerConfigError(f"Cannot read the token file {path}: {reason}.") from None
    if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ServerConfigError(
            f"The token file {path} can be read by other users of this machine (mode "
            f"{stat.filemode(mode)}): make it yours alone with `chmod 600 {path}`."
        )
    if len(token) < MIN_TOKEN_LENGTH:
        raise ServerConfigError(
            f"The token in {path} is too short: use at least {MIN_TOKEN_LENGTH} random characters."
        )
    return token
