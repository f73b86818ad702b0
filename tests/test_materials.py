"""A baked texture in Blender (real bpy): the packed image, the UV map, the material wiring, and the exports
that carry it (glTF embeds it; OBJ, FBX and USD refer to a PNG beside them). The bake itself is the core's,
from the tiny fixture model.

The bpy tests run in this process on an empty factory file, reset before each test.
"""

import io

import bpy
import numpy as np
import pytest
from fixture_model import FIXTURE
from glb import accessor_array, buffer_view_bytes, read_glb
from PIL import Image

from triposr_blender.backends.types import MeshResult
from triposr_blender.batch import in_blender
from triposr_blender.blender import materials, mesh_builder
from triposr_blender.blender.placement import Destination
from triposr_blender.core import TripoSR
from triposr_blender.core.texture import bake_texture

pytestmark = pytest.mark.blender

THRESHOLD = 0.41453200578689575  # the tiny model has a surface at this level (see its README)
RESOLUTION = 48
SIZE = 128


@pytest.fixture(scope="module")
def generated_and_texture():
    model = TripoSR.from_pretrained(FIXTURE, device="cpu")
    scene = model.encode(Image.open(FIXTURE / "input.png").convert("RGB"))
    mesh = model.extract_mesh(scene, resolution=RESOLUTION, threshold=THRESHOLD)
    baked = bake_texture(mesh, lambda points: model.query(scene, points)["color"].numpy(), texture_size=SIZE)
    return MeshResult(mesh, baked), baked


@pytest.fixture
def empty_file():
    bpy.ops.wm.read_factory_settings(use_empty=True)
    yield bpy.context
    bpy.ops.wm.read_factory_settings(use_empty=True)


@pytest.fixture
def textured(empty_file, generated_and_texture):
    generated, texture = generated_and_texture
    obj = mesh_builder.build_object(empty_file, "Sample", generated, Destination())
    return obj, texture


def datablock_counts() -> tuple[int, int, int, int]:
    data = bpy.data
    return len(data.objects), len(data.meshes), len(data.materials), len(data.images)


def test_each_face_corner_gets_its_baked_uv(textured):
    obj, texture = textured
    uvs = np.empty(len(obj.data.loops) * 2, np.float32)
    obj.data.attributes[materials.UV_MAP].data.foreach_get("vector", uvs)
    np.testing.assert_array_equal(uvs.reshape(-1, 3, 2), texture.corner_uvs)
    assert obj.data.uv_layers.active.name == materials.UV_MAP


def test_the_image_holds_the_baked_pixels_and_is_packed_into_the_file(textured):
    obj, texture = textured
    (image,) = materials.textures_of(obj)
    assert tuple(image.size) == (SIZE, SIZE)
    assert image.packed_file is not None
    assert image.colorspace_settings.name == "sRGB"
    pixels = np.empty(SIZE * SIZE * 4, np.float32)
    image.pixels.foreach_get(pixels)
    np.testing.assert_array_equal(np.rint(pixels * 255).reshape(SIZE, SIZE, 4), texture.image)


def test_base_color_reads_the_image_and_its_alpha_stays_unconnected(textured):
    obj, _ = textured
    (material,) = obj.data.materials
    shader = next(node for node in material.node_tree.nodes if node.bl_idname == "ShaderNodeBsdfPrincipled")
    (link,) = shader.inputs["Base Color"].links
    assert link.from_node.bl_idname == "ShaderNodeTexImage"
    assert link.from_node.image == materials.textures_of(obj)[0]
    assert not shader.inputs["Alpha"].is_linked


def test_a_textured_object_has_no_vertex_colours_to_multiply_into_its_texture(textured):
    obj, _ = textured
    assert len(obj.data.color_attributes) == 0


def test_a_failure_leaves_the_file_as_it_was(empty_file, generated_and_texture, monkeypatch):
    generated, texture = generated_and_texture
    before = datablock_counts()

    def broken(*_args):
        raise RuntimeError("no UV map today")

    monkeypatch.setattr(materials, "add_uv_map", broken)
    with pytest.raises(RuntimeError, match="no UV map"):
        mesh_builder.build_object(empty_file, "Sample", generated, Destination())
    assert datablock_counts() == before


def test_glb_export_carries_the_texture_as_base_color_with_texcoord_0(textured, tmp_path):
    obj, texture = textured
    path = tmp_path / "sample.glb"
    bpy.ops.export_scene.gltf(filepath=str(path), export_format="GLB", use_selection=True)

    document, binary = read_glb(path)
    (material,) = document["materials"]
    texture_index = material["pbrMetallicRoughness"]["baseColorTexture"]["index"]
    (primitive,) = document["meshes"][0]["primitives"]
    assert "TEXCOORD_0" in primitive["attributes"]
    assert "COLOR_0" not in primitive["attributes"]
    image_entry = document["images"][document["textures"][texture_index]["source"]]
    assert image_entry["mimeType"] == "image/png"
    png = Image.open(io.BytesIO(buffer_view_bytes(document, binary, image_entry["bufferView"])))
    # PNG rows run top to bottom; the baked image's row 0 is the bottom.
    np.testing.assert_array_equal(np.asarray(png.convert("RGBA"))[::-1], texture.image)
    # glTF's v runs downwards: every exported UV is a baked (u, 1 - v), and every baked one is exported.
    exported = np.unique(accessor_array(document, binary, primitive["attributes"]["TEXCOORD_0"]), axis=0)
    baked = np.unique(texture.corner_uvs.reshape(-1, 2) * (1, -1) + (0, 1), axis=0)
    np.testing.assert_allclose(exported, baked, atol=1e-6)


def test_obj_export_references_the_texture_saved_beside_it(textured, tmp_path):
    obj, texture = textured
    (saved,) = materials.save_textures_beside(obj, tmp_path)
    bpy.ops.wm.obj_export(filepath=str(tmp_path / "sample.obj"), export_selected_objects=True)

    assert f"map_Kd {saved.name}" in (tmp_path / "sample.mtl").read_text().splitlines()
    np.testing.assert_array_equal(np.asarray(Image.open(saved).convert("RGBA"))[::-1], texture.image)


IMPORTERS = {
    "obj": bpy.ops.wm.obj_import,
    "fbx": bpy.ops.import_scene.fbx,
    "usd": bpy.ops.wm.usd_import,
}


@pytest.mark.parametrize("file_format", IMPORTERS)
def test_batch_exports_bring_their_texture_along_when_the_files_move(textured, tmp_path, file_format):
    _, texture = textured
    exported = tmp_path / "exported"
    exported.mkdir()
    in_blender.export_object(exported / f"sample.{file_format}", file_format)
    moved = exported.rename(tmp_path / "moved")

    bpy.ops.wm.read_factory_settings(use_empty=True)
    IMPORTERS[file_format](filepath=str(moved / f"sample.{file_format}"))
    (imported,) = [obj for obj in bpy.data.objects if obj.type == "MESH"]
    images = materials.textures_of(imported)
    assert images, "the imported object has no texture"
    for image in images:
        pixels = np.empty(SIZE * SIZE * 4, np.float32)
        image.pixels.foreach_get(pixels)
        rgb = np.rint(pixels * 255).reshape(SIZE, SIZE, 4)[..., :3]
        np.testing.assert_array_equal(rgb, texture.image[..., :3])


def test_removing_a_batch_object_removes_its_texture_too(textured):
    obj, _ = textured
    mesh_builder.remove_object(obj)
    assert (len(bpy.data.meshes), len(bpy.data.materials), len(bpy.data.images)) == (0, 0, 0)


def test_usd_outputs_of_one_run_share_their_textures_folder(empty_file, generated_and_texture, tmp_path):
    generated, texture = generated_and_texture
    for name in ("first", "second"):
        mesh_builder.build_object(empty_file, name, generated, Destination())
        in_blender.export_object(tmp_path / f"{name}.usd", "usd")

    assert sorted(path.name for path in tmp_path.iterdir()) == ["first.usd", "second.usd", "textures"]
    assert sorted(path.name for path in (tmp_path / "textures").iterdir()) == [
        "first Color.png",
        "second Color.png",
    ]
