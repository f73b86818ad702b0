"""The README's contact-sheet picture: a batch of the examples that have a transparent background, and one
broken file, with the tiny random-weight test model (offline), opened in Debian's Chromium and photographed.

    .venv/bin/python scripts/contact_sheet_picture.py [--examples ../shared/examples] [--out docs/images]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image
from playwright.sync_api import sync_playwright

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = ("chair.png", "flamingo.png", "hamburger.png", "horse.png")  # those with real alpha
TINY_MODEL = ["--model", str(REPO / "tests/fixtures/triposr-tiny-a"), "--device", "cpu",
              "--resolution", "48", "--threshold", "0.4145"]  # fmt: skip
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                 "--disable-background-networking", "--disable-component-update"]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=Path, default=REPO.parent / "shared" / "examples")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "images")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        inputs, out = Path(folder, "inputs"), Path(folder, "out")
        inputs.mkdir()
        for name in EXAMPLES:
            shutil.copy(args.examples / name, inputs / name)
        (inputs / "notes.png").write_text("not an image\n")
        batch = [sys.executable, "-m", "triposr_blender.batch", "--", inputs, "--out", out, "--preview",
                 "--turntable", "12", *TINY_MODEL]  # fmt: skip
        subprocess.run(list(map(str, batch)), cwd=REPO, check=False)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1300, "height": 980})
            page.goto((out / "report.html").as_uri())
            page.evaluate(
                "async () => { const images = Array.from(document.images);"
                " images.forEach(image => { image.loading = 'eager'; });"
                " await Promise.all(images.map(image => image.decode().catch(() => null))); }"
            )
            page.screenshot(path=str(out / "sheet.png"))
            browser.close()
        picture = args.out / "contact-sheet.jpg"
        Image.open(out / "sheet.png").convert("RGB").save(picture, quality=82, optimize=True)
        print(picture)


if __name__ == "__main__":
    main()
