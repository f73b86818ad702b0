"""The batch's contact sheet: every run writes report.html beside its JSON report, one card per input with its
pictures, failures first; a resumed run updates it; it stays light at thousands of cards; and a real
browser (Debian's Chromium) opens it from disk, offline, with no error and every picture decoded."""

import json
import os
import shutil
import struct

import numpy as np
import pytest
from batch_harness import TINY_MODEL_ARGS, image_copies, image_folder, run_batch

from triposr_blender.batch import contact_sheet

pytestmark = pytest.mark.blender
CHROMIUM = shutil.which("chromium")
# As the machine's own check runs it: no background traffic, which a closed network refuses noisily.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                 "--disable-background-networking", "--disable-component-update"]  # fmt: skip
TURNTABLE_FRAMES = 4


@pytest.fixture(scope="module")
def sheet_run(tmp_path_factory):
    """A batch of two images and two broken files, with previews and turntables."""
    folder = tmp_path_factory.mktemp("sheet")
    images = image_folder(folder / "images")
    arguments = ["--preview", "--turntable", TURNTABLE_FRAMES, *TINY_MODEL_ARGS]
    result = run_batch(images, "--out", folder / "out", *arguments)
    return folder / "out", result


def test_every_run_writes_its_contact_sheet_beside_its_report_and_names_it_last(sheet_run):
    out, result = sheet_run
    assert (out / "report.json").is_file() and (out / "report.html").is_file()
    assert result.stderr.rstrip().splitlines()[-1] == f"Contact sheet: {out / 'report.html'}"


def test_failures_come_first_and_each_converted_input_has_its_pictures(sheet_run):
    out, _ = sheet_run
    page = (out / "report.html").read_text(encoding="utf-8")
    cards = [
        page.index(f"<h2>{name}</h2>") for name in ("notes.png", "truncated.png", "disc.png", "square.png")
    ]
    assert max(cards[:2]) < min(cards[2:]), "the two failures come before the two meshes"
    report = json.loads((out / "report.json").read_text())
    done = [item for item in report["images"] if item["status"] == "done"]
    assert len(done) == 2
    for item in done:
        assert set(item["pictures"]) == set(contact_sheet.PICTURES)
        assert all((out / path).is_file() for path in item["pictures"].values())
        assert item["faces"] > 0 and item["vertices"] > 0
    assert apng_frames((out / done[0]["pictures"]["turntable"]).read_bytes()) == TURNTABLE_FRAMES
    failed = [item for item in report["images"] if item["status"] == "failed"]
    assert all(item["error"] in page for item in failed)


def test_a_resumed_run_updates_the_sheet_and_its_skipped_cards_keep_their_pictures(tmp_path):
    images = image_copies(tmp_path / "images", 1)
    run_batch(images, "--out", tmp_path / "out", "--preview", *TINY_MODEL_ARGS)
    shutil.copy(images / "image000.png", images / "image001.png")

    resumed = run_batch(images, "--out", tmp_path / "out", "--preview", "--skip-existing", *TINY_MODEL_ARGS)

    assert resumed.returncode == 0, resumed.stderr
    items = {item["input"].rsplit("/", 1)[-1]: item for item in report_of(tmp_path / "out")["images"]}
    assert items["image000.png"]["status"] == "skipped" and "preview" in items["image000.png"]["pictures"]
    assert items["image001.png"]["status"] == "done" and "preview" in items["image001.png"]["pictures"]
    page = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert page.count('<article class="skipped">') == 1 and page.count('<article class="done">') == 1


def test_the_sheet_stays_light_at_two_thousand_cards(tmp_path):
    """A summary on top and every image loaded lazily: the page opens at once however long the run."""
    pictures = {kind: f"report-pictures/image{{:04}}.{kind}.png" for kind in contact_sheet.PICTURES}
    images = [
        {"input": f"photos/image{number:04}.png", "output": f"out/image{number:04}.glb", "status": "done",
         "error": None, "seconds": 1.5, "faces": 40_000, "vertices": 20_002,
         "pictures": {kind: path.format(number) for kind, path in pictures.items()}}
        for number in range(2000)
    ]  # fmt: skip
    content = {
        "settings": {"resolution": 256},
        "summary": {"done": 2000, "seconds": 3000.0},
        "images": images,
    }

    page = contact_sheet.page(content, tmp_path)

    assert page.index("2000 inputs") < page.index("<article")
    assert page.count("<img ") == 2000 * len(contact_sheet.PICTURES) == page.count('loading="lazy"')
    assert len(page.encode()) < 3 << 20
    assert "<script" not in page and "http" not in page


@pytest.mark.skipif(not CHROMIUM and not os.environ.get("CI"), reason="Debian's Chromium is not installed")
def test_a_real_browser_opens_the_sheet_from_disk_offline_with_no_error_and_every_picture_decodes(sheet_run):
    sync_api = pytest.importorskip("playwright.sync_api")
    out, _ = sheet_run
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            errors, requested = [], []
            page.on(
                "console", lambda message: errors.append(message.text) if message.type == "error" else None
            )
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.on("request", lambda request: requested.append(request.url))
            page.goto((out / "report.html").as_uri())
            # Lazy images load as they scroll into view: here all of them, at once.
            widths = page.evaluate(
                """async () => {
                    const images = Array.from(document.images);
                    images.forEach(image => { image.loading = "eager"; });
                    await Promise.all(images.map(image => image.decode().catch(() => null)));
                    return images.map(image => image.naturalWidth);
                }"""
            )
            screenshot = page.screenshot()
        finally:
            browser.close()

    assert errors == []
    assert all(url.startswith("file://") for url in requested), "the page works offline"
    assert len(widths) == 2 * len(contact_sheet.PICTURES) and all(width > 0 for width in widths)
    pixels = png_pixels(screenshot)
    assert pixels.std() > 10, "the screenshot is not blank"


def report_of(out):
    return json.loads((out / "report.json").read_text())


def apng_frames(data: bytes) -> int:
    """The frame count an animated PNG declares (its acTL chunk)."""
    position = data.index(b"acTL")
    return struct.unpack(">I", data[position + 4 : position + 8])[0]


def png_pixels(data: bytes) -> np.ndarray:
    import io

    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), np.float64)
