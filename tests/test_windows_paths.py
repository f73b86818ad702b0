"""The first run on a default Windows, simulated on Linux: the platform, its environment variables and its
registry (a fake winreg) are inputs, so every branch runs here.

Windows ships with long paths off (MAX_PATH: 259 characters and a NUL), and PyTorch's Windows wheel holds
files 167 characters deep: below Blender's extension folder they do not fit, for any user name.
"""

import ast
import ntpath
import subprocess
import sys
from pathlib import Path

import pytest

from triposr_blender import dependencies, vendor_install
from triposr_blender.dependencies import ENV_MODELS_DIR
from triposr_blender.vendor_install import (
    DEEPEST_WHEEL_PATH,
    ENV_DEPS_DIR,
    InstallError,
    PathBudget,
    TorchBuild,
    dependency_folder,
    long_paths_enabled,
    nvidia_smi,
    path_budget,
)

PACKAGE = Path(vendor_install.__file__).resolve().parent
DEEPEST_PATHS = Path(__file__).parent / "fixtures" / "windows-deepest-paths.tsv"
USER = "abcdefghijklmnopqrst"  # 20 characters: the longest a Windows account's folder name gets
HOME = rf"C:\Users\{USER}"
WINDOWS = {
    "LOCALAPPDATA": rf"{HOME}\AppData\Local",
    "TEMP": rf"{HOME}\AppData\Local\Temp",
    "USERPROFILE": HOME,
}
EXTENSION_FOLDER = (
    rf"{HOME}\AppData\Roaming\Blender Foundation\Blender\4.2\extensions\.user\user_default"
    r"\triposr_blender\site-packages"
)
SHORT_FOLDER = rf"{HOME}\AppData\Local\TripoSR\deps"


def blender_folder():
    return EXTENSION_FOLDER


class FakeWinreg:
    """winreg as Windows answers for HKLM\\...\\FileSystem: LongPathsEnabled's value, or no value."""

    HKEY_LOCAL_MACHINE = "HKLM"

    def __init__(self, long_paths_enabled: int | None):
        self.value = long_paths_enabled

    def OpenKey(self, root, key):
        assert (root, key) == ("HKLM", vendor_install.LONG_PATHS_KEY)
        return self

    def QueryValueEx(self, key, name):
        if self.value is None:
            raise FileNotFoundError(2, "The system cannot find the file specified")
        return self.value, 4  # REG_DWORD

    def __enter__(self):
        return self

    def __exit__(self, *_exception):
        return False


def test_the_deepest_wheel_path_is_that_of_the_windows_wheels_file_lists():
    rows = [line.split("\t") for line in DEEPEST_PATHS.read_text().splitlines() if line and line[0] != "#"]
    assert all(int(length) == len(path) for length, _wheel, path in rows)
    assert max(int(length) for length, _wheel, _path in rows) == DEEPEST_WHEEL_PATH


@pytest.mark.parametrize(
    ("value", "enabled"), [(1, True), (0, False), (None, False)], ids=["on", "off", "never set"]
)
def test_windows_long_paths_are_read_from_the_registry(value, enabled):
    assert long_paths_enabled("Windows", FakeWinreg(value)) is enabled


@pytest.mark.parametrize("system", ["Linux", "Darwin"])
def test_beyond_windows_paths_have_no_limit_that_matters(system):
    assert long_paths_enabled(system) is True  # no registry asked
    assert path_budget(system, True, "/home/someone/deps", {}).limit is None


def test_windows_with_long_paths_off_gets_a_short_folder_that_fits_where_blenders_does_not():
    chosen = dependency_folder("Windows", WINDOWS, False, blender_folder)
    in_blender = path_budget("Windows", False, EXTENSION_FOLDER, WINDOWS)
    short = path_budget("Windows", False, chosen, WINDOWS)

    assert chosen == SHORT_FOLDER
    assert in_blender == PathBudget(312, EXTENSION_FOLDER + ".staging", 259) and in_blender.left < 0
    # pip unpacks into %TEMP%\pip-target-XXXXXXXX\Lib\site-packages first: the deepest path is there
    assert short == PathBudget(254, WINDOWS["TEMP"], 259) and short.left == 5
    assert len(SHORT_FOLDER + ".staging\\") + DEEPEST_WHEEL_PATH == 232


def test_windows_with_long_paths_on_keeps_blenders_folder():
    assert dependency_folder("Windows", WINDOWS, True, blender_folder) == EXTENSION_FOLDER
    assert path_budget("Windows", True, EXTENSION_FOLDER, WINDOWS).deepest == 312  # no limit to hold it to


@pytest.mark.parametrize("system", ["Windows", "Linux", "Darwin"])
@pytest.mark.parametrize("long_paths", [True, False])
def test_the_deps_dir_variable_still_overrides(system, long_paths):
    chosen = dependency_folder(system, {**WINDOWS, ENV_DEPS_DIR: r"D:\deps"}, long_paths, blender_folder)
    assert chosen == r"D:\deps"


def test_beyond_windows_the_folder_is_blenders():
    assert (
        dependency_folder("Linux", {}, True, lambda: "/home/a/.config/blender") == "/home/a/.config/blender"
    )


def test_without_localappdata_the_short_folder_is_under_the_users_profile():
    chosen = dependency_folder("Windows", {"USERPROFILE": HOME}, False, blender_folder)
    assert chosen == ntpath.join(HOME, "AppData", "Local", "TripoSR", "deps")


def test_blenders_folder_is_not_even_asked_for_when_the_short_folder_is_chosen():
    def never():
        raise AssertionError("Blender's extension folder was made although it is not used")

    assert dependency_folder("Windows", WINDOWS, False, never) == SHORT_FOLDER


@pytest.mark.parametrize(
    ("target", "environment", "advice"),
    [
        (EXTENSION_FOLDER, WINDOWS, f"setting {ENV_DEPS_DIR}"),
        (r"C:\d", {"TEMP": rf"{HOME}\AppData\Local\Temp\{'x' * 60}"}, "point TEMP at a shorter folder"),
    ],
    ids=["the target", "pip's temporary folder"],
)
def test_a_budget_that_cannot_hold_the_deepest_path_stops_with_both_ways_out(target, environment, advice):
    budget = path_budget("Windows", False, target, environment)
    with pytest.raises(InstallError) as refused:
        vendor_install.check_path_budget(budget)
    message = str(refused.value)
    assert f"{budget.deepest} characters in {budget.folder}" in message
    assert "Windows takes at most 259 while long paths are off" in message
    assert vendor_install.LONG_PATHS_COMMAND in message and "Enable Win32 long paths" in message
    assert advice in message


def test_a_budget_that_fits_passes():
    vendor_install.check_path_budget(path_budget("Windows", False, SHORT_FOLDER, WINDOWS))


# --- The installer, as run on such a Windows ----------------------------------------------------------------


@pytest.fixture
def on_windows_without_long_paths(monkeypatch):
    monkeypatch.setattr(vendor_install.platform, "system", lambda: "Windows")
    monkeypatch.setitem(sys.modules, "winreg", FakeWinreg(0))


def deep_target(tmp_path: Path) -> Path:
    """A target as deep as Blender's extension folder with a 20-character user name."""
    return tmp_path / ("x" * (len(EXTENSION_FOLDER) - len(str(tmp_path)) - 1))


def test_the_installer_stops_before_any_download_when_the_paths_would_not_fit(
    tmp_path, on_windows_without_long_paths, capsys
):
    target = deep_target(tmp_path)

    code = vendor_install.main(["--target", str(target), "--no-index", "--find-links", str(tmp_path)])

    output = capsys.readouterr()
    (event,) = [line for line in output.out.splitlines() if line.startswith("@@error ")]
    assert code == vendor_install.EXIT_FAILED
    assert "while long paths are off" in event and "Traceback" not in output.err
    assert "PyTorch build" not in output.out, "it stopped before choosing (and downloading) anything"
    assert sorted(path.name for path in tmp_path.iterdir()) == [], "nothing was written"


def test_dry_run_prints_the_folder_and_the_paths_to_spare(tmp_path, on_windows_without_long_paths, capsys):
    target = tmp_path / "deps"
    code = vendor_install.main(["--target", str(target), "--dry-run", "--torch", "cpu"])

    out = capsys.readouterr().out
    budget = path_budget("Windows", False, str(target), vendor_install.child_environment())
    assert code == 0
    assert f"Target folder: {target}; deepest path {budget.deepest} of at most 259 characters" in out
    assert f"({budget.left} to spare)" in out


def test_pips_own_long_path_failure_becomes_the_same_message(tmp_path, on_windows_without_long_paths):
    installer = vendor_install.Installer(vendor_install.parse_options(["--target", str(tmp_path / "deps")]))
    pip_failing = [
        sys.executable,
        "-c",
        "print('ERROR: Could not install packages due to an OSError: [Errno 2] No such file or directory');"
        "print('HINT: This error might have occurred since this system does not have Windows Long Path "
        "support enabled. You can find information regarding how to enable this at "
        "https://pip.pypa.io/warnings/enable-long-paths'); raise SystemExit(1)",
    ]
    with (
        open(tmp_path / "log", "w", encoding="utf-8") as log,
        pytest.raises(InstallError, match="Windows takes at most 259 while long paths are off"),
    ):
        installer._pip(pip_failing, TorchBuild("cpu", "test"), log)


# --- The rest of Windows ---------------------------------------------------------------------------------


def test_nvidia_smi_off_path_is_found_where_nvidias_drivers_put_it(tmp_path):
    system32 = tmp_path / "Windows" / "System32"
    nvsmi = tmp_path / "Program Files" / "NVIDIA Corporation" / "NVSMI"
    environment = {
        "PATH": "",
        "SystemRoot": str(tmp_path / "Windows"),
        "ProgramFiles": str(tmp_path / "Program Files"),
    }

    assert nvidia_smi("Windows", environment) is None  # no driver: the CPU build, no error
    nvsmi.mkdir(parents=True)
    (nvsmi / "nvidia-smi.exe").write_text("")
    assert nvidia_smi("Windows", environment) == str(nvsmi / "nvidia-smi.exe")  # drivers before R535
    system32.mkdir(parents=True)
    (system32 / "nvidia-smi.exe").write_text("")
    assert nvidia_smi("Windows", environment) == str(system32 / "nvidia-smi.exe")
    assert nvidia_smi("Linux", environment) is None


# How a subprocess call keeps its console hidden: the helper, or flags of its own that include it.
WINDOWLESS = ("no_console_window()", "creationflags", "_own_process_group()")


def test_no_subprocess_flashes_a_console_window():
    assert vendor_install.no_console_window("nt") == {"creationflags": 0x08000000}  # CREATE_NO_WINDOW
    assert vendor_install.no_console_window("posix") == {}
    unguarded = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            if not (isinstance(node.func.value, ast.Name) and node.func.value.id == "subprocess"):
                continue
            if node.func.attr not in ("run", "Popen", "call", "check_call", "check_output"):
                continue
            keywords = [ast.unparse(keyword) for keyword in node.keywords]
            if not any(
                "no_console_window" in k or "creationflags" in k or "_own_process_group" in k
                for k in keywords
            ):
                unguarded.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert not unguarded


def test_an_install_into_a_folder_of_a_user_named_with_spaces_and_accents_works_and_logs_it(
    tmp_path, pip_env, wheels, requirements
):
    target = tmp_path / "José Núñez" / "AppData" / "Local" / "TripoSR" / "deps"

    result = subprocess.run(
        [sys.executable, vendor_install.__file__, "--target", str(target), "--requirement", str(requirements),
         "--no-index", "--find-links", str(wheels)],
        env=pip_env, capture_output=True, text=True, encoding="utf-8", timeout=300,
    )  # fmt: skip

    assert result.returncode == 0, result.stdout + result.stderr
    assert (target / "tinypkg" / "__init__.py").is_file()
    assert f"Dependencies installed in {target}" in result.stdout
    assert str(target) in vendor_install.log_path_for(target).read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("variable", "folder"), [(ENV_DEPS_DIR, dependencies.deps_dir), (ENV_MODELS_DIR, dependencies.models_dir)]
)
def test_a_relative_folder_in_the_environment_is_made_absolute_where_it_is_read(
    tmp_path, monkeypatch, variable, folder
):
    """Blender's own folder is wherever it was started; the worker imports from the folder in another."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(variable, "deps")
    assert folder() == tmp_path / "deps"
