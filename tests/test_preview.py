"""The preview renderer draws what is there: a known box, from each of the preview's angles, lands where the
input camera's projection puts it, covers the area it should, in its own colours; hidden faces stay hidden."""

import math

import numpy as np
import pytest

from triposr_blender.core import preview
from triposr_blender.core.mesh import BakedTexture, Mesh
from triposr_blender.core.preview import PREVIEW_VIEWS, Camera, View

SIZE = 256
HALF = 0.25  # the box's half side
# Each face of the box coloured by the axis it faces: +X red, -X dark red, +Y green, -Y dark green, +Z blue...
FACE_COLORS = {(0, 1): (1, 0, 0), (0, -1): (0.4, 0, 0), (1, 1): (0, 1, 0), (1, -1): (0, 0.4, 0),
               (2, 1): (0, 0, 1), (2, -1): (0, 0, 0.4)}  # fmt: skip


def box(centre=(0.0, 0.0, 0.0)) -> Mesh:
    """An axis-aligned box, each face with its own four vertices and colour, wound outwards."""
    vertices, faces, colors = [], [], []
    for (axis, sign), color in FACE_COLORS.items():
        u, v = [a for a in range(3) if a != axis]
        corners = []
        for du, dv in ((-1, -1), (1, -1), (1, 1), (-1, 1)):
            point = [0.0, 0.0, 0.0]
            point[axis], point[u], point[v] = sign * HALF, du * HALF, dv * HALF
            corners.append(np.add(point, centre))
        start = len(vertices)
        vertices += corners
        colors += [color] * 4
        quad = [[start, start + 1, start + 2], [start, start + 2, start + 3]]
        # (u, v, axis) right-handed: counter-clockwise seen from +axis; flip for the -axis face
        right_handed = (u, v, axis) in ((0, 1, 2), (1, 2, 0), (2, 0, 1))
        faces += quad if (sign > 0) == right_handed else [face[::-1] for face in quad]
    return Mesh(np.array(vertices, np.float32), np.array(faces, np.int64), np.array(colors, np.float32))


def silhouette(image: np.ndarray) -> tuple[float, np.ndarray]:
    """The covered area in pixels, and its centroid (column, row)."""
    alpha = image[..., 3] / 255.0
    rows, columns = np.mgrid[: image.shape[0], : image.shape[1]]
    area = alpha.sum()
    return area, np.array([(columns * alpha).sum(), (rows * alpha).sum()]) / area


def projected(mesh: Mesh, view: View, corners: np.ndarray) -> np.ndarray:
    """Where the preview's camera puts ``corners``, in output pixels."""
    camera = Camera.around(mesh, view, SIZE * preview.SUPERSAMPLE)
    xy, _ = camera.project(corners)
    return (xy + 0.5) / preview.SUPERSAMPLE - 0.5


@pytest.mark.parametrize("view", PREVIEW_VIEWS, ids=[view.name for view in PREVIEW_VIEWS])
def test_a_box_off_centre_is_drawn_where_and_as_large_as_the_camera_sees_it(view):
    mesh = box(centre=(0.0, 0.2, 0.1))
    image = preview.render(mesh, view, SIZE)

    area, centroid = silhouette(image)
    # The silhouette of a convex box is the convex hull of its projected corners.
    corners = projected(mesh, view, np.unique(mesh.vertices, axis=0))
    hull = convex_hull_area(corners)
    assert area == pytest.approx(hull, rel=0.02)
    assert np.abs(centroid - polygon_centroid(corners)).max() < 1.0


def test_the_front_view_is_the_input_cameras_and_shows_the_face_towards_it_in_its_colour():
    mesh = box()
    image = preview.render(mesh, PREVIEW_VIEWS[0], SIZE)
    # The input camera looks along -X from +X: the +X face fills the middle, lit head-on (full brightness).
    middle = image[SIZE // 2, SIZE // 2]
    assert tuple(middle) == (255, 0, 0, 255)
    # Seen from behind, the -X face, dark red, and nothing of the +X face.
    back = preview.render(mesh, View("back", 180.0), SIZE)
    assert tuple(back[SIZE // 2, SIZE // 2]) == (102, 0, 0, 255)
    assert not ((back[..., 0] == 255) & (back[..., 3] == 255)).any()


def test_a_baked_texture_gives_the_colours_instead_of_the_vertices():
    mesh = box()
    image = np.zeros((8, 8, 4), np.uint8)
    image[...] = (0, 200, 0, 255)
    corner_uvs = np.full((len(mesh.faces), 3, 2), 0.5, np.float32)
    drawn = preview.render(mesh, PREVIEW_VIEWS[0], SIZE, BakedTexture(corner_uvs, image))
    assert tuple(drawn[SIZE // 2, SIZE // 2]) == (0, 200, 0, 255)


def test_the_strip_and_the_turntable_hold_every_view():
    mesh = box()
    assert preview.preview_strip(mesh, 64).shape == (64, 4 * 64, 4)
    frames = preview.turntable(mesh, 6, 64)
    assert len(frames) == 6 and all(frame.shape == (64, 64, 4) for frame in frames)
    assert all(frame[..., 3].any() for frame in frames)


def test_the_object_always_fits_the_frame():
    """The input camera at 1.9 would cut off an object near the model box's corners: the view backs off."""
    mesh = box()
    large = Mesh(mesh.vertices * (0.85 / (HALF * math.sqrt(3))), mesh.faces, mesh.vertex_colors)
    for view in PREVIEW_VIEWS:
        alpha = preview.render(large, view, SIZE)[..., 3]
        assert not (alpha[0].any() or alpha[-1].any() or alpha[:, 0].any() or alpha[:, -1].any())


def test_a_thumbnail_keeps_the_shape_and_only_ever_shrinks():
    photo = np.random.default_rng(0).random((1200, 1600, 3))
    assert preview.thumbnail(photo, 256).shape == (171, 228, 3)
    assert preview.thumbnail(np.zeros((100, 50, 4), np.uint8), 256).shape == (100, 50, 4)


def convex_hull_area(points: np.ndarray) -> float:
    hull = convex_hull(points)
    x, y = hull[:, 0], hull[:, 1]
    return 0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def polygon_centroid(points: np.ndarray) -> np.ndarray:
    hull = convex_hull(points)
    x, y = hull[:, 0], hull[:, 1]
    cross = x * np.roll(y, -1) - np.roll(x, -1) * y
    area = cross.sum() / 2
    return np.array([((x + np.roll(x, -1)) * cross).sum(), ((y + np.roll(y, -1)) * cross).sum()]) / (6 * area)


def convex_hull(points: np.ndarray) -> np.ndarray:
    """Andrew's monotone chain: the hull's corners, counter-clockwise."""
    ordered = sorted(map(tuple, points))

    def turn(o, a, b):
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    def half(sequence):
        chain = []
        for point in sequence:
            while len(chain) >= 2 and turn(chain[-2], chain[-1], point) <= 0:
                chain.pop()
            chain.append(point)
        return chain[:-1]

    return np.array(half(ordered) + half(ordered[::-1]))
