"""Re-mesh (bpy.ops.triposr.remesh) in the real bpy: a TripoSR object gets a new mesh from the scene codes it
keeps, in place, without its image or the encoder; what cannot be re-meshed says why and changes nothing."""

import dataclasses
import shutil
import zlib

import bpy
import numpy as np
import pytest
import torch
from conftest import FIXTURE_IMAGE, FIXTURE_MODEL, FIXTURE_RESOLUTION
from fixture_model import NEW_THRESHOLD, OPTIONS, core_mesh_at, core_model, core_scene, cut_out

from triposr_blender.blender import source
from triposr_blender.core.mesh import FramedPhoto
from triposr_blender.core.orientation import transform
from triposr_blender.core.scene_codes import SceneCodes
from triposr_blender.ui.session import SESSION

pytestmark = pytest.mark.blender


def mesh_arrays(obj):
    mesh = obj.data
    vertices = np.empty(len(mesh.vertices) * 3, np.float32)
    mesh.vertices.foreach_get("co", vertices)
    corners = np.empty(len(mesh.loops), np.int32)
    mesh.loops.foreach_get("vertex_index", corners)
    return vertices.reshape(-1, 3), corners.reshape(-1, 3)


def select_only(*objects):
    for other in bpy.context.view_layer.objects:
        if other is not None:  # None stands where a test deleted an object, until the view layer syncs
            other.select_set(False)
    for obj in objects:
        obj.select_set(True)
    bpy.context.view_layer.objects.active = objects[0]


@pytest.fixture
def generated(extension, new_objects, tmp_path):
    """A TripoSR object made from a copy of the fixture image, and that copy."""
    image = tmp_path / "chair.png"
    shutil.copy(FIXTURE_IMAGE, image)
    assert bpy.ops.triposr.generate(filepath=str(image)) == {"FINISHED"}
    return bpy.context.active_object, image


def test_generate_makes_a_triposr_object_keeping_its_scene_codes_and_settings(generated):
    obj, _ = generated

    kept = source.source_of(obj)

    assert source.is_triposr_object(obj)
    codes = SceneCodes.from_bytes(kept.codes)
    assert np.array_equal(codes.array, core_scene().numpy()) and codes.model_id == core_model().fingerprint
    assert kept.options.resolution == FIXTURE_RESOLUTION and kept.options.remove_background is False


def test_remesh_at_a_new_threshold_gives_the_cores_mesh_and_keeps_the_object(generated, extension):
    obj, _ = generated
    parent = bpy.data.objects.new("Rig", None)
    bpy.context.scene.collection.objects.link(parent)
    obj.parent = parent
    obj.location, obj.rotation_euler = (1.0, 2.0, 3.0), (0.1, 0.2, 0.3)
    obj.modifiers.new("Smooth", "SUBSURF")
    extra = bpy.data.materials.new("Users Own")
    obj.data.materials.append(extra)
    bpy.context.view_layer.update()
    before = {
        "pointer": obj.as_pointer(),
        "matrix": [list(row) for row in obj.matrix_world],
        "materials": list(obj.data.materials),
        "collections": list(obj.users_collection),
    }
    select_only(obj)

    assert bpy.ops.triposr.remesh(threshold=NEW_THRESHOLD) == {"FINISHED"}

    expected = core_mesh_at(NEW_THRESHOLD)
    vertices, faces = mesh_arrays(obj)
    np.testing.assert_array_equal(
        vertices, transform(source.source_of(obj).model_to_object, expected.vertices)
    )
    np.testing.assert_array_equal(faces, expected.faces)
    bpy.context.view_layer.update()
    assert obj.as_pointer() == before["pointer"] and obj.parent == parent
    assert [list(row) for row in obj.matrix_world] == before["matrix"]
    assert (
        list(obj.data.materials) == before["materials"]
        and list(obj.users_collection) == before["collections"]
    )
    assert [modifier.name for modifier in obj.modifiers] == ["Smooth"]
    assert source.source_of(obj).options.threshold == pytest.approx(NEW_THRESHOLD)
    bpy.data.objects.remove(parent)


def test_remesh_with_the_model_unloaded_loads_it(generated):
    obj, _ = generated
    SESSION.stop()  # Unload
    select_only(obj)

    assert bpy.ops.triposr.remesh(threshold=NEW_THRESHOLD) == {"FINISHED"}

    assert SESSION.model_state.loaded


def test_several_selected_objects_are_remeshed_together(generated, extension):
    first, image = generated
    assert bpy.ops.triposr.generate(filepath=str(image)) == {"FINISHED"}
    second = bpy.context.active_object
    select_only(first, second)

    assert bpy.ops.triposr.remesh(threshold=NEW_THRESHOLD) == {"FINISHED"}

    faces = len(core_mesh_at(NEW_THRESHOLD).faces)
    assert len(first.data.polygons) == len(second.data.polygons) == faces


def test_remove_triposr_data_makes_a_plain_mesh_object(generated):
    obj, _ = generated
    select_only(obj)

    assert bpy.ops.triposr.remove_data() == {"FINISHED"}

    assert not source.is_triposr_object(obj) and len(obj.data.polygons) > 0


def test_an_object_without_scene_codes_cannot_be_remeshed_and_says_why(extension, new_objects):
    plain = bpy.data.objects.new("Plain", bpy.data.meshes.new("Plain"))
    bpy.context.scene.collection.objects.link(plain)
    select_only(plain)

    with pytest.raises(RuntimeError, match="Select objects made by Generate \\(TripoSR objects\\) to remesh"):
        bpy.ops.triposr.remesh()
    bpy.data.objects.remove(plain)


def another_model(folder):
    """The fixture model with a slightly different decoder: its scene codes are not the fixture's."""
    shutil.copytree(FIXTURE_MODEL, folder)
    state = torch.load(folder / "model.ckpt", weights_only=True)
    state["decoder.layers.0.weight"] *= 1.01
    torch.save(state, folder / "model.ckpt")
    return folder


@pytest.mark.parametrize(
    "problem", ["another model", "damaged codes", "NaN transform", "flat transform", "bad options"]
)
def test_codes_that_cannot_be_used_leave_the_object_unchanged_with_a_message(
    generated, monkeypatch, tmp_path, problem
):
    """Every stored value is checked: a .blend from elsewhere may have had any of them edited."""
    obj, _ = generated
    kept = dict(obj[source.KEY].to_dict())
    damaged = "keeps damaged TripoSR data"
    if problem == "another model":
        monkeypatch.setenv("TRIPOSR_MODEL", str(another_model(tmp_path / "other-model")))
        message = "made with another model .* than the one loaded"
    elif problem == "damaged codes":
        obj[source.KEY]["codes"] = b"PK\x03\x04 not the scene codes any more"
        message = "The saved scene codes are damaged"
    elif problem == "NaN transform":
        obj[source.KEY]["model_to_object"] = [float("nan")] * 16
        message = damaged
    elif problem == "flat transform":
        obj[source.KEY]["model_to_object"] = [0.0] * 15 + [1.0]
        message = damaged
    else:
        obj[source.KEY]["options"] = '{"threshold": NaN}'
        message = damaged
    mesh, polygons = obj.data, len(obj.data.polygons)
    select_only(obj)

    with pytest.raises(RuntimeError, match=message):
        bpy.ops.triposr.remesh(threshold=NEW_THRESHOLD)

    assert obj.data == mesh and len(obj.data.polygons) == polygons
    obj[source.KEY] = kept


# In Blender with the extension installed, as a user has it: the file saved, the image gone, then reopened or
# appended into another file.

SAVE = """
bpy.ops.wm.read_homefile(use_empty=True)
made = operator("triposr.generate", filepath=image, **options)
name = bpy.context.active_object.name
bpy.ops.wm.save_as_mainfile(filepath=blend)
result = {"made": made, "name": name}
"""
REMESH = """
obj = bpy.data.objects[name]
for other in bpy.context.view_layer.objects:
    other.select_set(False)
obj.select_set(True)
bpy.context.view_layer.objects.active = obj
outcome = operator("triposr.remesh", threshold=threshold, resolution=resolution)
result = {"outcome": outcome, "faces": len(obj.data.polygons)}
"""
REOPEN = "bpy.ops.wm.open_mainfile(filepath=blend)\n" + REMESH
APPEND = (
    """
bpy.ops.wm.read_homefile(use_empty=True)
with bpy.data.libraries.load(blend, link=False) as (data_from, data_to):
    data_to.objects = [name]
bpy.context.scene.collection.objects.link(data_to.objects[0])
bpy.context.view_layer.update()
"""
    + REMESH
)


@pytest.mark.parametrize("how", ["reopened", "appended into another file"])
def test_a_saved_object_is_remeshed_without_its_image_file(installed_blender, tmp_path, how):
    image, blend = tmp_path / "chair.png", tmp_path / "scene.blend"
    shutil.copy(FIXTURE_IMAGE, image)
    saved = installed_blender.run(SAVE, image=str(image), blend=str(blend), options=OPTIONS)
    assert saved["made"] == {"result": ["FINISHED"]}
    image.unlink()

    remeshed = installed_blender.run(
        REOPEN if how == "reopened" else APPEND,
        blend=str(blend),
        name=saved["name"],
        threshold=NEW_THRESHOLD,
        resolution=FIXTURE_RESOLUTION,
    )

    assert remeshed["outcome"] == {"result": ["FINISHED"]}
    assert remeshed["faces"] == len(core_mesh_at(NEW_THRESHOLD).faces)


def test_the_kept_photo_reads_back_as_it_was_stored(generated):
    obj, _ = generated
    photo = FramedPhoto(np.arange(4 * 6 * 4, dtype=np.uint8).reshape(4, 6, 4), 10, (3, 1))

    source.store(obj, dataclasses.replace(source.source_of(obj), **source.packed_photo(photo)))
    kept = source.source_of(obj).photo()

    assert kept.frame == photo.frame
    np.testing.assert_array_equal(kept.pixels, photo.pixels)


def test_adjust_last_operation_re_meshes_with_the_photo_the_generation_framed(
    extension, new_objects, tmp_path
):
    """What Adjust Last Operation re-meshes (Blender's redo, which no Python API can start, finds it in the
    session): the generation's scene codes and the photo they were encoded from, as its object keeps them."""
    assert bpy.ops.triposr.generate(filepath=str(cut_out(tmp_path))) == {"FINISHED"}
    kept = source.source_of(bpy.context.active_object)

    ((codes, photo),) = SESSION.last_codes.values()

    assert codes == kept.codes and photo.frame == kept.photo().frame


@pytest.mark.parametrize("damage", ["inflates past its size", "truncated", "off its canvas"])
def test_a_damaged_kept_photo_is_dropped_and_the_object_stays_re_meshable(generated, damage):
    """A .blend can be edited: the photo's bytes are never inflated past the size its frame gives."""
    obj, _ = generated
    photo = FramedPhoto(np.zeros((4, 4, 4), np.uint8), 8, (2, 2))
    source.store(obj, dataclasses.replace(source.source_of(obj), **source.packed_photo(photo)))
    group = obj[source.KEY]
    if damage == "inflates past its size":
        group["photo"] = zlib.compress(bytes(10_000_000))
    elif damage == "truncated":
        group["photo"] = bytes(group["photo"])[:5]
    else:
        group["photo_frame"] = [4, 4, 8, 6, 2]

    kept = source.source_of(obj)

    assert kept is not None and kept.photo() is None
