"""The README stays what an artist finishes, and the documentation's numbers that come from the code are the
code's: the download sizes the panel shows, the server's defaults and its status codes, each on its page. A
change in the code that the pages do not follow fails here, and so does a page nothing links to."""

import re
from pathlib import Path

import pytest

from triposr_blender import dependencies, vendor_install

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text(encoding="utf-8")
DOCS = REPO / "docs"
MAX_README_WORDS = 1500
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def page(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def words(markdown: str) -> int:
    """Words as a reader meets them: prose and commands, not the BibTeX entry."""
    return len(re.sub(r"```bibtex.*?```", "", markdown, flags=re.DOTALL).split())


def test_the_readme_is_short_enough_to_finish():
    assert words(README) <= MAX_README_WORDS


def test_every_page_is_linked_from_the_readme_and_links_back():
    pages = sorted(path.name for path in DOCS.glob("*.md"))
    assert pages, "the documentation pages"
    linked = set(LINK.findall(README))
    assert {f"docs/{name}" for name in pages} <= linked
    assert all("(../README.md)" in page(name) for name in pages)


@pytest.mark.parametrize("document", ["README.md", *(f"docs/{path.name}" for path in DOCS.glob("*.md"))])
def test_every_relative_link_and_picture_of_a_page_exists(document):
    path = REPO / document
    targets = [target for target in LINK.findall(path.read_text(encoding="utf-8")) if "://" not in target]
    missing = [target for target in targets if not (path.parent / target).exists()]
    assert not missing


@pytest.mark.parametrize(
    ("machine", "build", "system"),
    [
        ("a CPU-only machine", "cpu", "Linux"),
        ("an NVIDIA GPU (CUDA)", "cu126", "Linux"),
        ("AMD (ROCm)", "rocm7.2", "Linux"),
        ("Apple silicon", "default", "Darwin"),
    ],
)
@pytest.mark.parametrize("document", ["README.md", "docs/installer.md"])
def test_the_download_sizes_are_those_the_panel_shows(machine, build, system, document):
    shown = dependencies.DownloadPlan(
        build, "", vendor_install.estimated_download_mb(build, system)
    ).size_text
    text = (REPO / document).read_text(encoding="utf-8")
    assert re.search(rf"{re.escape(shown)} (on|with) {re.escape(machine)}", text), (machine, shown)


def test_the_servers_defaults_are_the_codes():
    from triposr_blender.server import settings

    server = page("server.md")
    assert f"--max-queue {settings.DEFAULT_MAX_QUEUE}" in server
    assert f"--max-upload-mb {settings.DEFAULT_MAX_UPLOAD_MB}" in server
    assert f"--idle-timeout {settings.DEFAULT_IDLE_TIMEOUT:g}" in server
    assert "results are kept for an hour" in server and settings.DEFAULT_RESULT_TTL == 3600


def test_the_api_pages_status_codes_are_the_schemas():
    from triposr_blender.server.schema import ERROR_STATUSES

    server = page("server.md")
    section = server[server.index('Every error is `{"detail": "..."}`') :][:900]
    listed = {int(code) for code in re.findall(r"\b([45]\d\d) ", section)}
    assert listed == set(ERROR_STATUSES)


def test_the_batchs_options_on_its_page_are_the_batchs():
    from triposr_blender.batch.command import build_parser

    flags = {flag for action in build_parser()._actions for flag in action.option_strings}
    mentioned = set(re.findall(r"`(--[a-z-]+)", page("batch.md") + page("ray.md")))
    assert mentioned <= flags, mentioned - flags
