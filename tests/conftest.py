"""Fixtures shared by several test files. Each section belongs to one area; keep them separate."""

import os
import sys
from pathlib import Path

import fixture_model
import pooch.core
import pytest

REPO = Path(__file__).resolve().parent.parent

# Ray started by the tests (and by the processes they start) binds every server to 127.0.0.1 only. On Linux
# Ray takes the machine's outward address as the node's and listens on all interfaces, even when told
# _node_ip_address="127.0.0.1"; with its clusters off, as on Windows and macOS, it stays on loopback. Ray
# reads this when imported, so it is set before any test file imports ray.
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"


# --- Background removal: real rembg on a real ONNX model, offline ---------------------------------

REMBG_TEST_MODEL = "u2netp"
# `make setup` (scripts/fetch_test_models.py) puts rembg's own u2netp.onnx here; the Makefile exports it.
TEST_U2NET_HOME = Path(os.environ.get("U2NET_HOME", REPO / ".venv" / "u2net"))


def _no_network(url, *args, **kwargs):
    raise ConnectionError(f"tests run offline and must not download {url}")


@pytest.fixture(scope="session")
def rembg_model():
    """The rembg model name for tests: u2netp (4.5 MB), run for real from TEST_U2NET_HOME.

    While the fixture is active, rembg finds its models only in that folder, and any model download
    fails as it would on a machine without network (rembg's downloader, pooch, is refused)."""
    model_file = TEST_U2NET_HOME / f"{REMBG_TEST_MODEL}.onnx"
    if not model_file.is_file():
        pytest.fail(f"{model_file} is missing: run `make setup` (it runs scripts/fetch_test_models.py)")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("U2NET_HOME", str(TEST_U2NET_HOME))
        patch.setattr(pooch.core, "stream_download", _no_network)
        yield REMBG_TEST_MODEL


# --- The extension registered, with the tiny fixture model (drag-and-drop, reference images, batch) -----

FIXTURE_MODEL = fixture_model.FIXTURE
FIXTURE_IMAGE = fixture_model.IMAGE
# The random-weight model has a surface only at its own threshold, at this resolution (see its meta.json).
FIXTURE_THRESHOLD = fixture_model.OPTIONS["threshold"]
FIXTURE_RESOLUTION = fixture_model.OPTIONS["resolution"]


@pytest.fixture(scope="module")
def extension(tmp_path_factory):
    """The extension registered in bpy, its panel set for the tiny model; one worker serves the module.

    bpy is imported here, not at the top, so that test files of the bpy-free parts never load it."""
    import bpy

    import triposr_blender

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TRIPOSR_MODEL", str(FIXTURE_MODEL))
        patch.setenv("TRIPOSR_DEPS_DIR", str(tmp_path_factory.mktemp("deps")))
        triposr_blender.register()
        settings = bpy.context.scene.triposr
        settings.remove_background = False
        settings.resolution = FIXTURE_RESOLUTION
        settings.threshold = FIXTURE_THRESHOLD
        settings.device = "CPU"
        yield settings
        triposr_blender.unregister()


@pytest.fixture(scope="module")
def own_dependency_folder(tmp_path_factory):
    """The batch looks for the extension's dependency folder; here, never in the user's Blender folders."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TRIPOSR_DEPS_DIR", str(tmp_path_factory.mktemp("deps")))
        yield


@pytest.fixture(scope="session")
def extension_zip(tmp_path_factory):
    """The extension's zip, built once per test run as `make extension` builds it."""
    from extension_harness import build_extension

    return build_extension(tmp_path_factory.mktemp("extension"))


@pytest.fixture(scope="module")
def installed_blender(tmp_path_factory, extension_zip):
    """Another Blender, with the extension installed from its zip as a user installs it and the tiny model as
    the model source; tests send it snippets (extension_harness)."""
    from extension_harness import Blender

    blender = Blender(tmp_path_factory.mktemp("user"), {"TRIPOSR_MODEL": str(FIXTURE_MODEL)})
    blender.install(extension_zip)
    yield blender
    blender.close()


@pytest.fixture
def new_objects(extension):
    """Lists the objects the test has added, sorted by name; they are removed afterwards."""
    import bpy

    from triposr_blender.blender.mesh_builder import remove_object

    before = set(bpy.data.objects)

    def added():
        return [obj for obj in bpy.data.objects if obj not in before]

    yield added
    for obj in added():
        remove_object(obj)


# --- Ray, for the batch on Ray and the server on Ray Serve: one local Ray per test module ------------------


@pytest.fixture(scope="module")
def local_ray():
    """A Ray of 2 CPUs whose node and every process of it listen on 127.0.0.1 (the setting above); -> its
    address. Started once per module (a start costs 11 s of CPU) and stopped after it: an idle Ray still
    takes a tenth of a core, which the rest of the run would pay for."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
    address = ray.get_runtime_context().gcs_address
    assert address.startswith("127.0.0.1:"), address
    yield address
    ray.shutdown()


# --- The core with the tiny model: loaded once per run, and never changed by a test ----------------------


@pytest.fixture(scope="session")
def model():
    """The core's TripoSR with the fixture model, on the CPU."""
    return fixture_model.core_model()


@pytest.fixture(scope="session")
def image():
    """The fixture's input image, as the reference code was given it (RGB, not prepared)."""
    from PIL import Image

    return Image.open(FIXTURE_MODEL / "input.png").convert("RGB")


@pytest.fixture(scope="session")
def scene(model, image):
    """Its scene codes."""
    return model.encode(image)


# --- The tiny model's mesh and colour field, for the core's bake and decimation tests ---------------------


@pytest.fixture(scope="session")
def mesh():
    """The core's mesh of the fixture image (computed once per process)."""
    return fixture_model.core_mesh()


@pytest.fixture(scope="session")
def color_fn():
    """The model's colour at given points, as bake_texture and decimate take it."""
    return fixture_model.core_colors


# --- The dependency installer, with real pip and a tiny wheel of its own --------------------------------


@pytest.fixture
def pip_env(monkeypatch):
    """The environment of the runs: no pip configuration of this machine, no user site-packages."""
    for name in [name for name in os.environ if name.startswith("PIP_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    return dict(os.environ)


@pytest.fixture
def wheels(tmp_path):
    """A folder holding tinypkg's wheel, for pip --no-index --find-links."""
    from tiny_wheel import build_wheel

    folder = tmp_path / "wheels"
    build_wheel(folder)
    return folder


@pytest.fixture
def requirements(tmp_path):
    """A requirements file naming only tinypkg."""
    path = tmp_path / "requirements.txt"
    path.write_text("tinypkg  # the package the test wheels provide\n")
    return path


# --- Blender 4.2's bpy module crashes in Python's teardown ------------------------------------------------

EXIT_STATUS = pytest.StashKey[int]()


def pytest_sessionfinish(session, exitstatus):
    session.config.stash[EXIT_STATUS] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    """Leave with pytest's own status once everything is reported, skipping the bpy 4.2 module's teardown.

    The Blender 4.2 bpy wheel crashes (signal 11) while Python shuts down after two or more glTF exports in
    one process, even in a three-line script, so a green `make test-lts` would exit 139. bpy 5.0 does not.
    """
    bpy = sys.modules.get("bpy")
    if bpy is not None and bpy.app.version < (5, 0, 0) and EXIT_STATUS in config.stash:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(config.stash[EXIT_STATUS])
