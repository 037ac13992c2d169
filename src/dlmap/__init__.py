"""dlmap: NR-IQA models as image priors, by MAP estimation in diffusion latents (EDICT).

The public API is re-exported here and imported on first use, so ``import dlmap`` stays
light: ``from dlmap import map_solve, create_prior, SolverConfig, InversionConfig, tiny_backbone``.
"""

__version__ = "0.2.0"

import importlib as _importlib
import logging as _logging

# bitsandbytes, which pyiqa installs and dlmap never uses, is imported by diffusers and
# transformers when present; on CPUs with AVX512-BF16 it logs a warning at import that an
# optional kernel package is missing. Keep it off our users' stderr.
_logging.getLogger("bitsandbytes").setLevel(_logging.ERROR)

_EXPORTS = {  # name -> module that defines it
    "SolverConfig": "dlmap.settings",
    "InversionConfig": "dlmap.inversion.config",
    "BackboneSettings": "dlmap.settings",
    "map_solve": "dlmap.enhance.solver",
    "enhance_files": "dlmap.enhance.pipeline",
    "DiffusionMAP": "dlmap.enhance.diffusion_map",
    "load_backbone": "dlmap.diffusion.build",
    "tiny_backbone": "dlmap.diffusion.tiny",
    "Prior": "dlmap.priors.base",
    "PriorInfo": "dlmap.priors.specs",
    "create_prior": "dlmap.priors.registry",
    "register_prior": "dlmap.priors.base",
    "register_entry_point": "dlmap.priors.registry",
    "available_priors": "dlmap.priors.registry",
    "load_image": "dlmap.images",
    "DlmapError": "dlmap.errors",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'dlmap' has no attribute {name!r}")
    value = getattr(_importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted([*globals(), *_EXPORTS])
