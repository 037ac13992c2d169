"""The four-parameter logistic of paper Eq. 21, in its increasing form.

Eq. 21 as printed, (xi1 - xi2) / (1 + exp((q - xi3)/|xi4|)) + xi2, decreases with q (a sign
typo: a better raw score must map to a better calibrated score). We use

    q_xi(q) = (xi1 - xi2) / (1 + exp(-(q - xi3) / |xi4|)) + xi2,   xi2 = 0,

so calibrated scores lie in (0, xi1), higher is better. Scores of lower-is-better models (NIQE)
are negated before the logistic, so their xi3 is given on the negated scale.

The maximum xi1 fixes what lambda means in Eq. 17, so it is a named, recorded setting
(``SCORE_SCALES``): ``"authors"`` (xi1 = 100, the default) is the 0-100 scale of the authors'
public code (their mapping maps to 0-100 and their MAP script stops at a calibrated 90);
``"printed"`` (xi1 = 1) is Eq. 21 as the paper prints it. With the printed scale the prior term
lambda q of Eq. 17 is at most 0.01 at lambda = 0.01 while D0 (Eq. 20) is of order 1, so the prior
barely acts; the paper says lambda = 0.01 "balances the magnitudes" of the two terms, which holds
on the 0-100 scale. That reading is our inference, not something the paper states (see the
README, "What the paper leaves open"). xi3 and |xi4| do not depend on xi1: a fit to MOS in
[0, 1] serves both scales.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from dlmap.errors import InputError
from dlmap.files import write_text_atomic
from dlmap.settings import (
    XI1,
    XI2,
)


class LogisticFitError(InputError):
    """Eq. 21's logistic does not converge on the given scores."""


def logistic(q: torch.Tensor, xi3: float, xi4: float, xi1: float = XI1, xi2: float = XI2):
    """Eq. 21 (increasing form): raw score q -> calibrated score in (xi2, xi1)."""
    if xi4 == 0:
        raise InputError("Eq. 21 needs xi4 != 0 (it is the logistic's scale)")
    return (xi1 - xi2) * torch.sigmoid((q - xi3) / abs(xi4)) + xi2


def calibrate(
    raw: torch.Tensor, xi3: float, xi4: float, higher_is_better: bool = True, xi1: float = XI1
):
    """Calibrated score of raw model outputs: negate lower-is-better scores, then Eq. 21 with
    maximum ``xi1`` (``ScoreScale.xi1``; the printed 1 unless given)."""
    oriented = raw if higher_is_better else -raw
    return logistic(oriented, xi3, xi4, xi1=xi1)


# --- fitting xi3 and |xi4| to opinion scores -----------------------------------------------

CALIBRATION_FOLDER = "calibration"


@dataclass(frozen=True)
class LogisticFit:
    """Eq. 21 constants fitted to (raw score, MOS in [0, 1]) pairs, with the agreement of the
    raw and calibrated scores with MOS (SRCC is the same for both: the logistic is monotone)."""

    xi3: float
    xi4: float
    count: int
    srcc: float
    plcc_raw: float
    plcc_calibrated: float
    source: str = ""
    checkpoint_sha256: str = ""  # the weights the raw scores came from, for trainable priors


def fit_logistic(
    raw, mos, higher_is_better: bool = True, source: str = "", checkpoint_sha256: str = ""
) -> LogisticFit:
    """Least-squares fit of the increasing Eq. 21 (xi1 = 1, xi2 = 0) to MOS normalised to
    [0, 1]; lower-is-better raw scores are negated first, as ``calibrate`` does.
    ``checkpoint_sha256``: the weights file that produced ``raw`` (``PriorInfo``'s), recorded
    so that the constants are never applied to other weights (``apply_fit``)."""
    from scipy import optimize, stats

    raw, mos = np.asarray(raw, dtype=np.float64), np.asarray(mos, dtype=np.float64)
    if raw.shape != mos.shape or raw.ndim != 1:
        raise InputError("raw scores and MOS must be two 1-D sequences of the same length")
    if len(raw) < 4 or not (np.isfinite(raw).all() and np.isfinite(mos).all()):
        raise InputError(f"need at least 4 finite (score, MOS) pairs, got {len(raw)}")
    if mos.min() < 0 or mos.max() > 1:
        raise InputError(f"MOS must be normalised to [0, 1], got {mos.min():g} to {mos.max():g}")
    if np.ptp(raw) == 0:
        raise InputError("all raw scores are equal: nothing to fit")
    oriented = raw if higher_is_better else -raw

    def curve(q, xi3, xi4):
        return 1.0 / (1.0 + np.exp(-(q - xi3) / abs(xi4)))

    start = (float(np.median(oriented)), float(np.std(oriented)) or 1.0)
    try:
        (xi3, xi4), _ = optimize.curve_fit(curve, oriented, mos, p0=start, maxfev=20000)
    except RuntimeError as error:  # scipy's way of saying the fit did not converge
        message = f"the logistic of Eq. 21 does not fit these scores: {error}"
        raise LogisticFitError(message) from error
    return LogisticFit(
        xi3=float(xi3),
        xi4=float(abs(xi4)),
        count=len(raw),
        srcc=float(stats.spearmanr(oriented, mos)[0]),
        plcc_raw=float(stats.pearsonr(oriented, mos)[0]),
        plcc_calibrated=float(stats.pearsonr(curve(oriented, xi3, xi4), mos)[0]),
        source=source,
        checkpoint_sha256=checkpoint_sha256,
    )


def apply_fit(info, fit: LogisticFit, origin: str = "fitted"):
    """``info`` (a ``PriorInfo``) with the fitted constants, marked fitted; unchanged but for a
    provisional note when the prior loaded a weights file (``info.checkpoint_sha256``) other
    than the one the constants were fitted for: constants belong to a checkpoint."""
    source = f"{origin}: {fit.source} (n={fit.count}, SRCC {fit.srcc:.3f})"
    loaded = info.checkpoint_sha256
    if loaded and fit.checkpoint_sha256 != loaded:
        fitted_for = "an unrecorded checkpoint"
        if fit.checkpoint_sha256:
            fitted_for = f"checkpoint {fit.checkpoint_sha256[:12]}"
        note = (
            f"provisional: the constants {origin} ({fit.source}) belong to {fitted_for}, not "
            f"to the one loaded ({loaded[:12]}); {info.calibration_source}"
        )
        return replace(info, calibration_fitted=False, calibration_source=note)
    if loaded:
        source += f"; for checkpoint {loaded[:12]}"
    return replace(
        info, xi3=fit.xi3, xi4=fit.xi4, calibration_source=source, calibration_fitted=True
    )


def read_score_table(path) -> tuple[list[float], list[float]]:
    """(raw scores, MOS) from a CSV with the columns ``score`` and ``mos``."""
    import csv

    try:
        with open(path, newline="") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as error:
        raise InputError(error.strerror) from error
    except (UnicodeDecodeError, csv.Error) as error:
        raise InputError(f"not a UTF-8 CSV file ({error})") from error
    if not rows or not {"score", "mos"} <= set(rows[0]):
        raise InputError("needs a header with columns score and mos")
    try:
        return [float(row["score"]) for row in rows], [float(row["mos"]) for row in rows]
    except (TypeError, ValueError) as error:
        raise InputError("a score or MOS is not a number") from error


def constants_path(name: str, cache=None) -> Path:
    """Where fitted constants of prior ``name`` live: <cache>/calibration/<name>.json."""
    from dlmap.weights.cache import cache_dir

    return cache_dir(cache) / CALIBRATION_FOLDER / f"{name}.json"


def save_constants(name: str, fit: LogisticFit, cache=None) -> Path:
    path = constants_path(name, cache)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(json.dumps(asdict(fit), indent=2) + "\n", path)
    return path


def load_constants(name: str, cache=None) -> LogisticFit | None:
    """The fitted constants of prior ``name``, or None when none were fitted."""
    path = constants_path(name, cache)
    return read_fit(path) if path.is_file() else None


def read_fit(path) -> LogisticFit:
    """A ``LogisticFit`` JSON as ``save_constants`` or the workflow writes it."""
    return LogisticFit(**json.loads(Path(path).read_text()))


def constants_table(names=None) -> list[str]:
    """The Markdown lines of docs/priors.md's table of Eq. 21 constants (every spec, or
    ``names``): xi3, |xi4|, the checkpoint they were fitted for, fitted or provisional, and
    where they come from."""
    lines = [
        "| prior | xi3 | \\|xi4\\| | fitted for | status | where they come from |",
        "|---|---|---|---|---|---|",
    ]
    from dlmap.priors.specs import PRIOR_SPECS

    for name in names or PRIOR_SPECS:
        spec = PRIOR_SPECS[name]
        status = "fitted" if spec.calibration_fitted else "provisional"
        source = spec.calibration_source.removeprefix("provisional: ").replace("|", "\\|")
        lines.append(
            f"| `{name}` | {spec.xi3:.6g} | {abs(spec.xi4):.6g} | {spec.constants_for} | "
            f"{status} | {source} |"
        )
    return lines
