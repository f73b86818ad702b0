"""Generate from Selected References, in the real bpy with the extension registered and the tiny fixture model
(run by the real worker process): one mesh per selected image empty, standing in its picture."""

import math
import shutil

import bpy
import numpy as np
import pytest
from conftest import FIXTURE_IMAGE
from mathutils import Vector

pytestmark = pytest.mark.blender


@pytest.fixture
def reference_images(tmp_path):
    """Two images in Blender, loaded from files, as dropping them as references would."""
    images = {}
    for name in ("disc", "square"):
        path = tmp_path / f"{name}.png"
        shutil.copy(FIXTURE_IMAGE, path)
        images[name] = bpy.data.images.load(str(path))
    yield images
    for image in images.values():
        bpy.data.images.remove(image)


def add_image_empty(image, location, rotation, size):
    empty = bpy.data.objects.new(f"{image.name} empty", None)
    empty.empty_display_type = "IMAGE"
    empty.data = image
    empty.empty_display_size = size
    empty.location = location
    empty.rotation_euler = rotation
    bpy.context.scene.collection.objects.link(empty)
    return empty


def select_only(objects):
    # Sync first: Blender 4.2 lists objects just linked (or deleted) in the view layer only after an update.
    bpy.context.view_layer.update()
    for obj in bpy.context.view_layer.objects:
        obj.select_set(obj in objects)


def bounds(obj):
    """The lowest and highest corner of the object's mesh, in the object's own axes."""
    vertices = np.empty(3 * len(obj.data.vertices), dtype=np.float32)
    obj.data.vertices.foreach_get("co", vertices)
    vertices = vertices.reshape(-1, 3)
    return vertices.min(axis=0), vertices.max(axis=0)


def test_each_selected_image_empty_becomes_a_mesh_standing_in_its_picture(new_objects, reference_images):
    upright = add_image_empty(reference_images["disc"], (2.0, 0.0, 1.0), (math.pi / 2, 0.0, 0.0), 2.0)
    lying = add_image_empty(reference_images["square"], (-3.0, 1.0, 0.0), (0.0, 0.0, math.pi / 4), 1.0)
    plain = bpy.data.objects.new("plain empty", None)
    bpy.context.scene.collection.objects.link(plain)
    select_only([upright, lying, plain])

    assert bpy.ops.triposr.generate_from_references() == {"FINISHED"}

    meshes = {obj.name: obj for obj in new_objects() if obj.type == "MESH"}
    assert sorted(meshes) == ["disc", "square"]
    for name, empty in (("disc", upright), ("square", lying)):
        mesh = meshes[name]
        low, high = bounds(mesh)
        # Centred on the picture (an empty's default offset centres the picture on the empty) ...
        centre = mesh.matrix_world @ Vector((low + high) / 2)
        assert tuple(centre) == pytest.approx(tuple(empty.location), abs=1e-5)
        # ... as large as the picture (a square image: display size on both sides) ...
        assert (high - low).max() == pytest.approx(empty.empty_display_size, rel=1e-5)
        # ... and its front (Blender's -Y, the side seen in the image) towards whoever looks at the picture.
        front = mesh.matrix_world.to_3x3() @ Vector((0.0, -1.0, 0.0))
        viewer = empty.matrix_world.to_3x3() @ Vector((0.0, 0.0, 1.0))
        assert tuple(front.normalized()) == pytest.approx(tuple(viewer.normalized()), abs=1e-6)


def test_without_a_selected_image_empty_the_operator_is_unavailable(new_objects):
    plain = bpy.data.objects.new("plain empty", None)
    bpy.context.scene.collection.objects.link(plain)
    select_only([plain])
    assert not bpy.ops.triposr.generate_from_references.poll()
    with pytest.raises(RuntimeError, match="image empties"):
        bpy.ops.triposr.generate_from_references()
