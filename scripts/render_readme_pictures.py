"""Render the README's pictures with the bpy wheel: ``.venv/bin/python scripts/render_readme_pictures.py``.

What the product makes, made by the product: the bench field's Suzanne (tests/fixtures/bench-field, a field of
the official model's size and shape that holds one known object) goes through the pipeline's own mesh stage,
the add-on's mesh builder makes the Blender object with its material, and Cycles renders it on the CPU:

- docs/images/generated.jpg: the mesh at resolution 256, with its Color Attribute;
- docs/images/game-ready.jpg: the same decimated to 3,000 faces with a baked 1024 texture (and normal map),
  beside its wireframe;
- docs/images/normal-map.jpg: that light mesh without its normal map and with it;
- docs/images/quads.jpg: the mesh quad-remeshed to 3,000 quads with its colors, beside its wireframe;
- docs/images/smoothing.jpg: the bench field with noise on every triplane texel (the lumps users see), as
  extracted and with Smoothing 0.5;
- docs/images/photo-texture.jpg: scripts/bench_photo_texture.py's photo (Cycles' render of the true Suzanne,
  with a fine pattern only the photo holds), then the mesh with a 1024 texture baked from the model's
  colours alone, and with Photo Texture.

About four minutes on two cores. No GPU, no network, no real weights. ``photo-texture`` as the only
argument renders that picture alone.
"""

import dataclasses
import math
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

import bpy  # noqa: E402
from bench_field import THRESHOLD, load_bench_field, noisy_copy  # noqa: E402
from PIL import Image  # noqa: E402

from triposr_blender.backends.types import MeshResult  # noqa: E402
from triposr_blender.blender import mesh_builder  # noqa: E402
from triposr_blender.blender.placement import Destination  # noqa: E402
from triposr_blender.blender.quad_remesh import quad_remesh  # noqa: E402
from triposr_blender.core import photo_texture, progress  # noqa: E402
from triposr_blender.core.texture import bake_texture  # noqa: E402
from triposr_blender.options import MeshOptions  # noqa: E402
from triposr_blender.worker.pipeline import mesh_from_scene  # noqa: E402

IMAGES = REPO / "docs" / "images"
SIZE = (960, 600)
SAMPLES = 48


def scene_with_camera_and_light() -> None:
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = SAMPLES
    scene.render.resolution_x, scene.render.resolution_y = SIZE
    scene.render.film_transparent = False
    scene.render.image_settings.file_format, scene.render.image_settings.quality = "JPEG", 90
    scene.view_settings.view_transform = "Standard"
    world = bpy.data.worlds.new("Studio")
    world.use_nodes = True
    world.node_tree.nodes["Background"].inputs["Color"].default_value = (0.18, 0.18, 0.2, 1.0)
    scene.world = world
    camera = bpy.data.objects.new("Camera", bpy.data.cameras.new("Camera"))
    camera.location = (0.0, -7.5, 2.2)
    camera.data.lens = 50
    scene.collection.objects.link(camera)
    scene.camera = camera
    for name, location, energy in (
        ("Key", (-3, -4, 5), 900),
        ("Fill", (4, -3, 2), 300),
        ("Rim", (0, 4, 4), 500),
    ):
        light = bpy.data.objects.new(name, bpy.data.lights.new(name, "AREA"))
        light.data.energy, light.data.size = energy, 3.0
        light.location = location
        light.rotation_euler = (-light.location).to_track_quat("-Z", "Y").to_euler()  # at the object
        scene.collection.objects.link(light)


def facing_the_camera(*objects, turned: bool = False) -> None:
    """The bench field holds Suzanne in Blender's axes, not a TripoSR output's: the builder's turn from the
    model's front (+X) to Blender's (-Y) leaves her facing -X, so she turns back a quarter (unless she was
    ``turned`` to face +X already, as Photo Texture's benchmark does); and the camera aims at the middle of
    what is shown."""
    from mathutils import Vector

    corners = []
    for obj in objects:
        obj.rotation_euler.z += 0.0 if turned else math.radians(90)
        bpy.context.view_layer.update()
        corners += [obj.matrix_world @ Vector(corner) for corner in obj.bound_box]
    middle = sum(corners, Vector()) / len(corners)
    target = bpy.data.objects.new("Aim", None)
    target.location = middle
    bpy.context.scene.collection.objects.link(target)
    aim = bpy.context.scene.camera.constraints.new("TRACK_TO")
    aim.target, aim.track_axis, aim.up_axis = target, "TRACK_NEGATIVE_Z", "UP_Y"


def render(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    bpy.context.scene.render.filepath = str(path)
    bpy.ops.render.render(write_still=True)
    print(f"wrote {path}")


def main() -> None:
    if sys.argv[1:] == ["photo-texture"]:
        photo_texture_picture()
        return
    model, scene_codes = load_bench_field()

    def made(codes, **options):
        return mesh_from_scene(
            model, codes, MeshOptions(resolution=256, threshold=THRESHOLD, **options), progress.ignore
        )

    scene_with_camera_and_light()
    generated = made(scene_codes)
    facing_the_camera(
        mesh_builder.build_object(bpy.context, "Generated", generated, Destination(target_size=2.4))
    )
    render(IMAGES / "generated.jpg")

    game_ready = made(scene_codes, target_faces=3000, texture_size=1024)
    _, wireframe = side_by_side(game_ready, game_ready)
    as_wireframe(wireframe)
    render(IMAGES / "game-ready.jpg")

    without_map = dataclasses.replace(game_ready.texture, normal_image=None)
    side_by_side(dataclasses.replace(game_ready, texture=without_map), game_ready)
    render(IMAGES / "normal-map.jpg")

    for obj in side_by_side(generated, generated):
        quad_remesh(bpy.context, obj, 3000)
    as_wireframe(obj)
    render(IMAGES / "quads.jpg")

    noisy = noisy_copy(scene_codes)
    side_by_side(made(noisy), made(noisy, smoothing=0.5))
    render(IMAGES / "smoothing.jpg")
    photo_texture_picture()


def photo_texture_picture() -> None:
    """The benchmark's photo, then its mesh baked without and with Photo Texture."""
    import bench_photo_texture as bench  # beside this script

    field = bench.Field()
    mesh = field.mesh(256)
    with tempfile.TemporaryDirectory() as folder:
        photo = bench.framed(
            bench.render_photo(bench.true_mesh(field), bench.Shot(), Path(folder)), Path(folder)
        )
    projection = photo_texture.PhotoProjection(mesh, photo, photo_texture.fit_camera(mesh, photo).camera)
    without, with_photo = (
        MeshResult(mesh, bake_texture(mesh, field.colors, 1024, photo=photo)) for photo in (None, projection)
    )
    side_by_side(without, with_photo, turned=True)
    path = IMAGES / "photo-texture.jpg"
    render(path)
    # the photo on the left, on the grey of the render's background, as tall as the render
    rendered = Image.open(path)
    crop = Image.fromarray(photo.pixels)
    crop.thumbnail((rendered.height - 40, rendered.height - 40))
    picture = Image.new("RGB", (rendered.width + rendered.height, rendered.height), (46, 46, 51))
    picture.paste(crop, ((rendered.height - crop.width) // 2, (rendered.height - crop.height) // 2), crop)
    picture.paste(rendered, (rendered.height, 0))
    picture.save(path, quality=90)


def as_wireframe(obj) -> None:
    modifier = obj.modifiers.new("Wireframe", "WIREFRAME")
    modifier.thickness, modifier.use_even_offset = 0.008, False  # even offset spikes at acute corners


def side_by_side(left_result, right_result, turned: bool = False):
    """A fresh scene with the two results beside each other, facing the camera: (left, right) objects."""
    scene_with_camera_and_light()
    left = mesh_builder.build_object(bpy.context, "Left", left_result, Destination((-1.4, 0, 0), 2.2))
    right = mesh_builder.build_object(bpy.context, "Right", right_result, Destination((1.4, 0, 0), 2.2))
    facing_the_camera(left, right, turned=turned)
    return left, right


if __name__ == "__main__":
    main()
