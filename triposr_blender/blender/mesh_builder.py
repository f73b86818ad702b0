"""Turn a worker's ``MeshResult`` into a Blender object: fast ``foreach_set`` building, colours, material.

Runs on Blender's main thread only. Everything it creates is removed again if any step fails, so a
failed build leaves the file as it was.
"""

import dataclasses

import bpy
import numpy as np
from mathutils import Matrix

from ..backends.types import MeshResult
from ..core.orientation import transform
from ..core.result_archive import ResultError
from ..options import GenerateOptions
from . import materials, placement, source


def build_object(
    context: bpy.types.Context,
    name: str,
    result: MeshResult,
    where: placement.Destination,
    shade_smooth: bool = True,
    options: GenerateOptions | None = None,
) -> bpy.types.Object:
    """Create the coloured, placed object in the active collection, selected and active.

    A result with a baked texture gets its own textured material and a UV map, and no vertex colours: glTF
    viewers multiply COLOR_0 into the base colour, which would darken the texture. Otherwise the mesh keeps
    its vertex colours and the shared vertex-colour material. A result that carries its scene codes makes a
    TripoSR object (``source``), re-meshable later; ``options`` are what it was made with.
    """
    created: list[bpy.types.ID] = []
    try:
        model_to_object, world = placement.fit(result.mesh.vertices, where)
        mesh = new_mesh(name, transform(model_to_object, result.mesh.vertices), result.mesh.faces)
        created.append(mesh)
        shade(mesh, shade_smooth)
        mesh.materials.append(colour_mesh(mesh, name, result, None, created))
        obj = bpy.data.objects.new(name, mesh)
        created.append(obj)
        obj.matrix_world = Matrix(world.tolist())  # a bare nested list would be read column by column
        if result.codes:
            photo = source.packed_photo(result.photo)
            made_from = source.Source(result.codes, options or GenerateOptions(), model_to_object, **photo)
            source.store(obj, made_from)
        (context.collection or context.scene.collection).objects.link(obj)
        select_only(context, obj)
        return obj
    except Exception:
        remove_datablocks(reversed(created))
        raise


def replace_mesh(obj: bpy.types.Object, result: MeshResult, options: GenerateOptions) -> None:
    """Give a TripoSR object a new mesh from its own scene codes, in place: the object, its transform,
    parent, collections and modifiers stay, and so do its material slots (the first becomes the texture
    material, or the vertex-colour one, when the colour mode changes). The old mesh goes if nothing else
    uses it. ``options`` are recorded as what the object is now made with."""
    made_from = source.source_of(obj)
    old = obj.data
    created: list[bpy.types.ID] = []
    try:
        vertices = transform(made_from.model_to_object, result.mesh.vertices)
        mesh = new_mesh(old.name, vertices, result.mesh.faces)
        created.append(mesh)
        shade(mesh, is_smooth(old))
        for material in old.materials:
            mesh.materials.append(material)
        first = colour_mesh(mesh, obj.name, result, old.materials[0] if old.materials else None, created)
        if mesh.materials:
            mesh.materials[0] = first
        else:
            mesh.materials.append(first)
    except Exception:
        remove_datablocks(reversed(created))
        raise
    obj.data = mesh
    codes = result.codes or made_from.codes  # the photo goes along as it is stored
    source.store(obj, dataclasses.replace(made_from, codes=codes, options=options))
    if old.users == 0:
        name = old.name
        materials.remove_mesh(old)
        mesh.name = name  # the new mesh takes the old one's name, now free


def colour_mesh(
    mesh: bpy.types.Mesh, name: str, result: MeshResult, current: bpy.types.Material | None, created: list
) -> bpy.types.Material:
    """Give ``mesh`` its colours and return the material that shows them; new datablocks go to ``created``.

    ``current`` is the material the mesh had before (re-meshing): a user's own is kept for vertex colours,
    and a texture material of the add-on's gets the new images instead of a second material.
    """
    texture = result.texture
    if texture is not None:
        image = materials.new_packed_image(f"{name} Color", texture.image)
        created.append(image)
        normal_image = None
        if texture.normal_image is not None:
            normal_image = materials.new_normal_image(f"{name} Normal", texture.normal_image)
            created.append(normal_image)
        materials.add_uv_map(mesh, texture.corner_uvs)
        if current is not None and materials.is_texture_material(current):
            materials.use_bake(current, image, normal_image)
            return current
        material = materials.new_texture_material(name, image, normal_image)
        created.append(material)
        return material
    materials.add_vertex_colors(mesh, result.mesh.vertex_colors)
    if current is not None and not materials.is_texture_material(current):
        return current
    material = materials.find_vertex_color_material()
    if material is None:
        material = materials.new_vertex_color_material()
        created.append(material)
    return material


def is_smooth(mesh: bpy.types.Mesh) -> bool:
    return bool(len(mesh.polygons)) and mesh.polygons[0].use_smooth


def new_mesh(name: str, vertices: np.ndarray, faces: np.ndarray) -> bpy.types.Mesh:
    """A triangle mesh from arrays, written with ``foreach_set`` (no Python loop over elements).

    Positions and corner vertices go through the attribute API, which copies whole arrays, where
    ``vertices.foreach_set("co")`` and ``loops.foreach_set("vertex_index")`` go element by element
    (100× slower for the corners). Blender derives the edges in ``update()`` faster than numpy can.
    """
    if len(faces) and not 0 <= faces.min() <= faces.max() < len(vertices):
        # The last guard, whatever the mesh came from: Blender would build corners naming missing vertices.
        raise ResultError(
            f"The mesh's faces name vertex {int(faces.max())} and it has {len(vertices)} vertices: it is "
            "damaged, and nothing was made."
        )
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
