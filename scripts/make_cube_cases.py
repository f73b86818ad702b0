"""Write triposr_blender/core/cube_cases.py: PyMCubes' triangulation of the 256 cube cases, as data.

Usage: ``python scripts/make_cube_cases.py [OUTPUT]`` in a Python where PyMCubes installs (a development
dependency: it has no wheels for Python 3.13, so the add-on itself never imports it).
tests/test_marching_cubes.py checks that the file is exactly what this script writes from the PyMCubes
installed.

Each case is read off PyMCubes by marching one cube whose corners are ±1: every vertex then lies at the middle
of its edge, which names the edge, and the faces give the triangles in PyMCubes' order and winding.
"""

import sys
import warnings
from pathlib import Path

import mcubes
import numpy as np

OUTPUT = Path(__file__).resolve().parent.parent / "triposr_blender" / "core" / "cube_cases.py"

HEADER = '''\
"""PyMCubes {version}'s triangulation of the 256 marching-cubes cases. Written by scripts/make_cube_cases.py.

Corner n of a cell sits at offset ((n >> 2) & 1, (n >> 1) & 1, n & 1); a case sets bit n where corner n lies
inside. Edge 4a + 2p + q runs along axis a from the corner whose other two offsets are (p, q). TRIANGLES[case]
lists the edges its triangles' corners lie on, three a triangle, in PyMCubes' order and winding.
"""

# fmt: off
TRIANGLES = (
'''


def case_triangles(case: int) -> list[int]:
    """The edges of the triangles PyMCubes makes for one case, three a triangle, in its order."""
    cube = np.where((case >> np.arange(8)) & 1, 1.0, -1.0).reshape(2, 2, 2)  # corner n at flat index n
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # numpy 2.5, on PyMCubes reshaping its results
        vertices, faces = mcubes.marching_cubes(cube, 0.0)
    axis = np.argmax(vertices == 0.5, axis=1)
    others = vertices[vertices != 0.5].reshape(-1, 2).astype(np.int64)
    edge_of_vertex = axis * 4 + others[:, 0] * 2 + others[:, 1]
    return edge_of_vertex[faces.astype(np.int64)].reshape(-1).tolist()


def module_text() -> str:
    lines = [f"    ({', '.join(map(str, case_triangles(case)))})," for case in range(256)]
    return HEADER.format(version=mcubes.__version__) + "\n".join(lines) + "\n)\n# fmt: on\n"


def main(output: Path = OUTPUT) -> None:
    output.write_text(module_text(), encoding="utf-8")
    print(f"wrote {output}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else OUTPUT)
