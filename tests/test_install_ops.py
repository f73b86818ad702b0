"""The dependency box and its operators, in the real bpy, installing a real wheel with real pip.

The dependency folder, the modules to require and the installer's options come from the add-on's documented
environment variables (TRIPOSR_DEPS_DIR, TRIPOSR_REQUIRED_MODULES, TRIPOSR_INSTALL_ARGS), so the tests run the
same code as the Install button, against a wheel the test builds, and never touch the user's Blender folders.
"""

import os
import shlex
import socket
import subprocess
import sys
import time

import bpy
import pytest
from fixture_model import FIXTURE
from tiny_wheel import build_wheel

from triposr_blender import dependencies, vendor_install
from triposr_blender.backends.types import ModelSettings
from triposr_blender.ui import install_ops, status
from triposr_blender.ui.session import SESSION
from triposr_blender.worker.client import worker_environment

pytestmark = pytest.mark.blender

HANG_GUARD_S = 120
MISSING_MODULE = "triposr_test_module_that_does_not_exist"


def installer_args(*options) -> str:
    return shlex.join(map(str, options))


@pytest.fixture
def addon(tmp_path, monkeypatch):
    """The dependency UI registered, with its own empty dependency folder and a local wheel to install."""
    for name in [name for name in os.environ if name.startswith("PIP_")]:
        monkeypatch.delenv(name)  # this machine's find-links and extra indexes must not take part
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv(dependencies.ENV_DEPS_DIR, str(tmp_path / "deps"))
    monkeypatch.setenv(dependencies.ENV_REQUIRED_MODULES, "tinypkg")
    wheels = tmp_path / "wheels"
    build_wheel(wheels)
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("tinypkg\n")
    monkeypatch.setenv(
        dependencies.ENV_INSTALL_ARGS,
        installer_args("--requirement", requirements, "--no-index", "--find-links", wheels),
    )
    system = bpy.context.preferences.system
    monkeypatch.setattr(system, "use_online_access", True)
    monkeypatch.setattr(install_ops, "_job", None)
    # The panel caches the status: restore the real one afterwards, not this fixture's "tinypkg missing".
    monkeypatch.setattr(dependencies, "_status", None)
    for cls in install_ops.classes:
        bpy.utils.register_class(cls)
    dependencies.refresh_status()
    yield tmp_path
    install_ops.unregister()
    for cls in reversed(install_ops.classes):
        bpy.utils.unregister_class(cls)
    sys.modules.pop("tinypkg", None)


def rows(details=False):
    job = install_ops.current_job()
    return status.dependency_rows(job, dependencies.status(), bpy.app.online_access, details=details)


def buttons(shown):
    return {row.operator: row.enabled for row in shown if row.operator}


def texts(shown):
    return "\n".join(row.text for row in shown)


EARLIER_INSTALL = {vendor_install.INSTALL_INFO_FILE: b'{"torch_build": "cpu"}', "earlier.txt": b"kept"}


def earlier_install(folder):
    """A dependency folder an earlier install made (it holds the installer's record)."""
    folder.mkdir()
    for name, content in EARLIER_INSTALL.items():
        (folder / name).write_bytes(content)
    return folder


def snapshot(folder):
    return {str(path.relative_to(folder)): path.read_bytes() for path in folder.rglob("*") if path.is_file()}


def test_the_operators_register_and_unregister_repeatedly(addon):
    for _ in range(2):
        for cls in reversed(install_ops.classes):
            bpy.utils.unregister_class(cls)
        assert not hasattr(bpy.types, "TRIPOSR_OT_install_dependencies")
        for cls in install_ops.classes:
            bpy.utils.register_class(cls)
        assert hasattr(bpy.types, "TRIPOSR_OT_install_dependencies")


def test_the_dependency_check_never_imports_torch(tmp_path):
    script = (
        "import sys, bpy\n"
        "from triposr_blender import dependencies\n"
        "from triposr_blender.ui.status import dependency_rows\n"
        "status = dependencies.refresh_status()\n"
        "dependency_rows(None, status, True, details=True)\n"
        "print(status.ready, 'torch' in sys.modules)\n"
    )
    env = {**os.environ, dependencies.ENV_DEPS_DIR: str(tmp_path / "deps")}
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=HANG_GUARD_S
    )
    assert result.stdout.split()[-2:] == ["True", "False"], result.stderr  # torch found, yet not imported


def test_missing_dependencies_offer_the_install_with_its_size(addon, monkeypatch):
    monkeypatch.setenv(dependencies.ENV_REQUIRED_MODULES, f"{MISSING_MODULE},numpy")

    assert not dependencies.refresh_status().ready

    shown = rows()
    assert shown[0].text == f"Missing Python packages: {MISSING_MODULE}"  # numpy, which Blender has, is not
    plan = dependencies.download_plan()
    assert f"About {plan.size_text} to download: PyTorch build {plan.build}" in texts(shown)
    assert f"Installs into {dependencies.deps_dir()}" in texts(shown)
    assert buttons(shown) == {"triposr.install_dependencies": True}


def test_on_windows_with_long_paths_off_a_folder_too_deep_is_explained_before_any_download(
    addon, monkeypatch, tmp_path
):
    monkeypatch.setenv(dependencies.ENV_REQUIRED_MODULES, MISSING_MODULE)
    monkeypatch.setenv(dependencies.ENV_DEPS_DIR, str(tmp_path / ("x" * 120)))
    monkeypatch.setattr(dependencies.platform, "system", lambda: "Windows")
    monkeypatch.setattr(vendor_install, "long_paths_enabled", lambda system: system != "Windows")
    dependencies.refresh_status()

    shown = rows()

    assert "while long paths are off" in texts(shown)
    assert not buttons(shown), "no install that would fail after gigabytes of downloads"


def test_without_online_access_the_install_is_refused_with_where_to_allow_it(addon, monkeypatch):
    monkeypatch.setattr(bpy.context.preferences.system, "use_online_access", False)
    assert not bpy.app.online_access

    shown = rows()
    assert install_ops.OFFLINE_MESSAGE in texts(shown)
    assert "Preferences > System > Network > Allow Online Access" in install_ops.OFFLINE_MESSAGE
    assert any(row.setting == "use_online_access" for row in shown)
    assert buttons(shown) == {"triposr.install_dependencies": False}

    with pytest.raises(RuntimeError, match="Allow Online Access"):
        bpy.ops.triposr.install_dependencies()
    assert install_ops.current_job() is None
    assert not (addon / "deps-install.log").exists()


def test_install_makes_the_packages_importable_without_a_restart(addon):
    job = install_ops.start_job(install_ops.InstallerOperator.installer_options)
    fractions = []
    while (interval := install_ops.follow_job()) is not None:  # what the UI's timer does
        fractions.append(job.fraction)
        time.sleep(interval)

    assert (job.state, job.fraction) == (dependencies.SUCCEEDED, 1.0)
    assert fractions == sorted(fractions)

    assert dependencies.status().ready
    # Only the worker imports the dependencies; Blender's own sys.path is left alone for other add-ons.
    assert "tinypkg" not in sys.modules and str(addon / "deps") not in sys.path
    environment = worker_environment((str(addon / "deps"),), {})
    seen_by_worker = subprocess.run(
        [sys.executable, "-c", "import tinypkg; print(tinypkg.VALUE)"],
        env=environment,
        capture_output=True,
        text=True,
    )
    assert seen_by_worker.stdout.strip() == "42", seen_by_worker.stderr
    assert rows() == []  # the panel goes straight to Generate
    shown = rows(details=True)
    assert f"Dependencies installed in {addon / 'deps'}" in texts(shown)
    assert set(buttons(shown)) == {
        "triposr.check_dependencies",
        "triposr.reinstall_dependencies",
        "triposr.remove_dependencies",
    }
    assert bpy.ops.triposr.check_dependencies() == {"FINISHED"}


@pytest.mark.parametrize(
    ("installed", "shown"),
    [
        (
            {
                "torch_build": "cu130",
                "torch_version": "2.13.0+cu130",
                "cuda_available": True,
                "device": "NVIDIA GeForce RTX 4090",
                "free_vram_gb": 21.3,
                "total_vram_gb": 24.0,
            },
            ["PyTorch 2.13.0+cu130 (cu130 build)", "GPU NVIDIA GeForce RTX 4090: 21.3 GB of 24.0 GB free"],
        ),
        (
            {
                "torch_build": "default",
                "torch_version": "2.13.0",
                "cuda_available": False,
                "mps_available": True,
            },
            ["PyTorch 2.13.0 (default build)", "GPU: Apple silicon (Metal/MPS)"],
        ),
        (
            {
                "torch_build": "cpu",
                "torch_version": "2.13.0+cpu",
                "cuda_available": False,
                "mps_available": False,
            },
            ["PyTorch 2.13.0+cpu (cpu build)", "No GPU available to PyTorch: TripoSR runs on the CPU"],
        ),
        ({}, ["Device not checked yet: press Refresh"]),
    ],
)
def test_the_preferences_show_the_installed_build_and_device(tmp_path, installed, shown):
    installed_status = dependencies.Status(tmp_path, missing=(), info=installed)
    text = texts(status.dependency_rows(None, installed_status, True, details=True))
    assert all(line in text for line in shown), text


def test_an_install_that_cannot_reach_the_index_shows_the_cause_and_leaves_the_folder(addon, monkeypatch):
    requirements = addon / "requirements.txt"
    monkeypatch.setenv(
        dependencies.ENV_INSTALL_ARGS,
        installer_args("--requirement", requirements, "--index-url", "http://127.0.0.1:9/", "--retries", 1),
    )
    folder = earlier_install(addon / "deps")

    with pytest.raises(RuntimeError, match="Could not reach the package index"):
        bpy.ops.triposr.install_dependencies()

    job = install_ops.current_job()
    assert job.state == dependencies.FAILED
    shown = rows()
    assert job.error in texts(shown)
    log_rows = [row for row in shown if row.path]
    assert [row.path for row in log_rows] == [str(dependencies.log_path())]
    assert dependencies.log_path().is_file()
    assert buttons(shown) == {"triposr.retry_dependency_install": True}
    assert snapshot(folder) == EARLIER_INSTALL
    assert sorted(path.name for path in addon.glob("deps.*")) == []  # no staging folder left


def test_remove_deletes_the_installed_dependencies(addon):
    assert bpy.ops.triposr.install_dependencies() == {"FINISHED"}  # a script's call waits for the end
    assert (addon / "deps" / "tinypkg").is_dir()

    assert bpy.ops.triposr.remove_dependencies() == {"FINISHED"}

    assert not (addon / "deps").exists()
    assert not dependencies.status().ready
    assert "triposr.install_dependencies" in buttons(rows())


@pytest.mark.parametrize("operator", ["reinstall_dependencies", "remove_dependencies"])
def test_reinstall_and_remove_first_stop_the_model_worker_using_the_installed_files(addon, operator):
    """On Windows the worker's open PyTorch files could be neither replaced nor deleted."""
    assert bpy.ops.triposr.install_dependencies() == {"FINISHED"}
    worker = SESSION.worker()
    worker.load(ModelSettings(str(FIXTURE), device="cpu"))
    assert worker.running

    assert getattr(bpy.ops.triposr, operator)() == {"FINISHED"}

    assert not worker.running and not worker.busy


def test_cancel_stops_the_installer_and_changes_nothing(addon, monkeypatch):
    with socket.create_server(("127.0.0.1", 0)) as silent_index:  # accepts, then never answers
        port = silent_index.getsockname()[1]
        monkeypatch.setenv(
            dependencies.ENV_INSTALL_ARGS,
            installer_args(
                "--requirement", addon / "requirements.txt", "--index-url", f"http://127.0.0.1:{port}/"
            ),
        )
        folder = earlier_install(addon / "deps")
        job = install_ops.start_job(install_ops.InstallerOperator.installer_options)
        silent_index.settimeout(HANG_GUARD_S)
        connection, _ = silent_index.accept()  # pip is now waiting for the index
        with connection:
            job.poll()
            shown = rows()
            assert shown[0].progress is not None
            assert buttons(shown) == {"triposr.cancel_dependency_install": True}
            assert bpy.ops.triposr.cancel_dependency_install() == {"FINISHED"}
            job.wait()

    assert job.state == dependencies.CANCELLED
    assert texts(rows()).startswith("Canceled; nothing was changed")
    assert snapshot(folder) == EARLIER_INSTALL
    assert sorted(path.name for path in addon.glob("deps.*")) == []


def test_remove_refuses_a_dependency_folder_the_installer_did_not_make(addon):
    """TRIPOSR_DEPS_DIR may point at a shared folder: Remove deletes only what the installer made."""
    folder = addon / "deps"
    folder.mkdir()
    (folder / "thesis.tex").write_text("years of work")

    with pytest.raises(RuntimeError, match="holds files this installer did not put there"):
        bpy.ops.triposr.remove_dependencies()

    assert (folder / "thesis.tex").read_text() == "years of work"


def test_background_removal_keeps_its_model_in_the_extensions_folder_or_the_chosen_cache(
    tmp_path, monkeypatch
):
    monkeypatch.delenv("U2NET_HOME", raising=False)
    monkeypatch.setenv(dependencies.ENV_MODELS_DIR, str(tmp_path / "models"))

    assert dependencies.rembg_home() == str(tmp_path / "models" / "rembg")
    assert dependencies.rembg_home(str(tmp_path / "cache")) == str(tmp_path / "cache" / "rembg")
    monkeypatch.setenv("U2NET_HOME", str(tmp_path / "users-own"))
    assert dependencies.rembg_home() == "", "a U2NET_HOME the user set is left to rembg"


def test_remove_deletes_the_downloaded_models_only_when_asked(addon, monkeypatch):
    monkeypatch.delenv("U2NET_HOME", raising=False)
    monkeypatch.delenv("TRIPOSR_MODEL", raising=False)
    monkeypatch.setenv(dependencies.ENV_MODELS_DIR, str(addon / "models"))
    monkeypatch.setenv("HF_HUB_CACHE", str(addon / "hub"))
    triposr = addon / "hub" / "models--stabilityai--TripoSR" / "blobs"
    rembg = addon / "models" / "rembg"
    for folder, name in ((triposr, "0123abcd"), (rembg, "u2net.onnx")):
        folder.mkdir(parents=True)
        (folder / name).write_bytes(bytes(1000))

    assert bpy.ops.triposr.remove_dependencies() == {"FINISHED"}
    assert (triposr / "0123abcd").exists() and (rembg / "u2net.onnx").exists()

    assert bpy.ops.triposr.remove_dependencies(delete_models=True) == {"FINISHED"}
    assert not (addon / "hub" / "models--stabilityai--TripoSR").exists() and not rembg.exists()


def test_on_an_intel_mac_the_box_says_pytorch_has_no_build_there_and_offers_no_download(addon, monkeypatch):
    monkeypatch.setenv(dependencies.ENV_REQUIRED_MODULES, MISSING_MODULE)
    intel_mac = vendor_install.choose_torch_build(vendor_install.Machine("Darwin", "x86_64"))
    monkeypatch.setattr(
        dependencies, "download_plan", lambda: dependencies.DownloadPlan(intel_mac.name, intel_mac.reason, 0)
    )
    dependencies.refresh_status()

    shown = rows()

    assert "PyTorch 2.13 has no build for Intel Macs" in texts(shown)
    assert buttons(shown) == {}
