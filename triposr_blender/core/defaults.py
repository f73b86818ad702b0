"""Settings the core shares with the Blender side, importable without PyTorch.

Blender registers the add-on's preferences before the dependencies may even be installed, and must start
fast whether they are or not, so the add-on reads these defaults from here, never from ``model``.
"""

# Points decoded per batch. Peak memory grows with it (about 1 KB per point with the official decoder).
DEFAULT_CHUNK_SIZE = 65536

# The released TripoSR weights on the Hugging Face hub (config.yaml + model.ckpt).
DEFAULT_MODEL_SOURCE = "stabilityai/TripoSR"
