"""The batch's contact sheet: ``report.html`` beside the JSON report, one card per input, failures first, so
a run of hundreds is reviewed by its pictures.

One HTML file with its pictures in a folder beside it (``<report>-pictures/``): it opens from disk, offline,
with no script at all, and stays quick at thousands of cards (a summary on top, images loaded lazily). Each
card shows the input's thumbnail, the input as the model saw it (background removed), the preview and
turntable when asked for, faces, vertices, time and options, or the failure's one-line message. Only the
standard library: Blender's Python and a Ray driver both write it.
"""

from __future__ import annotations

import html
import os
import urllib.parse
from pathlib import Path

# The pictures a card can show, in the order it shows them, with their captions.
PICTURES = {
    "input": "Input",
    "cleaned": "As the model saw it",
    "preview": "Front, three-quarter, side, back",
    "turntable": "Turntable",
}
# Failures first: they are what a reviewer is looking for.
ORDER = {"failed": 0, "pending": 1, "done": 2, "skipped": 3}
# Settings shown on every card, as the report names them.
CARD_SETTINGS = ("resolution", "threshold", "remove_background", "foreground_ratio")
STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 0; background: #2b2b2b; color: #ddd; }
header { padding: 16px 24px; background: #1d1d1d; position: sticky; top: 0; z-index: 1; }
h1 { font-size: 18px; margin: 0 0 6px; }
.counts span { margin-right: 16px; }
.failed-count { color: #ff7b7b; }
main { display: grid; grid-template-columns: repeat(auto-fill, minmax(560px, 1fr)); gap: 12px;
  padding: 12px; align-items: start; }
a { color: #8ab4f8; }
article { background: #363636; border-radius: 6px; padding: 10px 12px; border-left: 4px solid #5c9e5c; }
article.failed { border-left-color: #d9534f; }
article.skipped, article.pending { border-left-color: #888; }
h2 { font-size: 15px; margin: 0 0 6px; word-break: break-all; }
.pictures { display: flex; gap: 8px; flex-wrap: wrap; align-items: flex-end; }
figure { margin: 0; }
figcaption { font-size: 11px; color: #aaa; }
img { display: block; height: 128px; width: auto; background: #555; border-radius: 3px; }
img.wide { height: 128px; }
.error { color: #ffb3b3; margin: 6px 0; }
.note { color: #ffd591; margin: 6px 0; }
.facts { color: #bbb; font-size: 12px; margin-top: 6px; }
"""


def sheet_path(report_path: Path) -> Path:
    """The contact sheet of a JSON report: ``run.json`` -> ``run.html``."""
    return report_path.with_suffix(".html")


def pictures_folder(report_path: Path) -> Path:
    return report_path.with_name(f"{report_path.stem}-pictures")


def save_picture(report_path: Path, name: str, kind: str, data: bytes) -> str:
    """Write one of an input's pictures (PNG bytes) beside the report, complete or not at all; -> its path
    relative to the report, as a card links it."""
    folder = pictures_folder(report_path)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.{kind}.png"
    partial = path.with_name(f".{path.name}.partial")
    partial.write_bytes(data)
    os.replace(partial, path)
    return f"{folder.name}/{path.name}"


def earlier_pictures(report_path: Path, name: str) -> dict[str, str]:
    """The pictures an earlier run left for ``name`` (a resumed run's skipped inputs keep theirs)."""
    folder = pictures_folder(report_path)
    return {
        kind: f"{folder.name}/{name}.{kind}.png"
        for kind in PICTURES
        if (folder / f"{name}.{kind}.png").is_file()
    }


def write(report_path: Path, content: dict) -> Path:
    """Write the contact sheet of ``content`` (the JSON report's) beside ``report_path``; -> its path."""
    path = sheet_path(report_path)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(page(content, path.parent), encoding="utf-8")
    os.replace(partial, path)
    return path


def page(content: dict, folder: Path) -> str:
    """The sheet as HTML; ``folder`` is where it lies, which its links are relative to."""
    images = sorted(content["images"], key=lambda item: ORDER.get(item["status"], len(ORDER)))
    settings = content["settings"]
    return "\n".join(
        [
            "<!doctype html>",
            '<html lang="en">',
            '<meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>TripoSR batch: {len(images)} inputs</title>",
            f"<style>{STYLE}</style>",
            summary(content["summary"], settings, len(images)),
            "<main>",
            *(card(item, settings, folder) for item in images),
            "</main>",
            "</html>",
            "",
        ]
    )


def summary(counts: dict, settings: dict, total: int) -> str:
    failed = counts.get("failed", 0)
    shown = [
        f"<span>{total} inputs</span>",
        f"<span>{counts.get('done', 0)} done</span>",
        f'<span class="failed-count">{failed} failed</span>' if failed else "<span>0 failed</span>",
        f"<span>{counts.get('skipped', 0)} skipped</span>",
        f"<span>{counts.get('seconds', 0):.1f} s</span>",
        f"<span>{counts.get('seconds_per_image', 0):.1f} s per image</span>",
    ]
    options = ", ".join(f"{name} {escape(value)}" for name, value in settings.items() if value is not None)
    return (
        "<header><h1>TripoSR batch</h1>"
        f'<div class="counts">{"".join(shown)}</div>'
        f'<div class="facts">{options}</div></header>'
    )


def card(item: dict, settings: dict, folder: Path) -> str:
    name = Path(item["input"]).name
    parts = [f'<article class="{escape(item["status"])}">', f"<h2>{escape(name)}</h2>"]
    pictures = item.get("pictures") or {}
    figures = [
        figure(pictures[kind], caption, kind) for kind, caption in PICTURES.items() if kind in pictures
    ]
    if figures:
        parts.append(f'<div class="pictures">{"".join(figures)}</div>')
    if item.get("error"):
        parts.append(f'<p class="error">{escape(item["error"])}</p>')
    parts += [f'<p class="note">{escape(note)}</p>' for note in item.get("notes") or ()]
    facts = [item["status"]]
    if item.get("faces") is not None:
        facts.append(f"{item['faces']:,} faces, {item['vertices']:,} vertices")
    if item.get("seconds"):
        facts.append(f"{item['seconds']:.1f} s")
    facts += [f"{option} {settings[option]}" for option in CARD_SETTINGS if settings.get(option) is not None]
    shown = [escape(fact) for fact in facts]
    if item.get("output"):
        shown.append(
            f'<a href="{output_link(item["output"], folder)}">{escape(Path(item["output"]).name)}</a>'
        )
    parts.append(f'<div class="facts">{" · ".join(shown)}</div>')
    parts.append("</article>")
    return "".join(parts)


def figure(path: str, caption: str, kind: str) -> str:
    wide = ' class="wide"' if kind == "preview" else ""
    return (
        f'<figure><img src="{link(path)}" alt="{escape(caption)}" loading="lazy" decoding="async"{wide}>'
        f"<figcaption>{escape(caption)}</figcaption></figure>"
    )


def link(path: str) -> str:
    """A picture's address, relative to the page: moving the report with its pictures keeps it working."""
    return escape(urllib.parse.quote(path))


def output_link(output: str, folder: Path) -> str:
    """An output's address: as it is for object storage (s3://...), else relative to the page."""
    if "://" in output:
        return escape(output)
    return link(os.path.relpath(Path(output).resolve(), folder.resolve()).replace(os.sep, "/"))


def escape(value) -> str:
    return html.escape(str(value), quote=True)
