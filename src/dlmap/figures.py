"""Figures: the trajectory of one MAP solve (loss, calibrated score, fidelity per iteration)."""

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


def figure_png_bytes(figure) -> bytes:
    """The figure as PNG bytes (closed afterwards)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    return buffer.getvalue()
