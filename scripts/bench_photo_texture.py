"""Photo Texture on the benchmark field: how much of a photo's detail reaches the texture, whether the camera
fit finds the photo's camera, and what it costs. No real weights.

- The "photo": the true Suzanne (the benchmark field's shape), turned to face the input camera, coloured
  with the field's own colour plus a fine pattern (so the model's colours hold the coarse part and only
  the photo the detail), rendered by Cycles (emission only, raw colours) from the camera under test, pasted
  off-centre on a larger transparent canvas and read through the product's own framing
  (``core.preprocess.prepare_input``).
- The "generated" mesh: the field extracted at --resolution (threshold 25, floaters removed), which
  mismatches the true shape a little, as a real one would; its colours are the field's.
- Measures, each with and without the photo: the error on covered pixels from the photo's camera (the
  photo itself is the truth there); from ±45° and from behind, against the true surface rendered by the
  core's renderer, on what the photo does not show (no leak), and on the band where the photo's weight
  falls off (no seam); the same input view with vertex colours (Color Attribute), at resolutions 128 and 256;
  the camera fit (overlap, and projected or not) for each camera perturbation; the time the photo adds at
  each texture size, stage by stage (the UV unwrap, whose time varies by tens of seconds from run to run,
  is the same with and without); and an independent check of the camera: Cycles' outline of the true
  shape against the core renderer's from the same camera.

    .venv/bin/python scripts/bench_photo_texture.py [--resolution 256] [--texture-sizes 1024 2048] [--quick]
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

import numpy as np  # noqa: E402
import torch  # noqa: E402
from bench_field import THRESHOLD, load_bench_field, suzanne_triangles  # noqa: E402
from PIL import Image  # noqa: E402
from shapes import covered_texels  # noqa: E402

from triposr_blender.core import photo_texture  # noqa: E402
from triposr_blender.core.floaters import remove_floaters  # noqa: E402
from triposr_blender.core.mesh import Mesh  # noqa: E402
from triposr_blender.core.orientation import rotation_about_z  # noqa: E402
from triposr_blender.core.preprocess import prepare_input  # noqa: E402
from triposr_blender.core.preview import FIELD_OF_VIEW, Camera, depth_buffer, surface_colors  # noqa: E402
from triposr_blender.core.texture import POINTS_PER_QUERY, bake_texture  # noqa: E402

# Suzanne faces -Y in the field; turned +90° about Z, she faces the input camera on +X.
TURN = rotation_about_z(90.0)
PATTERN_PERIOD = 0.05  # model units: about 35 photo pixels, 21 texels at 1024, 1.8 of the field's samples
PATTERN_AMPLITUDE = 0.12
PHOTO_SIZE = 1600  # Cycles' render, square
# The render sees this much more than the field of view under test (the same camera, a larger sensor), so
# that no camera tried crops the object: at distance 1.6 Suzanne is wider than a 40° view.
WIDER = 1.4
CANVAS = (2000, 1800)  # the photo it is pasted into, off-centre
PASTE = (260, 90)
VIEW_SIZE = 512
SIDE_VIEWS = {"+45°": 45.0, "-45°": -45.0, "behind": 180.0}


@dataclass(frozen=True)
class Shot:
    """A photo's camera: distance from the origin, elevation (degrees), vertical field of view (degrees)."""

    distance: float = 1.9
    elevation: float = 0.0
    fov: float = FIELD_OF_VIEW

    @property
    def rendered_fov(self) -> float:
        """The vertical field of view of the render, ``WIDER`` than the camera's."""
        return math.degrees(2 * math.atan(WIDER * math.tan(math.radians(self.fov) / 2)))

    def camera(self, samples: int, azimuth: float = 0.0) -> Camera:
        """The render's camera, at ``samples`` pixels a side."""
        zoom = math.tan(math.radians(FIELD_OF_VIEW) / 2) / math.tan(math.radians(self.rendered_fov) / 2)
        return Camera.orbit(azimuth, self.elevation, self.distance, samples, zoom=zoom)

    def __str__(self) -> str:
        return f"distance {self.distance:.1f}, elevation {self.elevation:+.0f}°, fov {self.fov:.0f}°"


PERTURBATIONS = [
    Shot(),
    Shot(distance=1.6),
    Shot(distance=2.2),
    Shot(elevation=10.0),
    Shot(elevation=-10.0),
    Shot(fov=30.0),
    Shot(fov=50.0),
]
OUTSIDE = [Shot(elevation=30.0), Shot(elevation=-30.0)]


def pattern(points: np.ndarray) -> np.ndarray:
    waves = np.sin(2 * np.pi * points[:, 1] / PATTERN_PERIOD) * np.sin(
        2 * np.pi * points[:, 2] / PATTERN_PERIOD
    )
    return PATTERN_AMPLITUDE * waves


class Field:
    """The benchmark field turned to face +X: its colours at any point, and its extracted mesh."""

    def __init__(self):
        self.model, self.scene = load_bench_field()

    def colors(self, points: np.ndarray) -> np.ndarray:
        unturned = torch.from_numpy((np.asarray(points, np.float64) @ TURN).astype(np.float32))
        with torch.no_grad():
            return self.model.query(self.scene, unturned)["color"].numpy()

    def mesh(self, resolution: int) -> Mesh:
        mesh = self.model.extract_mesh(self.scene, resolution=resolution, threshold=THRESHOLD)
        mesh = remove_floaters(mesh, 0.05)
        vertices = (mesh.vertices.astype(np.float64) @ TURN.T).astype(np.float32)
        return Mesh(vertices, mesh.faces, self.colors(vertices))


def true_mesh(field: Field) -> Mesh:
    """The true Suzanne, turned, with the field's colours at its vertices (the pattern is added per point)."""
    triangles = suzanne_triangles().reshape(-1, 3) @ TURN.T
    vertices, faces = np.unique(triangles.round(9), axis=0, return_inverse=True)
    faces = faces.reshape(-1, 3).astype(np.int64)
    return Mesh(vertices.astype(np.float32), faces, field.colors(vertices))


def render_photo(truth: Mesh, shot: Shot, folder: Path) -> np.ndarray:
    """Cycles' render of the true surface (field colour plus pattern, raw) from ``shot``: (S, S, 4) uint8."""
    import bpy
    from mathutils import Matrix

    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = 16
    scene.cycles.use_denoising = False
    scene.cycles.max_bounces = 0
    scene.render.film_transparent = True
    scene.render.resolution_x = scene.render.resolution_y = PHOTO_SIZE
    scene.render.resolution_percentage = 100
    scene.view_settings.view_transform = "Raw"
    scene.render.image_settings.file_format = "PNG"
    scene.render.image_settings.color_mode = "RGBA"

    data = bpy.data.meshes.new("truth")
    data.from_pydata(truth.vertices.tolist(), [], truth.faces.tolist())
    data.shade_smooth()
    attribute = data.color_attributes.new("field", "FLOAT_COLOR", "POINT")
    rgba = np.concatenate([truth.vertex_colors, np.ones((len(truth.vertex_colors), 1), np.float32)], 1)
    attribute.data.foreach_set("color", rgba.ravel())
    material = bpy.data.materials.new("truth")
    if bpy.app.version < (5, 0, 0):
        material.use_nodes = True  # always on, and deprecated, from Blender 5.0
    build_emission(material.node_tree)
    data.materials.append(material)
    obj = bpy.data.objects.new("truth", data)
    scene.collection.objects.link(obj)

    camera = shot.camera(PHOTO_SIZE)
    camera_data = bpy.data.cameras.new("camera")
    camera_data.sensor_fit = "VERTICAL"
    camera_data.angle_y = math.radians(shot.rendered_fov)
    camera_object = bpy.data.objects.new("camera", camera_data)
    matrix = np.eye(4)
    matrix[:3, 0], matrix[:3, 1], matrix[:3, 2] = camera.axes[0], camera.axes[1], -camera.axes[2]
    matrix[:3, 3] = camera.eye
    camera_object.matrix_world = Matrix(matrix.tolist())  # mathutils reads rows
    scene.collection.objects.link(camera_object)
    scene.camera = camera_object
    scene.render.filepath = str(folder / "photo.png")
    bpy.ops.render.render(write_still=True)
    return np.asarray(Image.open(folder / "photo.png").convert("RGBA"))


def build_emission(tree) -> None:
    """Emission = the field's colour attribute + pattern(object coordinates): ``pattern`` in nodes."""
    nodes, links = tree.nodes, tree.links
    nodes.clear()
    output = nodes.new("ShaderNodeOutputMaterial")
    emission = nodes.new("ShaderNodeEmission")
    attribute = nodes.new("ShaderNodeAttribute")
    attribute.attribute_name = "field"
    coordinates = nodes.new("ShaderNodeTexCoord")
    separate = nodes.new("ShaderNodeSeparateXYZ")
    links.new(coordinates.outputs["Object"], separate.inputs[0])
    waves = []
    for axis in ("Y", "Z"):
        scale = nodes.new("ShaderNodeMath")
        scale.operation = "MULTIPLY"
        scale.inputs[1].default_value = 2 * math.pi / PATTERN_PERIOD
        links.new(separate.outputs[axis], scale.inputs[0])
        sine = nodes.new("ShaderNodeMath")
        sine.operation = "SINE"
        links.new(scale.outputs[0], sine.inputs[0])
        waves.append(sine)
    product = nodes.new("ShaderNodeMath")
    product.operation = "MULTIPLY"
    links.new(waves[0].outputs[0], product.inputs[0])
    links.new(waves[1].outputs[0], product.inputs[1])
    amplitude = nodes.new("ShaderNodeMath")
    amplitude.operation = "MULTIPLY"
    amplitude.inputs[1].default_value = PATTERN_AMPLITUDE
    links.new(product.outputs[0], amplitude.inputs[0])
    add = nodes.new("ShaderNodeVectorMath")
    add.operation = "ADD"
    links.new(attribute.outputs["Color"], add.inputs[0])
    links.new(amplitude.outputs[0], add.inputs[1])  # a float into a vector socket fills all three
    links.new(add.outputs[0], emission.inputs["Color"])
    links.new(emission.outputs[0], output.inputs["Surface"])


def framed(photo: np.ndarray, folder: Path):
    """The render pasted off-centre on a larger canvas, saved, and read through the product's framing."""
    canvas = Image.new("RGBA", CANVAS)
    canvas.paste(Image.fromarray(photo), PASTE)
    path = folder / "canvas.png"
    canvas.save(path)
    return prepare_input(path, remove_background=False).photo


@dataclass
class Picture:
    rgb: np.ndarray  # (N, 3) float, at every pixel (zero where empty)
    covered: np.ndarray  # (N,) bool
    points: np.ndarray  # (N, 3) the surface point (zero where empty)
    faces: np.ndarray
    weights: np.ndarray  # (N, 3)


def unlit(mesh: Mesh, camera: Camera, texture=None, truth: bool = False) -> Picture:
    """The mesh's own colours, unlit, from ``camera``: the texture's, or (``truth``) the vertex colours plus
    the pattern."""
    buffer = depth_buffer(mesh, camera, np.arange(len(mesh.faces)))
    covered = buffer.face >= 0
    seen = np.flatnonzero(covered)
    b12 = buffer.weights[seen].astype(np.float64)
    weights = np.concatenate([1 - b12.sum(1, keepdims=True), b12], 1)
    faces = buffer.face[seen]
    points = np.einsum("nk,nkj->nj", weights, mesh.vertices[mesh.faces[faces]].astype(np.float64))
    colors = surface_colors(mesh, texture, faces, weights)
    if truth:
        colors = np.clip(colors + pattern(points)[:, None], 0, 1)
    n = camera.samples**2
    rgb, all_points = np.zeros((n, 3)), np.zeros((n, 3))
    all_faces, all_weights = np.full(n, -1), np.zeros((n, 3))
    rgb[seen], all_points[seen], all_faces[seen], all_weights[seen] = colors, points, faces, weights
    return Picture(rgb, covered, all_points, all_faces, all_weights)


def rmse(a: np.ndarray, b: np.ndarray, where: np.ndarray) -> float:
    return float(np.sqrt(((a[where] - b[where]) ** 2).mean())) if where.any() else float("nan")


def decibels(before: float, after: float) -> float:
    return 20 * math.log10(before / after)


def bake(mesh: Mesh, field: Field, size: int, projection=None):
    return bake_texture(mesh, field.colors, size, photo=projection)


def input_view_errors(mesh, field, photo_rgba, shot, size, fit, photo):
    """RMSE on the pixels both the photo and the mesh cover, from the photo's camera: (without, with)."""
    plain = bake(mesh, field, size)
    projected = bake(mesh, field, size, photo_texture.PhotoProjection(mesh, photo, fit.camera))
    camera = shot.camera(PHOTO_SIZE)
    truth = photo_rgba.reshape(-1, 4)[:, :3] / 255.0
    inside = photo_rgba.reshape(-1, 4)[:, 3] == 255
    before = unlit(mesh, camera, plain)
    after = unlit(mesh, camera, projected)
    where = inside & before.covered
    return rmse(before.rgb, truth, where), rmse(after.rgb, truth, where), plain, projected


def vertex_color_errors(field: Field, resolution: int, photo_rgba, shot: Shot, photo):
    """The input view's RMSE with the model's vertex colours, and with the photo blended into them
    (``photo_texture.onto_vertices``, as the add-on does with Color Attribute): (without, with)."""
    mesh = field.mesh(resolution)
    projection = photo_texture.PhotoProjection(mesh, photo, photo_texture.fit_camera(mesh, photo).camera)
    camera = shot.camera(PHOTO_SIZE)
    truth = photo_rgba.reshape(-1, 4)[:, :3] / 255.0
    inside = photo_rgba.reshape(-1, 4)[:, 3] == 255
    before, after = unlit(mesh, camera), unlit(photo_texture.onto_vertices(mesh, projection), camera)
    where = inside & before.covered
    return rmse(before.rgb, truth, where), rmse(after.rgb, truth, where)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--texture-sizes", type=int, nargs="+", default=[1024, 2048])
    parser.add_argument("--quick", action="store_true", help="the nominal camera only, one texture size")
    args = parser.parse_args()
    field = Field()
    mesh = field.mesh(args.resolution)
    truth = true_mesh(field)
    size = args.texture_sizes[0]
    print(
        f"generated mesh: resolution {args.resolution}, {len(mesh.faces):,} faces; true Suzanne "
        f"{len(truth.faces):,} faces; pattern period {PATTERN_PERIOD} units; texture {size}"
    )
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        nominal = Shot()
        photo_rgba = render_photo(truth, nominal, folder)
        core_outline = unlit(truth, nominal.camera(PHOTO_SIZE), truth=True).covered
        cycles_outline = photo_rgba.reshape(-1, 4)[:, 3] >= 128
        print(
            f"camera check: Cycles' outline of the true shape vs the core renderer's, same camera: IoU "
            f"{(core_outline & cycles_outline).sum() / (core_outline | cycles_outline).sum():.4f}"
        )
        photo = framed(photo_rgba, folder)
        started = time.perf_counter()
        fit = photo_texture.fit_camera(mesh, photo)
        fit_seconds = time.perf_counter() - started
        print(
            f"fit: distance {fit.camera.distance:.2f}, elevation {fit.camera.elevation:+.2f}°, zoom "
            f"{fit.camera.zoom:.3f}, shift ({fit.camera.shift[0]:+.4f}, {fit.camera.shift[1]:+.4f}): overlap "
            f"{fit.overlap:.4f}, in {fit_seconds:.2f} s"
        )
        before, after, plain, projected = input_view_errors(
            mesh, field, photo_rgba, nominal, size, fit, photo
        )
        print(
            f"input view, covered pixels: RMSE {before:.4f} without, {after:.4f} with: "
            f"{decibels(before, after):+.1f} dB"
        )

        projection = photo_texture.PhotoProjection(mesh, photo, fit.camera)
        for name, azimuth in SIDE_VIEWS.items():
            camera = Camera.orbit(azimuth, 0.0, nominal.distance, VIEW_SIZE)  # the input camera, turned
            reference = unlit(truth, camera, truth=True)
            without, with_photo = unlit(mesh, camera, plain), unlit(mesh, camera, projected)
            both = reference.covered & without.covered
            index = np.flatnonzero(both)
            weight = np.zeros(len(both))
            weight[index] = projection.sample(
                without.faces[index], without.weights[index], without.points[index]
            )[1]
            rows = []
            for label, where in (
                ("unseen", both & (weight == 0)),
                ("fall-off", both & (weight > 0) & (weight < 0.9)),
                ("seen", both & (weight >= 0.9)),
            ):
                rows.append(
                    f"{label} {rmse(without.rgb, reference.rgb, where):.4f} -> "
                    f"{rmse(with_photo.rgb, reference.rgb, where):.4f} ({where.mean():.0%} of pixels)"
                )
            print(f"view {name}: RMSE without -> with: " + "; ".join(rows))

        for resolution in (128, 256):
            before, after = vertex_color_errors(field, resolution, photo_rgba, nominal, photo)
            print(
                f"vertex colours at resolution {resolution}, input view: RMSE {before:.4f} without, "
                f"{after:.4f} with: {decibels(before, after):+.1f} dB"
            )

        if not args.quick:
            print(
                "camera perturbations (fit overlap; projected or kept the model's colours; input-view gain):"
            )
            for shot in PERTURBATIONS[1:] + OUTSIDE:
                shot_rgba = render_photo(truth, shot, folder)
                shot_photo = framed(shot_rgba, folder)
                shot_fit = photo_texture.fit_camera(mesh, shot_photo)
                fitted = shot_fit.camera
                line = (
                    f"  {shot}: overlap {shot_fit.overlap:.3f}, fitted distance {fitted.distance:.2f}, "
                    f"elevation {fitted.elevation:+.1f}°"
                )
                if shot_fit.usable:
                    b, a, _, _ = input_view_errors(mesh, field, shot_rgba, shot, size, shot_fit, shot_photo)
                    line += f", projected: {decibels(b, a):+.1f} dB"
                else:
                    line += ", fell back to the model's colours"
                print(line)

        sizes = args.texture_sizes[:1] if args.quick else args.texture_sizes
        print(
            "time Photo Texture adds (best of 3; the bake's own colour sampling of those texels, for scale):"
        )
        for texture_size in sizes:
            _, _, faces, weights, points = covered_texels(mesh, bake(mesh, field, texture_size))
            times = {"fit": [], "setup": [], "texels": [], "colours": []}
            for _ in range(3):  # interleaved, so that every stage sees the same machine load
                times["fit"].append(timed(photo_texture.fit_camera, mesh, photo))
                started = time.perf_counter()
                projection = photo_texture.PhotoProjection(mesh, photo, fit.camera)
                times["setup"].append(time.perf_counter() - started)
                times["texels"].append(timed(project_texels, projection, faces, weights, points))
                times["colours"].append(timed(field.colors, points.astype(np.float32)))
            best = {stage: min(values) for stage, values in times.items()}
            added = best["fit"] + best["setup"] + best["texels"]
            print(
                f"  {texture_size}² ({len(faces):,} texels): +{added:.2f} s (fit {best['fit']:.2f} s, depth "
                f"buffer {best['setup']:.2f} s, texels {best['texels']:.2f} s); colour sampling "
                f"{best['colours']:.2f} s"
            )


def timed(work, *arguments) -> float:
    started = time.perf_counter()
    work(*arguments)
    return time.perf_counter() - started


def project_texels(projection, faces, weights, points) -> None:
    """What the bake does more per texel with Photo Texture: the photo sampled, then blended in."""
    colors, weight = [], []
    for start in range(0, len(faces), POINTS_PER_QUERY):
        part = slice(start, start + POINTS_PER_QUERY)
        sampled = projection.sample(faces[part], weights[part], points[part])
        colors.append(sampled[0])
        weight.append(sampled[1])
    photo_texture.blend(np.concatenate(colors), np.concatenate(colors), np.concatenate(weight))


if __name__ == "__main__":
    main()
