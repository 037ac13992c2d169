"""Agreement of a prior's raw scores with opinion scores: SRCC, KRCC and PLCC (Table I).

``evaluate`` scores every image of a manifest (``dlmap.data.manifests``' CSV) with any registered
prior and reports, per data set, Spearman's and Kendall's rank correlations and Pearson's
linear correlation. PLCC is given twice: on the raw scores (``plcc_raw``) and, as is usual
since VQEG's report, after fitting the monotone logistic of Eq. 21 to MOS (``plcc``).
Lower-is-better priors (NIQE) are negated first, so every correlation is positive when the
prior agrees with MOS.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from dlmap import progress
from dlmap.errors import InputError


def correlations(predicted, mos, higher_is_better: bool = True) -> dict[str, float]:
    """SRCC, KRCC, PLCC after the Eq. 21 logistic, and PLCC on the raw scores."""
    from scipy import stats

    from dlmap.priors.calibration import LogisticFitError, fit_logistic

    predicted = np.asarray(predicted, dtype=np.float64) * (1 if higher_is_better else -1)
    mos = np.asarray(mos, dtype=np.float64)
    nan = float("nan")
    if len(predicted) < 4 or np.ptp(predicted) == 0 or np.ptp(mos) == 0:
        return {"srcc": nan, "krcc": nan, "plcc": nan, "plcc_raw": nan, "count": len(mos)}
    span = (mos.min(), np.ptp(mos))
    try:
        fitted = fit_logistic(predicted, (mos - span[0]) / span[1]).plcc_calibrated
    except LogisticFitError:  # the logistic did not converge: report the raw PLCC only
        fitted = nan
    return {
        "srcc": float(stats.spearmanr(predicted, mos)[0]),
        "krcc": float(stats.kendalltau(predicted, mos)[0]),
        "plcc": float(fitted),
        "plcc_raw": float(stats.pearsonr(predicted, mos)[0]),
        "count": len(mos),
    }


def per_content_srcc(
    contents,
    levels,
    scores,
    higher_is_better: bool = True,
    resamples: int = 10000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict:
    """How well scores order graded distortions of each content, with a bootstrap interval.

    For each content (a photograph), Spearman's correlation between distortion ``levels``
    (larger = more distorted) and ``scores``, signed so that 1 means the prior ranks every
    level of that content correctly (scores fall as distortion grows, or rise for a
    lower-is-better prior). Returns the mean over contents with a percentile bootstrap
    interval over contents (``scipy.stats.bootstrap``), the count, and the per-content
    values. One pooled SRCC over several contents would mix content with distortion; this
    does not.
    """
    from scipy import stats

    contents, levels = np.asarray(contents), np.asarray(levels, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    if not (contents.shape == levels.shape == scores.shape) or contents.ndim != 1:
        raise InputError(
            f"contents, levels and scores must be equal-length lists; got {contents.shape}, "
            f"{levels.shape}, {scores.shape}"
        )
    if not np.all(np.isfinite(scores)):
        raise InputError("a score is not finite")
    sign = -1.0 if higher_is_better else 1.0
    per_content = {}
    for content in dict.fromkeys(contents.tolist()):
        chosen = contents == content
        if np.unique(levels[chosen]).size < 2:
            raise InputError(f"content {content!r}: needs at least two distortion levels")
        if np.ptp(scores[chosen]) == 0:
            per_content[content] = 0.0  # one score for every level: no order at all
            continue
        per_content[content] = sign * float(stats.spearmanr(levels[chosen], scores[chosen])[0])
    values = np.array(list(per_content.values()))
    mean = float(values.mean())
    if values.size < 2 or np.ptp(values) == 0:
        low = high = mean  # nothing to resample
    else:
        result = stats.bootstrap(
            (values,),
            np.mean,
            n_resamples=resamples,
            confidence_level=confidence,
            method="percentile",
            rng=np.random.default_rng(seed),
        )
        low, high = (float(v) for v in result.confidence_interval)
    return {
        "mean": mean,
        "low": low,
        "high": high,
        "count": int(values.size),
        "per_content": per_content,
    }


@torch.no_grad()
def score_images(prior, paths, size: int | None = None, quiet: bool = False) -> list[float]:
    """Raw scores of ``prior`` on image files, one at a time at their own size (or, with
    ``size``, shorter side resized to ``size`` and centre-cropped to a square)."""
    from dlmap.images import load_image

    device = next((p.device for p in prior.parameters()), torch.device("cpu"))
    scores = []
    for path in progress.bar(paths, quiet, desc="scoring", unit="image"):
        image = load_image(path, size)[None].float().to(device)
        scores.append(float(prior(image).reshape(-1)[0]))
    return scores


def evaluate(
    prior, items, size: int | None = None, quiet: bool = False, per_image: list | None = None
) -> list[dict]:
    """One row per data set of ``items`` (``msliqe_train.Item``): its correlations. With a
    list ``per_image``, one row per image is appended to it: data set, image, MOS, the raw
    score and the calibrated score (Eq. 21) on the default scale."""
    from dlmap.priors.calibration import calibrate
    from dlmap.settings import DEFAULT_SCALE, score_scale

    scale, info = score_scale(DEFAULT_SCALE), prior.info
    rows = []
    for name in sorted({item.dataset for item in items}):
        chosen = [item for item in items if item.dataset == name]
        scores = score_images(prior, [item.image for item in chosen], size, quiet)
        mos = [item.mos for item in chosen]
        row = correlations(scores, mos, prior.info.higher_is_better)
        rows.append({"prior": info.name, "model": info.display_name, "dataset": name, **row})
        if per_image is not None:
            raw = torch.tensor(scores, dtype=torch.float64)
            calibrated = calibrate(raw, info.xi3, info.xi4, info.higher_is_better, scale.xi1)
            for item, value, q in zip(chosen, scores, calibrated.tolist(), strict=True):
                per_image.append(
                    {
                        "prior": info.name,
                        "dataset": name,
                        "image": str(item.image),
                        "mos": item.mos,
                        "raw_score": value,
                        "calibrated_score": q,
                        "score_scale": scale.name,
                        "scale_max": scale.xi1,
                    }
                )
    return rows


def per_image_path(summary) -> Path:
    """Where ``dlmap evaluate`` writes per-image scores beside its summary CSV:
    NAME.csv -> NAME.images.csv."""
    summary = Path(summary)
    return summary.with_name(f"{summary.stem}.images.csv")
