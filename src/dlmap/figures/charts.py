"""The small quantitative plots beside the paper's image grids: Fig. 2's score and fidelity
against lambda (:func:`lambda_sweep_plot`) and the vote shares quoted with Fig. 9
(:func:`vote_shares`, :func:`vote_share_plot`). Figures made with ``reduced=True`` carry
``plots.REDUCED_STAMP`` in their title."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from dlmap.errors import InputError  # noqa: E402
from dlmap.figures.grids import check_length, lambda_label  # noqa: E402
from dlmap.figures.plots import set_title  # noqa: E402


def _number(value) -> float:
    return float("nan") if value is None or value == "" else float(value)


def lambda_sweep_plot(
    rows: Sequence[Mapping],
    title: str = "",
    reduced: bool = False,
    score_label: str = "calibrated score q",
):
    """Fig. 2's quantitative side: score and fidelity against lambda (log x), one thin line
    per image and a thick mean.  ``rows``: dicts with lambda, image, score, fidelity (numbers
    or CSV text).  lambda = 0 and lambda = inf cannot sit on a log axis; their means are drawn
    as dotted horizontal lines instead.
    """
    if not rows:
        raise InputError("lambda_sweep_plot needs at least one row")
    table: dict[str, dict[float, dict]] = {}
    for row in rows:
        lacking = [key for key in ("lambda", "image", "score", "fidelity") if key not in row]
        if lacking:
            raise InputError(f"a row lacks {', '.join(lacking)}: {dict(row)}")
        table.setdefault(str(row["image"]), {})[float(row["lambda"])] = row
    lambdas = sorted({lam for by in table.values() for lam in by})
    finite = [lam for lam in lambdas if 0 < lam < math.inf]
    figure, axes = plt.subplots(1, 2, figsize=(9, 3.4), constrained_layout=True)
    for axis, key, label in zip(
        axes, ("score", "fidelity"), (score_label, "fidelity D0"), strict=True
    ):
        values = np.array(
            [[_number(table[image].get(lam, {}).get(key)) for lam in lambdas] for image in table]
        )
        keep = [lambdas.index(lam) for lam in finite]
        for image, line in zip(table, values, strict=True):
            axis.plot(
                finite,
                line[keep],
                marker=".",
                linewidth=0.8,
                alpha=0.45,
                label=image if len(table) <= 12 else "_nolegend_",
            )
        known = (~np.isnan(values)).sum(axis=0)
        totals = np.nansum(values, axis=0)
        mean = np.divide(totals, known, out=np.full(len(lambdas), np.nan), where=known > 0)
        if finite:
            axis.plot(finite, mean[keep], color="black", linewidth=2.2, marker="o", label="mean")
        for lam, style in ((0.0, ":"), (math.inf, "--")):
            if lam in lambdas and not np.isnan(mean[lambdas.index(lam)]):
                axis.axhline(
                    mean[lambdas.index(lam)],
                    color="0.35",
                    linestyle=style,
                    label=f"mean, {lambda_label(lam)}",
                )
        if finite:
            axis.set_xscale("log")
        axis.set_xlabel("\u03bb")
        axis.set_title(label, fontsize=9)
        axis.grid(alpha=0.3)
    axes[1].legend(fontsize=7, loc="best")
    set_title(figure, title or "Fig. 2: score and fidelity against \u03bb", reduced)
    return figure


def vote_shares(counts, conditions: Sequence[str], anchor: str) -> list[dict]:
    """Fig. 9's vote shares: from ``counts[i][j]`` = times condition i was preferred over j,
    the anchor's wins, losses and share ``wins / (wins + losses)`` against every other
    condition (NaN where they were never compared), in ``conditions`` order."""
    matrix = np.asarray(counts, dtype=float)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise InputError(f"counts must be a square N x N matrix, not shape {matrix.shape}")
    check_length("conditions", conditions, matrix.shape[0], "rows in counts")
    if np.any(matrix < 0) or not np.all(np.isfinite(matrix)):
        raise InputError("counts must be finite and non-negative")
    if anchor not in conditions:
        raise InputError(f"anchor {anchor!r} is not one of the conditions {list(conditions)}")
    a = list(conditions).index(anchor)
    rows = []
    for j, opponent in enumerate(conditions):
        if j == a:
            continue
        wins, losses = float(matrix[a, j]), float(matrix[j, a])
        share = wins / (wins + losses) if wins + losses > 0 else float("nan")
        rows.append({"opponent": opponent, "wins": wins, "losses": losses, "share": share})
    return rows


def vote_share_plot(rows: Sequence[Mapping], anchor: str, reduced: bool = False, title: str = ""):
    """A bar per opponent with the anchor's vote share in percent (the numbers quoted with
    Fig. 9), its wins/total above the bar, and the 50% line of no preference."""
    if not rows:
        raise InputError("vote_share_plot needs at least one opponent row")
    shares = [100 * float(row["share"]) for row in rows]
    size = (max(6.5, 1.2 * len(rows) + 2.2), 3.4)
    figure, axis = plt.subplots(figsize=size, constrained_layout=True)
    positions = range(len(rows))
    axis.bar(positions, [0 if math.isnan(s) else s for s in shares], color="C0", width=0.6)
    for x, row, share in zip(positions, rows, shares, strict=True):
        total = float(row["wins"]) + float(row["losses"])
        text = "n/a" if math.isnan(share) else f"{share:.1f}%\n{row['wins']:g}/{total:g}"
        axis.text(
            x, (0 if math.isnan(share) else share) + 1.5, text, ha="center", va="bottom", fontsize=8
        )
    axis.axhline(50, color="firebrick", linestyle="--", linewidth=1, label="50% (no preference)")
    axis.set_xticks(list(positions), [f"vs {row['opponent']}" for row in rows], fontsize=8)
    axis.set_ylim(0, 115)
    axis.set_ylabel(f"votes for {anchor} (%)")
    axis.legend(fontsize=7, loc="upper right")
    axis.grid(axis="y", alpha=0.3)
    set_title(figure, title or f"Fig. 9: share of votes for {anchor}", reduced)
    return figure
