"""Mesh files without Blender (core/export.py): what Blender's own exporters write for the batch's object, as
files Blender's own importers read."""

import bpy
import numpy as np
import pytest
from glb import assert_same_coloured_mesh, buffer_view_bytes, primitive_arrays

from triposr_blender.backends.types import MeshResult
from triposr_blender.batch import in_blender
from triposr_blender.blender import mesh_builder
from triposr_blender.blender.placement import Destination
from triposr_blender.core import export
from triposr_blender.core.texture import bake_texture

pytestmark = pytest.mark.blender


@pytest.fixture
def empty_file():
    bpy.ops.wm.read_factory_settings(use_empty=True)
    yield
    bpy.ops.wm.read_factory_settings(use_empty=True)


@pytest.fixture(scope="module")
def texture(mesh, color_fn):
    return bake_texture(mesh, color_fn, texture_size=128, padding=2)


def write(folder, files):
    for name, content in files.items():
        (folder / name).write_bytes(content)
    return list(files)


def test_a_glb_holds_what_blenders_exporter_writes_for_the_batchs_object(empty_file, mesh, tmp_path):
    obj = mesh_builder.build_object(bpy.context, "chair", MeshResult(mesh), Destination())
    in_blender.export_object(tmp_path / "blender.glb", "glb")
    (tmp_path / "core.glb").write_bytes(export.glb_bytes(mesh, size=2.0, name="chair"))
    mesh_builder.remove_object(obj)

    assert_same_coloured_mesh(tmp_path / "core.glb", tmp_path / "blender.glb")


def test_a_glb_with_a_texture_carries_it_as_base_color_and_blender_imports_it(
    empty_file, mesh, texture, tmp_path
):
    path = tmp_path / "textured.glb"
    path.write_bytes(export.glb_bytes(mesh, texture, name="textured"))

    document, binary, arrays = primitive_arrays(path)
    assert "TEXCOORD_0" in arrays and "COLOR_0" not in arrays
    assert document["materials"][0]["pbrMetallicRoughness"]["baseColorTexture"] == {"index": 0}
    assert buffer_view_bytes(document, binary, document["images"][0]["bufferView"])[:4] == b"\x89PNG"
    bpy.ops.import_scene.gltf(filepath=str(path))
    (imported,) = [obj for obj in bpy.data.objects if obj.type == "MESH"]
    assert len(imported.data.polygons) == len(mesh.faces) and imported.data.uv_layers
    assert [
        node.image.size[:] for node in imported.data.materials[0].node_tree.nodes if node.type == "TEX_IMAGE"
    ] == [(128, 128)]


@pytest.mark.parametrize("textured", [False, True], ids=["vertex colours", "texture"])
def test_an_obj_is_read_by_blender_with_its_colours_or_its_texture(
    empty_file, mesh, texture, tmp_path, textured
):
    written = write(tmp_path, export.files("chair", "obj", mesh, texture if textured else None))

    bpy.ops.wm.obj_import(filepath=str(tmp_path / "chair.obj"))
    (imported,) = [obj for obj in bpy.data.objects if obj.type == "MESH"]
    assert len(imported.data.polygons) == len(mesh.faces)
    assert written[-1] == "chair.obj", "the main file comes last, so a file that exists has all its parts"
    if textured:
        assert sorted(written) == ["chair.mtl", "chair.obj", "chair.png"]
        assert imported.data.uv_layers and imported.data.materials
    else:
        assert imported.data.color_attributes


def test_a_ply_is_read_by_blender_with_its_vertex_colours(empty_file, mesh, tmp_path):
    write(tmp_path, export.files("chair", "ply", mesh))

    bpy.ops.wm.ply_import(filepath=str(tmp_path / "chair.ply"))
    (imported,) = [obj for obj in bpy.data.objects if obj.type == "MESH"]
    assert len(imported.data.polygons) == len(mesh.faces) and imported.data.color_attributes
    dimensions = np.array(imported.dimensions)
    assert dimensions.max() == pytest.approx(2.0, rel=1e-4)  # upright and sized as the batch's object


def test_another_format_is_refused(mesh, tmp_path):
    with pytest.raises(ValueError, match="the core writes glb, obj, ply, not fbx"):
        export.files("chair", "fbx", mesh)
