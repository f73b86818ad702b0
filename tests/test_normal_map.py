"""The normal map of a decimated, textured mesh: its tangent frames are the ones Blender builds (MikkTSpace),
it gives the light mesh the dense mesh's shading back (measured on the benchmark field, whose dense surface is
known), it is baked only where a mesh was decimated, and it travels: the GLB's normalTexture with its TANGENT
frame, Blender's material through a Normal Map node, the OBJ's map_Bump and the server's npz."""

from types import SimpleNamespace

import bpy
import numpy as np
import pytest
from bench_field import THRESHOLD, DenseSurface, blender_tangents, load_bench_field, shading_errors
from fixture_model import OPTIONS, core_model, core_scene
from glb import primitive_arrays
from gltf_validator import assert_valid

from triposr_blender.blender import materials
from triposr_blender.core import export, result_archive, texture
from triposr_blender.core.decimate import decimate
from triposr_blender.core.defaults import DEFAULT_RESOLUTION
from triposr_blender.core.mesh import Mesh
from triposr_blender.core.shading import corner_tangents, vertex_normals
from triposr_blender.options import MeshOptions
from triposr_blender.server.routes.results import npz_bytes
from triposr_blender.worker.pipeline import mesh_from_scene

pytestmark = pytest.mark.blender

BENCH_RESOLUTION, BENCH_FACES, BENCH_TEXTURE = 96, 1000, 512
FIXTURE_FACES, FIXTURE_TEXTURE = 1000, 512


@pytest.fixture(scope="module")
def bench():
    """The benchmark field's dense mesh, its decimated copy and that copy's bake against the dense one."""
    model, scene = load_bench_field()

    def color_fn(points):
        return model.query(scene, points)["color"].numpy()

    dense = model.extract_mesh(scene, resolution=BENCH_RESOLUTION, threshold=THRESHOLD)
    light = decimate(dense, BENCH_FACES, color_fn)
    return dense, light, texture.bake_texture(light, color_fn, BENCH_TEXTURE, dense=dense)


@pytest.fixture(scope="module")
def decimated_result():
    """What the worker gives back for the fixture image, decimated and textured."""
    return mesh_from_scene(
        core_model(), core_scene(), fixture_options(FIXTURE_FACES), progress=lambda *_: None
    )


def fixture_options(target_faces: int) -> MeshOptions:
    return MeshOptions(
        resolution=OPTIONS["resolution"], threshold=OPTIONS["threshold"], target_faces=target_faces,
        texture_size=FIXTURE_TEXTURE,
    )  # fmt: skip


def quad(u_sign: float) -> tuple[Mesh, np.ndarray]:
    """A unit square in the xy plane facing +z, mapped with u = u_sign * x and v = y."""
    vertices = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], np.float32)
    faces = np.array([[0, 1, 2], [0, 2, 3]])
    uvs = np.stack([u_sign * vertices[:, 0], vertices[:, 1]], axis=1)[faces].astype(np.float32)
    return Mesh(vertices, faces, np.zeros_like(vertices)), uvs


@pytest.mark.parametrize(("u_sign", "tangent", "sign"), [(1.0, [1, 0, 0], 1.0), (-1.0, [-1, 0, 0], -1.0)])
def test_a_tangent_runs_along_increasing_u_and_its_sign_turns_the_bitangent_along_increasing_v(
    u_sign, tangent, sign
):
    mesh, uvs = quad(u_sign)
    frames = corner_tangents(mesh.vertices, mesh.faces, uvs, vertex_normals(mesh.vertices, mesh.faces))

    np.testing.assert_allclose(frames[..., :3].reshape(-1, 3), [tangent] * 6, atol=1e-6)
    assert (frames[..., 3] == sign).all()  # bitangent = sign * cross(+z, tangent) = +y: increasing v


def test_the_tangent_frames_are_the_ones_blender_builds(bench):
    _, light, baked = bench
    ours = corner_tangents(
        light.vertices, light.faces, baked.corner_uvs, vertex_normals(light.vertices, light.faces)
    )
    blenders = blender_tangents(light, baked.corner_uvs)

    cosine = np.einsum("fcj,fcj->fc", ours[..., :3], blenders[..., :3]).clip(-1, 1)
    assert np.degrees(np.arccos(cosine)).mean() < 1.0
    assert (ours[..., 3] == blenders[..., 3]).mean() > 0.97


def test_the_map_gives_the_light_mesh_the_dense_meshs_shading_in_blenders_frame(bench):
    dense, light, baked = bench
    without, with_map = shading_errors(
        light, baked, DenseSurface(dense), blender_tangents(light, baked.corner_uvs)
    )

    assert with_map.mean() < 0.4 * without.mean()
    assert with_map.mean() < 6.0


def test_a_texel_outside_the_layout_holds_the_flat_normal(bench):
    _, _, baked = bench
    outside = np.nonzero(baked.image[..., 3] == 0)
    assert len(outside[0]) and (baked.normal_image[outside] == (128, 128, 255)).all()


def test_only_a_decimated_mesh_gets_a_normal_map(decimated_result):
    undecimated = mesh_from_scene(core_model(), core_scene(), fixture_options(0), lambda *_: None)

    assert decimated_result.texture.normal_image.shape == (FIXTURE_TEXTURE, FIXTURE_TEXTURE, 3)
    assert undecimated.texture.normal_image is None


def test_the_glb_carries_the_map_as_normal_texture_with_the_tangents_it_was_baked_in(
    decimated_result, tmp_path
):
    mesh, baked = decimated_result.mesh, decimated_result.texture
    glb = export.glb_bytes(mesh, baked)
    (tmp_path / "light.glb").write_bytes(glb)

    document, _, arrays = primitive_arrays(tmp_path / "light.glb")
    (material,) = document["materials"]
    normal_image = document["textures"][material["normalTexture"]["index"]]["source"]
    base_image = document["textures"][material["pbrMetallicRoughness"]["baseColorTexture"]["index"]]["source"]
    assert normal_image != base_image
    np.testing.assert_allclose(np.linalg.norm(arrays["TANGENT"][:, :3], axis=1), 1.0, atol=1e-5)
    assert set(np.unique(arrays["TANGENT"][:, 3])) <= {-1.0, 1.0}
    assert_valid(glb)


def test_blenders_material_shades_through_a_normal_map_node_on_the_uv_map(decimated_result):
    bpy.ops.wm.read_factory_settings(use_empty=True)
    baked = decimated_result.texture
    color = materials.new_packed_image("Color", baked.image)
    normal = materials.new_normal_image("Normal", baked.normal_image)
    material = materials.new_texture_material("Light", color, normal)

    nodes = material.node_tree.nodes
    normal_map = nodes[materials.NORMAL_MAP_NODE]
    shader = next(node for node in nodes if node.bl_idname == "ShaderNodeBsdfPrincipled")
    assert (normal_map.space, normal_map.uv_map) == ("TANGENT", materials.UV_MAP)
    assert shader.inputs["Normal"].links[0].from_node == normal_map
    assert normal_map.inputs["Color"].links[0].from_node.image == normal
    assert normal.colorspace_settings.name == "Non-Color"
    stored = np.empty(4 * normal.size[0] * normal.size[1], np.float32)
    normal.pixels.foreach_get(stored)
    np.testing.assert_array_equal(
        np.rint(stored.reshape(*baked.normal_image.shape[:2], 4)[..., :3] * 255), baked.normal_image
    )


def test_a_new_bake_without_a_map_takes_the_map_and_its_image_away(decimated_result):
    bpy.ops.wm.read_factory_settings(use_empty=True)
    baked = decimated_result.texture
    old_normal = materials.new_normal_image("Normal", baked.normal_image)
    material = materials.new_texture_material(
        "Light", materials.new_packed_image("Color", baked.image), old_normal
    )
    new_color = materials.new_packed_image("Color 2", baked.image)

    materials.use_bake(material, new_color, None)

    assert materials.material_images(material) == [new_color]
    assert materials.NORMAL_MAP_NODE not in material.node_tree.nodes
    assert list(bpy.data.images) == [new_color]


def test_an_obj_names_the_map_where_blenders_importer_reads_a_normal_map(decimated_result, tmp_path):
    files = export.obj_files("light", decimated_result.mesh, decimated_result.texture)
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    bpy.ops.wm.read_factory_settings(use_empty=True)

    bpy.ops.wm.obj_import(filepath=str(tmp_path / "light.obj"))

    (material,) = bpy.context.selected_objects[0].data.materials
    normal_maps = [node for node in material.node_tree.nodes if node.bl_idname == "ShaderNodeNormalMap"]
    assert len(normal_maps) == 1
    assert normal_maps[0].inputs["Color"].links[0].from_node.image.filepath.endswith("light_normal.png")


def test_the_servers_npz_brings_the_map_to_blender(decimated_result):
    archive = npz_bytes(SimpleNamespace(result=decimated_result))
    size = decimated_result.texture.image.shape[0]
    _mesh, received, _codes, _photo = result_archive.from_bytes(archive, DEFAULT_RESOLUTION, size)

    np.testing.assert_array_equal(received.normal_image, decimated_result.texture.normal_image)
