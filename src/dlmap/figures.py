"""Figures: one MAP solve's trajectory, MS-LIQE's learning curve, and a ranking (Fig. 5)."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_history(record: dict, title: str = ""):
    """A figure with three panels, loss, calibrated score and fidelity against the iteration.

    ``record`` is one problem's JSON record as ``dlmap enhance`` writes it: ``history`` is a
    list of per-iteration dicts and ``final`` the values of the returned images.
    """
    history = record["history"]
    iterations = [step["iteration"] for step in history]
    figure, axes = plt.subplots(1, 3, figsize=(10, 3), constrained_layout=True)
    panels = (
        ("loss", "energy E (Eq. 17)"),
        ("score", "calibrated score q (Eq. 21)"),
        ("fidelity", "fidelity D0"),
    )
    for axis, (key, label) in zip(axes, panels, strict=True):
        axis.plot(iterations, [step[key] for step in history], marker=".", label="iterations")
        axis.set_xlabel("iteration")
        axis.set_title(label, fontsize=9)
        axis.grid(alpha=0.3)
    final = record.get("final", {})
    if "loss" in final:
        axes[0].axhline(final["loss"], color="C1", linestyle="--", label="returned images")
        axes[0].legend(fontsize=8)
    if title:
        figure.suptitle(title, fontsize=10)
    return figure


def plot_training(history: list[dict], title: str = "MS-LIQE training"):
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
    figure.suptitle(title, fontsize=10)
    return figure


def plot_ranking(rows: list[dict], title: str = "", simulated: bool = False):
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
            axis.errorbar(jod, y, xerr=[[jod - low], [high - jod]], fmt="o", color=color,
                          capsize=3)  # fmt: skip
        else:
            axis.plot(jod, y, "o", color=color)
        axis.annotate(group, (jod, y), textcoords="offset points", xytext=(0, 7),
                      ha="center", fontsize=8, color=color)  # fmt: skip
    axis.set_yticks(range(len(rows)), [row["condition"] for row in rows])
    axis.set_xlabel("quality (JOD; 1 JOD = 75% preference)")
    axis.grid(axis="x", alpha=0.3)
    label = " (SIMULATED observers)" if simulated else ""
    axis.set_title((title or "ranking") + label, fontsize=10)
    return figure


def figure_png_bytes(figure) -> bytes:
    """The figure as PNG bytes (closed afterwards)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    return buffer.getvalue()
