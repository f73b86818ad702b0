"""The core's own marching cubes is PyMCubes', bit for bit, and the add-on runs without PyMCubes installed.

PyMCubes has no wheels for Python 3.13 (Blender 5.1 and newer), so the product carries its case table as data
(core/cube_cases.py) and marches in numpy. Where PyMCubes installs (a development dependency), these tests
hold the table and every mesh to it exactly: the same vertices in the same order, to the last bit, and the
same faces.
"""

import importlib.util
import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
from bench_field import THRESHOLD, load_bench_field
from conftest import REPO
from fixture_model import FIXTURE, OPTIONS

from triposr_blender.core import isosurface, marching_cubes
from triposr_blender.core.marching_cubes import CubeMarcher

RNG_SEED = 29


def pymcubes(field):
    """mcubes.marching_cubes(field, 0.0) as (vertices (V, 3) float64, faces (F, 3) int64)."""
    mcubes = pytest.importorskip("mcubes")
    with warnings.catch_warnings():
        # numpy 2.5 deprecates setting an array's shape, which PyMCubes 0.1.6 does to its results.
        warnings.simplefilter("ignore", DeprecationWarning)
        vertices, faces = mcubes.marching_cubes(field, 0.0)
    return vertices.reshape(-1, 3), faces.reshape(-1, 3).astype(np.int64)


def assert_bit_for_bit(actual, expected):
    (vertices, faces), (expected_vertices, expected_faces) = actual, expected
    assert vertices.dtype == np.float64 and faces.dtype == np.int64
    assert vertices.shape == expected_vertices.shape and faces.shape == expected_faces.shape
    np.testing.assert_array_equal(vertices.view(np.int64), expected_vertices.view(np.int64))
    np.testing.assert_array_equal(faces, expected_faces)


def random_field(shape, seed=RNG_SEED):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def test_the_case_table_is_what_the_script_reads_off_pymcubes():
    pytest.importorskip("mcubes")
    spec = importlib.util.spec_from_file_location("make_cube_cases", REPO / "scripts" / "make_cube_cases.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.module_text() == (REPO / "triposr_blender" / "core" / "cube_cases.py").read_text()


@pytest.mark.parametrize("shape", [(2, 2, 2), (2, 3, 4), (5, 6, 7), (9, 4, 3), (17, 17, 17), (33, 20, 11)])
def test_random_fields_give_pymcubes_mesh_bit_for_bit(shape):
    for seed in range(5):
        field = random_field(shape, seed)
        assert_bit_for_bit(marching_cubes.marching_cubes(field), pymcubes(field))


def test_values_of_exactly_zero_and_nan_are_sided_as_pymcubes_sides_them():
    field = np.random.default_rng(RNG_SEED).integers(-1, 2, (10, 9, 8)).astype(np.float32)
    field[3, 4, 5] = field[7, 1, 2] = np.nan
    assert_bit_for_bit(marching_cubes.marching_cubes(field), pymcubes(field))


@pytest.mark.parametrize("layers_per_add", [1, 2, 5])
def test_a_field_fed_in_slabs_gives_the_mesh_of_the_whole_grid(layers_per_add):
    field = random_field((13, 6, 7))
    marcher = CubeMarcher(field.shape[1:])
    for start in range(0, len(field), layers_per_add):
        marcher.add(field[start : start + layers_per_add])
    assert_bit_for_bit(marcher.finish(), marching_cubes.marching_cubes(field))
    assert_bit_for_bit(marcher.finish(), pymcubes(field))


def test_the_bench_field_gives_pymcubes_mesh_bit_for_bit():
    """The benchmark field: a fitted decoder holding Suzanne, at the product's default threshold."""
    model, scene = load_bench_field()
    resolution, radius = 96, model.config.renderer.radius
    density = model.query(scene, isosurface.grid_points(resolution, radius))["density"]
    vertices, faces = pymcubes(density.numpy().reshape((resolution,) * 3) - np.float32(THRESHOLD))
    expected = isosurface.grid_to_model_space(vertices, resolution, radius), faces
    mesh = model.extract_mesh(scene, resolution=resolution, threshold=THRESHOLD, method="dense")
    np.testing.assert_array_equal(mesh.vertices, expected[0])
    np.testing.assert_array_equal(mesh.faces, expected[1])


def test_the_parity_fixture_gives_the_reference_mesh_in_its_order(model, scene):
    """The reference's mesh came from PyMCubes too: same faces, and the vertices in the same order."""
    expected = np.load(FIXTURE / "expected.npz")
    meta = json.loads((FIXTURE / "meta.json").read_text())["mesh"]
    mesh = model.extract_mesh(
        scene, resolution=meta["resolution"], threshold=meta["threshold"], method="dense"
    )
    np.testing.assert_array_equal(mesh.faces, expected["mesh_faces"])
    np.testing.assert_allclose(mesh.vertices, expected["mesh_vertices"], atol=1e-4, rtol=0)


def test_memory_stays_a_few_slabs_whatever_the_resolution():
    """The marcher keeps only the last layer between slabs, and the vertices on it."""
    marcher = CubeMarcher((64, 64))
    field = random_field((3, 64, 64))
    marcher.add(field[:2])
    marcher.add(field[2:])
    assert marcher.last_layer.shape == (1, 64, 64)
    keys, _ = marcher.shared
    assert np.all(keys // 3 // (64 * 64) == 2) and np.all(keys % 3 != 0)


def without_pymcubes(tmp_path):
    """An environment in which `import mcubes` fails, for this Python and every process it starts."""
    blocker = tmp_path / "no-mcubes"
    blocker.mkdir()
    (blocker / "mcubes.py").write_text('raise ImportError("PyMCubes is not installed here")\n')
    return dict(
        os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(blocker), os.environ.get("PYTHONPATH")]))
    )


def test_the_core_imports_and_makes_a_mesh_without_pymcubes(tmp_path):
    code = (
        "import sys\n"
        "from triposr_blender.core import TripoSR, preprocess_image\n"
        f"model = TripoSR.from_pretrained({str(FIXTURE)!r}, device='cpu')\n"
        f"image = preprocess_image({str(FIXTURE / 'input.png')!r}, False, {OPTIONS['foreground_ratio']!r})\n"
        f"mesh = model.extract_mesh(model.encode(image), resolution=48, threshold={OPTIONS['threshold']!r})\n"
        "print(len(mesh.faces), 'mcubes' in sys.modules)\n"
    )
    env = without_pymcubes(tmp_path)
    blocked = subprocess.run([sys.executable, "-c", "import mcubes"], env=env, capture_output=True, text=True)
    assert "PyMCubes is not installed here" in blocked.stderr
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    faces, imported = result.stdout.split()
    assert int(faces) > 0 and imported == "False"


@pytest.mark.blender
def test_the_batch_in_blender_generates_without_pymcubes(tmp_path):
    from batch_harness import TINY_MODEL_ARGS

    env = dict(without_pymcubes(tmp_path), TRIPOSR_DEPS_DIR=str(tmp_path / "deps"))
    result = subprocess.run(
        [sys.executable, "-m", "triposr_blender.batch", "--", FIXTURE / "input.png",
         "--out", tmp_path / "out", "--format", "glb", *map(str, TINY_MODEL_ARGS)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "input.glb").stat().st_size > 0
