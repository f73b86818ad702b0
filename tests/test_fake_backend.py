"""ARCHITECTURE.md's promise, held: a new backend is one subclass in a module of its own. Imported, the fake
one (``fake_backend``) runs the panel's Generate and a batch run by its address alone, with no other module
changed, and the UI and the batch never name a concrete backend (``test_architecture``)."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fake_backend import CODES, OCTAHEDRON, PHOTO, FakeBackend
from fixture_model import IMAGE
from glb import read_glb

from triposr_blender.backends.backend import BackendStartError, Connection, backend_for
from triposr_blender.backends.remote import RemoteClient
from triposr_blender.worker.client import WorkerClient

pytestmark = pytest.mark.blender
TESTS = Path(__file__).resolve().parent


def test_each_address_goes_to_the_backend_that_serves_it():
    assert isinstance(backend_for(Connection()), WorkerClient)
    assert isinstance(backend_for(Connection("https://gpu-box:8700", "token")), RemoteClient)
    assert isinstance(backend_for(Connection("fake://farm")), FakeBackend)
    with pytest.raises(BackendStartError, match="No backend runs the model at 'ftp://box'"):
        backend_for(Connection("ftp://box"))


def test_the_panels_generate_runs_on_the_fake_backend_by_its_address(extension, new_objects, monkeypatch):
    import bpy

    from triposr_blender.ui.session import SESSION

    SESSION.stop()
    monkeypatch.setenv("TRIPOSR_SERVER", "fake://farm")
    try:
        assert bpy.ops.triposr.generate(filepath=str(IMAGE)) == {"FINISHED"}
        assert isinstance(SESSION.client, FakeBackend)
    finally:
        SESSION.stop()

    (obj,) = new_objects()
    assert FakeBackend.asked[-1] == (str(IMAGE), "fake://farm")
    assert (len(obj.data.vertices), len(obj.data.polygons)) == (
        len(OCTAHEDRON.vertices),
        len(OCTAHEDRON.faces),
    )


def test_remesh_gives_the_backend_the_photo_the_object_keeps_in_a_saved_file(
    extension, new_objects, monkeypatch, tmp_path
):
    """Photo Texture again on Re-mesh: the photo Generate framed stays with the object, in the saved .blend
    too, and Re-mesh of the object appended from that file hands it to the backend with the scene codes."""
    import bpy

    from triposr_blender.ui.session import SESSION

    SESSION.stop()
    monkeypatch.setenv("TRIPOSR_SERVER", "fake://farm")
    blend = tmp_path / "kept.blend"
    try:
        assert bpy.ops.triposr.generate(filepath=str(IMAGE)) == {"FINISHED"}
        (made,) = new_objects()
        bpy.data.libraries.write(str(blend), {made})
        bpy.data.objects.remove(made)
        with bpy.data.libraries.load(str(blend), link=False) as (data_from, data_to):
            data_to.objects = list(data_from.objects)
        (appended,) = data_to.objects
        bpy.context.scene.collection.objects.link(appended)
        for obj in bpy.context.view_layer.objects:
            obj.select_set(obj == appended)
        bpy.context.view_layer.objects.active = appended
        assert bpy.ops.triposr.remesh() == {"FINISHED"}
    finally:
        SESSION.stop()

    codes, photo = FakeBackend.remeshed_with[-1]
    assert codes == CODES and photo.frame == PHOTO.frame
    np.testing.assert_array_equal(photo.pixels, PHOTO.pixels)


def test_a_batch_runs_on_the_fake_backend_by_its_address(tmp_path, own_dependency_folder):
    """``batch --server fake://farm`` in a process of its own, which imports the fake module first."""
    arguments = ["--", str(IMAGE), "--out", str(tmp_path), "--format", "glb", "--server", "fake://farm"]
    script = (
        "import sys, runpy, fake_backend\n"
        f"sys.argv = ['batch', *{arguments!r}]\n"
        "runpy.run_module('triposr_blender.batch', run_name='__main__')\n"
    )
    path = os.pathsep.join([str(TESTS), str(TESTS.parent)])
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": path},
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    document, _ = read_glb(tmp_path / f"{IMAGE.stem}.glb")
    (primitive,) = document["meshes"][0]["primitives"]
    assert document["accessors"][primitive["indices"]]["count"] == 3 * len(OCTAHEDRON.faces)
