"""Figures: one MAP solve's trajectory, MS-LIQE's learning curve, and a ranking (Fig. 5),
and the titles every figure of dlmap carries (``set_title``).

A title is wrapped to its figure's width, measured with the font it is drawn in, and the
stamps (reduced settings, simulated observers) follow on lines of their own, so neither is
ever cut off by the figure's edges however long it is.
"""

from __future__ import annotations

import io
import os
import textwrap
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.backends.backend_agg import RendererAgg  # noqa: E402
from matplotlib.font_manager import FontProperties  # noqa: E402

from dlmap.files import write_bytes_atomic  # noqa: E402

REDUCED_STAMP = (
    "REDUCED SETTINGS (demo: toy-size networks, random or briefly trained) \u2014 "
    "not the paper's result"
)
SIMULATED_STAMP = "SIMULATED observers \u2014 not a human study"
TITLE_FONTSIZE = 10
TITLE_MARGIN_INCHES = 0.1
"""Free space kept between a title line and each side edge of its figure."""


def stamps(reduced: bool = False, simulated: bool = False) -> list[str]:
    """The stamps a figure carries: reduced settings, simulated observers, or none."""
    return [REDUCED_STAMP] * bool(reduced) + [SIMULATED_STAMP] * bool(simulated)


def text_width_inches(text: str, fontsize: float, weight: str = "normal") -> float:
    """The width of one line of text as matplotlib draws it (its default font)."""
    renderer = RendererAgg(1, 1, 72)  # at 72 dpi one pixel is one point
    prop = FontProperties(size=fontsize, weight=weight)
    width, _, _ = renderer.get_text_width_height_descent(text, prop, ismath=False)
    return width / 72


def title_lines(
    parts: Sequence[str],
    width_inches: float,
    fontsize: float = TITLE_FONTSIZE,
    weight: str = "normal",
) -> list[str]:
    """``parts`` (a title, then its stamps; empty ones skipped), each wrapped at word
    boundaries into lines no wider than ``width_inches`` less a margin on both sides."""
    room = width_inches - 2 * TITLE_MARGIN_INCHES
    lines: list[str] = []
    for part in parts:
        if not part:
            continue
        for paragraph in str(part).split("\n"):
            chars = len(paragraph)
            wrapped = [paragraph]
            while chars > 1 and any(
                text_width_inches(line, fontsize, weight) > room for line in wrapped
            ):
                chars -= 1
                wrapped = textwrap.wrap(paragraph, chars, break_on_hyphens=False) or [""]
            lines += wrapped
    return lines


def set_title(
    figure,
    title: str,
    reduced: bool = False,
    simulated: bool = False,
    fontsize: float = TITLE_FONTSIZE,
    **where,
):
    """The figure's title (``figure.suptitle``), wrapped to its width, with the stamps on
    lines of their own; red and bold when the figure shows reduced settings. ``where``:
    suptitle's placement (``y=``, ``va=``). Returns the title's ``Text`` (None if empty)."""
    weight = "bold" if reduced else "normal"
    lines = title_lines(
        [title, *stamps(reduced, simulated)], figure.get_figwidth(), fontsize, weight
    )
    if not lines:
        return None
    return figure.suptitle(
        "\n".join(lines),
        fontsize=fontsize,
        fontweight=weight,
        color="firebrick" if reduced else "black",
        **where,
    )


def plot_history(record: dict, title: str = "", reduced: bool = False):
    """Four panels against the iteration: loss, calibrated score (on the record's scale),
    fidelity, and the image-space gradient norms of D0 and lambda q with the prior's share.

    ``record`` is one problem's JSON record as ``dlmap enhance`` writes it: ``history`` is a
    list of per-iteration dicts and ``final`` the values of the returned images. Where early
    stopping applied, the threshold and the iteration at which it fired are drawn.
    """
    history = record["history"]
    iterations = [step["iteration"] for step in history]
    scale = record.get("score_scale") or {"range": [0, 1]}
    low, high = scale["range"]
    figure, axes = plt.subplots(1, 4, figsize=(13, 3), constrained_layout=True)
    panels = (
        ("loss", "energy E (Eq. 17)"),
        ("score", f"calibrated score q (Eq. 21, {low:g}-{high:g} scale)"),
        ("fidelity", "fidelity D0"),
    )
    for axis, (key, label) in zip(axes[:3], panels, strict=True):
        axis.plot(iterations, [step[key] for step in history], marker=".", label="iterations")
        axis.set_title(label, fontsize=9)
    final = record.get("final", {})
    if "loss" in final:
        axes[0].axhline(final["loss"], color="C1", linestyle="--", label="returned images")
        axes[0].legend(fontsize=8)
    stop = record.get("early_stop") or {}
    if stop.get("applied"):
        axes[1].axhline(stop["threshold"], color="0.4", linestyle=":", label="early stop at")
        if stop.get("iteration") is not None:
            axes[1].axvline(stop["iteration"], color="C3", linestyle="--", label="stopped")
        axes[1].legend(fontsize=7)
    _plot_gradient_shares(axes[3], history)
    for axis in axes:
        axis.set_xlabel("iteration")
        axis.grid(alpha=0.3)
    set_title(figure, title, reduced)
    return figure


def _plot_gradient_shares(axis, history: list[dict]) -> None:
    """Norms of the image-space gradients of D0 and lambda q (log axis), the share in the title."""
    if not history or "grad_prior" not in history[0]:
        axis.set_title("gradient norms: not recorded", fontsize=9)
        return
    iterations = [step["iteration"] for step in history]
    for key, label, colour in (("grad_fidelity", "D0", "C0"), ("grad_prior", "\u03bb q", "C1")):
        values = [step[key] if step[key] > 0 else float("nan") for step in history]
        axis.plot(iterations, values, marker=".", color=colour, label=f"\u2016\u2207 {label}\u2016")
    if any(step["grad_fidelity"] > 0 or step["grad_prior"] > 0 for step in history):
        axis.set_yscale("log")
    shares = [step["prior_share"] for step in history]
    axis.set_title(
        f"image-space gradient norms\nprior's share {min(shares):.1%}-{max(shares):.1%}", fontsize=9
    )
    axis.legend(fontsize=7)


def plot_training(history: list[dict], title: str = "MS-LIQE training", reduced: bool = False):
    """Two panels against the epoch: mean fidelity loss (Eq. 27), and the validation SRCC
    and PLCC of each data set (``msliqe_train.train``'s per-epoch rows)."""
    epochs = [row["epoch"] for row in history]
    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3), constrained_layout=True)
    left.plot(epochs, [row["loss"] for row in history], marker=".")
    left.set_title("training loss (Eq. 27)", fontsize=9)
    names = sorted(
        {key[: -len("_srcc")] for row in history for key in row if key.endswith("_srcc")}
    )
    for index, name in enumerate(names):
        for key, style in (("srcc", "-"), ("plcc", ":")):
            values = [row.get(f"{name}_{key}", float("nan")) for row in history]
            right.plot(epochs, values, style, color=f"C{index}", label=f"{name} {key.upper()}")
    right.set_title("validation correlation", fontsize=9)
    if names:
        right.legend(fontsize=7)
    for axis in (left, right):
        axis.set_xlabel("epoch")
        axis.grid(alpha=0.3)
    set_title(figure, title, reduced)
    return figure


def plot_vae_training(history: list[dict], held_out: list[dict], factor: int, reduced: bool = True):
    """The tiny VAE's training (``dlmap.diffusion.tiny_vae``): reconstruction error against the
    step,
    and the held-out PSNR of each photograph, the VAE's against bicubic by its factor."""
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.4), constrained_layout=True)
    steps = [row["step"] for row in history]
    left.plot(steps, [row["mse"] for row in history], linewidth=0.6, alpha=0.5, label="batch")
    window = max(1, len(history) // 20)
    if len(history) >= window:
        smooth = np.convolve([row["mse"] for row in history], np.ones(window) / window, "valid")
        left.plot(steps[window - 1 :], smooth, color="C1", label=f"mean of {window}")
    left.set_yscale("log")
    left.set_xlabel("step")
    left.set_title("training MSE (images in [-1, 1])", fontsize=9)
    left.legend(fontsize=7)
    names = [row["image"] for row in held_out]
    positions = np.arange(len(names))
    right.bar(positions - 0.2, [row["vae_mean_psnr"] for row in held_out], 0.4, label="VAE")
    right.bar(
        positions + 0.2,
        [row["bicubic_psnr"] for row in held_out],
        0.4,
        label=f"bicubic {factor}x down + up",
    )
    right.set_xticks(positions, names, rotation=30, ha="right", fontsize=7)
    right.set_ylabel("PSNR (dB)")
    right.set_title("held-out photographs", fontsize=9)
    right.legend(fontsize=7)
    for axis in (left, right):
        axis.grid(alpha=0.3)
    set_title(figure, f"Tiny VAE ({factor}x): trained on the spot", reduced)
    return figure


def plot_ranking(rows: list[dict], title: str = "", simulated: bool = False, reduced: bool = False):
    """Fig. 5 style: each condition's JOD with its 95% interval, best at the top, coloured
    by its first significance-group letter and labelled with all its letters.

    ``rows``: ``dlmap rank``'s SCORES.csv rows (condition, jod, ci_low, ci_high, group).
    """
    rows = sorted(rows, key=lambda row: float(row["jod"]))
    figure, axis = plt.subplots(figsize=(6, 0.45 * len(rows) + 1.2), constrained_layout=True)
    letters = sorted({letter for row in rows for letter in row.get("group") or ""})
    for y, row in enumerate(rows):
        group = row.get("group") or ""
        color = f"C{letters.index(group[0]) % 10}" if group else "C0"
        jod = float(row["jod"])
        if row.get("ci_low") not in (None, ""):
            low, high = float(row["ci_low"]), float(row["ci_high"])
            axis.errorbar(jod, y, xerr=[[jod - low], [high - jod]], fmt="o", color=color, capsize=3)
        else:
            axis.plot(jod, y, "o", color=color)
        axis.annotate(
            group,
            (jod, y),
            textcoords="offset points",
            xytext=(0, 7),
            ha="center",
            fontsize=8,
            color=color,
        )
    axis.set_yticks(range(len(rows)), [row["condition"] for row in rows])
    axis.set_xlabel("quality (JOD; 1 JOD = 75% preference)")
    axis.grid(axis="x", alpha=0.3)
    set_title(figure, title or "ranking", reduced, simulated)
    return figure


def figure_png_bytes(figure) -> bytes:
    """The figure as PNG bytes (closed afterwards)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    return buffer.getvalue()


def save_figure(figure, png_path: str | os.PathLike, pdf: bool = True, dpi: int = 128):
    """Write the figure as PNG (and as PDF beside it, same name) atomically, then close it;
    returns the paths written.  At 128 dpi a 2-inch grid cell is 256 pixels wide."""
    png_path = Path(png_path)
    written = [png_path] + ([png_path.with_suffix(".pdf")] if pdf else [])
    try:
        png_path.parent.mkdir(parents=True, exist_ok=True)
        for path in written:
            buffer = io.BytesIO()
            kind = "png" if path is png_path else "pdf"
            figure.savefig(buffer, format=kind, dpi=dpi)
            write_bytes_atomic(path, buffer.getvalue())
    finally:
        plt.close(figure)
    return written
