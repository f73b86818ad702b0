"""Quad Remesh: Blender's own QuadriFlow turns a TripoSR triangle mesh into about N quads, colors kept.

Artists and game engines want quads that follow the shape, not marching-cubes triangles. QuadriFlow is in
every Blender, but its time grows with its input and a resolution-256 mesh has about a million triangles, so
Blender's Decimate modifier first brings a copy to TRIANGLES_PER_QUAD triangles per wanted quad, far finer
than the quads. The color attribute is carried over from the nearest vertex of the original mesh.

Blender lets QuadriFlow run only on a manifold, consistently wound mesh without very short edges, which a
marching-cubes mesh is not quite: the copy is cleaned up until it passes the same check, and the holes
QuadriFlow leaves where a part is thinner than its quads are filled, so the result is closed. Where QuadriFlow
still fails, or leaves a surface that is not closed, the object keeps its triangle mesh and QuadRemeshError
says what to do. Runs on Blender's main thread, and blocks it
while QuadriFlow works (seconds; see the README's figures).
"""

from __future__ import annotations

import bmesh
import bpy
import numpy as np
from mathutils import Matrix
from mathutils.kdtree import KDTree

from ..core.errors import TripoSRError
from ..options import QUAD_REMESH_WITH_TEXTURE
from . import materials
from .mesh_builder import is_smooth, remove_datablocks, shade

TRIANGLES_PER_QUAD = 8
# QuadriFlow's random seeds, tried in turn until the surface is closed: the same mesh and count give the same
# quads every time.
SEEDS = (0, 1, 2)
# Blender refuses QuadriFlow a mesh with an edge shorter than QUADRIFLOW_SHORTEST along every axis, in the
# mesh's own units whatever its size; marching cubes makes such edges wherever the surface passes near a grid
# point. So QuadriFlow works on a copy WORK_SIZE across whose edges shorter than SHORTEST_EDGE (the limit's
# diagonal, 1.7e-4, and a little more: a tenth of a grid cell at resolution 1024) are collapsed.
QUADRIFLOW_SHORTEST = 1e-4
WORK_SIZE = 2.0
SHORTEST_EDGE = 2e-4
# Collapsing can pinch a thin part into an edge of three faces, or turn two faces against each other across an
# edge: such edges are split apart, leaving a pinhole QuadriFlow takes. A copy that still does not pass is
# decimated by half and cleaned again, at most this many times in all.
PREPARE_ATTEMPTS = 4
# Rim vertices closer than this share of the mesh's size are one (QuadriFlow leaves exact duplicates).
WELD_DISTANCE = 1e-6


class QuadRemeshError(TripoSRError):
    """QuadriFlow could not remesh the mesh, or its colors cannot follow; the object keeps its mesh."""


def quad_remesh(context: bpy.types.Context, obj: bpy.types.Object, quads: int) -> None:
    """Replace ``obj``'s mesh, in place, with about ``quads`` quads that carry its color attribute; the
    object, its transform, modifiers, materials and TripoSR data stay."""
    dense = obj.data
    if dense.uv_layers:
        raise QuadRemeshError(f"{obj.name} has a baked texture. {QUAD_REMESH_WITH_TEXTURE}")
    scale = WORK_SIZE / size_of(dense)
    prepared = prepared_copy(context, dense, quads, scale, obj.name)
    try:
        remeshed = closed_quads(context, prepared, quads, scale, obj.name)
    finally:
        bpy.data.meshes.remove(prepared)
    try:
        carry_colors(dense, remeshed)
        remeshed.materials.clear()
        for material in dense.materials:
            remeshed.materials.append(material)
        shade(remeshed, is_smooth(dense))
    except Exception:
        bpy.data.meshes.remove(remeshed)
        raise
    obj.data = remeshed
    if dense.users == 0:
        name = dense.name
        materials.remove_mesh(dense)
        remeshed.name = name


def prepared_copy(
    context: bpy.types.Context, dense: bpy.types.Mesh, quads: int, scale: float, name: str
) -> bpy.types.Mesh:
    """A copy of ``dense`` QuadriFlow takes: at most TRIANGLES_PER_QUAD triangles per quad (Blender's
    Decimate), scaled by ``scale``, without edges too short for it. Where collapsing those pinches the
    surface, the copy is halved again, up to PREPARE_ATTEMPTS times."""
    mesh = decimated(context, dense, TRIANGLES_PER_QUAD * quads / max(len(dense.polygons), 1))
    try:
        mesh.transform(Matrix.Scale(scale, 4))
        for _ in range(PREPARE_ATTEMPTS):
            without_short_edges(mesh)
            if quadriflow_takes(mesh):
                return mesh
            halved = decimated(context, mesh, 0.5)
            bpy.data.meshes.remove(mesh)
            mesh = halved
    except Exception:
        bpy.data.meshes.remove(mesh)
        raise
    bpy.data.meshes.remove(mesh)
    raise QuadRemeshError(failure(name, "no surface it can take is left once its slivers are removed"))


def decimated(context: bpy.types.Context, mesh: bpy.types.Mesh, ratio: float) -> bpy.types.Mesh:
    """A copy of ``mesh`` with ``ratio`` of its faces (all of them from 1 up): the Decimate modifier, on an
    object of its own so that a user's modifiers stay out."""
    if ratio >= 1:
        return mesh.copy()
    holder = bpy.data.objects.new("TripoSR decimate", mesh)
    context.scene.collection.objects.link(holder)
    try:
        holder.modifiers.new("Decimate", "DECIMATE").ratio = ratio
        return bpy.data.meshes.new_from_object(holder.evaluated_get(context.evaluated_depsgraph_get()))
    finally:
        bpy.data.objects.remove(holder)


def without_short_edges(mesh: bpy.types.Mesh) -> None:
    """Collapse the edges shorter than SHORTEST_EDGE (and the faces they leave without area), in place."""
    cleaned = bmesh.new()
    try:
        cleaned.from_mesh(mesh)
        bmesh.ops.dissolve_degenerate(cleaned, dist=SHORTEST_EDGE, edges=cleaned.edges[:])
        bmesh.ops.triangulate(cleaned, faces=cleaned.faces[:])
        pinched = [edge for edge in cleaned.edges if len(edge.link_faces) > 2 or not edge.is_contiguous]
        bmesh.ops.split_edges(cleaned, edges=[edge for edge in pinched if len(edge.link_faces) > 1])
        cleaned.to_mesh(mesh)
    finally:
        cleaned.free()


def quadriflow_takes(mesh: bpy.types.Mesh) -> bool:
    """What Blender checks before QuadriFlow runs: every edge between one and two faces, the two running it
    in opposite directions, and no edge shorter than QUADRIFLOW_SHORTEST along every axis."""
    corner_vertices, corner_edges = corners(mesh)
    use = np.bincount(corner_edges, minlength=len(mesh.edges))
    if len(mesh.edges) == 0 or use.min() < 1 or use.max() > 2:
        return False
    order = np.argsort(corner_edges, kind="stable")
    by_edge, starts = corner_edges[order], corner_vertices[order]
    same_edge = by_edge[1:] == by_edge[:-1]
    if (same_edge & (starts[1:] == starts[:-1])).any():  # two faces run the edge the same way: a flip
        return False
    ends = np.empty(2 * len(mesh.edges), np.int32)
    mesh.edges.foreach_get("vertices", ends)
    positions = vertex_positions(mesh)[ends.reshape(-1, 2)]
    return not (np.abs(positions[:, 0] - positions[:, 1]) <= QUADRIFLOW_SHORTEST).all(axis=1).any()


def closed_quads(
    context: bpy.types.Context, prepared: bpy.types.Mesh, quads: int, scale: float, name: str
) -> bpy.types.Mesh:
    """QuadriFlow's quads on a copy of ``prepared``, holes filled, at the dense mesh's scale again. Where the
    surface is still not closed, QuadriFlow runs again with the next of SEEDS; after the last one,
    QuadRemeshError."""
    for seed in SEEDS:
        work = bpy.data.objects.new(f"{name} quads", prepared.copy())
        context.scene.collection.objects.link(work)
        try:
            run_quadriflow(context, work, quads, name, seed)
            remeshed = work.data
            remeshed.transform(Matrix.Scale(1 / scale, 4))
            fill_holes(remeshed)
        except Exception:
            remove_datablocks([work, work.data])
            raise
        bpy.data.objects.remove(work)
        left_open = open_edges(remeshed)
        if not left_open:
            return remeshed
        bpy.data.meshes.remove(remeshed)
    # A surface with holes fails 3D printing and booleans, and shades badly: better the triangles.
    raise QuadRemeshError(failure(name, f"its quads leave {left_open} edges open"))


def run_quadriflow(
    context: bpy.types.Context, work: bpy.types.Object, quads: int, name: str, seed: int
) -> None:
    overrides = {"object": work, "active_object": work, "selected_objects": [work]}
    try:
        with context.temp_override(**overrides, selected_editable_objects=[work]):
            outcome = bpy.ops.object.quadriflow_remesh(
                target_faces=quads,
                mode="FACES",
                seed=seed,
                use_mesh_symmetry=False,
                use_preserve_sharp=False,
                use_preserve_boundary=False,
            )
    except RuntimeError as error:  # the operator's own report, e.g. a mesh that is not manifold
        raise QuadRemeshError(failure(name, str(error).removeprefix("Error: ").strip())) from error
    if outcome != {"FINISHED"} or not any(len(polygon.vertices) == 4 for polygon in work.data.polygons):
        raise QuadRemeshError(failure(name, "it made no quads"))


def fill_holes(mesh: bpy.types.Mesh) -> None:
    """Close the small holes QuadriFlow leaves where a part is thinner than its quads (such as the gap
    around an eye), with a face each, facing out like the faces around them. A rim vertex QuadriFlow left on
    top of another (a zero-length edge, which makes a sliver no face can fill) is welded to it first."""
    closed = bmesh.new()
    try:
        closed.from_mesh(mesh)
        rim = {vertex for edge in closed.edges if edge.is_boundary for vertex in edge.verts}
        bmesh.ops.remove_doubles(closed, verts=list(rim), dist=WELD_DISTANCE * size_of(mesh))
        bmesh.ops.holes_fill(closed, edges=[edge for edge in closed.edges if edge.is_boundary])
        bmesh.ops.recalc_face_normals(closed, faces=closed.faces[:])
        closed.to_mesh(mesh)
    finally:
        closed.free()


def open_edges(mesh: bpy.types.Mesh) -> int:
    """Edges with one face (a hole's rim) or more than two: zero for a closed surface."""
    use = np.bincount(corners(mesh)[1], minlength=len(mesh.edges))
    return int(((use == 1) | (use > 2)).sum())


def failure(name: str, reason: str) -> str:
    return (
        f"QuadriFlow could not remesh {name} ({reason}), so it keeps its triangles. Try another Quad Remesh "
        "count, or another Threshold for a cleaner surface."
    )


def carry_colors(dense: bpy.types.Mesh, remeshed: bpy.types.Mesh) -> None:
    """Give ``remeshed`` the color attribute of ``dense``, each vertex the color of the nearest dense one."""
    source = dense.color_attributes.get(materials.COLOR_ATTRIBUTE)
    if source is None:
        return
    colors = np.empty(len(source.data) * 4, dtype=np.float32)
    source.data.foreach_get("color", colors)
    colors = colors.reshape(-1, 4)
    tree = KDTree(len(dense.vertices))
    for index, point in enumerate(vertex_positions(dense).tolist()):
        tree.insert(point, index)
    tree.balance()
    nearest = [tree.find(vertex.co)[1] for vertex in remeshed.vertices]
    left_over = remeshed.color_attributes.get(materials.COLOR_ATTRIBUTE)
    if left_over is not None:
        remeshed.color_attributes.remove(left_over)
    attribute = remeshed.color_attributes.new(materials.COLOR_ATTRIBUTE, "FLOAT_COLOR", "POINT")
    attribute.data.foreach_set("color", colors[nearest].ravel())
    remeshed.color_attributes.active_color = attribute
    remeshed.color_attributes.render_color_index = remeshed.color_attributes.active_color_index


def corners(mesh: bpy.types.Mesh) -> tuple[np.ndarray, np.ndarray]:
    """The vertex and the edge (to the next corner) of each face corner."""
    corner_vertices = np.empty(len(mesh.loops), np.int32)
    corner_edges = np.empty(len(mesh.loops), np.int32)
    mesh.loops.foreach_get("vertex_index", corner_vertices)
    mesh.loops.foreach_get("edge_index", corner_edges)
    return corner_vertices, corner_edges


def size_of(mesh: bpy.types.Mesh) -> float:
    """The mesh's longest side; WORK_SIZE for a mesh without extent, which is then left at its size."""
    positions = vertex_positions(mesh)
    size = float(np.ptp(positions, axis=0).max()) if len(positions) else 0.0
    return size or WORK_SIZE


def vertex_positions(mesh: bpy.types.Mesh) -> np.ndarray:
    positions = np.empty(len(mesh.vertices) * 3, dtype=np.float32)
    mesh.vertices.foreach_get("co", positions)
    return positions.reshape(-1, 3)
