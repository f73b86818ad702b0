"""Quad Remesh in the real bpy: Blender's QuadriFlow turns a TripoSR object's triangles into about the asked
number of quads that follow the dense surface and carry its colors; the object keeps itself, and a mesh
QuadriFlow refuses stays as it was with a message. Generate, Re-mesh and the batch offer it; a baked texture
and the batch on Ray refuse it, saying why."""

import subprocess
import sys

import bpy
import numpy as np
import pytest
from bench_field import THRESHOLD, load_bench_field
from conftest import FIXTURE_IMAGE, FIXTURE_MODEL, FIXTURE_RESOLUTION, FIXTURE_THRESHOLD, REPO
from mathutils.bvhtree import BVHTree

from triposr_blender.backends.types import MeshResult
from triposr_blender.blender import materials, mesh_builder, source
from triposr_blender.blender import quad_remesh as quad_remesh_module
from triposr_blender.blender.placement import Destination
from triposr_blender.blender.quad_remesh import (
    QuadRemeshError,
    fill_holes,
    open_edges,
    quad_remesh,
    vertex_positions,
)
from triposr_blender.core.mesh import Mesh
from triposr_blender.ui import operators

pytestmark = pytest.mark.blender

QUADS = 1000


@pytest.fixture(scope="module")
def suzanne():
    """The benchmark field's mesh (Suzanne) at resolution 96, with the field's colors."""
    model, scene = load_bench_field()
    return model.extract_mesh(scene, resolution=96, threshold=THRESHOLD)


@pytest.fixture
def triangles(extension, new_objects, suzanne):
    """A TripoSR-made object of the benchmark mesh, 2 units tall at the origin."""
    obj = mesh_builder.build_object(bpy.context, "Suzanne", MeshResult(suzanne), Destination())
    obj.modifiers.new("User's Bevel", "BEVEL")
    return obj


def quad_share(mesh) -> float:
    sides = np.empty(len(mesh.polygons), np.int32)
    mesh.polygons.foreach_get("loop_total", sides)
    return float((sides == 4).mean())


def test_quadriflow_makes_about_the_asked_quads_on_the_dense_surface_with_its_colors(triangles):
    dense = triangles.data
    tree = BVHTree.FromPolygons(vertex_positions(dense).tolist(), [tuple(p.vertices) for p in dense.polygons])
    size = max(triangles.dimensions)

    quad_remesh(bpy.context, triangles, QUADS)

    mesh = triangles.data
    assert quad_share(mesh) >= 0.95
    assert 0.7 * QUADS <= len(mesh.polygons) <= 1.3 * QUADS
    distance = [tree.find_nearest(point)[3] for point in vertex_positions(mesh).tolist()]
    assert np.mean(distance) < 0.005 * size
    colors = mesh.color_attributes[materials.COLOR_ATTRIBUTE]
    assert colors.domain == "POINT" and mesh.color_attributes.render_color_index == 0
    assert mesh.name == "Suzanne" and mesh.materials[0] == materials.find_vertex_color_material()


def test_the_object_keeps_its_transform_modifiers_and_scene_codes(triangles):
    triangles.location = (1, 2, 3)
    triangles[source.KEY] = {"codes": b"kept"}

    quad_remesh(bpy.context, triangles, QUADS)

    assert tuple(triangles.location) == (1, 2, 3)
    assert [modifier.name for modifier in triangles.modifiers] == ["User's Bevel"]
    assert triangles[source.KEY]["codes"] == b"kept"
    assert not [obj for obj in bpy.data.objects if obj.name.endswith("quads")]


def test_a_mesh_quadriflow_cannot_take_keeps_its_triangles_and_says_why(extension, new_objects):
    """Triangles without area (all on one line): nothing is left for QuadriFlow once slivers are removed."""
    vertices = np.array([[0, 0, 0], [1, 0, 0], [2, 0, 0], [3, 0, 0]], np.float32)
    flat = Mesh(vertices, np.array([[0, 1, 2], [1, 3, 2]]), np.full((4, 3), 0.5, np.float32))
    obj = mesh_builder.build_object(bpy.context, "Needle", MeshResult(flat), Destination())
    mesh, meshes, objects = obj.data, len(bpy.data.meshes), len(bpy.data.objects)

    with pytest.raises(QuadRemeshError, match="QuadriFlow could not remesh Needle .* keeps its triangles"):
        quad_remesh(bpy.context, obj, QUADS)

    assert obj.data == mesh and len(mesh.polygons) == 2
    assert (len(bpy.data.meshes), len(bpy.data.objects)) == (meshes, objects)


def test_short_edges_and_pinches_are_cleaned_up_until_blender_lets_quadriflow_run(extension, new_objects):
    """Blender refuses QuadriFlow an edge shorter than 1e-4 along every axis; marching cubes makes them."""
    vertices = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [0.00005, 0.00005, 0.00005]], np.float32)
    faces = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 4], [2, 3, 4], [3, 1, 4]])
    tetrahedron = Mesh(vertices, faces, np.full((5, 3), 0.5, np.float32))
    obj = mesh_builder.build_object(bpy.context, "Sliver", MeshResult(tetrahedron), Destination())
    mesh_builder.shade(obj.data, True)

    quad_remesh(bpy.context, obj, 200)

    assert quad_share(obj.data) >= 0.95


def test_a_hole_quadriflow_leaves_is_closed_with_a_face_facing_out():
    """A cube without its top: the new face closes it, and faces up like the cube's other faces face out."""
    mesh = bpy.data.meshes.new("Open box")
    corners = [(x, y, z) for x in (0, 1) for y in (0, 1) for z in (0, 1)]
    sides = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4)]  # no top (z = 1)
    mesh.from_pydata(corners, [], sides)
    mesh.update()

    fill_holes(mesh)

    assert len(mesh.polygons) == 6 and all(len(edge_faces) == 2 for edge_faces in edge_use(mesh).values())
    top = next(polygon for polygon in mesh.polygons if polygon.center.z == 1)
    assert tuple(top.normal) == pytest.approx((0, 0, 1))
    bpy.data.meshes.remove(mesh)


def test_a_rim_vertex_left_on_top_of_another_is_welded_so_the_sliver_closes():
    """QuadriFlow can leave a vertex exactly on another, in a quad with a zero-length edge: the rim between
    them is a sliver no face can fill until the two are one. Here: a tetrahedron whose apex is doubled."""
    mesh = bpy.data.meshes.new("Sliver")
    vertices = [(0, 0, 0), (1, 0, 0), (0, 1, 0), (0, 0, 1), (0, 0, 1)]
    mesh.from_pydata(vertices, [], [(0, 2, 1), (0, 1, 3), (0, 3, 2), (1, 2, 4)])
    mesh.update()

    fill_holes(mesh)

    assert open_edges(mesh) == 0 and len(mesh.vertices) == 4
    bpy.data.meshes.remove(mesh)


def test_the_quads_are_a_closed_surface(extension, new_objects):
    """The benchmark field at resolution 200, 3,000 quads: QuadriFlow left 3 open edges there (a sliver)."""
    model, scene = load_bench_field()
    dense = model.extract_mesh(scene, resolution=200, threshold=THRESHOLD)
    obj = mesh_builder.build_object(bpy.context, "Suzanne", MeshResult(dense), Destination())

    quad_remesh(bpy.context, obj, 3000)

    assert open_edges(obj.data) == 0 and quad_share(obj.data) >= 0.95


def test_quads_that_stay_open_keep_the_triangles_and_say_so(triangles, monkeypatch):
    """Whatever QuadriFlow does, the user gets a closed surface: the quads, or the triangles as they were."""
    mesh, meshes, objects = triangles.data, len(bpy.data.meshes), len(bpy.data.objects)
    monkeypatch.setattr(quad_remesh_module, "fill_holes", lambda mesh: None)
    monkeypatch.setattr(quad_remesh_module, "open_edges", lambda mesh: 3)

    with pytest.raises(
        QuadRemeshError, match="Suzanne .its quads leave 3 edges open., so it keeps its triangles"
    ):
        quad_remesh(bpy.context, triangles, QUADS)

    assert triangles.data == mesh and (len(bpy.data.meshes), len(bpy.data.objects)) == (meshes, objects)


def edge_use(mesh) -> dict:
    used = {}
    for polygon in mesh.polygons:
        for key in polygon.edge_keys:
            used.setdefault(key, []).append(polygon.index)
    return used


def test_an_object_with_a_baked_texture_is_refused(triangles):
    triangles.data.uv_layers.new(name=materials.UV_MAP)

    with pytest.raises(QuadRemeshError, match="has a baked texture"):
        quad_remesh(bpy.context, triangles, QUADS)


def test_generate_and_remesh_make_quads_and_say_how_many(extension, new_objects):
    assert bpy.ops.triposr.generate(filepath=str(FIXTURE_IMAGE), quad_remesh=300) == {"FINISHED"}
    (obj,) = new_objects()
    assert quad_share(obj.data) >= 0.95

    assert bpy.ops.triposr.remesh(quad_remesh=200) == {"FINISHED"}
    assert quad_share(obj.data) >= 0.95 and len(obj.data.polygons) < 300
    assert source.is_triposr_object(obj)


def test_a_bug_in_quad_remesh_still_ends_in_one_message_and_keeps_the_object(
    extension, new_objects, monkeypatch, capfd
):
    def broken(*_arguments):
        raise ValueError("a bug")

    monkeypatch.setattr(operators, "quad_remesh", broken)

    assert bpy.ops.triposr.generate(filepath=str(FIXTURE_IMAGE), quad_remesh=300) == {"FINISHED"}
    (obj,) = new_objects()
    assert quad_share(obj.data) == 0.0
    message = f"Quad Remesh failed (ValueError: a bug); {obj.name} keeps its triangles."
    assert message in capfd.readouterr().out


def test_generate_refuses_quads_with_a_baked_texture_before_running_the_model(extension, new_objects):
    with pytest.raises(RuntimeError, match="Quad Remesh carries colors as a Color Attribute"):
        bpy.ops.triposr.generate(filepath=str(FIXTURE_IMAGE), quad_remesh=300, color_mode="TEXTURE")
    assert new_objects() == []


def run_batch(*arguments, cwd=REPO):
    command = [sys.executable, "-m", "triposr_blender.batch", "--", *map(str, arguments)]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300)


def test_the_batch_in_blender_writes_quads(tmp_path):
    run = run_batch(
        FIXTURE_IMAGE, "--out", tmp_path, "--format", "obj", "--model", FIXTURE_MODEL, "--device", "cpu",
        "--no-remove-bg", "--resolution", FIXTURE_RESOLUTION, "--threshold", repr(FIXTURE_THRESHOLD),
        "--quad-remesh", 300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr

    faces = [line.split() for line in (tmp_path / f"{FIXTURE_IMAGE.stem}.obj").read_text().splitlines()]
    sides = np.array([len(face) - 1 for face in faces if face[0] == "f"])
    assert (sides == 4).mean() >= 0.95


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (
            ["--ray", "--quad-remesh", "300"],
            "--quad-remesh runs Blender's QuadriFlow: run the batch without --ray",
        ),
        (["--quad-remesh", "300", "--texture-size", "1024"], "not a baked texture; leave one of them out"),
        (["--quad-remesh", "50"], "--quad-remesh: must be 0 (off) or from 100 to 20000, not 50"),
    ],
    ids=["on Ray", "with a texture", "too few"],
)
def test_the_batch_refuses_quads_it_cannot_make_before_any_image(arguments, message):
    run = run_batch(FIXTURE_IMAGE, *arguments)

    assert run.returncode == 2
    assert message in run.stderr
