"""dlmap: NR-IQA models as image priors, by MAP estimation in diffusion latents (EDICT).

The public API is re-exported here and imported on first use, so ``import dlmap`` stays
light: ``from dlmap import map_solve, create_prior, SolverConfig, InversionConfig, tiny_backbone``.
"""

__version__ = "0.2.0"

import importlib as _importlib
import importlib.util as _importlib_util
import logging as _logging
import sys as _sys
import warnings as _warnings

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


class _AfterImport:
    """A one-shot import hook: once module ``name`` has been imported, call ``then(module)``.
    It leaves the import system as soon as ``name`` is looked up, and changes nothing else."""

    def __init__(self, name: str, then):
        self.name, self.then = name, then

    def find_spec(self, fullname, path=None, target=None):
        if fullname != self.name:
            return None
        _sys.meta_path.remove(self)
        spec = _importlib_util.find_spec(fullname)  # as if this hook had not been there
        if spec is not None and spec.loader is not None:
            execute = spec.loader.exec_module

            def exec_module(module):
                execute(module)
                try:
                    self.then(module)
                except Exception as error:  # noqa: BLE001 - never break the import itself
                    _warnings.warn(f"dlmap: after importing {fullname}: {error}", stacklevel=2)

            spec.loader.exec_module = exec_module
        return spec


def _register_ms_liqe_with_pyiqa(_module=None) -> None:
    # by name, as the exports below: the package root names its parts, never imports them
    _importlib.import_module("dlmap.msliqe.pyiqa_metric").register()


# MS-LIQE in pyiqa's tables (pyiqa.create_metric("ms-liqe", ...)) once dlmap is imported:
# now if pyiqa is, else right after pyiqa's import; `import dlmap` itself loads neither.
if "pyiqa" in _sys.modules:
    _register_ms_liqe_with_pyiqa()
elif not any(isinstance(f, _AfterImport) for f in _sys.meta_path):
    _sys.meta_path.insert(0, _AfterImport("pyiqa", _register_ms_liqe_with_pyiqa))


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'dlmap' has no attribute {name!r}")
    value = getattr(_importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted([*globals(), *_EXPORTS])
