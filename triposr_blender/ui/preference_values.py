"""What the add-on's preferences say, resolved for the operators: where the model runs, the model, its cache,
the device.

Kept apart from ``preferences``, which draws them (and with them the dependency box, whose Remove button
needs these values too).
"""

import os

import bpy

from .. import dependencies
from ..backends.backend import Connection
from ..backends.types import ModelSettings
from ..core.defaults import DEFAULT_CHUNK_SIZE, DEFAULT_MODEL_SOURCE
from ..core.orientation import DEFAULT_FRONT_AXIS
from ..options import (  # an environment's server wins, for farms
    ENV_MODEL,
    ENV_SERVER,
    ENV_SERVER_TOKEN,
    absolute_model_source,
)

ADDON = __package__.rpartition(".")[0]  # the extension's package, as Blender knows the add-on


def addon_preferences(context):
    """The add-on's preferences; None when the package runs without being enabled (imported by a script)."""
    addon = context.preferences.addons.get(ADDON)
    return addon.preferences if addon else None


def model_source(preferences) -> str:
    """The TRIPOSR_MODEL environment variable wins over the preferences; folders become absolute paths."""
    source = os.environ.get(ENV_MODEL)
    if not source and preferences is not None:
        use_folder = preferences.model_source == "FOLDER"
        source = bpy.path.abspath(preferences.model_folder) if use_folder else preferences.model_repo.strip()
    return absolute_model_source(source or DEFAULT_MODEL_SOURCE)


def cache_dir(preferences) -> str:
    """The download cache chosen in the preferences; empty: Hugging Face's own."""
    return bpy.path.abspath(preferences.cache_dir) if preferences and preferences.cache_dir else ""


def model_settings(context, device: str = "DEFAULT") -> ModelSettings:
    """What the worker needs to load the model, from the preferences and Blender's online-access setting."""
    preferences = addon_preferences(context)
    if device == "DEFAULT":
        device = preferences.device if preferences else "AUTO"
    return ModelSettings(
        source=model_source(preferences),
        device=device.lower(),
        chunk_size=preferences.chunk_size if preferences else DEFAULT_CHUNK_SIZE,
        cpu_fast=preferences.cpu_fast if preferences else False,
        cache_dir=cache_dir(preferences),
        offline=not bpy.app.online_access,
        rembg_home=dependencies.rembg_home(cache_dir(preferences)),
    )


def connection(context) -> Connection:
    """Where the model runs: the TripoSR server that TRIPOSR_SERVER or the preferences name (with its
    token), else this computer's worker, which imports the installed dependencies."""
    preferences = addon_preferences(context)
    address = os.environ.get(ENV_SERVER, "")
    if not address and preferences is not None and preferences.backend == "SERVER":
        address = preferences.server_url.strip()
    if not address:
        return Connection(pythonpath=tuple(dependencies.dependency_paths()))
    token = os.environ.get(ENV_SERVER_TOKEN) or (preferences.server_token if preferences else "")
    return Connection(address, token.strip())


def front_axis(context) -> str:
    preferences = addon_preferences(context)
    return preferences.front_axis if preferences else DEFAULT_FRONT_AXIS
