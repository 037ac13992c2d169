"""One run's enhanced images as a single self-contained HTML page: for each test image, the
input beside each prior's output x* (the MAP estimate of Eq. 17, decoded), a slider that
wipes between the input and the chosen output, the calibrated and raw scores under each
(initial -> final, Eq. 21), and each prior's score history on demand. The PNGs are embedded
byte for byte (data URIs), so the page shows the exact pixels and opens from anywhere."""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass, field
from pathlib import Path

from dlmap.files import write_text_atomic


@dataclass
class Enhancement:
    """One prior's result for one image, from its record (``ID.json`` beside ``ID.x.png``)."""

    prior: str
    display_name: str
    image: Path
    initial: float | None  # calibrated score of the input (iteration 0), None without history
    final: float
    raw_initial: float | None
    raw_final: float
    history: list[float] = field(default_factory=list)  # calibrated score per iteration
    early_stop: bool = False


@dataclass
class GalleryItem:
    image_id: str
    input: Path
    enhancements: list[Enhancement]


def read_enhancement(folder: Path, image_id: str) -> Enhancement:
    """The output and scores of ``folder/ID.json`` (a record of `dlmap enhance` or the workflow)."""
    folder = Path(folder)
    record = json.loads((folder / f"{image_id}.json").read_text())
    history = record.get("history") or []
    first = history[0] if history else {}
    prior = record["prior"]
    return Enhancement(
        prior=prior["name"],
        display_name=prior.get("display_name", prior["name"]),
        image=folder / record["outputs"]["x"],
        initial=first.get("score"),
        final=record["final"]["x"]["score"],
        raw_initial=first.get("raw_score"),
        raw_final=record["final"]["x"]["raw_score"],
        history=[step["score"] for step in history],
        early_stop=bool((record.get("early_stop") or {}).get("applied")),
    )


def _data_uri(path: Path) -> str:
    kind = "jpeg" if path.suffix.lower() in (".jpg", ".jpeg") else "png"
    return f"data:image/{kind};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def _number(value: float | None) -> str:
    return "–" if value is None else f"{value:.3g}"


def history_svg(enhancements: list[Enhancement], width: int = 360, height: int = 160) -> str:
    """Calibrated score against iteration, one line per prior (inline SVG, no script)."""
    series = [(e.display_name, e.history) for e in enhancements if len(e.history) > 1]
    if not series:
        return "<p>No iteration history was recorded.</p>"
    values = [v for _, h in series for v in h]
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    steps = max(len(h) for _, h in series) - 1
    pad = 30

    def point(i, v):
        x = pad + (width - 2 * pad) * i / max(steps, 1)
        y = height - pad - (height - 2 * pad) * (v - low) / span
        return f"{x:.1f},{y:.1f}"

    colours = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d"]
    lines, legend = [], []
    for n, (name, values_) in enumerate(series):
        colour = colours[n % len(colours)]
        points = " ".join(point(i, v) for i, v in enumerate(values_))
        lines.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{points}"/>'
        )
        legend.append(f'<span style="color:{colour}">&#9632; {html.escape(name)}</span>')
    axes = (
        f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" '
        'stroke="#888"/>'
        f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{height - pad}" stroke="#888"/>'
        f'<text x="{pad}" y="{pad - 8}" font-size="11">{high:.3g}</text>'
        f'<text x="{pad}" y="{height - 8}" font-size="11">{low:.3g}</text>'
        f'<text x="{width - pad}" y="{height - 8}" font-size="11" text-anchor="end">'
        f"iteration {steps}</text>"
    )
    return (
        f'<svg class="history" width="{width}" height="{height}" role="img" '
        f'aria-label="calibrated score per iteration">{axes}{"".join(lines)}</svg>'
        f'<div class="legend">{" ".join(legend)}</div>'
    )


_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em;background:#fafafa;color:#222}
.banner{background:#fff3cd;border:1px solid #e0c060;padding:.5em 1em;margin-bottom:1em}
.item{background:#fff;border:1px solid #ddd;border-radius:6px;padding:1em;margin-bottom:1.5em}
.compare{position:relative;width:min(512px,90vw);line-height:0}
.compare img{display:block;width:100%;height:auto}
.compare img.after{position:absolute;top:0;left:0;height:100%;clip-path:inset(0 0 0 50%)}
.divider{position:absolute;top:0;bottom:0;left:50%;border-left:2px solid #fff;
  box-shadow:0 0 3px #000;pointer-events:none}
.wipe{display:block;width:min(512px,90vw);margin:.4em 0}
.strip{display:flex;flex-wrap:wrap;gap:.6em;margin-top:.6em}
.strip figure{margin:0;cursor:pointer;border:2px solid transparent;padding:2px}
.strip figure.selected{border-color:#1f6feb}
.strip img{width:128px;height:auto;display:block}
.strip figcaption{font-size:12px;line-height:1.3;max-width:128px}
.legend{font-size:12px}
"""

_SCRIPT = """
document.querySelectorAll('.item').forEach(function (item) {
  var after = item.querySelector('img.after');
  var wipe = item.querySelector('input.wipe');
  var label = item.querySelector('.chosen');
  function choose(figure) {
    item.querySelectorAll('.strip figure').forEach(function (f) {
      f.classList.toggle('selected', f === figure);
    });
    after.src = figure.querySelector('img').src;
    label.textContent = figure.dataset.name;
  }
  wipe.addEventListener('input', function () {
    after.style.clipPath = 'inset(0 0 0 ' + wipe.value + '%)';
    item.querySelector('.divider').style.left = wipe.value + '%';
  });
  item.querySelectorAll('.strip figure').forEach(function (figure) {
    figure.addEventListener('click', function () { choose(figure); });
  });
  var first = item.querySelector('.strip figure');
  if (first) choose(first);
});
"""


def _item_html(item: GalleryItem) -> str:
    image_id = html.escape(item.image_id)
    figures = []
    for e in item.enhancements:
        scores = (
            f"{_number(e.initial)} &rarr; {_number(e.final)}"
            f"<br>raw {_number(e.raw_initial)} &rarr; {_number(e.raw_final)}"
            + (" (early stop)" if e.early_stop else "")
        )
        figures.append(
            f'<figure data-prior="{html.escape(e.prior)}" '
            f'data-name="{html.escape(e.display_name)}">'
            f'<img src="{_data_uri(e.image)}" alt="{image_id} enhanced by '
            f'{html.escape(e.display_name)}"><figcaption><b>{html.escape(e.display_name)}</b><br>'
            f"{scores}</figcaption></figure>"
        )
    return (
        f'<section class="item" id="image-{image_id}"><h2>{image_id}</h2>'
        f'<div class="compare"><img class="before" src="{_data_uri(item.input)}" '
        f'alt="{image_id} input"><img class="after" alt="{image_id} enhanced">'
        '<div class="divider"></div></div>'
        f'<input class="wipe" type="range" min="0" max="100" value="50" '
        f'aria-label="wipe between the input and the output">'
        f'<p>left of the wipe: the input; right: <span class="chosen"></span> '
        f"(click an output below)</p>"
        f'<div class="strip">{"".join(figures)}</div>'
        f"<details><summary>Score history</summary>{history_svg(item.enhancements)}</details>"
        f"</section>"
    )


def write_gallery(items: list[GalleryItem], out: Path, title: str, reduced: bool = False) -> Path:
    """The page for ``items`` at ``out`` (written atomically); returns ``out``."""
    if not items:
        raise ValueError("a gallery needs at least one image")
    banner = (
        '<p class="banner"><b>REDUCED SETTINGS</b>: tiny random networks and reduced solver '
        "settings; none of these images are the paper's results.</p>"
        if reduced
        else ""
    )
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>{html.escape(title)}</h1>{banner}"
        "<p>Scores under each output are calibrated (Eq. 21) then raw, from the input "
        "(iteration 0) to the output.</p>"
        + "".join(_item_html(item) for item in items)
        + f"<script>{_SCRIPT}</script></body></html>\n"
    )
    write_text_atomic(page, Path(out))
    return Path(out)
