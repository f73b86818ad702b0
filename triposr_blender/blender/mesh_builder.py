"""Turn a worker's ``MeshResult`` into a Blender object: fast ``foreach_set`` building, colours, material.

Runs on Blender's main thread only. Everything it creates is removed again if any step fails, so a
failed build leaves the file as it was.
"""

import bpy
import numpy as np
from mathutils import Matrix

from ..worker.protocol import MeshResult
from . import materials, placement


def build_object(
    context: bpy.types.Context,
    name: str,
    result: MeshResult,
    where: placement.Destination,
    shade_smooth: bool = True,
) -> bpy.types.Object:
    """Create the coloured, placed object in the active collection, selected and active.

    A result with a baked texture gets its own textured material and a UV map, and no vertex colours: glTF
    viewers multiply COLOR_0 into the base colour, which would darken the texture. Otherwise the mesh keeps
    its vertex colours and the shared vertex-colour material.
    """
    created: list[bpy.types.ID] = []
    try:
        vertices, matrix = placement.placed_vertices_and_matrix(result.mesh.vertices, where)
        mesh = new_mesh(name, vertices, result.mesh.faces)
        created.append(mesh)
        shade(mesh, shade_smooth)
        mesh.materials.append(colour_mesh(mesh, name, result, created))
        obj = bpy.data.objects.new(name, mesh)
        created.append(obj)
        obj.matrix_world = Matrix(matrix.tolist())  # a bare nested list would be read column by column
        (context.collection or context.scene.collection).objects.link(obj)
        select_only(context, obj)
        return obj
    except Exception:
        remove_datablocks(reversed(created))
        raise


def colour_mesh(mesh: bpy.types.Mesh, name: str, result: MeshResult, created: list) -> bpy.types.Material:
    """Give ``mesh`` its colours and return the material that shows them; new datablocks go to ``created``."""
    if result.texture is not None:
        image = materials.new_packed_image(f"{name} Color", result.texture.image)
        created.append(image)
        material = materials.new_texture_material(name, image)
        created.append(material)
        materials.add_uv_map(mesh, result.texture.corner_uvs)
        return material
    materials.add_vertex_colors(mesh, result.mesh.vertex_colors)
    material = materials.find_vertex_color_material()
    if material is None:
        material = materials.new_vertex_color_material()
        created.append(material)
    return material


def new_mesh(name: str, vertices: np.ndarray, faces: np.ndarray) -> bpy.types.Mesh:
    """A triangle mesh from arrays, written with ``foreach_set`` (no Python loop over elements).

    Positions and corner vertices go through the attribute API, which copies whole arrays, where
    ``vertices.foreach_set("co")`` and ``loops.foreach_set("vertex_index")`` go element by element
    (100× slower for the corners). Blender derives the edges in ``update()`` faster than numpy can.
    """
    face_count = len(faces)
    mesh = bpy.data.meshes.new(name)
    mesh.vertices.add(len(vertices))
    mesh.attributes["position"].data.foreach_set("vector", np.ascontiguousarray(vertices, np.float32).ravel())
    mesh.loops.add(3 * face_count)
    mesh.attributes[".corner_vert"].data.foreach_set("value", np.ascontiguousarray(faces, np.int32).ravel())
    mesh.polygons.add(face_count)
    mesh.polygons.foreach_set("loop_start", np.arange(0, 3 * face_count, 3, dtype=np.int32))
    mesh.update()
    return mesh


def shade(mesh: bpy.types.Mesh, smooth: bool) -> None:
    if smooth:
        mesh.shade_smooth()
    else:
        mesh.shade_flat()


def select_only(context: bpy.types.Context, obj: bpy.types.Object) -> None:
    for other in context.view_layer.objects.selected:
        # None stands where an object was deleted (bpy.data.objects.remove) until the view layer syncs.
        if other is not None:
            other.select_set(False)
    obj.select_set(True)
    context.view_layer.objects.active = obj


def remove_datablocks(datablocks) -> None:
    for datablock in datablocks:
        if isinstance(datablock, bpy.types.Object):
            bpy.data.objects.remove(datablock)
        elif isinstance(datablock, bpy.types.Mesh):
            bpy.data.meshes.remove(datablock)
        elif isinstance(datablock, bpy.types.Image):
            bpy.data.images.remove(datablock)
        else:
            bpy.data.materials.remove(datablock)


def remove_object(obj: bpy.types.Object) -> None:
    """Delete the object, and its mesh (with its baked texture) unless something else uses it: a long batch
    must not pile up meshes and images."""
    mesh = obj.data if obj.type == "MESH" else None
    bpy.data.objects.remove(obj)
    if mesh is not None and mesh.users == 0:
        materials.remove_mesh(mesh)
