"""Dropping image files on the 3D Viewport: the file handler and its Image to 3D operator, in the real bpy
with the extension registered and the tiny fixture model (run by the real worker process)."""

import shutil

import bpy
import pytest
from bpy_extras import view3d_utils
from conftest import FIXTURE_IMAGE
from mathutils import Vector

from triposr_blender.blender import placement
from triposr_blender.ui import drop

pytestmark = pytest.mark.blender


@pytest.fixture
def cursor():
    cursor = bpy.context.scene.cursor
    saved = cursor.location.copy()
    cursor.location = (1.0, 2.0, 0.5)
    yield cursor
    cursor.location = saved


def window_and_areas():
    window = bpy.context.window_manager.windows[0]
    return window, list(window.screen.areas)


def main_region(area):
    return next(region for region in area.regions if region.type == "WINDOW")


# The file handler


def test_the_file_handler_takes_image_files_into_image_to_3d(extension):
    handler = bpy.types.TRIPOSR_FH_image_to_3d
    assert handler.bl_import_operator == "triposr.image_to_3d"
    assert set(handler.bl_file_extensions.split(";")) >= {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".exr"}


def test_drops_are_accepted_on_the_3d_viewport_and_refused_on_other_editors(extension):
    # Background mode has one window with the default layout's editors: enough to ask each of them.
    window, areas = window_and_areas()
    assert {"VIEW_3D", "OUTLINER", "PROPERTIES"} <= {area.type for area in areas}
    handler = bpy.types.TRIPOSR_FH_image_to_3d
    for area in areas:
        with bpy.context.temp_override(window=window, area=area, region=main_region(area)):
            assert handler.poll_drop(bpy.context) == (area.type == "VIEW_3D"), area.type


# The operator


def test_an_image_file_becomes_a_mesh_standing_at_the_3d_cursor(new_objects, cursor):
    assert bpy.ops.triposr.image_to_3d(filepath=str(FIXTURE_IMAGE)) == {"FINISHED"}
    (obj,) = new_objects()
    assert obj.name == "input"
    assert obj.type == "MESH" and len(obj.data.vertices) > 0
    assert tuple(obj.location) == pytest.approx((1.0, 2.0, 0.5))
    assert tuple(cursor.location) == pytest.approx((1.0, 2.0, 0.5))


def test_several_files_are_made_one_after_another_in_a_row(new_objects, cursor, tmp_path):
    for name in ("disc", "square"):
        shutil.copy(FIXTURE_IMAGE, tmp_path / f"{name}.png")
    result = bpy.ops.triposr.image_to_3d(
        directory=str(tmp_path), files=[{"name": "disc.png"}, {"name": "square.png"}], location=(0, 0, 0)
    )
    assert result == {"FINISHED"}
    objects = new_objects()
    assert [obj.name for obj in objects] == ["disc", "square"]
    spacing = placement.ROW_SPACING * bpy.context.scene.triposr.target_size
    assert [tuple(obj.location) for obj in objects] == [(0, 0, 0), pytest.approx((spacing, 0, 0))]


def test_a_bad_file_is_reported_and_the_others_are_still_made(new_objects, tmp_path):
    shutil.copy(FIXTURE_IMAGE, tmp_path / "good.png")
    (tmp_path / "notes.png").write_text("not an image\n")
    with pytest.raises(RuntimeError, match="notes.png"):
        bpy.ops.triposr.image_to_3d(
            directory=str(tmp_path), files=[{"name": "notes.png"}, {"name": "good.png"}]
        )
    assert [obj.name for obj in new_objects()] == ["good"]


def test_without_files_nothing_is_made(new_objects):
    with pytest.raises(RuntimeError, match="No image file"):
        bpy.ops.triposr.image_to_3d()
    assert new_objects() == []


# Where a dropped image lands


@pytest.fixture
def view():
    """The 3D Viewport's main region and view, as the default file has them: looking down at the floor."""
    _window, areas = window_and_areas()
    area = next(area for area in areas if area.type == "VIEW_3D")
    return main_region(area), area.spaces.active.region_3d


def under(pixel, region, region_3d, location):
    """Whether ``location`` shows at ``pixel``, to the half pixel (the mouse's own resolution)."""
    shown_at = view3d_utils.location_3d_to_region_2d(region, region_3d, location)
    return tuple(shown_at) == pytest.approx(tuple(pixel), abs=0.5)


@pytest.mark.parametrize("mouse", [(0.5, 0.5), (0.3, 0.2), (0.8, 0.4)])
def test_a_drop_lands_on_the_floor_under_the_mouse(view, mouse):
    region, region_3d = view
    pixel = Vector((mouse[0] * region.width, mouse[1] * region.height))
    cursor = Vector((1.0, 1.0, 0.25))
    location = drop.location_under_mouse(region, region_3d, pixel, cursor)
    assert location.z == pytest.approx(cursor.z, abs=1e-5)
    assert under(pixel, region, region_3d, location)


def test_where_the_view_does_not_see_the_floor_a_drop_lands_at_the_cursor_depth(view):
    region, region_3d = view
    # The viewer looks down at the floor; a cursor ahead of it and above eye level puts the floor (the
    # plane at the cursor's height) out of sight.
    eye = region_3d.view_matrix.inverted().translation
    view_direction = region_3d.view_rotation @ Vector((0.0, 0.0, -1.0))
    ahead = Vector((view_direction.x, view_direction.y, 0.0)).normalized()
    cursor = eye + 10 * ahead + Vector((0.0, 0.0, 1.0))
    pixel = Vector((region.width / 2, region.height / 2))
    location = drop.location_under_mouse(region, region_3d, pixel, cursor)
    assert under(pixel, region, region_3d, location)
    assert (location - cursor).dot(view_direction) == pytest.approx(0.0, abs=1e-3)
