"""The materials of generated objects, and the data they read: a colour attribute, or a baked texture.

Vertex colours: one shared material, *TripoSR Vertex Color*, whose Base Color reads the mesh's colour
attribute (what makes Cycles and EEVEE render it and the glTF exporter write COLOR_0). A baked texture: the
image packed into the .blend, a UV map, and a material of its own whose Base Color reads the image through
that UV map (glTF: baseColorTexture and TEXCOORD_0); a decimated mesh's normal map goes through a Normal Map
node into the shader's Normal (glTF: normalTexture).

Runs on Blender's main thread only. The arrays come from the core (through the worker); this module never
imports the core's PyTorch parts, so registering the add-on never imports torch.
"""

from pathlib import Path

import bpy
import numpy as np

from ..core.color import srgb_to_linear

MATERIAL_NAME = "TripoSR Vertex Color"
COLOR_ATTRIBUTE = "Color"
# Marks the material as ours, so a user's own material that happens to share the name is never rewired.
MATERIAL_TAG = "triposr_blender"
# Marks the add-on's texture materials: re-meshing gives them the new bake rather than a new material.
TEXTURE_TAG = "triposr_texture"
UV_MAP = "UVMap"
# The texture material's nodes, by name, so a new bake finds them again.
COLOR_NODE = "TripoSR Color"
NORMAL_NODE = "TripoSR Normal"
NORMAL_MAP_NODE = "TripoSR Normal Map"
TEXTURE_FILE_FORMAT = "PNG"


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


def new_packed_image(name: str, rgba: np.ndarray) -> bpy.types.Image:
    """An sRGB image holding ``rgba``, packed into the .blend as PNG so the file carries it."""
    height, width = rgba.shape[:2]
    image = bpy.data.images.new(name, width, height, alpha=True)
    try:
        image.pixels.foreach_set(np.ascontiguousarray(rgba, np.float32).ravel() / 255.0)
        image.pack()
    except Exception:
        bpy.data.images.remove(image)
        raise
    return image


def new_normal_image(name: str, rgb: np.ndarray) -> bpy.types.Image:
    """A packed Non-Color image holding a normal map's (S, S, 3) values as they are."""
    rgba = np.concatenate([rgb, np.full((*rgb.shape[:2], 1), 255, np.uint8)], axis=2)
    image = new_packed_image(name, rgba)
    image.alpha_mode = "NONE"
    image.colorspace_settings.name = "Non-Color"
    return image


def add_uv_map(mesh: bpy.types.Mesh, corner_uvs: np.ndarray) -> None:
    """A UV map from per-corner UVs; the mesh's corners must follow its faces in order, 3 per triangle
    (as ``mesh_builder.new_mesh`` lays them out)."""
    layer = mesh.uv_layers.new(name=UV_MAP)
    # The attribute API copies the whole array at once; layer.uv.foreach_set goes element by element.
    mesh.attributes[layer.name].data.foreach_set(
        "vector", np.ascontiguousarray(corner_uvs, np.float32).ravel()
    )


def new_texture_material(
    name: str, image: bpy.types.Image, normal_image: bpy.types.Image | None = None
) -> bpy.types.Material:
    """Principled BSDF with Base Color from ``image`` (and its Normal from ``normal_image``); the image's
    alpha stays unconnected, since it only marks texels outside the UV layout."""
    material, texture = new_base_color_material(name, "ShaderNodeTexImage")
    material[TEXTURE_TAG] = True
    texture.name = COLOR_NODE
    texture.image = image
    set_normal_map(material, normal_image)
    return material


def is_texture_material(material: bpy.types.Material) -> bool:
    return bool(material.get(TEXTURE_TAG))


def use_bake(
    material: bpy.types.Material, image: bpy.types.Image, normal_image: bpy.types.Image | None
) -> None:
    """Point the add-on's texture material at a new bake (a normal map added or taken away with it); the old
    images go if nothing else shows them."""
    old = material_images(material)
    nodes = material.node_tree.nodes
    # Materials from before the nodes had names hold one image node: the colour's.
    color = nodes.get(COLOR_NODE) or next(node for node in nodes if node.bl_idname == "ShaderNodeTexImage")
    color.image = image
    set_normal_map(material, normal_image)
    for previous in old:
        if previous.users == 0:
            bpy.data.images.remove(previous)


def set_normal_map(material: bpy.types.Material, image: bpy.types.Image | None) -> None:
    """Wire ``image`` as the material's tangent-space normal map on the UV map, through a Normal Map node
    into the shader's Normal; None takes the map away."""
    nodes, links = material.node_tree.nodes, material.node_tree.links
    texture = nodes.get(NORMAL_NODE)
    if image is None:
        for node in (texture, nodes.get(NORMAL_MAP_NODE)):
            if node is not None:
                nodes.remove(node)
        return
    if texture is None:
        shader = next(node for node in nodes if node.bl_idname == "ShaderNodeBsdfPrincipled")
        texture = nodes.new("ShaderNodeTexImage")
        texture.name = texture.label = NORMAL_NODE
        texture.location = (shader.location.x - 600, shader.location.y - 320)
        normal_map = nodes.new("ShaderNodeNormalMap")
        normal_map.name = NORMAL_MAP_NODE
        normal_map.space = "TANGENT"
        normal_map.uv_map = UV_MAP
        normal_map.location = (shader.location.x - 250, shader.location.y - 320)
        links.new(texture.outputs["Color"], normal_map.inputs["Color"])
        links.new(normal_map.outputs["Normal"], shader.inputs["Normal"])
    texture.image = image


def textures_of(obj: bpy.types.Object) -> list[bpy.types.Image]:
    """The images the object's materials read through Image Texture nodes."""
    return [
        image
        for material in obj.data.materials
        if material is not None
        for image in material_images(material)
    ]


def material_images(material: bpy.types.Material) -> list[bpy.types.Image]:
    if material.node_tree is None:
        return []
    return [
        node.image
        for node in material.node_tree.nodes
        if node.bl_idname == "ShaderNodeTexImage" and node.image is not None
    ]


def remove_mesh(mesh: bpy.types.Mesh) -> None:
    """Remove a mesh, and the textured materials and images that only it used (a baked texture is
    megabytes: a long batch must not pile them up)."""
    materials = [material for material in mesh.materials if material is not None]
    bpy.data.meshes.remove(mesh)
    for material in materials:
        images = material_images(material)
        if images and material.users == 0:
            bpy.data.materials.remove(material)
            for image in images:
                if image.users == 0:
                    bpy.data.images.remove(image)


def save_textures_beside(obj: bpy.types.Object, folder: Path) -> list[Path]:
    """Write the object's packed textures as PNG files into ``folder`` and point the images at them, so an
    exporter that references texture files (OBJ, FBX, USD) finds them next to the file it writes."""
    written = []
    for image in textures_of(obj):
        path = folder / f"{bpy.path.clean_name(image.name)}.png"
        image.filepath_raw = str(path)
        image.file_format = TEXTURE_FILE_FORMAT
        image.save()
        written.append(path)
    return written
