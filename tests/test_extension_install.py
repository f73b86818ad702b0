"""The extension as a package: the zip Blender's tools build and validate, installing it with Blender's
extension installer in a throw-away user folder, registering and unregistering, uninstalling."""

import re
import subprocess
import sys
import tomllib
import zipfile

import pytest
from extension_harness import PACKAGE, REPO, Blender, blender_ext_tool

from triposr_blender.core import TORCH_FREE_MODULES

pytestmark = pytest.mark.blender

MANIFEST = tomllib.loads((REPO / "blender_manifest.toml").read_text(encoding="utf-8"))

TYPES = ["TRIPOSR_OT_generate", "TRIPOSR_OT_cancel", "TRIPOSR_OT_unload_model", "VIEW3D_PT_triposr"]
# Defines registered_state() in Blender, and returns it.
REGISTERED = """
import sys
def registered_state():
    return {
        "enabled": module in bpy.context.preferences.addons,
        "types": [name for name in types if hasattr(bpy.types, name)],
        "scene_settings": hasattr(bpy.types.Scene, "triposr"),
        "modules": sorted(name for name in sys.modules if name.startswith(module)),
    }
result = registered_state()
"""


@pytest.fixture(scope="module")
def blender(tmp_path_factory, extension_zip):
    """Blender with the extension installed and enabled, as a user's Install from Disk leaves it."""
    blender = Blender(tmp_path_factory.mktemp("user"))
    blender.install(extension_zip)
    yield blender
    blender.close()


def test_the_zip_holds_the_package_with_its_manifest_installer_and_licence(extension_zip):
    names = zipfile.ZipFile(extension_zip).namelist()

    expected = {"blender_manifest.toml", "__init__.py", "worker/__main__.py", "core/__init__.py"}
    assert expected | {"vendor_install.py", "requirements.txt", "LICENSE"} <= set(names)
    assert not [name for name in names if "__pycache__" in name or name.endswith(".pyc")]
    assert extension_zip.name == f"triposr_blender-{MANIFEST['version']}.zip"


def test_the_zip_holds_only_what_runs_in_blender(extension_zip):
    """The server and the batch on Ray need FastAPI or Ray, never installed into Blender."""
    names = zipfile.ZipFile(extension_zip).namelist()
    assert not [name for name in names if name.startswith("server/")]
    assert not {"batch/on_ray.py", "ray_cluster.py"} & set(names)
    assert {"batch/__main__.py", "batch/command.py", "batch/plan.py", "batch/in_blender.py"} <= set(names)


def test_the_manifests_permissions_name_every_use_of_the_network_and_of_files():
    assert "server" in MANIFEST["permissions"]["network"] and "Download" in MANIFEST["permissions"]["network"]
    assert all(len(text) <= 64 and not text.endswith(".") for text in MANIFEST["permissions"].values())


def test_blenders_own_validator_accepts_the_zip(extension_zip):
    command = [sys.executable, str(blender_ext_tool()), "validate", str(extension_zip)]

    validated = subprocess.run(command, capture_output=True, text=True)

    assert validated.returncode == 0, validated.stdout + validated.stderr


def test_the_manifest_names_the_extension_its_blender_and_its_permissions():
    assert MANIFEST["schema_version"] == "1.0.0"
    assert MANIFEST["id"] == "triposr_blender" and MANIFEST["version"] == "0.1.0"
    assert MANIFEST["blender_version_min"] == "4.2.0"
    assert MANIFEST["license"] == ["SPDX:MIT"]
    assert set(MANIFEST["permissions"]) == {"files", "network"}


def test_the_manifest_names_a_maintainer_to_contact_the_copyright_and_where_pytorch_runs():
    assert re.fullmatch(r".+ <[^@ ]+@[^@ ]+>", MANIFEST["maintainer"])
    assert any("TripoSR for Blender contributors" in line for line in MANIFEST["copyright"])
    assert set(MANIFEST["platforms"]) == {"windows-x64", "linux-x64", "macos-arm64"}, "no macos-x64: no torch"


def test_installed_it_is_the_user_default_extension(blender):
    registered = blender.run(REGISTERED, module=PACKAGE, types=TYPES)

    assert registered["enabled"] and registered["types"] == TYPES and registered["scene_settings"]


def test_registering_imports_no_torch_and_of_the_core_only_its_torch_free_modules(blender):
    imported = blender.run("import sys\nresult = sorted(sys.modules)")

    core = f"{PACKAGE}.core"
    core_modules = {name for name in imported if name.startswith(core)}
    assert "torch" not in imported
    assert core_modules <= {core, *(f"{core}.{name}" for name in TORCH_FREE_MODULES)}


def test_the_panel_and_preferences_start_with_the_documented_defaults(blender):
    defaults = blender.run(
        "settings = bpy.context.scene.triposr\n"
        "prefs = bpy.context.preferences.addons[module].preferences\n"
        "result = {name: getattr(settings, name) for name in ('remove_background', 'foreground_ratio', "
        "'resolution', 'threshold', 'shade_smooth', 'target_size', 'device', 'placement')}\n"
        "result.update(repo=prefs.model_repo, source=prefs.model_source, device_default=prefs.device)",
        module=PACKAGE,
    )

    assert defaults == {
        "remove_background": True,
        "foreground_ratio": pytest.approx(0.85),
        "resolution": 256,
        "threshold": 25.0,
        "shade_smooth": True,
        "target_size": 2.0,
        "device": "DEFAULT",
        "placement": "CURSOR",
        "repo": "stabilityai/TripoSR",
        "source": "HUB",
        "device_default": "AUTO",
    }


def test_disabling_and_enabling_again_is_clean_every_time(blender):
    blender.run(REGISTERED, module=PACKAGE, types=TYPES)
    states = blender.run(
        "import addon_utils\n"
        "def fail(error):\n"
        "    raise error\n"
        "result = []\n"
        "for _ in range(3):\n"
        "    addon_utils.disable(module, default_set=True, handle_error=fail)\n"
        "    result.append(registered_state())\n"
        "    addon_utils.enable(module, default_set=True, handle_error=fail)\n"
        "    result.append(registered_state())\n"
    )

    for disabled in states[0::2]:
        assert not disabled["enabled"] and not disabled["types"] and not disabled["scene_settings"]
    for enabled in states[1::2]:
        assert enabled["enabled"] and enabled["types"] == TYPES and enabled["scene_settings"]


def test_uninstalling_leaves_nothing_registered_and_no_files(tmp_path, extension_zip):
    blender = Blender(tmp_path)
    try:
        blender.install(extension_zip)
        removed = blender.run(
            "repos = [repo.module for repo in bpy.context.preferences.extensions.repos]\n"
            "operator('extensions.package_uninstall', repo_index=repos.index('user_default'), "
            "pkg_id='triposr_blender')\n" + REGISTERED,
            module=PACKAGE,
            types=TYPES,
        )
    finally:
        blender.close()

    assert removed == {"enabled": False, "types": [], "scene_settings": False, "modules": []}
    assert not (tmp_path / "extensions" / "user_default" / "triposr_blender").exists()


def test_registering_leaves_blenders_import_path_alone(blender):
    """Other add-ons must not import this extension's copy of torch, opencv or huggingface_hub."""
    path = blender.run("import sys\nresult = sys.path")
    dependencies = blender.run(
        "result = bpy.utils.extension_path_user(module, path='site-packages', create=True)", module=PACKAGE
    )
    assert dependencies not in path
