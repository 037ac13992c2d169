"""Every kind of figure keeps its title inside the figure, however long the title and its
stamps: the title wraps to the figure's width and sits above everything else drawn."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
from PIL import Image

from dlmap.figures import charts, grids, plots

LONG_TITLE = (
    "Sec. V-B: MS-LIQE against LIQE, MUSIQ, UNIQUE and every other model of Table I, "
    "ranked by 25 observers on the images selected by Eq. 18"
)


def _png(folder, name: str, seed: int = 0):
    pixels = np.random.default_rng(seed).integers(0, 256, size=(24, 32, 3), dtype=np.uint8)
    path = folder / f"{name}.png"
    Image.fromarray(pixels).save(path)
    return path


def _history():
    steps = [
        {
            "iteration": i,
            "loss": 1 - i / 10,
            "score": i / 10,
            "fidelity": i / 100,
            "grad_fidelity": 0.2,
            "grad_prior": 0.01 * (i + 1),
            "prior_share": 0.05 * (i + 1),
        }
        for i in range(5)
    ]
    stop = {"applied": True, "threshold": 90.0, "iteration": 4}
    return {
        "history": steps,
        "final": {"loss": 0.5},
        "early_stop": stop,
        "score_scale": {"name": "authors", "xi1": 100.0, "range": [0.0, 100.0]},
    }


def _ranking_rows():
    return [
        {
            "condition": name,
            "jod": str(jod),
            "ci_low": str(jod - 0.4),
            "ci_high": str(jod + 0.4),
            "group": group,
        }
        for name, jod, group in (("liqe", 1.2, "a"), ("musiq", 1.0, "ab"), ("niqe", -2.2, "b"))
    ]


def _figure(kind: str, tmp_path):
    """One figure of ``kind`` with the long title and every stamp the kind can carry."""
    if kind == "history":
        return plots.plot_history(_history(), LONG_TITLE, reduced=True)
    if kind == "training":
        rows = [
            {"epoch": e, "loss": 1 / (e + 1), "live_srcc": 0.5, "live_plcc": 0.6} for e in range(3)
        ]
        return plots.plot_training(rows, LONG_TITLE, reduced=True)
    if kind == "ranking":
        return plots.plot_ranking(_ranking_rows(), LONG_TITLE, simulated=True, reduced=True)
    if kind == "ranking-two-rows":
        rows = _ranking_rows()[:2]
        return plots.plot_ranking(rows, LONG_TITLE, simulated=True, reduced=True)
    if kind == "image-grid":
        a, b = _png(tmp_path, "a"), _png(tmp_path, "b", 1)
        return grids.image_grid([[a, b]], ["row"], ["one", "two"], title=LONG_TITLE, reduced=True)
    if kind == "image-grid-one-cell":
        return grids.image_grid([[_png(tmp_path, "a")]], title=LONG_TITLE, reduced=True)
    if kind == "lambda-sweep":
        rows = [
            {"lambda": lam, "image": "a", "score": lam, "fidelity": 1 - lam}
            for lam in (0.01, 0.1, 1.0)
        ]
        return charts.lambda_sweep_plot(rows, LONG_TITLE, reduced=True)
    if kind == "vote-shares":
        rows = [{"opponent": "niqe", "wins": 30, "losses": 10, "share": 0.75}]
        return charts.vote_share_plot(rows, "ms-liqe", reduced=True, title=LONG_TITLE)
    raise AssertionError(kind)


KINDS = [
    "history",
    "training",
    "ranking",
    "ranking-two-rows",
    "image-grid",
    "image-grid-one-cell",
    "lambda-sweep",
    "vote-shares",
]


def _flat(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.parametrize("kind", KINDS)
def test_title_and_stamps_lie_inside_the_figure(kind, tmp_path):
    figure = _figure(kind, tmp_path)
    figure.savefig(tmp_path / "drawn.png", dpi=100)  # lays out (constrained layout) and draws
    renderer = figure.canvas.get_renderer()
    title = figure._suptitle
    text = _flat(title.get_text())
    assert _flat(LONG_TITLE) in text and _flat(plots.REDUCED_STAMP) in text
    if kind.startswith("ranking"):
        assert _flat(plots.SIMULATED_STAMP) in text
    lines = title.get_text().split("\n")  # the stamp starts a line of its own
    assert len(lines) >= 2 and any(line.startswith(plots.REDUCED_STAMP[:7]) for line in lines)
    box, frame = title.get_window_extent(renderer), figure.bbox
    assert box.x0 >= frame.x0 and box.x1 <= frame.x1, (box, frame)
    assert box.y0 >= frame.y0 and box.y1 <= frame.y1, (box, frame)
    for axis in figure.axes:  # nothing drawn under the title
        if axis.get_visible():
            assert not box.overlaps(axis.get_tightbbox(renderer)), axis
    drawn = [*figure.texts, *(text for axis in figure.axes for text in axis.texts)]
    for other in drawn:  # labels, captions and annotations (tick labels are in the axes' box)
        if other is not title and other.get_text() and other.get_visible():
            assert not box.overlaps(other.get_window_extent(renderer)), other.get_text()
    plt.close(figure)


def test_short_titles_stay_on_one_line():
    assert plots.title_lines(["Fig. 5: ranking"], 6.0) == ["Fig. 5: ranking"]
    assert plots.title_lines(["", "a", ""], 6.0) == ["a"]


def test_wrapped_lines_fit_the_width_and_keep_every_word():
    lines = plots.title_lines([LONG_TITLE, plots.REDUCED_STAMP], 4.0, weight="bold")
    assert len(lines) >= 4
    room = 4.0 - 2 * plots.TITLE_MARGIN_INCHES
    assert all(plots.text_width_inches(line, 10, "bold") <= room for line in lines)
    assert _flat(" ".join(lines)) == _flat(LONG_TITLE + " " + plots.REDUCED_STAMP)
