"""A baked colour texture on a generated object: the image packed into the .blend, a UV map, and a material
whose Base Color reads the image through that UV map (glTF: baseColorTexture and TEXCOORD_0).

Runs on Blender's main thread only. The texture arrays come from the core's ``bake_texture`` (through the
worker); this module never imports the core, so registering the add-on never imports torch.
"""

from dataclasses import dataclass
from pathlib import Path

import bpy
import numpy as np

from . import mesh_builder

UV_MAP = "UVMap"
TEXTURE_FILE_FORMAT = "PNG"


@dataclass(frozen=True)
class BakedTexture:
    """The core's bake: UVs per face corner and the RGBA image they map into."""

    corner_uvs: np.ndarray  # (F, 3, 2) float32, corners in the order of the mesh's faces
    image: np.ndarray  # (S, S, 4) uint8, sRGB; row 0 is the bottom (v = 0), as in Blender's Image.pixels


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


def add_uv_map(mesh: bpy.types.Mesh, corner_uvs: np.ndarray) -> None:
    """A UV map from per-corner UVs; the mesh's corners must follow its faces in order, 3 per triangle
    (as ``mesh_builder.new_mesh`` lays them out)."""
    layer = mesh.uv_layers.new(name=UV_MAP)
    # The attribute API copies the whole array at once; layer.uv.foreach_set goes element by element.
    mesh.attributes[layer.name].data.foreach_set(
        "vector", np.ascontiguousarray(corner_uvs, np.float32).ravel()
    )


def new_texture_material(name: str, image: bpy.types.Image) -> bpy.types.Material:
    """Principled BSDF with Base Color from ``image``; the image's alpha stays unconnected, since it only
    marks texels outside the UV layout."""
    material, texture = mesh_builder.new_base_color_material(name, "ShaderNodeTexImage")
    texture.image = image
    return material


def build_textured_object(
    context: bpy.types.Context,
    name: str,
    generated: mesh_builder.GeneratedMesh,
    where: mesh_builder.Placement,
    texture: BakedTexture,
    shade_smooth: bool = True,
) -> bpy.types.Object:
    """``mesh_builder.build_object``, coloured by the baked texture instead of vertex colours.

    Everything created is removed again if a step fails, so a failure leaves the file as it was.
    """
    image = new_packed_image(f"{name} Color", texture.image)
    material = None
    obj = None
    try:
        material = new_texture_material(name, image)
        obj = mesh_builder.build_object(context, name, generated, where, shade_smooth, material=material)
        add_uv_map(obj.data, texture.corner_uvs)
        return obj
    except Exception:
        if obj is not None:
            mesh = obj.data
            bpy.data.objects.remove(obj)
            bpy.data.meshes.remove(mesh)
        if material is not None:
            bpy.data.materials.remove(material)
        bpy.data.images.remove(image)
        raise


def build_result_object(
    context: bpy.types.Context,
    name: str,
    result: dict,
    where: mesh_builder.Placement,
    shade_smooth: bool = True,
) -> bpy.types.Object:
    """The object for a worker's generate result: textured when it carries a bake, else vertex-coloured."""
    arrays = result["mesh"]
    generated = mesh_builder.GeneratedMesh(arrays["vertices"], arrays["faces"], arrays["vertex_colors"])
    if "texture" not in result:
        return mesh_builder.build_object(context, name, generated, where, shade_smooth)
    texture = BakedTexture(result["texture"]["corner_uvs"], result["texture"]["image"])
    return build_textured_object(context, name, generated, where, texture, shade_smooth)


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
