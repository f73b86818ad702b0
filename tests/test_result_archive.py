"""A result archive (result.npz) comes back from a server the client does not control: it is read as untrusted
input, bounded before it is inflated and checked before anything is built from it."""

import io
import tracemalloc
import zipfile

import numpy as np
import pytest

from triposr_blender.backends.types import MeshResult
from triposr_blender.core import result_archive
from triposr_blender.core.mesh import BakedTexture, FramedPhoto, Mesh
from triposr_blender.core.result_archive import ResultError
from triposr_blender.core.scene_codes import SceneCodes, photo_in
from triposr_blender.worker import protocol

RESOLUTION, TEXTURE_SIZE = 256, 512


def tetrahedron() -> Mesh:
    vertices = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], np.float32)
    faces = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]], np.int64)
    return Mesh(vertices, faces, np.full((4, 3), 0.5, np.float32))


def texture(faces=4, size=TEXTURE_SIZE, normal_map=True) -> BakedTexture:
    normal = np.full((size, size, 3), 128, np.uint8) if normal_map else None
    return BakedTexture(np.zeros((faces, 3, 2), np.float32), np.zeros((size, size, 4), np.uint8), normal)


def archive(**arrays) -> bytes:
    """An archive of these arrays, as a server would write it, with anything it likes in it."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def arrays_of(mesh: Mesh, **more) -> dict:
    return {"vertices": mesh.vertices, "faces": mesh.faces, "vertex_colors": mesh.vertex_colors, **more}


def read(data: bytes, texture_size: int = 0):
    return result_archive.from_bytes(data, RESOLUTION, texture_size)


def test_a_result_reads_back_as_it_was_written_with_the_photo_its_codes_were_encoded_from():
    codes = SceneCodes(np.zeros((1, 3, 4, 8, 8), np.float32), "model-id", "tiny").to_bytes()
    photo = FramedPhoto(np.full((6, 4, 4), 200, np.uint8), canvas_side=8, offset=(2, 1))
    written = result_archive.to_bytes(tetrahedron(), texture(), codes, photo)

    mesh, baked, read_codes, read_photo = read(written, TEXTURE_SIZE)
    np.testing.assert_array_equal(mesh.faces, tetrahedron().faces)
    np.testing.assert_array_equal(baked.normal_image, texture().normal_image)
    assert SceneCodes.from_bytes(read_codes).model_id == "model-id" and photo_in(read_codes) is None
    assert np.array_equal(read_photo.pixels, photo.pixels) and read_photo.frame == photo.frame
    assert photo_in(written).frame == photo.frame, "sent back as codes, it brings its photo along"


def test_an_archive_that_inflates_far_beyond_any_mesh_is_refused_before_it_is_inflated():
    """A few hundred kB that would inflate to 200 MB of vertices: the entry's declared size refuses it."""
    vertex_count = 17_000_000
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as bomb:
        with bomb.open("vertices.npy", "w", force_zip64=True) as entry:
            np.lib.format.write_array_header_1_0(
                entry, {"descr": "<f4", "fortran_order": False, "shape": (vertex_count, 3)}
            )
            zeros = bytes(1 << 20)
            for _ in range(vertex_count * 12 >> 20):
                entry.write(zeros)
        for name in ("faces", "vertex_colors"):
            bomb.writestr(f"{name}.npy", b"")
    assert len(buffer.getvalue()) < 1_000_000

    tracemalloc.start()
    with pytest.raises(ResultError, match="vertices.npy is larger than meshes at resolution 256 are"):
        read(buffer.getvalue())
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 10_000_000


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        (arrays_of(tetrahedron(), faces=np.array([[0, 1, 1_000_000]])), "its faces name vertex 1000000"),
        (arrays_of(tetrahedron(), faces=np.array([[0, -1, 2]])), "its faces name vertex"),
        (arrays_of(tetrahedron(), vertices=np.full((4, 3), np.nan)), "its vertices hold NaN"),
        (arrays_of(tetrahedron(), vertex_colors=np.zeros((3, 3))), r"its vertex colors: shape \(3, 3\)"),
        (arrays_of(tetrahedron(), vertices=np.zeros((4, 2))), r"its vertices: shape \(4, 2\)"),
        (arrays_of(tetrahedron(), faces=np.zeros((2, 3), np.float32)), "faces.npy holds"),
        ({"vertices": tetrahedron().vertices}, "not a result archive"),
    ],
    ids=["index past the vertices", "negative index", "NaN vertices", "colors of other vertices",
         "2-D vertices", "float faces", "no faces"],
)  # fmt: skip
def test_a_mesh_that_is_not_one_is_refused(arrays, message):
    with pytest.raises(ResultError, match=message):
        read(archive(**arrays))


@pytest.mark.parametrize(
    ("textured", "texture_size", "message"),
    [
        (texture(), 0, "the job asked for colors on the vertices"),
        (texture(size=1024), TEXTURE_SIZE, "texture.npy is larger than 512 px textures are"),
        (texture(size=256), TEXTURE_SIZE, r"its texture: shape \(256, 256, 4\)"),
        (texture(faces=3), TEXTURE_SIZE, "its UV layout has 3 faces and its mesh 4"),
    ],
    ids=["not asked for", "larger than asked", "smaller than asked", "UVs of other faces"],
)
def test_a_texture_is_the_size_the_job_asked_for(textured, texture_size, message):
    with pytest.raises(ResultError, match=message):
        read(result_archive.to_bytes(tetrahedron(), textured, b""), texture_size)


@pytest.mark.parametrize(
    ("normal_map", "message"),
    [
        (
            np.zeros((TEXTURE_SIZE, TEXTURE_SIZE, 4), np.uint8),
            "normal_map.npy is larger than 512 px textures",
        ),
        (np.zeros((256, 256, 4), np.uint8), r"its normal map: shape \(256, 256, 4\)"),
        (np.full((TEXTURE_SIZE, TEXTURE_SIZE, 3), np.nan), "normal_map.npy is larger than 512 px textures"),
        (np.full((256, 256, 3), np.nan, np.float32), "normal_map.npy holds .* float32, not what 512 px"),
    ],
    ids=["four channels", "four channels, smaller", "all-NaN float64", "NaN float32, smaller"],
)
def test_a_normal_map_is_checked_as_the_texture_is(normal_map, message):
    arrays = arrays_of(tetrahedron(), corner_uvs=texture().corner_uvs, texture=texture().image)
    with pytest.raises(ResultError, match=message):
        read(archive(**arrays, normal_map=normal_map), TEXTURE_SIZE)


def test_a_result_hands_its_arrays_on_without_copying_them():
    mesh, baked, _, _ = read(result_archive.to_bytes(tetrahedron(), texture(), b""), TEXTURE_SIZE)
    message = protocol.result_message(MeshResult(mesh, baked))
    assert message["mesh"]["vertices"] is mesh.vertices and message["texture"]["image"] is baked.image
