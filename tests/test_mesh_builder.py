"""From the core's numpy mesh to a Blender object: placement maths (pure numpy) and the mesh builder (bpy).

The bpy tests run in this process on an empty factory file, reset before each test.
"""

import bpy
import numpy as np
import pytest

from triposr_blender import mesh_builder, placement

pytestmark = pytest.mark.blender

# A tetrahedron wound counter-clockwise seen from outside, as the core winds its meshes, in TripoSR's
# model space: the apex (+X) is on the side the photo saw.
TETRAHEDRON = mesh_builder.GeneratedMesh(
    vertices=np.array([[0.5, 0, 0], [-0.5, 0.5, -0.5], [-0.5, -0.5, -0.5], [-0.5, 0, 0.5]], np.float32),
    faces=np.array([[0, 1, 3], [0, 3, 2], [0, 2, 1], [1, 2, 3]], np.int64),
    vertex_colors=np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [0.5, 0.5, 0.5]], np.float32),
)


@pytest.fixture
def empty_file():
    bpy.ops.wm.read_factory_settings(use_empty=True)
    yield bpy.context
    bpy.ops.wm.read_factory_settings(use_empty=True)


def datablock_counts() -> tuple[int, int, int]:
    return len(bpy.data.objects), len(bpy.data.meshes), len(bpy.data.materials)


# --- placement -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("front_axis", "photo_side"),
    [("NEG_Y", (0, -1, 0)), ("POS_Y", (0, 1, 0)), ("POS_X", (1, 0, 0)), ("NEG_X", (-1, 0, 0))],
)
def test_the_photographed_side_turns_to_the_front_axis_and_up_stays_up(front_axis, photo_side):
    rotation = placement.model_to_blender_rotation(front_axis)

    np.testing.assert_allclose(rotation @ (1, 0, 0), photo_side, atol=1e-12)
    np.testing.assert_allclose(rotation @ (0, 0, 1), (0, 0, 1), atol=1e-12)
    assert np.linalg.det(rotation) == pytest.approx(1.0)  # a turn, never a mirror: normals stay outward


def test_front_view_shows_the_photo_unmirrored():
    """Blender's Front view looks along +Y with +X to the right; the photo's right is TripoSR's +Y."""
    rotation = placement.model_to_blender_rotation("NEG_Y")

    np.testing.assert_allclose(rotation @ (0, 1, 0), (1, 0, 0), atol=1e-12)


def test_placed_vertices_stand_on_the_origin_with_the_longest_side_at_the_target_size():
    placed = placement.place_vertices(TETRAHEDRON.vertices, np.eye(3), 3.0)

    low, high = placed.min(axis=0), placed.max(axis=0)
    assert low[2] == pytest.approx(0.0)
    np.testing.assert_allclose((low[:2] + high[:2]) / 2, 0.0, atol=1e-6)
    assert (high - low).max() == pytest.approx(3.0)
    assert placed.dtype == np.float32


def test_an_image_empty_frame_is_centred_on_its_picture_and_as_large():
    empty = np.eye(4)
    empty[:3, 3] = (1.0, 2.0, 3.0)
    empty[:3, :3] *= 2.0  # scaled twice as large

    frame = placement.image_empty_frame(empty, 1.5, (-0.5, -0.5), image_width=200, image_height=100)

    np.testing.assert_allclose(frame.centre, (1.0, 2.0, 3.0))
    assert frame.size == pytest.approx(3.0)
    # An unrotated image empty shows its picture to a viewer above it (+Z), picture-up along +Y.
    np.testing.assert_allclose(frame.rotation @ (0, -1, 0), (0, 0, 1), atol=1e-12)
    np.testing.assert_allclose(frame.rotation @ (0, 0, 1), (0, 1, 0), atol=1e-12)


def test_an_offset_picture_moves_the_frame_centre_with_it():
    frame = placement.image_empty_frame(np.eye(4), 2.0, (0.0, -1.0), image_width=100, image_height=100)

    np.testing.assert_allclose(frame.centre, (1.0, -1.0, 0.0))


def test_the_object_matrix_centres_the_mesh_height_on_the_picture():
    frame = placement.PictureFrame(rotation=np.eye(3), centre=np.array([0.0, 0.0, 5.0]), size=1.0)

    np.testing.assert_allclose(frame.object_matrix(mesh_height=2.0)[:3, 3], (0.0, 0.0, 4.0))


# --- colours ----------------------------------------------------------------------------------------------


def test_srgb_colours_become_linear_as_blender_stores_them():
    linear = mesh_builder.srgb_to_linear(np.array([0.0, 0.04045, 0.5, 1.0, 1.2], np.float32))

    np.testing.assert_allclose(linear, [0.0, 0.04045 / 12.92, 0.21404, 1.0, 1.0], atol=1e-5)


# --- building in Blender ----------------------------------------------------------------------------------


def test_the_object_is_linked_selected_and_active(empty_file):
    obj = mesh_builder.build_object(empty_file, "Tetra", TETRAHEDRON, mesh_builder.Placement())

    assert obj.name == "Tetra" and obj.data.name == "Tetra"
    assert obj.name in empty_file.scene.collection.objects
    assert empty_file.view_layer.objects.active == obj and obj.select_get()


def test_an_object_a_script_just_deleted_does_not_stop_the_new_one_being_selected(empty_file):
    other = bpy.data.objects.new("Other", None)
    empty_file.scene.collection.objects.link(other)
    empty_file.view_layer.update()
    other.select_set(True)
    bpy.data.objects.remove(other)  # the view layer lists None in its place until it syncs again

    obj = mesh_builder.build_object(empty_file, "Tetra", TETRAHEDRON, mesh_builder.Placement())

    assert empty_file.view_layer.objects.active == obj and obj.select_get()


def test_the_mesh_keeps_the_core_triangles_and_their_normals_point_out(empty_file):
    mesh = mesh_builder.build_object(empty_file, "Tetra", TETRAHEDRON, mesh_builder.Placement()).data
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
    where = mesh_builder.Placement(location=(1.0, 2.0, 3.0), target_size=4.0)

    obj = mesh_builder.build_object(empty_file, "Tetra", TETRAHEDRON, where)

    apex = obj.data.vertices[0].co
    assert apex.y == pytest.approx(-2.0) and apex.x == pytest.approx(0.0)  # the photographed side faces -Y
    assert tuple(obj.location) == (1.0, 2.0, 3.0)
    assert max(obj.dimensions) == pytest.approx(4.0)


def test_the_front_axis_preference_turns_the_mesh_elsewhere(empty_file):
    where = mesh_builder.Placement(front_axis="POS_X")

    obj = mesh_builder.build_object(empty_file, "Tetra", TETRAHEDRON, where)

    assert obj.data.vertices[0].co.x == pytest.approx(1.0)  # TripoSR's own frame: photo side at +X


def test_colours_are_stored_as_the_active_point_colour_attribute(empty_file):
    mesh = mesh_builder.build_object(empty_file, "Tetra", TETRAHEDRON, mesh_builder.Placement()).data
    attribute = mesh.color_attributes["Color"]
    stored = np.empty(len(attribute.data) * 4, np.float32)
    attribute.data.foreach_get("color", stored)

    assert (attribute.data_type, attribute.domain) == ("FLOAT_COLOR", "POINT")
    assert mesh.color_attributes.active_color_name == "Color"
    np.testing.assert_allclose(
        stored.reshape(-1, 4)[:, :3], mesh_builder.srgb_to_linear(TETRAHEDRON.vertex_colors)
    )


def test_shading_follows_the_option(empty_file):
    smooth = mesh_builder.build_object(empty_file, "Smooth", TETRAHEDRON, mesh_builder.Placement(), True).data
    flat = mesh_builder.build_object(empty_file, "Flat", TETRAHEDRON, mesh_builder.Placement(), False).data

    assert all(polygon.use_smooth for polygon in smooth.polygons)
    assert not any(polygon.use_smooth for polygon in flat.polygons)


def test_all_objects_share_one_material_and_a_users_namesake_is_left_alone(empty_file):
    users_own = bpy.data.materials.new(mesh_builder.MATERIAL_NAME)

    first = mesh_builder.build_object(empty_file, "A", TETRAHEDRON, mesh_builder.Placement())
    second = mesh_builder.build_object(empty_file, "B", TETRAHEDRON, mesh_builder.Placement())

    assert first.data.materials[0] == second.data.materials[0] != users_own
    assert len(bpy.data.materials) == 2


def test_a_failed_build_leaves_nothing_behind(empty_file):
    broken = mesh_builder.GeneratedMesh(
        TETRAHEDRON.vertices, TETRAHEDRON.faces, TETRAHEDRON.vertex_colors[:2]
    )
    before = datablock_counts()

    with pytest.raises(RuntimeError):
        mesh_builder.build_object(empty_file, "Broken", broken, mesh_builder.Placement())

    assert datablock_counts() == before
