"""The paper's qualitative figures as labelled image grids.

:func:`image_grid` draws rows of images at native aspect (column headers, row labels, text
under each image, a framed "missing" cell for ``None``); thin builders give the layouts of
Figs. 1, 2, 6/9/11, 12 and 7/8/11 (the plots beside them are ``dlmap.figures.charts``).
Figures made with ``reduced=True`` carry ``plots.REDUCED_STAMP`` in their title.  Images are
downscaled for display to at most ``max_side`` pixels, so a 20-row grid stays small.
"""

from __future__ import annotations

import math
import os
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib
import numpy as np
from PIL import Image

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from dlmap.errors import InputError
from dlmap.figures.plots import REDUCED_STAMP, TITLE_FONTSIZE, set_title, title_lines  # noqa: E402
from dlmap.images import read_image  # noqa: E402

MISSING = "missing"
_LABEL_CHARS = 24  # row labels are wrapped at this many characters


def _titled(figure, title: str, reduced: bool, **where) -> None:
    """The figure's title, wrapped to its width; with ``reduced`` the stamp follows on lines
    of its own, and the whole title is red (``figures.set_title``)."""
    set_title(figure, title, reduced, **where)


def check_length(name: str, values: Sequence, expected: int, what: str) -> None:
    if len(values) != expected:
        raise InputError(f"{name} has {len(values)} entries but there are {expected} {what}")


def _thumbnail(path: str | os.PathLike, max_side: int) -> np.ndarray:
    """The image as uint8 RGB, downscaled (aspect kept) so that its longer side <= max_side."""
    rgb = np.clip(np.rint(read_image(path) * 255.0), 0, 255).astype(np.uint8)
    image = Image.fromarray(rgb)
    image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return np.asarray(image)


def _caption(value, prior: str) -> str:
    """A number becomes ``"{prior} 3.21"``; text is kept; None gives no caption."""
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        return value
    return f"{prior} {float(value):.2f}".strip()


def image_grid(
    rows: Sequence[Sequence[str | os.PathLike | None]],
    row_labels: Sequence[str] | None = None,
    column_labels: Sequence[str] | None = None,
    captions: Sequence[Sequence[str]] | None = None,
    title: str = "",
    reduced: bool = False,
    max_side: int = 256,
    cell_inches: float = 2.0,
):
    """A labelled grid of images (the layout behind Figs. 1, 2, 6, 7, 8, 9, 11 and 12).

    ``rows[r][c]`` is a PNG path, or None / "" (drawn as an empty frame marked "missing").
    Every column is ``cell_inches`` wide; each row is as tall as its tallest image at that
    width, so images keep their native aspect.  ``captions[r][c]`` is written under the
    image (e.g. ``"LIQE 3.21"``).  Images are downscaled to at most ``max_side`` pixels.
    """
    rows = [list(row) for row in rows]
    if not rows or not rows[0]:
        raise InputError("image_grid needs at least one row with at least one cell")
    ncols = len(rows[0])
    for index, row in enumerate(rows):
        check_length(f"row {index}", row, ncols, "columns (the first row's length)")
    if row_labels is not None:
        check_length("row_labels", row_labels, len(rows), "rows")
    if column_labels is not None:
        check_length("column_labels", column_labels, ncols, "columns")
    if captions is not None:
        check_length("captions", captions, len(rows), "rows")
        for index, line in enumerate(captions):
            check_length(f"captions[{index}]", line, ncols, "columns")
    if max_side < 1 or cell_inches <= 0:
        raise InputError("max_side and cell_inches must be positive")
    pixels = [[None if p in (None, "") else _thumbnail(p, max_side) for p in row] for row in rows]
    heights = []  # inches of each row's image area
    for row in pixels:
        aspects = [cell.shape[0] / cell.shape[1] for cell in row if cell is not None]
        heights.append(cell_inches * max(aspects, default=1.0))
    labels = [textwrap.fill(str(label), _LABEL_CHARS) for label in row_labels or []]
    longest = max((len(line) for label in labels for line in label.split("\n")), default=0)
    left = 0.15 + (0.075 * longest + 0.1 if labels else 0.0)
    caption_lines = max(
        (str(c).count("\n") + 1 for line in captions or [] for c in line if c), default=0
    )
    under = 0.06 + 0.16 * caption_lines  # inches of text under each image
    header = 0.3 if column_labels is not None else 0.05
    gap = 0.06
    width = left + ncols * (cell_inches + gap) + 0.1
    weight = "bold" if reduced else "normal"
    lines = len(title_lines([title, REDUCED_STAMP if reduced else ""], width, weight=weight))
    top = 0.1 + 0.022 * TITLE_FONTSIZE * lines + header
    height = top + sum(h + under for h in heights) + 0.1
    figure = plt.figure(figsize=(width, height))
    y = height - top  # top edge of the current row, inches from the bottom
    for r, row in enumerate(pixels):
        y -= heights[r]
        for c, cell in enumerate(row):
            x = left + c * (cell_inches + gap)
            box = (x / width, y / height, cell_inches / width, heights[r] / height)
            axis = figure.add_axes(box)
            axis.set_xticks([])
            axis.set_yticks([])
            if cell is None:
                for spine in axis.spines.values():
                    spine.set_edgecolor("0.6")
                    spine.set_linestyle("--")
                axis.text(
                    0.5,
                    0.5,
                    MISSING,
                    ha="center",
                    va="center",
                    color="0.4",
                    fontsize=9,
                    style="italic",
                    transform=axis.transAxes,
                )
            else:
                axis.imshow(cell, interpolation="antialiased")
                axis.set_anchor("N")
                axis.set_axis_off()
            if r == 0 and column_labels is not None:
                figure.text(
                    (x + cell_inches / 2) / width,
                    (y + heights[r] + 0.06) / height,
                    str(column_labels[c]),
                    ha="center",
                    va="bottom",
                    fontsize=8,
                    fontweight="bold",
                )
            if captions is not None and captions[r][c]:
                figure.text(
                    (x + cell_inches / 2) / width,
                    (y - 0.03) / height,
                    str(captions[r][c]),
                    ha="center",
                    va="top",
                    fontsize=7,
                )
        if labels:
            figure.text(
                (left - 0.1) / width,
                (y + heights[r] / 2) / height,
                labels[r],
                ha="right",
                va="center",
                fontsize=7,
            )
        y -= under
    _titled(figure, title, reduced, y=1 - 0.08 / height, va="top")
    return figure


def _names(paths: Sequence, names: Sequence[str] | None) -> list[str]:
    if names is not None:
        check_length("names", names, len(paths), "images")
        return [str(name) for name in names]
    return [Path(p).stem if p is not None else f"image {i}" for i, p in enumerate(paths)]


def fig1_pixel_vs_latent(
    initial,
    pixel_direct,
    pixel_map,
    latent_map,
    scores=None,
    names=None,
    prior: str = "LIQE",
    title: str = "",
    reduced: bool = False,
    **grid,
):
    """Fig. 1 (a)-(d), one row per image: the initial image, direct maximization of the prior
    (Eq. 1), pixel-space MAP with MSE fidelity (Eq. 2) and diffusion latent MAP (Eq. 17).

    ``scores[r]`` holds the four images' prior scores (numbers, text or None), written under
    each image as e.g. ``"LIQE 3.21"``.
    """
    columns = [initial, pixel_direct, pixel_map, latent_map]
    for name, column in zip(("pixel_direct", "pixel_map", "latent_map"), columns[1:], strict=True):
        check_length(name, column, len(initial), "initial images")
    captions = None
    if scores is not None:
        check_length("scores", scores, len(initial), "initial images")
        for index, line in enumerate(scores):
            check_length(f"scores[{index}]", line, 4, "panels (a)-(d)")
        captions = [[_caption(value, prior) for value in line] for line in scores]
    labels = [
        "(a) initial",
        f"(b) max {prior} (Eq. 1)",
        f"(c) pixel MAP, MSE + {prior}",
        "(d) latent MAP (Eq. 17)",
    ]
    rows = [list(cells) for cells in zip(*columns, strict=True)]
    title = title or "Fig. 1: pixel vs diffusion latent MAP"
    return image_grid(rows, _names(initial, names), labels, captions, title, reduced, **grid)


def lambda_label(value: float) -> str:
    return "\u03bb = \u221e (direct)" if math.isinf(value) else f"\u03bb = {value:g}"


def fig2_lambda_sweep(
    initial,
    by_lambda: Mapping[float, Sequence],
    scores: Mapping[float, Sequence] | None = None,
    initial_scores: Sequence | None = None,
    names=None,
    prior: str = "LIQE",
    title: str = "",
    reduced: bool = False,
    **grid,
):
    """Fig. 2: pixel-space MAP results (Eq. 2) for several lambdas, one row per image.

    ``by_lambda[lam][r]`` is image r's result at ``lam`` (columns sorted by lambda, after the
    initial image); ``scores[lam][r]`` / ``initial_scores[r]`` are written under the images.
    """
    lambdas, n = sorted(by_lambda, key=float), len(initial)
    if scores is not None and set(scores) - set(lambdas):
        raise InputError(f"scores has lambdas without images: {sorted(set(scores) - set(lambdas))}")
    columns = [initial] + [by_lambda[lam] for lam in lambdas]
    blank = [None] * n
    texts = [blank if initial_scores is None else initial_scores]
    texts += [(scores or {}).get(lam, blank) for lam in lambdas]
    for lam, paths, values in zip(["initial", *lambdas], columns, texts, strict=True):
        where = "initial" if lam == "initial" else f"lambda={lam}"
        check_length(f"images ({where})", paths, n, "initial images")
        check_length(f"scores ({where})", values, n, "initial images")
    rows = [list(cells) for cells in zip(*columns, strict=True)]
    captions = [[_caption(value, prior) for value in line] for line in zip(*texts, strict=True)]
    has_captions = scores is not None or initial_scores is not None
    labels = ["initial"] + [lambda_label(float(lam)) for lam in lambdas]
    title = title or "Fig. 2: MAP estimation (Eq. 2) against \u03bb"
    return image_grid(
        rows,
        _names(initial, names),
        labels,
        captions if has_captions else None,
        title,
        reduced,
        **grid,
    )


def pair_grid(pairs: Sequence[Mapping], title: str = "", reduced: bool = False, **grid):
    """Figs. 6, 9 and 11 (selected pairs, Eq. 18): one row per pair with the input and both
    enhanced images, each labelled with its enhancer's name.

    Each pair has ``enhancer_i``, ``enhancer_j``, ``image`` (its name), ``input``, ``file_i``
    and ``file_j`` (paths or None), and optional ``caption_i`` / ``caption_j`` (e.g. scores).
    """
    if not pairs:
        raise InputError("pair_grid needs at least one pair")
    needed = ("enhancer_i", "enhancer_j", "image", "input", "file_i", "file_j")
    for index, pair in enumerate(pairs):
        lacking = [key for key in needed if key not in pair]
        if lacking:
            raise InputError(f"pair {index} lacks {', '.join(lacking)}")
    rows = [[pair["input"], pair["file_i"], pair["file_j"]] for pair in pairs]
    captions = [
        [
            "",
            *(
                "\n".join(str(t) for t in (pair[f"enhancer_{s}"], pair.get(f"caption_{s}")) if t)
                for s in "ij"
            ),
        ]
        for pair in pairs
    ]
    headers = ["input"] + [
        f"enhanced ({s})"
        if len({p[f"enhancer_{s}"] for p in pairs}) > 1
        else str(pairs[0][f"enhancer_{s}"])
        for s in "ij"
    ]
    return image_grid(
        rows,
        [str(pair["image"]) for pair in pairs],
        headers,
        captions,
        title or "Selected pairs (Eq. 18)",
        reduced,
        **grid,
    )


def triplets(
    inputs,
    base: Mapping[str, Sequence],
    refined: Mapping[str, Sequence],
    names=None,
    title: str = "",
    reduced: bool = False,
    **grid,
):
    """Fig. 12: (input, base enhancer's output, MAP-refined output) triplets, one row per base
    enhancer and image, labelled with the base enhancer's name.

    ``base[enhancer][k]`` / ``refined[enhancer][k]`` belong to ``inputs[k]``; ``inputs`` may
    also be a mapping enhancer -> its own list of inputs (a different image per enhancer).
    """
    if set(base) != set(refined):
        raise InputError(
            f"base and refined name different enhancers: {sorted(base)} vs {sorted(refined)}"
        )
    rows, labels, captions = [], [], []
    for enhancer in base:
        own = inputs[enhancer] if isinstance(inputs, Mapping) else inputs
        check_length(f"base[{enhancer!r}]", base[enhancer], len(own), "inputs")
        check_length(f"refined[{enhancer!r}]", refined[enhancer], len(own), "inputs")
        for k, (name, path) in enumerate(zip(_names(own, names), own, strict=True)):
            rows.append([path, base[enhancer][k], refined[enhancer][k]])
            labels.append(f"{enhancer}: {name}")
            captions.append(["", enhancer, f"{enhancer} + MAP"])
    if not rows:
        raise InputError("triplets needs at least one base enhancer with one input")
    return image_grid(
        rows,
        labels,
        ["input", "base enhancer", "MAP-refined (Eq. 17)"],
        captions,
        title or "Fig. 12: MAP refinement of enhancers' outputs",
        reduced,
        **grid,
    )


def side_by_side(
    columns: Mapping[str, Sequence],
    inputs,
    names=None,
    captions: Mapping[str, Sequence] | None = None,
    input_label: str = "input",
    title: str = "",
    reduced: bool = False,
    **grid,
):
    """Figs. 7, 8 and 11: the input next to named variants (e.g. vanilla SD2 / ControlNet,
    direct / MAP, or several enhancers), one row per input image.

    ``columns[name][r]`` belongs to ``inputs[r]``; ``captions[name][r]`` (optional) is written
    under it.
    """
    for name, paths in columns.items():
        check_length(f"columns[{name!r}]", paths, len(inputs), "inputs")
    for name, texts in (captions or {}).items():
        if name not in columns:
            raise InputError(f"captions name {name!r}, which is not a column")
        check_length(f"captions[{name!r}]", texts, len(inputs), "inputs")
    rows = [[path] + [columns[name][r] for name in columns] for r, path in enumerate(inputs)]
    text = None
    if captions is not None:
        text = [
            [""] + [str(captions.get(name, [""] * len(inputs))[r] or "") for name in columns]
            for r in range(len(inputs))
        ]
    return image_grid(
        rows, _names(inputs, names), [input_label, *columns], text, title, reduced, **grid
    )
