"""From a worker's MeshResult to a Blender object (blender/mesh_builder.py), in the real bpy.

The tests run in this process on an empty factory file, reset before each test.
"""

import bpy
import numpy as np
import pytest
from shapes import TETRAHEDRON

from triposr_blender.backends.types import MeshResult
from triposr_blender.blender import materials, mesh_builder
from triposr_blender.blender.placement import Destination
from triposr_blender.core.color import srgb_to_linear
from triposr_blender.core.mesh import Mesh
from triposr_blender.core.result_archive import ResultError

pytestmark = pytest.mark.blender

RESULT = MeshResult(TETRAHEDRON)


@pytest.fixture
def empty_file():
    bpy.ops.wm.read_factory_settings(use_empty=True)
    yield bpy.context
    bpy.ops.wm.read_factory_settings(use_empty=True)


def datablock_counts() -> tuple[int, int, int]:
    return len(bpy.data.objects), len(bpy.data.meshes), len(bpy.data.materials)


# --- colours ----------------------------------------------------------------------------------------------


def test_srgb_colours_become_linear_as_blender_stores_them():
    linear = srgb_to_linear(np.array([0.0, 0.04045, 0.5, 1.0, 1.2], np.float32))

    np.testing.assert_allclose(linear, [0.0, 0.04045 / 12.92, 0.21404, 1.0, 1.0], atol=1e-5)


# --- building in Blender ----------------------------------------------------------------------------------


def test_the_object_is_linked_selected_and_active(empty_file):
    obj = mesh_builder.build_object(empty_file, "Tetra", RESULT, Destination())

    assert obj.name == "Tetra" and obj.data.name == "Tetra"
    assert obj.name in empty_file.scene.collection.objects
    assert empty_file.view_layer.objects.active == obj and obj.select_get()


def test_an_object_a_script_just_deleted_does_not_stop_the_new_one_being_selected(empty_file):
    other = bpy.data.objects.new("Other", None)
    empty_file.scene.collection.objects.link(other)
    empty_file.view_layer.update()
    other.select_set(True)
    bpy.data.objects.remove(other)  # the view layer lists None in its place until it syncs again

    obj = mesh_builder.build_object(empty_file, "Tetra", RESULT, Destination())

    assert empty_file.view_layer.objects.active == obj and obj.select_get()


def test_the_mesh_keeps_the_core_triangles_and_their_normals_point_out(empty_file):
    mesh = mesh_builder.build_object(empty_file, "Tetra", RESULT, Destination()).data
    normals = np.empty(len(mesh.polygons) * 3, np.float32)
    mesh.polygons.foreach_get("normal", normals)
    centres = np.empty(len(mesh.polygons) * 3, np.float32)
    mesh.polygons.foreach_get("center", centres)

    assert [tuple(polygon.vertices) for polygon in mesh.polygons] == [
        tuple(face) for face in TETRAHEDRON.faces
    ]
    inside = np.array([v.co for v in mesh.vertices]).mean(axis=0)
    outward = centres.reshape(-1, 3) - inside
    assert (np.einsum("ij,ij->i", normals.reshape(-1, 3), outward) > 0).all()
    assert not mesh.validate(), "the mesh Blender got needed no repair"


def test_the_mesh_is_turned_to_face_front_and_sized(empty_file):
    where = Destination(location=(1.0, 2.0, 3.0), target_size=4.0)

    obj = mesh_builder.build_object(empty_file, "Tetra", RESULT, where)

    apex = obj.data.vertices[0].co
    assert apex.y == pytest.approx(-2.0) and apex.x == pytest.approx(0.0)  # the photographed side faces -Y
    assert tuple(obj.location) == (1.0, 2.0, 3.0)
    assert max(obj.dimensions) == pytest.approx(4.0)


def test_the_front_axis_preference_turns_the_mesh_elsewhere(empty_file):
    where = Destination(front_axis="POS_X")

    obj = mesh_builder.build_object(empty_file, "Tetra", RESULT, where)

    assert obj.data.vertices[0].co.x == pytest.approx(1.0)  # TripoSR's own frame: photo side at +X


def test_colours_are_stored_as_the_active_point_colour_attribute(empty_file):
    mesh = mesh_builder.build_object(empty_file, "Tetra", RESULT, Destination()).data
    attribute = mesh.color_attributes["Color"]
    stored = np.empty(len(attribute.data) * 4, np.float32)
    attribute.data.foreach_get("color", stored)

    assert (attribute.data_type, attribute.domain) == ("FLOAT_COLOR", "POINT")
    assert mesh.color_attributes.active_color_name == "Color"
    np.testing.assert_allclose(stored.reshape(-1, 4)[:, :3], srgb_to_linear(TETRAHEDRON.vertex_colors))


def test_shading_follows_the_option(empty_file):
    smooth = mesh_builder.build_object(empty_file, "Smooth", RESULT, Destination(), True).data
    flat = mesh_builder.build_object(empty_file, "Flat", RESULT, Destination(), False).data

    assert all(polygon.use_smooth for polygon in smooth.polygons)
    assert not any(polygon.use_smooth for polygon in flat.polygons)


def test_all_objects_share_one_material_and_a_users_namesake_is_left_alone(empty_file):
    users_own = bpy.data.materials.new(materials.MATERIAL_NAME)

    first = mesh_builder.build_object(empty_file, "A", RESULT, Destination())
    second = mesh_builder.build_object(empty_file, "B", RESULT, Destination())

    assert first.data.materials[0] == second.data.materials[0] != users_own
    assert len(bpy.data.materials) == 2


def test_a_failed_build_leaves_nothing_behind(empty_file):
    broken = MeshResult(Mesh(TETRAHEDRON.vertices, TETRAHEDRON.faces, TETRAHEDRON.vertex_colors[:2]))
    before = datablock_counts()

    with pytest.raises(RuntimeError):
        mesh_builder.build_object(empty_file, "Broken", broken, Destination())

    assert datablock_counts() == before


def test_faces_naming_a_vertex_the_mesh_lacks_are_refused_before_anything_is_made(empty_file):
    """The last guard, whatever the mesh came from: a server's result is checked before it gets here."""
    faces = TETRAHEDRON.faces.copy()
    faces[0, 2] = 1_000_000
    broken = MeshResult(Mesh(TETRAHEDRON.vertices, faces, TETRAHEDRON.vertex_colors))
    before = datablock_counts()

    with pytest.raises(ResultError, match="name vertex 1000000 and it has 4 vertices"):
        mesh_builder.build_object(empty_file, "Broken", broken, Destination())

    assert datablock_counts() == before
