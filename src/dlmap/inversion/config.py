"""The inversion's settings (torch-free, imported by ``dlmap.settings``): SD2's DDIM
schedule, which exact bijection runs it, and one sub-config per method, each read only by its
method's class (``dlmap.inversion.edict.Edict``, ``dlmap.inversion.bijections.Bdia`` and
``Belm``; ``dlmap.inversion.leapfrog.Leapfrog`` and ``LeapfrogInt``)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

from dlmap.errors import InputError, check_choice

BIJECTIONS = ("edict", "bdia", "belm", "leapfrog", "leapfrog-int")  # one class each
ENDS = ("final-alpha", "alpha-one")  # where BDIA's and O-BELM's chain ends (bijections.py)
ORDERS = ("alternating", "fixed")  # EDICT's step order (dlmap.inversion.edict)

#: SD2's DDIM scheduler (diffusers' ``DDIMScheduler`` config), whose alphas every method uses
SD2_SCHEDULER = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "set_alpha_to_one": False,
    "clip_sample": False,
    "prediction_type": "epsilon",
}


@dataclass(frozen=True)
class EdictOptions:
    """EDICT's own settings (Eqs. 8-11): the mixing p (None: 0.93^(50/T), EDICT's choice,
    paper Sec. IV-A) and the order of Eqs. 8-9 from step to step."""

    mix: float | None = None
    order: str = "alternating"

    def __post_init__(self):
        if self.mix is not None and not (
            isinstance(self.mix, (int, float)) and 0.0 < self.mix <= 1.0
        ):
            raise InputError(f"EDICT mixing p must lie in (0, 1], got {self.mix!r}")
        if self.order not in ORDERS:
            raise InputError(f"EDICT order must be one of {ORDERS}, got {self.order!r}")

    def mixing(self, steps: int) -> float:
        """p of Eqs. 10-11 for ``steps`` DDIM steps."""
        return self.mix if self.mix is not None else 0.93 ** (50 / steps)


@dataclass(frozen=True)
class BdiaOptions:
    """BDIA's settings: gamma of its update (its inverse divides by gamma per step) and where
    the chain ends (``ENDS``, dlmap.inversion.bijections)."""

    gamma: float = 0.92
    ends: str = "final-alpha"

    def __post_init__(self):
        if not isinstance(self.gamma, (int, float)) or not 0.0 < self.gamma <= 1.0:
            raise InputError(f"BDIA's gamma must lie in (0, 1], got {self.gamma!r}")
        check_choice("ends", self.ends, ENDS)


@dataclass(frozen=True)
class BelmOptions:
    """O-BELM's settings: where the chain ends (its coefficients are fixed by the schedule)."""

    ends: str = "final-alpha"

    def __post_init__(self):
        check_choice("ends", self.ends, ENDS)


@dataclass(frozen=True)
class LeapfrogOptions:
    """The leapfrog's settings (``leapfrog`` and its integer twin ``leapfrog-int``,
    dlmap.inversion.leapfrog): where the chain ends, and the integer twin's grid: the state is
    x̄ / grid, held as integers. The grid is a power of two, so that x̄ = grid * integer is exact;
    docs/diffusion.md argues the default."""

    ends: str = "final-alpha"
    grid: float = 2.0**-14

    def __post_init__(self):
        check_choice("ends", self.ends, ENDS)
        exponent = (
            math.log2(self.grid) if isinstance(self.grid, (int, float)) and self.grid > 0 else None
        )
        if exponent is None or exponent != int(exponent) or not -40 <= exponent <= 0:
            raise InputError(
                f"the leapfrog's grid must be a power of two in [2^-40, 1], got {self.grid!r}"
            )


@dataclass(frozen=True)
class InversionConfig:
    """The exact inversion: T DDIM steps of SD2's schedule (``steps_offset`` 0 as in the
    authors' code, 950..0 at T = 20; SD2's shipped config: 1), which bijection runs them, and
    one sub-config per method (``edict``, ``bdia``, ``belm``); the method in use reads only
    its own. Paper defaults: EDICT, T = 20, p = 0.93^(50/T) (Sec. IV-A).

    The workflow's config and ``dlmap enhance`` write it flat (``FLAT_KEYS``: the config's
    ``edict`` section, the command's options); ``from_flat`` builds it from that form and
    ``to_record`` gives it back, as every record stores it."""

    steps: int = 20
    steps_offset: int = 0
    scheduler: dict = field(default_factory=lambda: dict(SD2_SCHEDULER))
    bijection: str = "edict"
    edict: EdictOptions = field(default_factory=EdictOptions)
    bdia: BdiaOptions = field(default_factory=BdiaOptions)
    belm: BelmOptions = field(default_factory=BelmOptions)
    leapfrog: LeapfrogOptions = field(default_factory=LeapfrogOptions)

    #: the flat form's keys, in the order records list them
    FLAT_KEYS: ClassVar[tuple[str, ...]] = (
        "steps",
        "mix",
        "steps_offset",
        "order",
        "scheduler",
        "bijection",
        "gamma",
        "ends",
    )

    def __post_init__(self):
        if not isinstance(self.steps, int) or self.steps < 1:
            raise InputError(f"EDICT steps must be a positive integer, got {self.steps!r}")
        n_train = self.scheduler.get("num_train_timesteps", 1000)
        if self.steps > n_train:
            raise InputError(f"EDICT steps {self.steps} exceed the {n_train} training timesteps")
        stride = n_train // self.steps
        if not 0 <= self.steps_offset < stride:
            raise InputError(
                f"steps_offset must lie in [0, {stride}) for {self.steps} steps "
                f"(timesteps would leave 0..{n_train - 1}), got {self.steps_offset!r}"
            )
        check_choice("bijection", self.bijection, BIJECTIONS)
        if self.bijection != "edict" and self.steps < 3:
            # the one rule for it: two DDIM intervals of non-zero length for the two-step
            # recurrence, whichever way the chain ends (dlmap.inversion.bijections)
            raise InputError(f"{self.bijection} needs at least 3 steps, got {self.steps!r}")

    @classmethod
    def from_flat(cls, **values) -> InversionConfig:
        """From the flat form (``FLAT_KEYS``; a key left out takes its default): ``mix`` and
        ``order`` are EDICT's, ``gamma`` BDIA's, ``ends`` that of every two-step method."""
        unknown = sorted(set(values) - set(cls.FLAT_KEYS))
        if unknown:
            raise InputError(f"unknown inversion setting {unknown[0]!r}; known: {cls.FLAT_KEYS}")
        edict = {key: values.pop(key) for key in ("mix", "order") if key in values}
        bdia = {key: values.pop(key) for key in ("gamma",) if key in values}
        ends = {"ends": values.pop("ends")} if "ends" in values else {}
        return cls(
            **values,
            edict=EdictOptions(**edict),
            bdia=BdiaOptions(**bdia, **ends),
            belm=BelmOptions(**ends),
            leapfrog=LeapfrogOptions(**ends),
        )

    @property
    def method(self) -> EdictOptions | BdiaOptions | BelmOptions | LeapfrogOptions:
        """The sub-config of the bijection in use (the leapfrog's twins share one)."""
        return getattr(self, self.bijection.removesuffix("-int"))

    @property
    def mixing(self) -> float:
        """EDICT's p of Eqs. 10-11 at these steps."""
        return self.edict.mixing(self.steps)

    def to_record(self) -> dict:
        """The flat form, as records store it (``ends``: the two-step method's in use, else
        BDIA's)."""
        ends = self.method.ends if self.bijection != "edict" else self.bdia.ends
        flat = {
            "steps": self.steps,
            "mix": self.edict.mix,
            "steps_offset": self.steps_offset,
            "order": self.edict.order,
            "scheduler": dict(self.scheduler),
            "bijection": self.bijection,
            "gamma": self.bdia.gamma,
            "ends": ends,
        }
        return {key: flat[key] for key in self.FLAT_KEYS}
