"""Game-ready output end to end, with the tiny fixture model: Generate (in background mode) and the batch
command with a target face count and a baked texture give a decimated object coloured by a packed texture
and shaded by a packed normal map, and a GLB whose material has a baseColorTexture read through TEXCOORD_0
and a normalTexture."""

import html
import json
import subprocess
import sys

import bpy
import pytest
from conftest import FIXTURE_IMAGE, FIXTURE_MODEL, FIXTURE_RESOLUTION, FIXTURE_THRESHOLD, REPO
from glb import read_glb

from triposr_blender.blender import materials
from triposr_blender.worker.pipeline import PHOTO_SQUASHED

pytestmark = pytest.mark.blender

TARGET_FACES = 1000  # the fixture's mesh has about 2,400
TEXTURE_SIZE = 512


@pytest.fixture(scope="module", autouse=True)
def own_dependency_folder(tmp_path_factory):
    """The batch looks for the extension's dependency folder; here, never in the user's Blender folders."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TRIPOSR_DEPS_DIR", str(tmp_path_factory.mktemp("deps")))
        yield


def test_generate_makes_a_decimated_object_coloured_by_a_packed_texture_with_a_normal_map(new_objects):
    outcome = bpy.ops.triposr.generate(
        filepath=str(FIXTURE_IMAGE),
        color_mode="TEXTURE",
        texture_size=TEXTURE_SIZE,
        target_faces=TARGET_FACES,
    )

    assert outcome == {"FINISHED"}
    (obj,) = new_objects()
    assert 0.9 * TARGET_FACES <= len(obj.data.polygons) <= TARGET_FACES
    assert obj.data.uv_layers.keys() == [materials.UV_MAP]
    assert len(obj.data.color_attributes) == 0
    color, normal_map = materials.textures_of(obj)
    for image in (color, normal_map):
        assert tuple(image.size) == (TEXTURE_SIZE, TEXTURE_SIZE) and image.packed_file is not None
    assert normal_map.colorspace_settings.name == "Non-Color"


def test_generate_keeps_vertex_colours_and_every_face_by_default(new_objects):
    assert bpy.ops.triposr.generate(filepath=str(FIXTURE_IMAGE)) == {"FINISHED"}

    (obj,) = new_objects()
    assert len(obj.data.polygons) > TARGET_FACES
    assert obj.data.color_attributes.keys() == ["Color"]
    assert materials.textures_of(obj) == []


def test_the_batch_writes_a_light_glb_with_its_texture_as_base_color_and_its_normal_map(tmp_path):
    command = [
        sys.executable, "-m", "triposr_blender.batch", "--", FIXTURE_IMAGE, "--out", tmp_path,
        "--model", FIXTURE_MODEL, "--device", "cpu", "--no-remove-bg",
        "--resolution", FIXTURE_RESOLUTION, "--threshold", repr(FIXTURE_THRESHOLD),
        "--target-faces", TARGET_FACES, "--texture-size", TEXTURE_SIZE,
    ]  # fmt: skip
    run = subprocess.run(list(map(str, command)), cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr

    document, _ = read_glb(tmp_path / f"{FIXTURE_IMAGE.stem}.glb")
    (primitive,) = document["meshes"][0]["primitives"]
    assert {"TEXCOORD_0"} <= primitive["attributes"].keys() and "COLOR_0" not in primitive["attributes"]
    assert document["accessors"][primitive["indices"]]["count"] <= 3 * TARGET_FACES
    (material,) = document["materials"]
    assert "baseColorTexture" in material["pbrMetallicRoughness"] and "normalTexture" in material
    assert [image["mimeType"] for image in document["images"]] == ["image/png"] * 2
    # Photo Texture (on by default) has nothing to fit on an image with no alpha and no background removal:
    # the image is converted all the same, and the summary, the report and its card say why
    (item,) = json.loads((tmp_path / "report.json").read_text())["images"]
    assert item["status"] == "done" and item["notes"] == [PHOTO_SQUASHED]
    assert f"note: {FIXTURE_IMAGE}: {PHOTO_SQUASHED}" in run.stderr
    assert f'<p class="note">{html.escape(PHOTO_SQUASHED)}</p>' in (tmp_path / "report.html").read_text()


@pytest.mark.parametrize(("option", "value"), [("--texture-size", "256"), ("--target-faces", "0")])
def test_the_batch_refuses_a_texture_size_or_target_out_of_range(option, value):
    run = subprocess.run(
        [sys.executable, "-m", "triposr_blender.batch", "--", str(FIXTURE_IMAGE), option, value],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2
    assert option in run.stderr
