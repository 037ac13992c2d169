"""Confidence intervals, pairwise significance, group letters and observer screening for
JOD scores (``dlmap.compare.ranking``), reproducing pwcmp (github.com/mantiuk/pwcmp) in our own
code.

* ``bootstrap_scale`` - ``pw_scale_bootstrp.m``: resample subjects with replacement, scale
  the summed counts of each resample, 95% intervals from the 2.5 and 97.5 percentiles
  (MATLAB's ``prctile``, numpy's 'hazen' method) and the covariance of the replicates
  (``cov``, N - 1). pwcmp's default is 500 resamples; its random tie rounding is a no-op for
  integer counts. Deviations: our own seeded generator (MATLAB's ``bootstrp`` draws differ),
  and each replicate starts from the full-data scores (pw_scale starts from 0; where the
  objective has one minimum, the result is the same; tests check this).
* ``significance_matrix`` - ``pw_significance_matrix.m``: z = d / sqrt(var_i + var_j -
  2 cov_ij), p = Phi(-|z|), one-sided; ``pw_plot_ranking_triangles.m`` calls a difference
  significant when p < 0.025 (two-tailed alpha = 0.05). Never a t-test on bootstrap
  replicates, whose p shrinks with the number of replicates.
* ``compact_letters`` - not in pwcmp: a compact letter display (Piepho 2004), because
  "indistinguishable" is not transitive.
* ``outlier_analysis`` - ``pw_outlier_analysis.m``: for each subject, the log10 binomial
  likelihood of their counts under the scores of all the others (p clamped at 1e-200), divided
  by the number of pairs they compared; the distance below the first quartile in interquartile
  ranges; pwcmp's README suggests looking at subjects whose distance exceeds 1.5. Reported,
  never applied.
"""

from __future__ import annotations

import math
import string
from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr
from scipy.stats import binom

from dlmap.compare.ranking import SIGMA_DIFFERENCE, scale
from dlmap.errors import InputError

ALPHA = 0.05  # two-tailed: a pair differs when the one-sided p is below ALPHA / 2
OUTLIER_DISTANCE = 1.5  # pwcmp README: look at subjects whose dist_L exceeds 1.5
LOG10_FLOOR = -200.0  # pw_outlier_analysis clamps each pair's likelihood at 1e-200


@dataclass(frozen=True)
class Bootstrap:
    """Bootstrap replicates of the JOD scores over subjects and what they give."""

    replicates: np.ndarray  # (resamples, N)
    ci_low: np.ndarray  # 2.5th percentile
    ci_high: np.ndarray  # 97.5th percentile
    covariance: np.ndarray  # (N, N), N - 1 normalisation
    seed: int
    disconnected: int  # replicates whose comparison graph had to be linked
    bounded: int  # replicates that needed ranking's bounded result
    unconverged: int  # replicates where L-BFGS-B reported failure


@dataclass(frozen=True)
class OutlierReport:
    """pw_outlier_analysis per subject: normalised log10 likelihood, distance, flag."""

    log10_likelihood: np.ndarray  # per compared pair, under the other subjects' scores
    distance: np.ndarray  # (Q1 - L) / IQR where L < Q1, else 0 (inf where IQR = 0)
    flagged: np.ndarray  # distance > OUTLIER_DISTANCE


def _per_subject(per_subject) -> np.ndarray:
    stack = np.asarray(per_subject, dtype=np.float64)
    if stack.ndim != 3 or stack.shape[1] != stack.shape[2] or stack.shape[0] < 2:
        raise InputError(f"per-subject counts must be K x N x N with K >= 2, got {stack.shape}")
    return stack


def bootstrap_scale(
    per_subject, resamples: int = 500, seed: int = 0, prior: str = "gaussian", start=None
) -> Bootstrap:
    """Resample subjects (K x N x N counts) with replacement ``resamples`` times and scale
    each sum, warm-started from ``start`` (default: the scores of all subjects)."""
    stack = _per_subject(per_subject)
    subjects, size = stack.shape[0], stack.shape[1]
    if resamples < 2:
        raise InputError(f"resamples must be at least 2, got {resamples}")
    if start is None:
        start = scale(stack.sum(axis=0), prior).jod
    flat = stack.reshape(subjects, -1)
    rng = np.random.default_rng(seed)
    replicates = np.zeros((resamples, size))
    disconnected = bounded = unconverged = 0
    for index in range(resamples):
        drawn = np.bincount(rng.integers(0, subjects, subjects), minlength=subjects)
        counts = (drawn @ flat).reshape(size, size)
        if not counts.any():
            continue  # every drawn subject compared nothing: no information, scores 0
        fit = scale(counts, prior, start=start)
        replicates[index] = fit.jod
        disconnected += fit.components > 1
        bounded += fit.bounded
        unconverged += not fit.converged
    percent = [100 * ALPHA / 2, 100 - 100 * ALPHA / 2]
    low, high = np.percentile(replicates, percent, axis=0, method="hazen")  # MATLAB prctile
    return Bootstrap(
        replicates=replicates,
        ci_low=low,
        ci_high=high,
        covariance=np.cov(replicates, rowvar=False),
        seed=seed,
        disconnected=disconnected,
        bounded=bounded,
        unconverged=unconverged,
    )


def significance_matrix(jod, covariance) -> np.ndarray:
    """pw_significance_matrix: one-sided p = Phi(-|jod_i - jod_j| / sqrt(var_i + var_j -
    2 cov_ij)); a pair differs (two-tailed, alpha = 0.05) when p < 0.025. The diagonal is NaN.
    Where the variance of a difference is 0 (up to rounding) p is 0.5 for equal scores and 0
    otherwise."""
    jod = np.asarray(jod, dtype=np.float64)
    covariance = np.asarray(covariance, dtype=np.float64)
    variance = np.diag(covariance)
    spread = variance[:, None] + variance[None, :] - 2 * covariance
    difference = jod[:, None] - jod[None, :]
    degenerate = spread <= 1e-12 * (variance[:, None] + variance[None, :]) + 1e-300
    with np.errstate(divide="ignore", invalid="ignore"):
        p = ndtr(-np.abs(difference) / np.sqrt(np.where(degenerate, 1.0, spread)))
    p = np.where(degenerate, np.where(np.abs(difference) <= 1e-12, 0.5, 0.0), p)
    np.fill_diagonal(p, np.nan)
    return p


def significant(p, alpha: float = ALPHA) -> np.ndarray:
    """Which pairs differ: two-tailed at ``alpha``, i.e. one-sided p below alpha / 2."""
    return np.nan_to_num(np.asarray(p), nan=1.0) < alpha / 2


def _letter(index: int) -> str:
    alphabet = string.ascii_lowercase + string.ascii_uppercase
    return alphabet[index] if index < len(alphabet) else f"[{index + 1}]"


def compact_letters(jod, different) -> list[str]:
    """Group letters (compact letter display): two conditions share a letter if and only if
    they do not differ significantly, so a condition may carry several ("ab").

    Insert-and-absorb with sweeping (Piepho 2004, J. Comput. Graph. Stat. 13:456): start with
    one set holding every condition; for each differing pair, split every set holding both
    into a copy without the first and a copy without the second; drop sets contained in
    another. Then sweep out letters that no pair needs (a condition keeps a letter only if
    some other member shares no other letter with it). Letters go a, b, ... in order of the
    best-scored member of each set; the result depends only on the scores and the pattern.
    """
    jod = np.asarray(jod, dtype=np.float64)
    different = np.asarray(different, dtype=bool)
    order = [int(i) for i in np.argsort(-jod, kind="stable")]
    rank = {condition: position for position, condition in enumerate(order)}
    sets: list[set[int]] = [set(order)]
    for first_pos, first in enumerate(order):
        for second in order[first_pos + 1 :]:
            if not (different[first, second] or different[second, first]):
                continue
            split = []
            for members in sets:
                if first in members and second in members:
                    split += [members - {first}, members - {second}]
                else:
                    split.append(members)
            sets = [s for s in split if s and not any(s < other for other in split)]
            sets = [s for i, s in enumerate(sets) if s not in sets[:i]]
    for members in sets:  # sweep
        for condition in sorted(members, key=rank.get):
            others = [s for s in sets if s is not members]
            needed = any(
                not any(condition in s and partner in s for s in others)
                for partner in members
                if partner != condition
            )
            if not needed and len(members) > 1:
                members.discard(condition)
    sets = [s for s in sets if s and not any(s < other for other in sets)]
    sets = [s for i, s in enumerate(sets) if s not in sets[:i]]
    sets.sort(key=lambda members: sorted(rank[c] for c in members))
    letters = ["" for _ in jod]
    for index, members in enumerate(sets):
        for condition in members:
            letters[condition] += _letter(index)
    return letters


def outlier_analysis(per_subject, prior: str = "gaussian") -> OutlierReport:
    """pw_outlier_analysis: leave each subject out, scale the others, and score how likely
    the subject's answers are under those scores (log10 binomial, per compared pair)."""
    stack = _per_subject(per_subject)
    total = stack.sum(axis=0)
    upper = np.triu(np.ones(total.shape, dtype=bool), 1)
    likelihood = np.zeros(stack.shape[0])
    for subject, counts in enumerate(stack):
        others = total - counts
        pairs = upper & ((counts + counts.T) > 0)
        if not pairs.any() or not others.any():
            continue  # pwcmp: no trials gives 0
        jod = scale(others, prior).jod
        chance = ndtr((jod[:, None] - jod[None, :]) / SIGMA_DIFFERENCE)[pairs]
        trials = (counts + counts.T)[pairs]
        log10 = binom.logpmf(counts[pairs], trials, chance) / math.log(10)
        likelihood[subject] = np.sum(np.maximum(log10, LOG10_FLOOR)) / pairs.sum()
    first, third = np.percentile(likelihood, [25, 75], method="hazen")  # MATLAB quantile
    spread = third - first
    below = likelihood < first
    with np.errstate(divide="ignore", invalid="ignore"):
        distance = np.where(below, (first - likelihood) / (spread if spread > 0 else 0.0), 0.0)
    return OutlierReport(likelihood, distance, distance > OUTLIER_DISTANCE)
