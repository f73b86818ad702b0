"""Turn the core's numpy mesh into a Blender object: fast ``foreach_set`` building, vertex colours, material.

Runs on Blender's main thread only. Everything it creates is removed again if any step fails, so a
failed build leaves the file as it was.
"""

from dataclasses import dataclass

import bpy
import numpy as np
from mathutils import Matrix

from . import placement

MATERIAL_NAME = "TripoSR Vertex Color"
COLOR_ATTRIBUTE = "Color"
# Marks the material as ours, so a user's own material that happens to share the name is never rewired.
MATERIAL_TAG = "triposr_blender"


@dataclass(frozen=True)
class GeneratedMesh:
    """The core's output in TripoSR's model space (see ``placement`` for that frame)."""

    vertices: np.ndarray  # (V, 3) float32
    faces: np.ndarray  # (F, 3) integer, wound so normals point out of the object
    vertex_colors: np.ndarray  # (V, 3) float32, sRGB in [0, 1]


@dataclass(frozen=True)
class Placement:
    """Where the object goes: at ``location``, longest side ``target_size``; or in an image empty."""

    location: tuple[float, float, float] = (0.0, 0.0, 0.0)
    target_size: float = 2.0
    front_axis: str = placement.DEFAULT_FRONT_AXIS
    picture: placement.PictureFrame | None = None


def srgb_to_linear(srgb: np.ndarray) -> np.ndarray:
    """The sRGB transfer function, inverted: TripoSR predicts display colours, Blender stores linear ones."""
    srgb = np.clip(srgb, 0.0, 1.0)
    return np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4).astype(np.float32)


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


def add_vertex_colors(mesh: bpy.types.Mesh, srgb: np.ndarray) -> None:
    """Store per-vertex colours as the mesh's active and render colour attribute."""
    rgba = np.ones((len(srgb), 4), dtype=np.float32)
    rgba[:, :3] = srgb_to_linear(srgb)
    attribute = mesh.color_attributes.new(COLOR_ATTRIBUTE, "FLOAT_COLOR", "POINT")
    attribute.data.foreach_set("color", rgba.ravel())
    mesh.color_attributes.active_color = attribute
    mesh.color_attributes.render_color_index = mesh.color_attributes.active_color_index


def find_vertex_color_material() -> bpy.types.Material | None:
    """Ours is found by its tag, not its name: a user's namesake pushes ours to "TripoSR Vertex Color.001"."""
    return next((material for material in bpy.data.materials if material.get(MATERIAL_TAG)), None)


def new_base_color_material(name: str, source_node_type: str) -> tuple[bpy.types.Material, bpy.types.Node]:
    """A Principled BSDF material whose Base Color comes from a new node of ``source_node_type``."""
    material = bpy.data.materials.new(name)
    if material.node_tree is None:  # Blender 4.x materials start without nodes; 5.0 always has them
        material.use_nodes = True
    nodes = material.node_tree.nodes
    shader = next(node for node in nodes if node.bl_idname == "ShaderNodeBsdfPrincipled")
    source = nodes.new(source_node_type)
    source.location = (shader.location.x - 400, shader.location.y)
    material.node_tree.links.new(source.outputs["Color"], shader.inputs["Base Color"])
    return material, source


def new_vertex_color_material() -> bpy.types.Material:
    """The material generated meshes share: Base Color from the colour attribute.

    Wiring the attribute through a Color Attribute node (rather than only showing it in the viewport)
    is what makes Cycles and EEVEE render it and the glTF exporter write it as COLOR_0.
    """
    material, color = new_base_color_material(MATERIAL_NAME, "ShaderNodeVertexColor")
    material[MATERIAL_TAG] = True
    color.layer_name = COLOR_ATTRIBUTE
    return material


def shade(mesh: bpy.types.Mesh, smooth: bool) -> None:
    if smooth:
        mesh.shade_smooth()
    else:
        mesh.shade_flat()


def placed_vertices_and_matrix(vertices: np.ndarray, where: Placement) -> tuple[np.ndarray, np.ndarray]:
    """Vertices in the object's own frame (origin at the bottom centre) and the object's world matrix."""
    if where.picture is not None:
        rotation = placement.model_to_blender_rotation(placement.DEFAULT_FRONT_AXIS)
        placed = placement.place_vertices(vertices, rotation, where.picture.size)
        return placed, where.picture.object_matrix(mesh_height=float(placed[:, 2].max(initial=0.0)))
    rotation = placement.model_to_blender_rotation(where.front_axis)
    placed = placement.place_vertices(vertices, rotation, where.target_size)
    matrix = np.eye(4)
    matrix[:3, 3] = where.location
    return placed, matrix


def build_object(
    context: bpy.types.Context,
    name: str,
    generated: GeneratedMesh,
    where: Placement,
    shade_smooth: bool = True,
    material: bpy.types.Material | None = None,
) -> bpy.types.Object:
    """Create the coloured, placed object in the active collection, selected and active.

    With ``material`` (a baked texture's, see ``texture_material``) the mesh gets that material and no
    vertex colours: glTF viewers multiply COLOR_0 into the base colour, which would darken the texture.
    """
    created: list[bpy.types.ID] = []
    try:
        vertices, matrix = placed_vertices_and_matrix(generated.vertices, where)
        mesh = new_mesh(name, vertices, generated.faces)
        created.append(mesh)
        shade(mesh, shade_smooth)
        if material is None:
            add_vertex_colors(mesh, generated.vertex_colors)
            material = find_vertex_color_material()
            if material is None:
                material = new_vertex_color_material()
                created.append(material)
        mesh.materials.append(material)
        obj = bpy.data.objects.new(name, mesh)
        created.append(obj)
        obj.matrix_world = Matrix(matrix.tolist())  # a bare nested list would be read column by column
        (context.collection or context.scene.collection).objects.link(obj)
        select_only(context, obj)
        return obj
    except Exception:
        remove_datablocks(reversed(created))
        raise


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
        else:
            bpy.data.materials.remove(datablock)
