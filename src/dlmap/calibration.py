"""The four-parameter logistic of paper Eq. 21, in its increasing form.

Eq. 21 as printed, (xi1 - xi2) / (1 + exp((q - xi3)/|xi4|)) + xi2, decreases with q (a sign
typo: a better raw score must map to a better calibrated score). We use

    q_xi(q) = (xi1 - xi2) / (1 + exp(-(q - xi3) / |xi4|)) + xi2,   xi1 = 1, xi2 = 0,

so calibrated scores lie in (0, 1), higher is better. Scores of lower-is-better models (NIQE)
are negated before the logistic, so their xi3 is given on the negated scale.
"""

from __future__ import annotations

import torch

XI1, XI2 = 1.0, 0.0  # maximum and minimum of the calibrated score (paper: set by hand)


def logistic(q: torch.Tensor, xi3: float, xi4: float, xi1: float = XI1, xi2: float = XI2):
    """Eq. 21 (increasing form): raw score q -> calibrated score in (xi2, xi1)."""
    if xi4 == 0:
        raise ValueError("Eq. 21 needs xi4 != 0 (it is the logistic's scale)")
    return (xi1 - xi2) * torch.sigmoid((q - xi3) / abs(xi4)) + xi2


def calibrate(raw: torch.Tensor, xi3: float, xi4: float, higher_is_better: bool = True):
    """Calibrated score of raw model outputs: negate lower-is-better scores, then Eq. 21."""
    oriented = raw if higher_is_better else -raw
    return logistic(oriented, xi3, xi4)
