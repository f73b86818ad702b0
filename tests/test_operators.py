"""bpy.ops.triposr.generate in the installed extension, in background mode (as scripts and render nodes call
it), with the tiny random-weight fixture model as the model source: the object it makes, and its failures."""

import importlib.metadata
import signal

import numpy as np
import pytest
from extension_harness import PACKAGE, REPO
from fixture_model import IMAGE, OPTIONS, core_mesh, write_exr
from PIL import Image

from triposr_blender.core import orientation

pytestmark = pytest.mark.blender

CURSOR = (1.0, -2.0, 0.5)
SIZE = 1.5

# Collects what a generation left in Blender. Runs after `outcome = operator("triposr.generate", ...)`.
DESCRIBE_RESULT = """
import numpy as np
obj = bpy.context.active_object
mesh = obj.data
co = np.empty(len(mesh.vertices) * 3, np.float32); mesh.vertices.foreach_get("co", co)
corners = np.empty(len(mesh.loops), np.int32); mesh.loops.foreach_get("vertex_index", corners)
colors = mesh.color_attributes.get("Color")
srgb = np.empty(len(colors.data) * 4, np.float32); colors.data.foreach_get("color_srgb", srgb)
smooth = np.empty(len(mesh.polygons), bool); mesh.polygons.foreach_get("use_smooth", smooth)
material = mesh.materials[0]
shader = next(node for node in material.node_tree.nodes if node.bl_idname == "ShaderNodeBsdfPrincipled")
base_color_from = [link.from_node for link in shader.inputs["Base Color"].links]
result = {
    "outcome": outcome,
    "name": obj.name,
    "selected": [o.name for o in bpy.context.selected_objects],
    "vertices": co.reshape(-1, 3).tolist(),
    "faces": corners.reshape(-1, 3).tolist(),
    "polygon_sizes": sorted({len(p.vertices) for p in mesh.polygons}),
    "colors_srgb": srgb.reshape(-1, 4).tolist(),
    "color_attribute": [colors.data_type, colors.domain],
    "active_color": mesh.color_attributes.active_color_name,
    "render_color": mesh.color_attributes[mesh.color_attributes.render_color_index].name,
    "smooth": sorted(set(smooth.tolist())),
    "material": material.name,
    "base_color_from": [(node.bl_idname, getattr(node, "layer_name", "")) for node in base_color_from],
    "matrix_world": [list(row) for row in obj.matrix_world],
    "counts": scene_counts(),
}
"""

GENERATE = (
    """
bpy.context.scene.cursor.location = cursor
outcome = operator("triposr.generate", **arguments)
"""
    + DESCRIBE_RESULT
)

# Runs a failing generation and reports its message and the file's contents before and after.
FAIL = """
before = scene_counts()
outcome = operator("triposr.generate", **arguments)
result = {"outcome": outcome, "before": before, "after": scene_counts()}
"""


@pytest.fixture
def empty_file(installed_blender):
    installed_blender.run("bpy.ops.wm.read_homefile(use_empty=True)")


@pytest.fixture(scope="module")
def expected_mesh():
    """What the core itself makes from the fixture image: Generate must hand it over unchanged."""
    return core_mesh()


@pytest.fixture(scope="module")
def generated(installed_blender):
    """One generation from the fixture image file, at the 3D cursor, described."""
    installed_blender.run("bpy.ops.wm.read_homefile(use_empty=True)")
    arguments = {"filepath": str(IMAGE), "target_size": SIZE, **OPTIONS}
    return installed_blender.run(GENERATE, cursor=CURSOR, arguments=arguments)


def test_generate_finishes_with_the_new_object_selected_and_active(generated):
    assert generated["outcome"] == {"result": ["FINISHED"]}
    assert generated["selected"] == [generated["name"]]


def test_the_object_is_named_after_the_image(generated):
    assert generated["name"] == "input"


def test_the_mesh_has_the_core_mesh_vertices_and_triangles(generated, expected_mesh):
    assert len(generated["vertices"]) == len(expected_mesh.vertices)
    assert len(generated["faces"]) == len(expected_mesh.faces)
    assert generated["polygon_sizes"] == [3]


def test_the_mesh_is_the_core_mesh_upright_facing_front_and_sized(generated, expected_mesh):
    front = orientation.model_to_blender_rotation("NEG_Y")
    expected = orientation.place_vertices(expected_mesh.vertices, front, SIZE)

    np.testing.assert_allclose(generated["vertices"], expected, atol=1e-5)


def test_the_triangles_keep_the_core_winding_so_normals_point_out(generated, expected_mesh):
    np.testing.assert_array_equal(generated["faces"], expected_mesh.faces)


def test_the_vertex_colours_are_the_core_colours(generated, expected_mesh):
    colors = np.array(generated["colors_srgb"])

    # Blender stores linear colours and converts back through OpenColorIO: well within half an 8-bit step.
    np.testing.assert_allclose(colors[:, :3], expected_mesh.vertex_colors, atol=0.5 / 255)
    np.testing.assert_array_equal(colors[:, 3], 1.0)


def test_the_colours_are_a_point_float_colour_attribute_shown_and_rendered(generated):
    assert generated["color_attribute"] == ["FLOAT_COLOR", "POINT"]
    assert generated["active_color"] == generated["render_color"] == "Color"


def test_the_material_takes_its_base_color_from_the_colour_attribute(generated):
    assert generated["material"] == "TripoSR Vertex Color"
    assert generated["base_color_from"] == [["ShaderNodeVertexColor", "Color"]]


def test_the_object_stands_on_the_3d_cursor_with_its_origin_at_the_bottom_centre(generated):
    matrix = np.array(generated["matrix_world"])
    vertices = np.array(generated["vertices"])
    low, high = vertices.min(axis=0), vertices.max(axis=0)

    np.testing.assert_allclose(matrix[:3, :3], np.eye(3), atol=1e-6)
    np.testing.assert_allclose(matrix[:3, 3], CURSOR, atol=1e-6)
    assert low[2] == pytest.approx(0.0, abs=1e-6)
    np.testing.assert_allclose((low[:2] + high[:2]) / 2, 0.0, atol=1e-5)
    assert (high - low).max() == pytest.approx(SIZE, rel=1e-5)


def test_a_location_puts_the_origin_there_and_leaves_the_3d_cursor_where_it_was(
    installed_blender, empty_file
):
    arguments = {"filepath": str(IMAGE), "location": (1.0, 2.0, 3.0), **OPTIONS}

    placed = installed_blender.run(
        GENERATE + "result['cursor'] = list(bpy.context.scene.cursor.location)",
        cursor=CURSOR,
        arguments=arguments,
    )

    np.testing.assert_allclose(np.array(placed["matrix_world"])[:3, 3], (1.0, 2.0, 3.0), atol=1e-6)
    assert placed["cursor"] == pytest.approx(CURSOR)


def test_generate_right_after_a_script_deleted_a_selected_object(installed_blender, empty_file):
    """Until the view layer syncs, its object lists hold None where a deleted object was."""
    after_delete = installed_blender.run(
        "doomed = bpy.data.objects.new('Doomed', None)\n"
        "bpy.context.scene.collection.objects.link(doomed)\n"
        "bpy.context.view_layer.update()\n"  # as for an object the file already had
        "doomed.select_set(True)\n"
        "bpy.data.objects.remove(doomed)\n" + GENERATE,
        cursor=CURSOR,
        arguments={"filepath": str(IMAGE), **OPTIONS},
    )

    assert after_delete["outcome"] == {"result": ["FINISHED"]}
    assert after_delete["selected"] == [after_delete["name"]]


def test_the_shade_smooth_option(installed_blender, empty_file):
    arguments = {"filepath": str(IMAGE), **OPTIONS}

    smooth = installed_blender.run(GENERATE, cursor=CURSOR, arguments={**arguments, "shade_smooth": True})[
        "smooth"
    ]
    flat = installed_blender.run(GENERATE, cursor=CURSOR, arguments={**arguments, "shade_smooth": False})[
        "smooth"
    ]

    assert smooth == [True] and flat == [False]


def test_further_objects_share_the_one_material(installed_blender, empty_file):
    arguments = {"filepath": str(IMAGE), **OPTIONS}

    first = installed_blender.run(GENERATE, cursor=CURSOR, arguments=arguments)
    second = installed_blender.run(GENERATE, cursor=CURSOR, arguments=arguments)

    assert (first["name"], second["name"]) == ("input", "input.001")
    assert second["material"] == first["material"]
    assert second["counts"]["materials"] == 1


def test_an_image_without_a_file_is_read_from_its_pixels(installed_blender, empty_file, expected_mesh):
    from_pixels = installed_blender.run(
        "import numpy as np\n"
        "source = bpy.data.images.load(path)\n"
        "image = bpy.data.images.new('Painted', *source.size, alpha=True)\n"
        "image.pixels.foreach_set(np.array(source.pixels[:], np.float32))\n"
        "bpy.data.images.remove(source)\n" + GENERATE,
        path=str(IMAGE),
        cursor=CURSOR,
        arguments={"image_name": "Painted", **OPTIONS},
    )

    assert from_pixels["name"] == "Painted"
    np.testing.assert_array_equal(from_pixels["faces"], expected_mesh.faces)


def test_an_exr_file_becomes_an_object_and_leaves_no_image_in_the_file(
    installed_blender, empty_file, tmp_path
):
    exr = str(write_exr(tmp_path / "input.exr"))

    from_exr = installed_blender.run(GENERATE, cursor=CURSOR, arguments={"filepath": exr, **OPTIONS})

    assert from_exr["outcome"] == {"result": ["FINISHED"]}
    assert from_exr["name"] == "input"
    assert from_exr["counts"] == {"objects": 1, "meshes": 1, "materials": 1, "images": 0}


def test_an_exr_file_already_open_in_blender_stays_open(installed_blender, empty_file, tmp_path):
    exr = str(write_exr(tmp_path / "input.exr"))

    from_exr = installed_blender.run(
        "bpy.data.images.load(path)\n" + GENERATE,
        path=exr,
        cursor=CURSOR,
        arguments={"filepath": exr, **OPTIONS},
    )

    assert from_exr["outcome"] == {"result": ["FINISHED"]}
    assert from_exr["counts"]["images"] == 1


@pytest.mark.skipif(
    int(importlib.metadata.version("bpy").split(".")[0]) < 5,
    reason="write_exr needs Blender 5, which tags the EXR's colour space on save; 4.2 saves display-encoded "
    "values untagged, so its EXR is not the scene-linear file this test is about",
)
def test_an_exr_file_reaches_the_model_in_the_display_colours_of_a_png(
    installed_blender, empty_file, tmp_path
):
    exr = str(write_exr(tmp_path / "input.exr"))

    sent = installed_blender.run(
        "import sys\nimage_input = sys.modules[package + '.blender.image_input']\n"
        "result = image_input.file_input(path)[1].pixels.tolist()",
        path=exr,
        package=PACKAGE,
    )

    png = np.asarray(Image.open(IMAGE).convert("RGB"), dtype=np.float32) / 255
    # To linear colours and back: within one 8-bit step of the PNG.
    np.testing.assert_allclose(np.array(sent)[..., :3], png, atol=1 / 255)
    np.testing.assert_array_equal(np.array(sent)[..., 3], 1.0)


def test_an_unreadable_exr_file_reports_why_and_leaves_the_scene_unchanged(
    installed_blender, empty_file, tmp_path
):
    broken = tmp_path / "broken.exr"
    broken.write_text("not an image")

    failed = installed_blender.run(FAIL, arguments={"filepath": str(broken), **OPTIONS})

    assert f"Blender cannot read {broken} as an image" in failed["outcome"]["error"]
    assert failed["after"] == failed["before"]


def test_a_reference_image_empty_gives_the_input_and_holds_the_object(installed_blender, empty_file):
    in_picture = installed_blender.run(
        "empty = bpy.data.objects.new('Reference', None)\n"
        "empty.empty_display_type = 'IMAGE'\n"
        "empty.data = bpy.data.images.load(path)\n"
        "empty.empty_display_size = 3.0\n"
        "empty.location = (0.0, 4.0, 1.0)\n"
        "empty.rotation_euler = (1.5707963267948966, 0.0, 0.0)\n"  # as Add > Image > Reference in Front view
        "bpy.context.scene.collection.objects.link(empty)\n"
        "bpy.context.view_layer.objects.active = empty\n" + GENERATE,
        path=str(IMAGE),
        cursor=CURSOR,
        arguments={"placement": "REFERENCE", **OPTIONS},
    )

    matrix = np.array(in_picture["matrix_world"])
    world = np.array(in_picture["vertices"]) @ matrix[:3, :3].T + matrix[:3, 3]
    low, high = world.min(axis=0), world.max(axis=0)
    assert in_picture["name"] == "input"
    np.testing.assert_allclose(matrix[:3, :3], np.eye(3), atol=1e-6)  # the picture faces the Front view
    np.testing.assert_allclose((low + high) / 2, (0.0, 4.0, 1.0), atol=1e-5)  # centred on the picture
    assert (high - low).max() == pytest.approx(3.0, rel=1e-5)  # as large as the picture


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"filepath": "/no/such/picture.png"}, "Image file not found: /no/such/picture.png"),
        ({"filepath": str(REPO / "requirements.txt")}, "is not an image"),
        ({"filepath": str(IMAGE), "threshold": 100.0}, "No surface found at threshold 100"),
        ({}, "No input image"),
        ({"filepath": str(IMAGE), "placement": "REFERENCE"}, "needs a selected image empty"),
        ({"image_name": "Nothing"}, "There is no image named 'Nothing'"),
        ({"filepath": str(IMAGE), "threshold": float("nan")}, "threshold must be a finite number, not nan"),
    ],
    ids=[
        "missing file",
        "not an image",
        "no surface",
        "no input",
        "no reference empty",
        "unknown image",
        "nan",
    ],
)
def test_a_failure_reports_why_and_leaves_the_scene_unchanged(
    installed_blender, empty_file, arguments, message
):
    failed = installed_blender.run(
        "bpy.data.objects.new('Existing', bpy.data.meshes.new('Existing'))\n" + FAIL,
        arguments={**OPTIONS, **arguments},
    )

    assert message in failed["outcome"]["error"]
    assert failed["after"] == failed["before"]


@pytest.mark.parametrize(
    ("environment", "message"),
    [
        ({"TRIPOSR_MODEL": "{tmp}"}, "has no config.yaml and no model.ckpt"),
        ({"TRIPOSR_MODEL": "someone/not-downloaded-yet"}, "Allow Online Access"),
        ({"TRIPOSR_REQUIRED_MODULES": "torch,a_package_that_is_not_there"}, "dependencies are not installed"),
    ],
    ids=["empty model folder", "offline, model not downloaded", "missing dependencies"],
)
def test_a_setup_problem_reports_what_to_do_and_the_next_run_works(
    installed_blender, empty_file, tmp_path, environment, message
):
    """The model source and the dependency check are read at each run, so the environment can change."""
    outcomes = installed_blender.run(
        "import os, sys\n"
        "dependencies = sys.modules[package + '.dependencies']\n"
        "def generate():\n"
        "    dependencies.refresh_status()\n"
        "    return operator('triposr.generate', filepath=path, **options)\n"
        "saved = {name: os.environ.get(name) for name in environment}\n"
        "os.environ.update(environment)\n"
        "before = scene_counts()\n"
        "failed = generate()\n"
        "after = scene_counts()\n"
        "for name, value in saved.items():\n"
        "    os.environ.pop(name) if value is None else os.environ.__setitem__(name, value)\n"
        "result = {'failed': failed, 'unchanged': before == after, 'next': generate()}",
        package=PACKAGE,
        path=str(IMAGE),
        options=OPTIONS,
        environment={name: value.format(tmp=tmp_path) for name, value in environment.items()},
    )

    assert message in outcomes["failed"]["error"]
    assert outcomes["unchanged"]
    assert outcomes["next"] == {"result": ["FINISHED"]}


@pytest.mark.skipif(not hasattr(signal, "SIGSTOP"), reason="freezes the worker with a POSIX signal")
def test_a_worker_that_dies_mid_run_is_reported_and_the_next_run_works(installed_blender, empty_file):
    """The worker is frozen the moment it exists, so it cannot finish the job, and killed once the job is
    its: the kill lands mid-run whatever the machine's speed."""
    outcomes = installed_blender.run(
        "import os, signal, sys, threading, time\n"
        "session = sys.modules[package + '.ui.session'].SESSION\n"
        "session.stop()\n"
        "def kill_mid_run():\n"  # the session has no client until the run starts one
        "    while (client := session.client) is None or client.pid is None:\n"
        "        time.sleep(0.005)\n"
        "    os.kill(client.pid, signal.SIGSTOP)\n"
        "    while not client.busy:\n"
        "        time.sleep(0.005)\n"
        "    os.kill(client.pid, signal.SIGKILL)\n"
        "threading.Thread(target=kill_mid_run).start()\n"
        "before = scene_counts()\n"
        "failed = operator('triposr.generate', filepath=path, **options)\n"
        "result = {'failed': failed, 'unchanged': before == scene_counts(), "
        "'next': operator('triposr.generate', filepath=path, **options)}",
        package=PACKAGE,
        path=str(IMAGE),
        options=OPTIONS,
    )

    assert "worker process was killed" in outcomes["failed"]["error"]
    assert outcomes["unchanged"]
    assert outcomes["next"] == {"result": ["FINISHED"]}
