"""Every exact inversion the solver can run, by its name in ``InversionConfig.bijection``:
EDICT (``edict``), BDIA and O-BELM (``bijections``), the leapfrog and its integer twin
(``leapfrog``)."""

from __future__ import annotations

from dlmap.inversion.bijections import Bdia, Belm, TwoStep
from dlmap.inversion.config import InversionConfig
from dlmap.inversion.edict import Edict
from dlmap.inversion.leapfrog import Leapfrog, LeapfrogInt

BIJECTIONS = {
    "edict": Edict,
    "bdia": Bdia,
    "belm": Belm,
    "leapfrog": Leapfrog,
    "leapfrog-int": LeapfrogInt,
}
"""The class of each bijection (``dlmap.inversion.config.BIJECTIONS`` lists the same names)."""


def make_bijection(config: InversionConfig) -> Edict | TwoStep:
    """The bijection ``config.bijection`` names, with its schedule built once."""
    return BIJECTIONS[config.bijection](config)
