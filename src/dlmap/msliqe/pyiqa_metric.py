"""MS-LIQE as a pyiqa metric: ``pyiqa.create_metric("ms-liqe", pretrained_model_path=CKPT)``.

pyiqa builds a metric from two tables: its configuration table (``DEFAULT_CONFIGS``, which
``create_metric`` checks the name against) and its network registry (``ARCH_REGISTRY``, from
which it builds the ``type`` a configuration names). ``register`` adds MS-LIQE to both: the
network lazily (``register_lazy``: nothing of dlmap's model is imported until a metric is
built) and a configuration ``ms-liqe`` (NR, scores 1-5, higher is better).

When it runs: ``import dlmap`` calls it at once when pyiqa is already imported, and otherwise
right after pyiqa's own import (a one-shot hook on that import, ``dlmap.__init__``); pyiqa's
plugin entry point ``pyiqa.archs`` (pyproject) calls it when pyiqa's registry first loads its
plugins. The hook is the route for a name pyiqa checks before any plugin loads; it touches
nothing but the two tables, and only once.
"""

from __future__ import annotations

import torch

METRIC = "ms-liqe"
ARCH = "MSLIQEArch"
CONFIG = {
    "metric_opts": {"type": ARCH},
    "metric_mode": "NR",
    "score_range": "1, 5",  # LIQE's five quality levels (Eq. 24)
}


def register(pyiqa_module=None) -> None:
    """Add MS-LIQE to pyiqa's configuration table and network registry (idempotent)."""
    from pyiqa.default_model_configs import DEFAULT_CONFIGS
    from pyiqa.utils.registry import ARCH_REGISTRY

    try:
        ARCH_REGISTRY.register_lazy(ARCH, f"{__name__}:{ARCH}")
    except AssertionError:  # registered already (pyiqa's words for a second registration)
        pass
    DEFAULT_CONFIGS.setdefault(METRIC, dict(CONFIG))


class MSLIQEArch(torch.nn.Module):
    """The network pyiqa builds for ``ms-liqe``: dlmap's MS-LIQE prior with the checkpoint
    ``pretrained_model_path`` (a ``dlmap train-msliqe`` file; default: the installed one,
    ``<cache>/ms-liqe/ms_liqe.pt``), returning (B, 1) scores as pyiqa's networks do."""

    def __init__(self, pretrained_model_path=None, cache=None, **options):
        super().__init__()
        from dlmap.msliqe.model import MSLIQEPrior

        self.prior = MSLIQEPrior(checkpoint=pretrained_model_path, cache=cache, **options)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.prior(images).reshape(-1, 1)
