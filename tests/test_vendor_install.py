"""vendor_install.py: which PyTorch build it picks, the pip command it runs, and real installs.

The installs run real pip, from a folder holding a wheel the test builds, into a temporary target; the
machine's own pip configuration (its find-links and extra indexes) is set aside so pip sees only that folder.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy
import pytest
from tiny_wheel import build_wheel

from triposr_blender import vendor_install
from triposr_blender.vendor_install import Machine, choose_torch_build

SCRIPT = Path(vendor_install.__file__).resolve()
UNREACHABLE_INDEX = "http://127.0.0.1:9/"  # the discard port: nothing listens, the connection is refused
HANG_GUARD_S = 120  # generous: a run that hangs fails the test instead of the suite


def nvidia(system, driver, name, capability=None):
    return Machine(system, "x86_64", nvidia_driver=driver, gpu_name=name, compute_capability=capability)


BUILD_CHOICES = [
    # machine, expected build, words the printed reason contains
    (Machine("Linux", "x86_64"), "cpu", "no NVIDIA or AMD GPU"),
    (Machine("Windows", "AMD64"), "cpu", "no NVIDIA or AMD GPU"),
    (nvidia("Linux", (580, 95, 5), "NVIDIA GeForce RTX 4090", (8, 9)), "cu130", "newest CUDA build"),
    # CUDA 12 wheels run on any R525+ driver (minor version compatibility), exactly from 525.60.13 on
    (nvidia("Linux", (550, 54, 14), "NVIDIA GeForce RTX 3090", (8, 6)), "cu126", "RTX 3090"),
    (nvidia("Linux", (525, 60, 13), "Tesla T4", (7, 5)), "cu126", "driver 525.60.13"),
    (nvidia("Linux", (520, 61, 5), "Tesla T4", (7, 5)), "cpu", "update it to 525.60.13"),
    (nvidia("Windows", (528, 33), "NVIDIA GeForce RTX 3060", (8, 6)), "cu126", "driver 528.33"),
    (nvidia("Windows", (527, 41), "NVIDIA GeForce RTX 3060", (8, 6)), "cpu", "update it to 528.33"),
    # RTX 50 (Blackwell) needs CUDA 13 in torch 2.13, hence an R580 driver
    (nvidia("Windows", (581, 57), "NVIDIA GeForce RTX 5090", (12, 0)), "cu130", "RTX 5090"),
    (nvidia("Linux", (570, 86, 15), "NVIDIA GeForce RTX 5080", (12, 0)), "cpu", "update it to 580.65.06"),
    (nvidia("Linux", (580, 65, 6), "NVIDIA GeForce RTX 5070", None), "cu130", "RTX 5070"),
    (nvidia("Linux", (575, 57, 8), "NVIDIA GeForce RTX 5070", None), "cpu", "update it to 580.65.06"),
    # CUDA 13 dropped Maxwell, Pascal and Volta; nothing supports Kepler any more
    (nvidia("Linux", (580, 95, 5), "NVIDIA GeForce GTX 1080", (6, 1)), "cu126", "GTX 1080"),
    (nvidia("Linux", (470, 256, 2), "Tesla K80", (3, 7)), "cpu", "no CUDA build of PyTorch supports"),
    (Machine("Linux", "x86_64", rocm_version="6.4.1"), "rocm7.2", "ROCm 6.4.1"),
    (Machine("Windows", "AMD64", rocm_version="6.4.1"), "cpu", "no NVIDIA or AMD GPU"),
    (Machine("Linux", "x86_64", (580, 95, 5), "NVIDIA L4", (8, 9), rocm_version="6.4"), "cu130", "NVIDIA L4"),
    (Machine("Darwin", "arm64"), "default", "MPS"),
    (Machine("Darwin", "arm64", macos_version=(14, 0)), "default", "MPS"),
    (Machine("Darwin", "arm64", macos_version=(13, 6, 1)), "none", "needs macOS 14 (Sonoma) or newer"),
    (Machine("Darwin", "x86_64"), "none", "no build for Intel Macs"),
]


@pytest.mark.parametrize(("machine", "build", "reason"), BUILD_CHOICES)
def test_the_torch_build_suits_the_machine(machine, build, reason):
    choice = choose_torch_build(machine)
    assert (choice.name, reason in choice.reason) == (build, True), choice.reason


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("580.95.05, NVIDIA GeForce RTX 4090, 8.9\n", ((580, 95, 5), "NVIDIA GeForce RTX 4090", (8, 9))),
        ("581.57, NVIDIA GeForce RTX 5090, 12.0", ((581, 57), "NVIDIA GeForce RTX 5090", (12, 0))),
        ("550.54.14, GRID A100-40C, [N/A]", ((550, 54, 14), "GRID A100-40C", None)),
        ("470.57.02, Tesla K80", ((470, 57, 2), "Tesla K80", None)),  # drivers before R510: no compute_cap
        ("580.95.05, NVIDIA A100, 8.0\n580.95.05, NVIDIA T4, 7.5", ((580, 95, 5), "NVIDIA A100", (8, 0))),
    ],
)
def test_nvidia_smi_answers_are_read_for_gpu_0(output, expected):
    assert vendor_install.parse_nvidia_smi(output) == expected


def test_torch_is_pinned_to_the_chosen_build_and_its_index():
    requirements = ["torch==2.13.0", "numpy>=1.24,<3", "rembg[cpu]==2.0.67"]
    cuda = vendor_install.TorchBuild("cu130", "test")
    assert vendor_install.with_torch_build(requirements, cuda)[0] == "torch==2.13.0+cu130"
    assert cuda.index_url == "https://download.pytorch.org/whl/cu130"
    default = vendor_install.TorchBuild("default", "test")
    assert vendor_install.with_torch_build(requirements, default) == requirements
    assert default.index_url is None


def test_the_package_list_is_requirements_txt_with_import_names():
    requirements = vendor_install.read_requirements(vendor_install.default_requirements_file())
    modules = [vendor_install.import_name(line) for line in requirements]
    assert {"torch", "numpy", "PIL", "omegaconf", "huggingface_hub", "rembg"} <= set(modules)
    assert "mcubes" not in modules  # no wheels for Blender 5.1+'s Python 3.13: the core marches cubes itself


def test_pip_output_becomes_progress_events():
    progress = vendor_install.PipProgress(expected_mb=400)
    lines = [
        "Collecting torch==2.13.0+cpu",
        "  Downloading https://download.pytorch.org/whl/cpu/torch-2.13.0%2Bcpu-cp311-linux.whl (183.0 MB)",
        "  Using cached numpy-1.26.4-cp311-cp311-manylinux_2_17_x86_64.whl (18.3 MB)",
        "Requirement already satisfied: something",
        "Installing collected packages: numpy, torch",
    ]
    events = [progress.event(line) for line in lines]
    assert [(e["stage"], e["package"]) if e else None for e in events] == [
        ("resolving", "torch"),
        ("downloading", "torch"),
        ("downloading", "numpy"),
        None,
        ("installing", ""),
    ]
    assert events[2]["downloaded_mb"] == pytest.approx(201.3)
    assert (
        events[1]["fraction"] < events[2]["fraction"] < events[4]["fraction"] == vendor_install.DOWNLOAD_END
    )


@pytest.mark.parametrize(
    ("pip_output", "advice"),
    [
        (["WARNING: Retrying ... 'NewConnectionError(... Connection refused)': /torch/"], "Could not reach"),
        (
            ["WARNING: ... NameResolutionError(\"HTTPSConnection(host='download.pytorch.org', port=443)\")"],
            "Could not reach the package index (download.pytorch.org)",
        ),
        (  # a retry that worked does not hide the real cause
            ["WARNING: Retrying ... NewConnectionError", "OSError: [Errno 28] No space left on device"],
            "disk is full",
        ),
        (
            ["ERROR: Could not install packages due to an OSError: [Errno 28] No space left on device"],
            "disk is full",
        ),
        (["ssl.SSLCertVerificationError: [SSL: CERTIFICATE_VERIFY_FAILED]"], "PIP_CERT"),
        (["ERROR: No matching distribution found for torch==2.13.0+cu999"], "try another build with --torch"),
        (
            [
                "ERROR: Could not find a version that satisfies x",
                "ERROR: No matching distribution found for x",
            ],
            "No matching distribution found for x",
        ),
    ],
)
def test_pip_failures_are_explained(pip_output, advice):
    assert advice in vendor_install.diagnose(pip_output)


# ------------------------------------------------------------------------------------------- real runs


def run_installer(env, *options, python=sys.executable):
    return subprocess.run(
        [python, str(SCRIPT), *map(str, options)],
        env=env,
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_S,
    )


def install_locally(env, target, requirements, wheels, *options, python=sys.executable):
    return run_installer(
        env,
        "--target",
        target,
        "--requirement",
        requirements,
        "--no-index",
        "--find-links",
        wheels,
        *options,
        python=python,
    )


def snapshot(folder: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def earlier_install(target: Path) -> Path:
    """A folder an earlier run of the installer made (it holds the installer's record)."""
    target.mkdir(parents=True)
    (target / vendor_install.INSTALL_INFO_FILE).write_text('{"torch_build": "cpu"}')
    return target


def leftovers(target: Path) -> list[str]:
    return sorted(path.name for path in target.parent.glob(f"{target.name}.*"))


def events(stdout: str, kind: str) -> list[dict]:
    return [
        fields
        for line in stdout.splitlines()
        if (event := vendor_install.parse_event(line))
        for k, fields in [event]
        if k == kind
    ]


def pip_commands(log: Path) -> list[str]:
    return [line for line in log.read_text().splitlines() if line.startswith("$ ") and " pip" in line]


@pytest.mark.skipif(
    bool(shutil.which("nvidia-smi") or Path("/opt/rocm").exists()), reason="describes a machine without a GPU"
)
def test_dry_run_on_this_machine_prints_the_cpu_build_and_the_pip_command(tmp_path, pip_env):
    target = tmp_path / "deps"
    result = run_installer(pip_env, "--target", target, "--dry-run")

    assert result.returncode == 0, result.stderr
    assert "PyTorch build: cpu (no NVIDIA or AMD GPU found)" in result.stdout
    commands = [line for line in result.stdout.splitlines() if line.startswith("$ ")]
    assert len(commands) == 1
    constraints = tmp_path / "deps-constraints.txt"
    assert f"Constraints file {constraints}: numpy=={numpy.__version__}" in result.stdout
    for expected in (
        f"--target {tmp_path / 'deps.staging'}",
        f"--constraint {constraints}",
        "torch==2.13.0+cpu",
        "--extra-index-url https://download.pytorch.org/whl/cpu",
        "rembg[cpu]==2.0.67",
    ):
        assert expected in commands[0]
    assert list(tmp_path.iterdir()) == []  # a dry run writes nothing


def test_install_puts_importable_packages_into_the_target(tmp_path, pip_env, wheels, requirements):
    target = tmp_path / "deps"
    result = install_locally(pip_env, target, requirements, wheels)

    assert result.returncode == 0, result.stdout + result.stderr
    imported = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import sys; sys.path.append({str(target)!r}); import tinypkg; print(tinypkg.VALUE)",
        ],
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_S,
    )
    assert imported.stdout.strip() == "42", imported.stderr
    assert leftovers(target) == []  # no staging or old folder
    info = json.loads((target / vendor_install.INSTALL_INFO_FILE).read_text())
    assert info["requirements"] == ["tinypkg"]
    assert [event["stage"] for event in events(result.stdout, "progress")][-2:] == ["verifying", "finishing"]
    assert events(result.stdout, "done")[0]["target"] == str(target)


def test_a_complete_install_is_kept_and_upgrade_replaces_it_whole(tmp_path, pip_env, wheels, requirements):
    target = tmp_path / "deps"
    install_locally(pip_env, target, requirements, wheels)

    again = install_locally(pip_env, target, requirements, wheels)
    assert "already installed" in again.stdout

    (wheels / "tinypkg-1.0-py3-none-any.whl").unlink()
    build_wheel(wheels, version="2.0", source="VALUE = 43\n")
    upgraded = install_locally(pip_env, target, requirements, wheels, "--upgrade")
    assert upgraded.returncode == 0, upgraded.stdout
    assert sorted(path.name for path in target.glob("tinypkg-*.dist-info")) == ["tinypkg-2.0.dist-info"]
    assert "VALUE = 43" in (target / "tinypkg" / "__init__.py").read_text()


def test_every_pip_command_pins_the_numpy_of_the_target_python(tmp_path, pip_env, wheels, requirements):
    target = tmp_path / "deps"
    install_locally(pip_env, target, requirements, wheels)
    install_locally(pip_env, target, requirements, wheels, "--upgrade")

    constraints = tmp_path / "deps-constraints.txt"
    commands = pip_commands(vendor_install.log_path_for(target))
    assert len(commands) == 2
    assert all(f"--constraint {constraints}" in command for command in commands)
    assert constraints.read_text() == f"numpy=={numpy.__version__}\n"


def test_an_unreachable_index_fails_with_the_cause_and_leaves_the_target_as_it_was(
    tmp_path, pip_env, wheels, requirements
):
    target = earlier_install(tmp_path / "deps")
    (target / "tinypkg").mkdir(parents=True)
    (target / "tinypkg" / "__init__.py").write_text("VALUE = 'an earlier install'\n")
    before = snapshot(target)

    result = run_installer(
        pip_env,
        "--target",
        target,
        "--requirement",
        requirements,
        "--upgrade",
        "--index-url",
        UNREACHABLE_INDEX,
        "--retries",
        1,
        "--timeout",
        2,
    )

    assert result.returncode == vendor_install.EXIT_FAILED
    log = vendor_install.log_path_for(target)
    message = events(result.stdout, "error")[0]["message"]
    assert message.startswith("Could not reach the package index")
    assert "check the internet connection, proxy (HTTPS_PROXY) or firewall" in message
    assert f"full log: {log}" in message
    assert f"ERROR: {message}" in result.stderr
    assert "Connection refused" in log.read_text()
    assert snapshot(target) == before
    assert leftovers(target) == []


def test_packages_that_do_not_import_are_never_moved_into_place(tmp_path, pip_env, requirements):
    wheels = tmp_path / "wheels"
    build_wheel(wheels, source="raise ImportError('broken on purpose')\n")
    target = earlier_install(tmp_path / "deps")
    (target / "earlier.txt").write_text("kept")
    before = snapshot(target)

    result = install_locally(pip_env, target, requirements, wheels)

    assert result.returncode == vendor_install.EXIT_FAILED
    assert (
        "Importing tinypkg failed: ImportError: broken on purpose"
        in events(result.stdout, "error")[0]["message"]
    )
    assert snapshot(target) == before
    assert leftovers(target) == []


def test_a_python_without_pip_installs_with_ensurepip_s_wheel(tmp_path, pip_env, wheels, requirements):
    python_home = tmp_path / "no-pip"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(python_home)], check=True)
    python = python_home / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    assert subprocess.run([python, "-m", "pip", "--version"], capture_output=True).returncode != 0
    target = tmp_path / "deps"
    before = tree_state(python_home)

    result = install_locally(pip_env, target, requirements, wheels, python=python)

    assert result.returncode == 0, result.stdout + result.stderr
    assert (target / "tinypkg" / "__init__.py").is_file()
    assert (tmp_path / "deps-constraints.txt").read_text() == ""  # no numpy there to pin: numpy 1 or 2 work
    # Nothing is written beside that Python: Blender installed read-only under Program Files works too.
    assert tree_state(python_home) == before


def tree_state(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under ``folder``, with its size and time of change."""
    return {str(path): (path.lstat().st_size, path.lstat().st_mtime_ns) for path in folder.rglob("*")}


def test_outside_blender_the_target_is_required(pip_env):
    result = run_installer(pip_env, "--dry-run")
    assert result.returncode == 2
    assert "--target is required outside Blender" in result.stderr


def test_options_for_blender_come_after_the_double_dash():
    argv = ["blender", "-b", "--python", "vendor_install.py", "--", "--torch", "cpu", "--dry-run"]
    assert vendor_install.script_arguments(argv) == ["--torch", "cpu", "--dry-run"]
    assert vendor_install.script_arguments(["vendor_install.py", "--dry-run"]) == ["--dry-run"]


# --- A folder of the user's is never replaced or deleted; one install per target at a time -------------


def test_a_target_that_cannot_be_written_is_one_message_and_one_event(
    tmp_path, pip_env, wheels, requirements
):
    """Blender's read-only Program Files, a full disk: the add-on's progress display hears why, no traceback.
    (Tests run as root, whom no permission stops: a file where a folder must go stands in.)"""
    (tmp_path / "a-file").write_text("")
    target = tmp_path / "a-file" / "deps"

    result = install_locally(pip_env, target, requirements, wheels)

    assert result.returncode == vendor_install.EXIT_FAILED
    (error,) = events(result.stdout, "error")
    assert (
        error["message"].startswith(f"Cannot write {tmp_path / 'a-file'}") and "--target" in error["message"]
    )
    assert "Traceback" not in result.stderr and f"ERROR: {error['message']}" in result.stderr


def test_a_target_holding_files_the_installer_did_not_put_there_is_refused_and_kept(
    tmp_path, pip_env, wheels, requirements
):
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "thesis.tex").write_text("years of work")

    result = install_locally(pip_env, shared, requirements, wheels, "--upgrade")

    assert result.returncode == vendor_install.EXIT_FAILED
    assert "holds files this installer did not put there" in events(result.stdout, "error")[0]["message"]
    assert snapshot(shared) == {"thesis.tex": b"years of work"}
    assert leftovers(shared) == []


def test_removing_deletes_only_a_folder_the_installer_made(tmp_path, pip_env, wheels, requirements):
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "thesis.tex").write_text("years of work")
    with pytest.raises(vendor_install.InstallError, match="did not put there"):
        vendor_install.remove_installed(shared)
    assert (shared / "thesis.tex").read_text() == "years of work"

    installed = tmp_path / "deps"
    install_locally(pip_env, installed, requirements, wheels)
    vendor_install.remove_installed(installed)
    assert not installed.exists() and leftovers(installed) == []


def hold_lock(target: Path, pid: int, host: str, age_s: float = 0.0) -> Path:
    lock = target.with_name(target.name + ".lock")
    lock.write_text(json.dumps({"pid": pid, "host": host, "started": time.time() - age_s}))
    os.utime(lock, (time.time() - age_s, time.time() - age_s))
    return lock


def test_an_install_while_another_runs_into_the_same_target_says_so_and_changes_nothing(
    tmp_path, pip_env, wheels, requirements
):
    target = tmp_path / "deps"
    running = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock = hold_lock(target, running.pid, socket.gethostname())
        result = install_locally(pip_env, target, requirements, wheels)
    finally:
        running.kill()
        running.wait()

    assert result.returncode == vendor_install.EXIT_FAILED
    message = events(result.stdout, "error")[0]["message"]
    assert (
        f"Another install into {target} is running (process {running.pid} on {socket.gethostname()}"
        in message
    )
    assert f"delete {lock}" in message
    assert lock.exists() and not target.exists()


@pytest.mark.parametrize(
    ("holder", "age_s"),
    [
        ("a process that has ended, on this host", 0.0),
        ("a lock untouched for an hour, on another host", 3600.0),
    ],
)
def test_a_lock_whose_holder_has_died_is_taken_over(tmp_path, pip_env, wheels, requirements, holder, age_s):
    target = tmp_path / "deps"
    ended = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    host = socket.gethostname() if age_s == 0 else "render-node-07"
    lock = hold_lock(target, int(ended.stdout), host, age_s)

    result = install_locally(pip_env, target, requirements, wheels)

    assert result.returncode == 0, result.stdout + result.stderr
    assert (target / "tinypkg" / "__init__.py").is_file() and not lock.exists()


# --- Package indexes and progress ------------------------------------------------------------------------


def test_a_mirror_given_with_index_url_is_the_only_index(tmp_path, pip_env):
    mirror = "https://mirror.example/simple"
    only_mirror = run_installer(
        pip_env, "--target", tmp_path / "deps", "--torch", "cpu", "--dry-run", "--index-url", mirror
    )
    with_torch_mirror = run_installer(
        pip_env, "--target", tmp_path / "deps", "--torch", "cpu", "--dry-run", "--index-url", mirror,
        "--torch-index-url", "https://mirror.example/pytorch/",
    )  # fmt: skip

    assert f"--index-url {mirror}" in only_mirror.stdout
    assert "download.pytorch.org" not in only_mirror.stdout + with_torch_mirror.stdout
    assert "--extra-index-url https://mirror.example/pytorch/cpu" in with_torch_mirror.stdout


@pytest.mark.parametrize(
    ("version", "bar"), [("24.0", "off"), ("24.1", "raw"), ("26.3", "raw"), (None, "off")]
)
def test_pip_reports_download_bytes_where_it_can(version, bar):
    assert vendor_install.progress_bar({"pip_version": version}) == bar


def test_downloads_move_byte_by_byte_with_pips_raw_progress():
    progress = vendor_install.PipProgress(expected_mb=400, raw=True)
    lines = [
        "Downloading torch-2.13.0%2Bcpu-cp311-cp311-linux_x86_64.whl (190.0 MB)",
        "Progress 0 of 190000000",
        "Progress 95000000 of 190000000",
        "Progress 190000000 of 190000000",
        "Using cached numpy-1.26.4-cp311-cp311-manylinux_2_17_x86_64.whl (18.2 MB)",
    ]

    events = [progress.event(line) for line in lines]

    assert [event["downloaded_mb"] for event in events] == [0.0, 0.0, 95.0, 190.0, 208.2]
    assert events[2]["message"] == "Downloading torch (95 of 190 MB)"
    assert [event["fraction"] for event in events] == sorted(event["fraction"] for event in events)
