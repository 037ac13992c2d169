"""Image grids and plots of the paper's qualitative figures (Figs. 1, 2, 6, 7, 8, 9, 11, 12)."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.image import AxesImage
from matplotlib.text import Text
from PIL import Image

from dlmap.figures import charts, grids, plots


def _png(folder, name: str, width: int = 32, height: int = 24, seed: int = 0):
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    path = folder / f"{name}.png"
    Image.fromarray(pixels).save(path)
    return path


def _texts(figure) -> list[str]:
    return [text.get_text() for text in figure.findobj(Text) if text.get_text()]


def _has_stamp(figure) -> bool:
    """Whether the figure's title carries the reduced stamp (titles wrap at any space)."""
    return " ".join(plots.REDUCED_STAMP.split()) in " ".join(figure._suptitle.get_text().split())


def _size(path) -> tuple[int, int]:
    with Image.open(path) as image:
        return image.size


def _saved(figure, path):
    written = plots.save_figure(figure, path)
    assert written == [path, path.with_suffix(".pdf")]
    assert path.with_suffix(".pdf").read_bytes().startswith(b"%PDF")
    return _size(path)


def test_more_rows_taller_more_columns_wider(tmp_path):
    a, b = _png(tmp_path, "a"), _png(tmp_path, "b", seed=1)
    two = _saved(grids.image_grid([[a, b]] * 2), tmp_path / "two.png")
    four = _saved(grids.image_grid([[a, b]] * 4), tmp_path / "four.png")
    wide = _saved(grids.image_grid([[a, b, a, b]] * 2), tmp_path / "wide.png")
    assert four[0] == two[0] and four[1] > 1.7 * two[1]
    assert wide[1] == two[1] and wide[0] > 1.7 * two[0]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left


def test_native_aspect_sets_the_row_height(tmp_path):
    flat = _png(tmp_path, "flat", width=64, height=16)
    tall = _png(tmp_path, "tall", width=16, height=64)
    flat_size = _saved(grids.image_grid([[flat]]), tmp_path / "flat-grid.png")
    tall_size = _saved(grids.image_grid([[tall]]), tmp_path / "tall-grid.png")
    assert flat_size[0] == tall_size[0] and tall_size[1] > 2 * flat_size[1]
    figure = grids.image_grid([[flat, tall]])
    shapes = [image.get_array().shape[:2] for image in figure.findobj(AxesImage)]
    assert shapes == [(16, 64), (64, 16)]
    plt.close(figure)


def test_missing_cells_are_framed_and_marked(tmp_path):
    a = _png(tmp_path, "a")
    figure = grids.image_grid(
        [[a, None], ["", a]], ["r0", "r1"], ["c0", "c1"], [["x", "y"], ["", "LIQE 3.21"]]
    )
    texts = _texts(figure)
    assert texts.count(grids.MISSING) == 2
    assert {"r0", "r1", "c0", "c1", "x", "y", "LIQE 3.21"} <= set(texts)
    assert len(figure.findobj(AxesImage)) == 2
    _saved(figure, tmp_path / "missing.png")


def test_large_grids_are_downscaled(tmp_path):
    big = _png(tmp_path, "big", width=600, height=400)
    figure = grids.image_grid([[big, big]] * 20, [f"image {i}" for i in range(20)])
    assert {image.get_array().shape[:2] for image in figure.findobj(AxesImage)} == {(171, 256)}
    width, height = _saved(figure, tmp_path / "big-grid.png")
    assert height > 5 * width  # 20 rows of 2 columns of 3:2 images: tall and narrow
    assert (tmp_path / "big-grid.png").stat().st_size < 12_000_000


def test_reduced_stamp_in_the_title(tmp_path):
    a = _png(tmp_path, "a")
    stamped = grids.image_grid([[a]], title="Fig. 1", reduced=True)
    plain = grids.image_grid([[a]], title="Fig. 1")
    assert _has_stamp(stamped)
    assert "Fig. 1" in stamped._suptitle.get_text()
    assert plots.REDUCED_STAMP not in " ".join(_texts(plain))
    assert "REDUCED SETTINGS" in plots.REDUCED_STAMP and "not the paper" in plots.REDUCED_STAMP
    plt.close(stamped)
    plt.close(plain)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"row_labels": ["only one"]}, "row_labels has 1 entries but there are 2 rows"),
        ({"column_labels": ["a", "b", "c"]}, "column_labels has 3"),
        ({"captions": [["x", "y"]]}, "captions has 1"),
        ({"captions": [["x"], ["y", "z"]]}, r"captions\[0\] has 1"),
    ],
)
def test_mismatched_lengths_are_value_errors(tmp_path, kwargs, message):
    a = _png(tmp_path, "a")
    with pytest.raises(ValueError, match=message):
        grids.image_grid([[a, a], [a, a]], **kwargs)


def test_ragged_and_empty_grids_are_value_errors(tmp_path):
    a = _png(tmp_path, "a")
    with pytest.raises(ValueError, match="row 1 has 1 entries"):
        grids.image_grid([[a, a], [a]])
    with pytest.raises(ValueError, match="at least one row"):
        grids.image_grid([])


def test_fig1_layout_and_scores(tmp_path):
    paths = [[_png(tmp_path, f"{kind}{i}", seed=i) for i in range(2)] for kind in "abcd"]
    scores = [[3.21, 4.9, 3.3, None], [2.0, "q=0.81, D0=0.02", 1, 4]]
    figure = grids.fig1_pixel_vs_latent(*paths, scores=scores, reduced=True)
    texts = _texts(figure)
    assert {"LIQE 3.21", "LIQE 4.90", "q=0.81, D0=0.02", "LIQE 4.00", "a0", "a1"} <= set(texts)
    assert [t for t in texts if t.startswith("(")][:4] == [
        "(a) initial",
        "(b) max LIQE (Eq. 1)",
        "(c) pixel MAP, MSE + LIQE",
        "(d) latent MAP (Eq. 17)",
    ]
    assert _has_stamp(figure)
    _saved(figure, tmp_path / "fig1.png")
    with pytest.raises(ValueError, match="latent_map has 1 entries but there are 2"):
        grids.fig1_pixel_vs_latent(*paths[:3], paths[3][:1])
    with pytest.raises(ValueError, match=r"scores\[1\] has 3 entries"):
        grids.fig1_pixel_vs_latent(*paths, scores=[[1, 2, 3, 4], [1, 2, 3]])


def test_fig2_columns_by_lambda(tmp_path):
    initial = [_png(tmp_path, f"init{i}", seed=i) for i in range(3)]
    by_lambda = {
        lam: [_png(tmp_path, f"l{lam}-{i}", seed=i) for i in range(3)]
        for lam in (10.0, 0.1, math.inf)
    }
    figure = grids.fig2_lambda_sweep(
        initial, by_lambda, scores={0.1: [1.0, 2.0, 3.0]}, initial_scores=[0.5, None, 0.7]
    )
    texts = _texts(figure)
    headers = [t for t in texts if t == "initial" or t.startswith("\u03bb")]
    assert headers == ["initial", "\u03bb = 0.1", "\u03bb = 10", "\u03bb = \u221e (direct)"]
    assert {"LIQE 0.50", "LIQE 1.00", "LIQE 3.00", "init0", "init2"} <= set(texts)
    three = _saved(figure, tmp_path / "fig2.png")
    one = _saved(
        grids.fig2_lambda_sweep(initial[:1], {k: v[:1] for k, v in by_lambda.items()}),
        tmp_path / "fig2-one.png",
    )
    assert three[1] > 2 * one[1] and three[0] == one[0]
    with pytest.raises(ValueError, match=r"images \(lambda=10.0\) has 2 entries"):
        grids.fig2_lambda_sweep(initial, {**by_lambda, 10.0: by_lambda[10.0][:2]})
    with pytest.raises(ValueError, match="scores has lambdas without images"):
        grids.fig2_lambda_sweep(initial, by_lambda, scores={5.0: [1, 2, 3]})


def test_pair_grid_labels_both_enhancers(tmp_path):
    pairs = [
        {
            "enhancer_i": "LIQE",
            "enhancer_j": "MUSIQ",
            "image": "cat",
            "input": _png(tmp_path, "i"),
            "file_i": _png(tmp_path, "x"),
            "file_j": None,
            "caption_j": "d=0.3",
        },
        {
            "enhancer_i": "NIQE",
            "enhancer_j": "UNIQUE",
            "image": "stamps",
            "input": _png(tmp_path, "j"),
            "file_i": "",
            "file_j": _png(tmp_path, "y"),
        },
    ]
    figure = grids.pair_grid(pairs, title="Fig. 6", reduced=True)
    texts = _texts(figure)
    assert {"LIQE", "MUSIQ\nd=0.3", "NIQE", "UNIQUE", "cat", "stamps"} <= set(texts)
    assert {"enhanced (i)", "enhanced (j)"} <= set(texts) and texts.count(grids.MISSING) == 2
    _saved(figure, tmp_path / "pairs.png")
    same = grids.pair_grid([{**pairs[0], "file_j": _png(tmp_path, "z")}])
    assert {"input", "LIQE", "MUSIQ"} <= set(_texts(same)) and "enhanced (i)" not in _texts(same)
    plt.close(same)
    with pytest.raises(ValueError, match="pair 0 lacks file_j"):
        grids.pair_grid([{k: v for k, v in pairs[0].items() if k != "file_j"}])


def test_triplets_one_row_per_enhancer_and_input(tmp_path):
    inputs = [_png(tmp_path, f"in{i}", seed=i) for i in range(2)]
    base = {name: [_png(tmp_path, f"{name}{i}") for i in range(2)] for name in ("SUPIR", "SeeSR")}
    refined = {name: [_png(tmp_path, f"{name}-map{i}") for i in range(2)] for name in base}
    figure = grids.triplets(inputs, base, refined)
    texts = _texts(figure)
    assert {"SUPIR: in0", "SUPIR: in1", "SeeSR: in0", "SeeSR + MAP", "MAP-refined (Eq. 17)"} <= set(
        texts
    )
    assert len(figure.findobj(AxesImage)) == 12
    _saved(figure, tmp_path / "fig12.png")
    own = grids.triplets(
        {"SUPIR": inputs[:1]}, {"SUPIR": base["SUPIR"][:1]}, {"SUPIR": refined["SUPIR"][:1]}
    )
    assert len(own.findobj(AxesImage)) == 3
    plt.close(own)
    with pytest.raises(ValueError, match="different enhancers"):
        grids.triplets(inputs, base, {"SUPIR": refined["SUPIR"]})
    with pytest.raises(ValueError, match=r"refined\['SeeSR'\] has 1 entries"):
        grids.triplets(inputs, base, {**refined, "SeeSR": refined["SeeSR"][:1]})


def test_side_by_side_named_variants(tmp_path):
    inputs = [_png(tmp_path, f"in{i}", seed=i) for i in range(2)]
    columns = {
        "vanilla SD2": [_png(tmp_path, "v0"), None],
        "ControlNet": [_png(tmp_path, "c0"), _png(tmp_path, "c1")],
    }
    figure = grids.side_by_side(
        columns, inputs, captions={"ControlNet": ["q=0.9", ""]}, title="Fig. 7"
    )
    texts = _texts(figure)
    assert {"input", "vanilla SD2", "ControlNet", "q=0.9", grids.MISSING, "Fig. 7"} <= set(texts)
    _saved(figure, tmp_path / "fig7.png")
    with pytest.raises(ValueError, match=r"columns\['ControlNet'\] has 1 entries"):
        grids.side_by_side({"ControlNet": inputs[:1]}, inputs)
    with pytest.raises(ValueError, match="not a column"):
        grids.side_by_side(columns, inputs, captions={"SUPIR": ["a", "b"]})


def test_lambda_sweep_plot(tmp_path):
    rows = [
        {
            "lambda": str(lam),
            "image": image,
            "score": str(0.1 * k + lam / 100),
            "fidelity": "" if (lam, image) == (1, "b") else str(lam / 1000),
        }
        for k, image in enumerate("ab")
        for lam in (0, 0.1, 1, 10, math.inf)
    ]
    figure = charts.lambda_sweep_plot(rows, reduced=True)
    score_axis, fidelity_axis = figure.axes[:2]
    assert score_axis.get_xscale() == "log" and fidelity_axis.get_xscale() == "log"
    labels = [line.get_label() for line in score_axis.get_lines()]
    assert labels[:3] == ["a", "b", "mean"] and len(labels) == 5  # + lambda = 0 and inf lines
    mean = score_axis.get_lines()[2].get_ydata()
    assert np.allclose(mean, [0.05 + 0.001, 0.05 + 0.01, 0.05 + 0.1])
    fidelity_mean = fidelity_axis.get_lines()[2].get_ydata()
    assert np.allclose(fidelity_mean, [0.0001, 0.001, 0.01])  # the blank cell is skipped
    assert _has_stamp(figure)
    _saved(figure, tmp_path / "fig2-plot.png")
    with pytest.raises(ValueError, match="lacks fidelity"):
        charts.lambda_sweep_plot([{"lambda": 1, "image": "a", "score": 1}])


def test_vote_shares_exact():
    conditions = ["MS-LIQE", "LIQE", "MUSIQ", "UNIQUE", "NIQE"]
    counts = np.zeros((5, 5), dtype=int)
    for j, (wins, losses) in enumerate([(764, 236), (786, 214), (825, 175)], start=1):
        counts[0, j], counts[j, 0] = wins, losses
    counts[1, 2] = 7  # pairs without the anchor do not count
    rows = charts.vote_shares(counts, conditions, "MS-LIQE")
    assert [row["opponent"] for row in rows] == ["LIQE", "MUSIQ", "UNIQUE", "NIQE"]
    assert [row["share"] for row in rows[:3]] == [0.764, 0.786, 0.825]
    assert (rows[0]["wins"], rows[0]["losses"]) == (764, 236)
    assert math.isnan(rows[3]["share"]) and rows[3]["wins"] == rows[3]["losses"] == 0
    flipped = charts.vote_shares(counts, conditions, "LIQE")
    assert flipped[0] == {"opponent": "MS-LIQE", "wins": 236, "losses": 764, "share": 0.236}


def test_vote_shares_rejects_bad_input():
    with pytest.raises(ValueError, match="square"):
        charts.vote_shares(np.zeros((2, 3)), ["a", "b"], "a")
    with pytest.raises(ValueError, match="conditions has 3 entries"):
        charts.vote_shares(np.zeros((2, 2)), ["a", "b", "c"], "a")
    with pytest.raises(ValueError, match="anchor 'z'"):
        charts.vote_shares(np.zeros((2, 2)), ["a", "b"], "z")
    with pytest.raises(ValueError, match="non-negative"):
        charts.vote_shares([[0, -1], [1, 0]], ["a", "b"], "a")


def test_vote_share_plot(tmp_path):
    rows = charts.vote_shares([[0, 3, 0], [1, 0, 0], [0, 0, 0]], ["A", "B", "C"], "A")
    figure = charts.vote_share_plot(rows, "A", reduced=True)
    axis = figure.axes[0]
    assert [patch.get_height() for patch in axis.patches] == [75.0, 0]
    assert any(list(line.get_ydata()) == [50, 50] for line in axis.get_lines())
    texts = _texts(figure)
    assert {"75.0%\n3/4", "n/a", "vs B", "vs C"} <= set(texts)
    assert _has_stamp(figure)
    _saved(figure, tmp_path / "votes.png")
    with pytest.raises(ValueError, match="at least one"):
        charts.vote_share_plot([], "A")


def test_save_figure_closes_and_can_skip_pdf(tmp_path):
    figure = grids.image_grid([[_png(tmp_path, "a")]])
    number = figure.number
    out = tmp_path / "sub" / "grid.png"
    assert plots.save_figure(figure, out, pdf=False) == [out]
    assert out.exists() and not out.with_suffix(".pdf").exists()
    assert not plt.fignum_exists(number)
