"""Thurstone Case V scaling of pairwise-comparison counts (Eq. 19), reproducing pwcmp.

Eq. 19 as printed lacks the log and calls C_ij a probability; it is maximum likelihood on
counts. The paper cites pwcmp (Perez-Ortiz and Mantiuk, github.com/mantiuk/pwcmp, MATLAB);
this module re-derives its ``pw_scale.m`` (defaults: prior 'gaussian', regularization
'mean0') from the equations, in our own Python. What we reproduce, term by term:

* **Likelihood.** p_ij = Phi((mu_i - mu_j) / 1.4826); -log L = -sum over *ordered* pairs
  (i, j) compared at least once of C_ij log p_ij + C_ji log(1 - p_ij). pw_scale sums over both
  orders, so every pair counts twice; we keep that factor 2, as it weighs the likelihood
  against the prior. No binomial coefficients (constants). We use log-CDFs
  (scipy.special.log_ndtr) where pw_scale takes log(max(p, 1e-400)).
* **Distance prior** (pwcmp calls it 'gaussian'; it is an empirical prior built from the
  counts): for each compared ordered pair a with distance d_a and each observation b (the same
  pairs, with n_b = C_ij + C_ji trials and k_b wins, unanimous pairs moved one count inward:
  n-0 becomes (n-1)-1 and 0-n becomes 1-(n-1)), aux(a, b) = p_a^k_b (1 - p_a)^(n_b - k_b);
  prior_a = sum_b aux(a, b) / sum_a' aux(a', b); the objective adds -sum_a log(prior_a + 0.1).
  We evaluate aux in the log domain (a softmax over a), where pw_scale multiplies powers.
* **Mean-zero penalty** 0.01 * mean(mu)^2, starting from mu = 0. pw_scale's gradient of this
  term is 0.02 mean(mu) mu / N (not the true 0.02 mean(mu) / N); both vanish only at
  mean(mu) = 0, so the minimiser is the same. We use the true gradient, then subtract the
  mean (an optimiser residual of ~1e-9) so the scores sum to exactly 0.
* **Disconnected comparison graphs.** As pw_scale: warn; in each connected component take the
  condition with the highest ISO 20462 score (the first such index), and add one tie (1-1)
  between every two of these.
* **Optimiser.** pw_scale calls fminunc with its gradient from mu = 0 (default tolerances,
  ~1e-6); we call L-BFGS-B with our analytic gradient and tighter tolerances.

Our deviation: where the objective has no finite minimum, pw_scale returns wherever fminunc
stops. That happens (i) with prior 'none' whenever the win graph (i -> j when i beat j at
least once) is not strongly connected (Zermelo 1929, Ford 1957); (ii) with the distance prior
for two conditions and an n-0 result (the prior is then constant), and more generally when
every compared pair is unanimous and the scores can put every winner one unit above its loser
(e.g. a > b > c with a-c never compared): along that direction every prior_a stays at 1, the
prior term's maximum, while the likelihood keeps growing; (iii) in other all-unanimous
designs, e.g. a > b > c with all three pairs 5-0, where the objective keeps decreasing as the
scores spread. We detect this after the fit (``undetermined``: saturated unanimous pairs are
the only links between groups of conditions), warn, and return the **bounded result**: half a
count added to both sides of every unanimous pair between strongly connected groups of the win
graph (the Jeffreys correction: the proportion becomes (k + 0.5) / (n + 1)), which makes the
likelihood's maximum finite. Two conditions with an n-0 result then score -+ d / 2 with
d = 1.4826 * Phi^-1((n + 0.5) / (n + 1)) (n = 5: d = 2.05 JOD). Where the prior does keep a
unanimous pair finite (one unanimous pair among three conditions, say), nothing changes.

Other details kept from pw_scale: its 1e-400 clamp is 0 in double precision (hence log-CDFs);
for a 1-0 pair the prior's "one count inward" gives 0-1, flipping the answer, and so does ours.

Units: 1 JOD = 75% preference; 1.4826 is the sigma of the difference of two scores (so
Phi(1 / 1.4826) = 0.75, up to pwcmp's four-digit rounding: 1/Phi^-1(0.75) = 1.482602), i.e.
1.4826 / sqrt(2) = 1.0484 per condition.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from scipy.sparse.csgraph import connected_components
from scipy.special import log_ndtr

from dlmap.errors import InputError

SIGMA_DIFFERENCE = 1.4826  # Phi(1 / 1.4826) = 0.75: a difference of 1 JOD is a 75% preference
SIGMA_CONDITION = SIGMA_DIFFERENCE / math.sqrt(2)  # 1.0484, Thurstone Case V per condition
PRIOR_OFFSET = 0.1  # pw_scale adds 0.1 to the distance prior before its log
MEAN_PENALTY = 0.01  # weight of mean(mu)^2, pw_scale's 'mean0' regularization
JEFFREYS = 0.5  # counts added to both sides of unanimous pairs in the bounded result
SATURATED_GAIN = 1e-6  # a unanimous pair's log-likelihood this close to 0 cannot pin its scores
PRIORS = ("gaussian", "none")
_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


class RankingWarning(UserWarning):
    """A scaling caveat: a disconnected design, or scores bounded because no finite ML exists."""


@dataclass(frozen=True)
class ScaleFit:
    """Scores (JOD, summing to 0) and how they were obtained."""

    jod: np.ndarray
    components: int  # connected components of the comparison graph (linked when > 1)
    bounded: bool  # no finite maximum: the Jeffreys-corrected (bounded) result
    converged: bool  # L-BFGS-B converged (see _minimise)
    notes: tuple[str, ...]  # the warnings thurstone_scale raises


@dataclass(frozen=True)
class Design:
    """The compared ordered pairs (i, j) of a count matrix and their counts."""

    size: int  # number of conditions N
    winner: np.ndarray  # i of each ordered pair a
    loser: np.ndarray  # j
    wins: np.ndarray  # C_ij used by the likelihood (Jeffreys-corrected in the bounded result)
    unanimous: np.ndarray  # C_ij == 0 or C_ji == 0
    prior_wins: np.ndarray  # k_b: C_ij with unanimous pairs moved one count inward
    prior_losses: np.ndarray  # n_b - k_b


def check_counts(counts) -> np.ndarray:
    """The count matrix as float64, or ValueError naming what is wrong."""
    matrix = np.asarray(counts, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or matrix.shape[0] < 2:
        raise InputError(f"counts must be a square N x N matrix with N >= 2, got {matrix.shape}")
    if not np.all(np.isfinite(matrix)) or np.any(matrix < 0) or np.any(matrix != np.round(matrix)):
        raise InputError("counts must be non-negative integers")
    if np.any(np.diag(matrix) != 0):
        raise InputError("the diagonal must be 0 (a condition is never compared with itself)")
    if not np.any(matrix):
        raise InputError("counts hold no comparison")
    return matrix


def iso20462_scores(counts: np.ndarray) -> np.ndarray:
    """pw_scale's starting scores (ISO 20462): sum_i (3 - 12/pi asin(sqrt(P_ij))) / 2 for
    condition j, P_ij the fraction of i-over-j answers (0.5 where never compared)."""
    total = counts + counts.T
    with np.errstate(invalid="ignore", divide="ignore"):
        fraction = np.where(total > 0, counts / np.where(total > 0, total, 1), 0.5)
    return np.sum((3 - 12 / math.pi * np.arcsin(np.sqrt(fraction))) / 2, axis=0)


def link_components(counts: np.ndarray) -> tuple[np.ndarray, int]:
    """pw_scale's patch for disconnected comparison graphs: in each component, the condition
    with the highest ISO 20462 score (first index on ties) gets one tie (1-1) with each other
    component's. Returns the patched counts and the number of components."""
    count, label = connected_components((counts + counts.T) > 0, directed=False)
    if count == 1:
        return counts, 1
    # every two components' best conditions are linked, so their numbering does not matter
    iso = iso20462_scores(counts)
    best = [int(np.flatnonzero(label == c)[np.argmax(iso[label == c])]) for c in range(count)]
    linked = counts.copy()
    for first in range(count):
        for second in range(first + 1, count):
            linked[best[first], best[second]] = linked[best[second], best[first]] = 1
    return linked, count


def build_design(counts: np.ndarray, bounded: bool = False) -> Design:
    """The ordered pairs compared at least once and pw_scale's prior counts. ``bounded``:
    half a count is added to both sides of every unanimous pair whose conditions lie in
    different strongly connected components of the win graph (i -> j when i beat j), the
    pairs whose likelihood alone has no finite maximum (Zermelo 1929, Ford 1957)."""
    total = counts + counts.T
    winner, loser = np.nonzero(total > 0)
    wins = counts[winner, loser]
    unanimous = (counts[winner, loser] == 0) | (counts[loser, winner] == 0)
    prior_wins = np.where(unanimous, np.where(wins == 0, 1.0, wins - 1.0), wins)
    if bounded:
        label = connected_components(counts > 0, directed=True, connection="strong")[1]
        wins = wins + JEFFREYS * (unanimous & (label[winner] != label[loser]))
    return Design(
        size=counts.shape[0],
        winner=winner,
        loser=loser,
        wins=wins,
        unanimous=unanimous,
        prior_wins=prior_wins,
        prior_losses=total[winner, loser] - prior_wins,
    )


def undetermined(scores: np.ndarray, design: Design) -> bool:
    """True where the fitted scores sit on a plateau with no finite maximum beyond it: once
    the unanimous pairs whose likelihood is saturated (within 1e-6 of its supremum) are
    removed, the compared pairs no longer connect all conditions, so those groups can move
    apart with no change to the objective (up to the prior, which these far pairs no longer
    touch). A unanimous pair pinned by others (e.g. a-c when a-b and b-c are not unanimous)
    keeps the graph connected and is not a plateau."""
    distance = (scores[design.winner] - scores[design.loser]) / SIGMA_DIFFERENCE
    gain = -2 * design.wins * log_ndtr(distance)  # what the pair's likelihood can still gain
    saturated = design.unanimous & (design.wins > 0) & (gain < SATURATED_GAIN)
    keep = np.ones((design.size, design.size), dtype=bool)
    keep[design.winner[saturated], design.loser[saturated]] = False
    keep[design.loser[saturated], design.winner[saturated]] = False
    linked = np.zeros_like(keep)
    linked[design.winner, design.loser] = keep[design.winner, design.loser]
    return connected_components(linked, directed=False)[0] > 1


def _mills(x: np.ndarray, log_cdf: np.ndarray) -> np.ndarray:
    """phi(x) / Phi(x), from the log-CDF already computed (stable for large negative x)."""
    return np.exp(-0.5 * x * x - _LOG_SQRT_2PI - log_cdf)


def log_likelihood(distance: np.ndarray, design: Design) -> tuple[float, np.ndarray]:
    """Eq. 19 with its log: sum over ordered pairs a = (i, j) of C_ij log Phi(d_a) +
    C_ji log Phi(-d_a) = 2 sum_a C_ij log Phi(d_a), d_a = (mu_i - mu_j) / 1.4826.
    Returns the value and its gradient with respect to d."""
    log_cdf = log_ndtr(distance)
    return 2 * float(design.wins @ log_cdf), 2 * design.wins * _mills(distance, log_cdf)


def log_distance_prior(distance: np.ndarray, design: Design) -> tuple[float, np.ndarray]:
    """pw_scale's 'gaussian' distance prior: sum_a log(prior_a + 0.1) with
    prior_a = sum_b softmax_a(k_b log Phi(d_a) + (n_b - k_b) log Phi(-d_a)).
    Returns the value and its gradient with respect to d."""
    up, down = log_ndtr(distance), log_ndtr(-distance)
    log_aux = np.outer(up, design.prior_wins) + np.outer(down, design.prior_losses)
    weight = np.exp(log_aux - log_aux.max(axis=0))
    weight /= weight.sum(axis=0)  # column b: the pairs' normalised likelihood of observation b
    prior = weight.sum(axis=1)
    # d log_aux[a, b] / d d_a; softmax derivative: w_ab (delta_ac - w_cb) g_cb
    slope = np.outer(_mills(distance, up), design.prior_wins) - np.outer(
        _mills(-distance, down), design.prior_losses
    )
    outer_grad = 1 / (prior + PRIOR_OFFSET)
    weighted = slope * weight
    grad = outer_grad * weighted.sum(axis=1) - weighted @ (outer_grad @ weight)
    return float(np.sum(np.log(prior + PRIOR_OFFSET))), grad


def objective(scores: np.ndarray, design: Design, prior: str = "gaussian"):
    """pw_scale's objective, -log L - log prior + 0.01 mean(mu)^2, and its gradient."""
    distance = (scores[design.winner] - scores[design.loser]) / SIGMA_DIFFERENCE
    value, grad_d = log_likelihood(distance, design)
    value, grad_d = -value, -grad_d
    if prior == "gaussian":
        prior_value, prior_grad = log_distance_prior(distance, design)
        value, grad_d = value - prior_value, grad_d - prior_grad
    grad = np.bincount(design.winner, grad_d, design.size)
    grad -= np.bincount(design.loser, grad_d, design.size)
    mean = float(np.mean(scores))
    grad = grad / SIGMA_DIFFERENCE + 2 * MEAN_PENALTY * mean / design.size
    return value + MEAN_PENALTY * mean**2, grad


def _minimise(design: Design, prior: str, start: np.ndarray) -> tuple[np.ndarray, str | None]:
    """L-BFGS-B with the analytic gradient; returns the scores and None, or why it failed.
    A line search that stops at rounding level ("ABNORMAL") with a gradient below 1e-7 per
    answer (a score error of ~1e-6 JOD) counts as converged."""
    result = minimize(
        objective,
        start,
        args=(design, prior),
        jac=True,
        method="L-BFGS-B",
        options={"gtol": 1e-9, "ftol": 1e-15, "maxiter": 2000},
    )
    answers = float(np.sum(design.wins))
    if result.success or np.max(np.abs(result.jac)) <= 1e-7 * (1 + answers):
        return result.x, None
    return result.x, str(result.message)


def scale(counts, prior: str = "gaussian", start=None) -> ScaleFit:
    """Scale a count matrix (C_ij = times i was preferred over j) to JOD, without warnings
    (they are in ``notes``). ``start``: initial scores (pw_scale: zeros)."""
    if prior not in PRIORS:
        raise InputError(f"prior must be one of {PRIORS}, got {prior!r}")
    counts = check_counts(counts)
    linked, components = link_components(counts)
    notes = []
    if components > 1:
        notes.append(
            f"the comparison graph has {components} disconnected components: their best "
            "conditions were linked by one tie each (as pwcmp does); scores across "
            "components are not measured"
        )
    first = np.zeros(counts.shape[0]) if start is None else np.asarray(start, dtype=np.float64)
    design = build_design(linked)
    scores, failure = _minimise(design, prior, first)
    bounded = undetermined(scores, design)
    if bounded:
        notes.append(
            "unanimous answers leave the likelihood without a finite maximum"
            f"{' that the prior cannot bound' if prior == 'gaussian' else ''}: these scores "
            "are the bounded result (half a count added to each side of the unanimous pairs "
            "between strongly connected groups)"
        )
        scores, failure = _minimise(build_design(linked, True), prior, np.zeros_like(first))
    if failure:
        notes.append(f"L-BFGS-B did not converge: {failure}")
    return ScaleFit(scores - np.mean(scores), components, bounded, not failure, tuple(notes))


def thurstone_scale(counts, prior: str = "gaussian") -> np.ndarray:
    """JOD scores of a count matrix (Eq. 19, pwcmp's pw_scale); caveats as RankingWarning."""
    fit = scale(counts, prior)
    for note in fit.notes:
        warnings.warn(note, RankingWarning, stacklevel=2)
    return fit.jod
