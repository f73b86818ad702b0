"""Fixtures shared by several test files. Each section belongs to one area; keep them separate."""

import os
from pathlib import Path

import pooch.core
import pytest

REPO = Path(__file__).resolve().parent.parent


# --- Background removal: real rembg on a real ONNX model, offline ---------------------------------

REMBG_TEST_MODEL = "u2netp"
# `make setup` (scripts/fetch_test_models.py) puts rembg's own u2netp.onnx here; the Makefile exports it.
TEST_U2NET_HOME = Path(os.environ.get("U2NET_HOME", REPO / ".venv" / "u2net"))


def _no_network(url, *args, **kwargs):
    raise ConnectionError(f"tests run offline and must not download {url}")


@pytest.fixture(scope="session")
def rembg_model():
    """The rembg model name for tests: u2netp (4.5 MB), run for real from TEST_U2NET_HOME.

    While the fixture is active, rembg finds its models only in that folder, and any model download
    fails as it would on a machine without network (rembg's downloader, pooch, is refused)."""
    model_file = TEST_U2NET_HOME / f"{REMBG_TEST_MODEL}.onnx"
    if not model_file.is_file():
        pytest.fail(f"{model_file} is missing: run `make setup` (it runs scripts/fetch_test_models.py)")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("U2NET_HOME", str(TEST_U2NET_HOME))
        patch.setattr(pooch.core, "stream_download", _no_network)
        yield REMBG_TEST_MODEL
