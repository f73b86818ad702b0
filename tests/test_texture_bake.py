"""Baked texture (core, no bpy): every texel the UV layout covers holds the model's colour at that texel's
surface point; seams are padded by dilation and the rest of the image stays transparent."""

import numpy as np
import pytest

from triposr_blender.core import Cancelled
from triposr_blender.core.texture import bake_texture

SIZE = 128
PADDING = 2
# A texel centre this close to a UV edge may count as inside or outside: the tests accept either.
ON_EDGE = 1e-6
ONE_LEVEL = 1  # 1/255 in uint8 levels


@pytest.fixture(scope="module")
def baked(mesh, color_fn):
    return bake_texture(mesh, color_fn, texture_size=SIZE, padding=PADDING)


@pytest.fixture(scope="module")
def reference(mesh, baked):
    return reference_texels(mesh, baked.corner_uvs, SIZE)


def reference_texels(mesh, corner_uvs, size):
    """The texel centres inside each UV triangle and their surface points, one triangle at a time.

    Returns (inside, on_edge): inside maps (row, column) -> list of surface points, one per face that
    contains the centre clearly; on_edge is the set of texels whose centre lies on some face's edge.
    """
    inside, on_edge = {}, set()
    for uv, corners in zip(corner_uvs.astype(np.float64), mesh.vertices[mesh.faces], strict=True):
        low = np.floor(uv.min(axis=0) * size).astype(int)
        high = np.ceil(uv.max(axis=0) * size).astype(int)
        columns, rows = np.meshgrid(np.arange(low[0], high[0] + 1), np.arange(low[1], high[1] + 1))
        centres = (np.stack([columns.ravel(), rows.ravel()], axis=1) + 0.5) / size
        weights = barycentric(centres, uv)
        if weights is None:  # a zero-area triangle covers nothing
            continue
        margin = weights.min(axis=1)
        for (column, row), w, m in zip(centres * size - 0.5, weights, margin, strict=True):
            texel = (round(row), round(column))
            if m > ON_EDGE:
                inside.setdefault(texel, []).append(w @ corners.astype(np.float64))
            elif m > -ON_EDGE:
                on_edge.add(texel)
    return inside, on_edge


def barycentric(points, triangle):
    """Barycentric weights of 2D points in a 2D triangle, by signed areas (None if it has no area)."""

    def cross(o, a, b):
        return (a[..., 0] - o[..., 0]) * (b[..., 1] - o[..., 1]) - (a[..., 1] - o[..., 1]) * (
            b[..., 0] - o[..., 0]
        )

    a, b, c = triangle
    area = cross(a, b, c)
    if abs(area) < 1e-14:
        return None
    return np.stack([cross(points, b, c), cross(points, c, a), cross(points, a, b)], axis=1) / area


def chessboard_dilation(mask, steps):
    for _ in range(steps):
        padded = np.pad(mask, 1)
        mask = np.logical_or.reduce(
            [
                padded[1 + dr : 1 + dr + mask.shape[0], 1 + dc : 1 + dc + mask.shape[1]]
                for dr in (-1, 0, 1)
                for dc in (-1, 0, 1)
            ]
        )
    return mask


def mask_of(texels, size):
    mask = np.zeros((size, size), bool)
    for row, column in texels:
        mask[row, column] = True
    return mask


def test_the_layout_gives_every_face_corner_a_uv_inside_the_unit_square(mesh, baked):
    assert baked.corner_uvs.shape == (len(mesh.faces), 3, 2)
    assert baked.corner_uvs.dtype == np.float32
    assert baked.corner_uvs.min() >= 0 and baked.corner_uvs.max() <= 1
    assert baked.image.shape == (SIZE, SIZE, 4) and baked.image.dtype == np.uint8


def test_no_texel_is_shared_by_two_places_on_the_surface(reference):
    inside, _ = reference
    assert inside, "the layout covers no texel centre"
    assert all(len(points) == 1 for points in inside.values())


def test_every_covered_texel_holds_the_model_colour_at_its_surface_point(baked, reference, color_fn):
    inside, _ = reference
    texels = np.array(list(inside))
    points = np.array([points[0] for points in inside.values()], np.float32)
    expected = np.rint(color_fn(points) * 255)
    image = baked.image[texels[:, 0], texels[:, 1]].astype(float)
    assert (image[:, 3] == 255).all()
    np.testing.assert_allclose(image[:, :3], expected, atol=ONE_LEVEL)


def test_dilation_fills_texels_near_covered_ones_and_leaves_the_rest_transparent(baked, reference):
    inside, on_edge = reference
    covered_surely = mask_of(inside, SIZE)
    covered_maybe = covered_surely | mask_of(on_edge, SIZE)
    opaque = baked.image[..., 3] == 255
    assert set(np.unique(baked.image[..., 3])) == {0, 255}
    assert (
        opaque >= chessboard_dilation(covered_surely, PADDING)
    ).all(), "a texel near a covered one is empty"
    assert (
        opaque <= chessboard_dilation(covered_maybe, PADDING)
    ).all(), "a texel far from any face is filled"
    assert (baked.image[~opaque] == 0).all()
    filled_by_dilation = opaque & ~covered_maybe
    assert filled_by_dilation.sum() > 0 and (~opaque).sum() > 0


def test_a_texel_next_to_the_layout_takes_the_mean_colour_of_its_covered_neighbours(baked, reference):
    inside, on_edge = reference
    covered = mask_of(inside, SIZE)
    uncertain = chessboard_dilation(mask_of(on_edge, SIZE), 1)  # neighbourhoods that may count another texel
    first_ring = chessboard_dilation(covered, 1) & ~covered & ~uncertain
    checked = 0
    for row, column in zip(*np.nonzero(first_ring), strict=True):
        window = (slice(max(row - 1, 0), row + 2), slice(max(column - 1, 0), column + 2))
        neighbours = baked.image[window][covered[window]][:, :3].astype(float)
        np.testing.assert_allclose(baked.image[row, column, :3], neighbours.mean(axis=0), atol=ONE_LEVEL)
        checked += 1
    assert checked > 100


def test_progress_reports_each_stage_to_the_end_and_can_cancel(mesh, color_fn):
    seen = {}

    def progress(stage, fraction):
        seen[stage] = max(seen.get(stage, 0.0), fraction)

    bake_texture(mesh, color_fn, texture_size=64, padding=1, progress=progress)
    assert seen == {"Unwrapping UVs": 1.0, "Rasterizing UV layout": 1.0, "Baking texture": 1.0}

    def cancel(stage, fraction):
        if stage == "Baking texture":
            raise Cancelled("Cancelled by the user.")

    with pytest.raises(Cancelled):
        bake_texture(mesh, color_fn, texture_size=64, padding=1, progress=cancel)
