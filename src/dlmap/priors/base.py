"""What a prior is: a ``Prior`` (a torch module from images to one raw score each, carrying a
``PriorInfo``) and ``register_prior``, by which the modules that implement priors put them in
the registry's table. Looking priors up and building them is ``dlmap.priors.registry``'s job."""

from __future__ import annotations

from collections.abc import Callable

import torch

from dlmap.errors import InputError
from dlmap.images import as_batch
from dlmap.priors.calibration import calibrate
from dlmap.priors.specs import PriorInfo
from dlmap.settings import DEFAULT_SCALE, score_scale

REGISTERED: dict[str, Callable[..., Prior]] = {}
"""Every registered prior's factory (a ``Prior`` class or a function returning one), by name."""


class Prior(torch.nn.Module):
    """Base class: subclasses set ``info`` and implement ``forward(images) -> (B,)``.

    Called, a prior takes a (B, 3, H, W) tensor in [0, 1] as it is (gradients flow), and,
    as pyiqa's metrics do, a (3, H, W) tensor, a path, a PIL image, an array or a list of
    them (``images.as_batch``; read onto the prior's device and dtype)."""

    info: PriorInfo

    def __call__(self, images, *args, **kwargs):
        if not (isinstance(images, torch.Tensor) and images.ndim == 4):
            batch = as_batch(images)
            if not isinstance(images, torch.Tensor):  # read here: onto the prior's device
                weight = next(iter(self.parameters()), None)
                if weight is not None:
                    batch = batch.to(device=weight.device, dtype=weight.dtype)
            images = batch
        return super().__call__(images, *args, **kwargs)

    @property
    def name(self) -> str:
        return self.info.name

    def calibrated(self, images: torch.Tensor, scale: str = DEFAULT_SCALE) -> torch.Tensor:
        """q_xi(q_w(x)) of Eq. 21 on the named ``ScoreScale``: a score in (0, xi1), higher is
        better."""
        info = self.info
        xi1 = score_scale(scale).xi1
        return calibrate(self(images), info.xi3, info.xi4, info.higher_is_better, xi1)


class CallablePrior(Prior):
    """A prior from a plain callable images -> scores (B,)."""

    def __init__(self, function: Callable[[torch.Tensor], torch.Tensor], info: PriorInfo):
        super().__init__()
        self.function = function
        self.info = info

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.function(images)


def register_prior(name: str):
    """Decorator registering a ``Prior`` subclass or a factory returning a ``Prior``."""

    def decorate(factory):
        if name in REGISTERED and REGISTERED[name] is not factory:
            raise InputError(f"a prior named {name!r} is already registered")
        REGISTERED[name] = factory
        return factory

    return decorate
