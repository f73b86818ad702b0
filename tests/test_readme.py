"""The README's numbers that come from the code are the code's: the download sizes the panel shows, the
server's defaults and its status codes. A change in the code that the README does not follow fails here."""

import re
from pathlib import Path

import pytest

from triposr_blender import dependencies, vendor_install

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("machine", "build", "system"),
    [
        ("a CPU-only machine", "cpu", "Linux"),
        ("an NVIDIA GPU (CUDA)", "cu126", "Linux"),
        ("AMD (ROCm)", "rocm7.2", "Linux"),
        ("Apple silicon", "default", "Darwin"),
    ],
)
def test_the_download_sizes_are_those_the_panel_shows(machine, build, system):
    shown = dependencies.DownloadPlan(
        build, "", vendor_install.estimated_download_mb(build, system)
    ).size_text
    assert re.search(rf"{re.escape(shown)} (on|with) {re.escape(machine)}", README), (machine, shown)


def test_the_servers_defaults_are_the_codes():
    from triposr_blender.server import settings

    assert f"--max-queue {settings.DEFAULT_MAX_QUEUE}" in README
    assert f"--max-upload-mb {settings.DEFAULT_MAX_UPLOAD_MB}" in README
    assert f"--idle-timeout {settings.DEFAULT_IDLE_TIMEOUT:g}" in README
    assert "results are kept for an hour" in README and settings.DEFAULT_RESULT_TTL == 3600


def test_the_api_sections_status_codes_are_the_schemas():
    from triposr_blender.server.schema import ERROR_STATUSES

    section = README[README.index('Every error is `{"detail": "..."}`') :][:900]
    listed = {int(code) for code in re.findall(r"\b([45]\d\d) ", section)}
    assert listed == set(ERROR_STATUSES)
