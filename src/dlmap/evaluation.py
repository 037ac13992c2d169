"""Agreement of a prior's raw scores with opinion scores: SRCC, KRCC and PLCC (Table I).

``evaluate`` scores every image of a manifest (``dlmap.datasets``' CSV) with any registered
prior and reports, per data set, Spearman's and Kendall's rank correlations and Pearson's
linear correlation. PLCC is given twice: on the raw scores (``plcc_raw``) and, as is usual
since VQEG's report, after fitting the monotone logistic of Eq. 21 to MOS (``plcc``).
Lower-is-better priors (NIQE) are negated first, so every correlation is positive when the
prior agrees with MOS.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm


def correlations(predicted, mos, higher_is_better: bool = True) -> dict[str, float]:
    """SRCC, KRCC, PLCC after the Eq. 21 logistic, and PLCC on the raw scores."""
    from scipy import stats

    from dlmap.calibration import fit_logistic

    predicted = np.asarray(predicted, dtype=np.float64) * (1 if higher_is_better else -1)
    mos = np.asarray(mos, dtype=np.float64)
    nan = float("nan")
    if len(predicted) < 4 or np.ptp(predicted) == 0 or np.ptp(mos) == 0:
        return {"srcc": nan, "krcc": nan, "plcc": nan, "plcc_raw": nan, "count": len(mos)}
    span = (mos.min(), np.ptp(mos))
    try:
        fitted = fit_logistic(predicted, (mos - span[0]) / span[1]).plcc_calibrated
    except RuntimeError:  # the logistic did not converge: report the raw PLCC only
        fitted = nan
    return {
        "srcc": float(stats.spearmanr(predicted, mos)[0]),
        "krcc": float(stats.kendalltau(predicted, mos)[0]),
        "plcc": float(fitted),
        "plcc_raw": float(stats.pearsonr(predicted, mos)[0]),
        "count": len(mos),
    }


@torch.no_grad()
def score_images(prior, paths, size: int | None = None, quiet: bool = False) -> list[float]:
    """Raw scores of ``prior`` on image files, one at a time at their own size (or, with
    ``size``, shorter side resized to ``size`` and centre-cropped to a square)."""
    from dlmap.images import load_image

    device = next((p.device for p in prior.parameters()), torch.device("cpu"))
    scores = []
    for path in tqdm(paths, desc="scoring", unit="image", disable=quiet):
        image = load_image(path, size)[None].float().to(device)
        scores.append(float(prior(image).reshape(-1)[0]))
    return scores


def evaluate(
    prior, items, size: int | None = None, quiet: bool = False, per_image: list | None = None
) -> list[dict]:
    """One row per data set of ``items`` (``msliqe_train.Item``): its correlations. With a
    list ``per_image``, one row per image is appended to it: data set, image, MOS, the raw
    score and the calibrated score (Eq. 21) on the default scale."""
    from dlmap.calibration import DEFAULT_SCALE, calibrate, score_scale

    scale, info = score_scale(DEFAULT_SCALE), prior.info
    rows = []
    for name in sorted({item.dataset for item in items}):
        chosen = [item for item in items if item.dataset == name]
        scores = score_images(prior, [item.image for item in chosen], size, quiet)
        mos = [item.mos for item in chosen]
        row = correlations(scores, mos, prior.info.higher_is_better)
        rows.append({"prior": prior.info.name, "dataset": name, **row})
        if per_image is not None:
            raw = torch.tensor(scores, dtype=torch.float64)
            calibrated = calibrate(raw, info.xi3, info.xi4, info.higher_is_better, scale.xi1)
            for item, value, q in zip(chosen, scores, calibrated.tolist(), strict=True):
                per_image.append(
                    {
                        "prior": info.name, "dataset": name, "image": str(item.image),
                        "mos": item.mos, "raw_score": value, "calibrated_score": q,
                        "score_scale": scale.name, "scale_max": scale.xi1,
                    }
                )  # fmt: skip
    return rows


def per_image_path(summary) -> Path:
    """Where ``dlmap evaluate`` writes per-image scores beside its summary CSV:
    NAME.csv -> NAME.images.csv."""
    summary = Path(summary)
    return summary.with_name(f"{summary.stem}.images.csv")


def write_rows(rows: list[dict], path: str | os.PathLike) -> None:
    """Rows of dicts as a CSV (columns from the first row), written atomically."""
    from dlmap.images import write_text_atomic

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text_atomic(buffer.getvalue(), path)
