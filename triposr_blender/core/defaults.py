"""Settings the core shares with the Blender side, importable without PyTorch.

Blender registers the add-on's preferences before the dependencies may even be installed, and must start
fast whether they are or not, so the add-on reads these defaults from here, never from ``model``.
"""

# Points decoded per batch. Peak memory grows with it (about 1 KB per point with the official decoder), and
# on the CPU a chunk whose 64-wide decoder activations stay in cache decodes faster: 16384 points took
# 15-25 % less time than 65536 for a sparse mesh at 256 and for 1M queries on the benchmark field.
DEFAULT_CHUNK_SIZE = 16384

# The released TripoSR weights on the Hugging Face hub (config.yaml + model.ckpt).
DEFAULT_MODEL_SOURCE = "stabilityai/TripoSR"

# The reference's own settings (TripoSR's run.py): its marching-cubes grid, the density of the surface, and
# the share of the framed square the object fills. The add-on's options (options.py) start from these.
DEFAULT_RESOLUTION = 256
DEFAULT_THRESHOLD = 25.0
DEFAULT_FOREGROUND_RATIO = 0.85

# The most pixels an input image may have: Pillow's own decompression-bomb limit (about 9459²). It applies
# to the pixels actually decoded, so a huge JPEG that Pillow decodes at a reduced scale (draft) still opens.
MAX_IMAGE_PIXELS = 89_478_485
# Images are scaled down to this many pixels a side before anything else (preprocess.load_image).
MAX_IMAGE_SIDE = 2048

# The fewest faces decimation can leave: a closed mesh (a tetrahedron) has four.
MIN_TARGET_FACES = 4

# The trade-off of the optional int8 encoding (cpu_fast.py), as the add-on and the batch command state it.
# Measured with `make bench` on the CPU: encoding 1.7-2.3x faster; scene codes off by about 3% (relative
# max abs error) on the full-size model; loading about 10 s longer, to quantise.
CPU_FAST_DESCRIPTION = (
    "About 2× faster encoding on the CPU with int8 weights, about 3% off full precision; ignored on a GPU"
)
