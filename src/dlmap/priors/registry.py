"""The prior registry: NR-IQA models (and other image scores) usable as q_w in Eq. 17.

A prior is a ``Prior``: a torch module from RGB images (B, 3, H, W) in [0, 1] to raw scores
(B,), each image scored on its own (a score that averages over the batch couples the problems
of a batched solve and rescales lambda), differentiable with respect to the images, and
carrying a ``PriorInfo``: its name, score direction and the Eq. 21 calibration constants.

Register one with the ``register_prior`` decorator, or point at any Python callable with
``register_entry_point("name", "package.module:factory")`` or with a YAML file of such
entries (``register_from_file``; ``dlmap enhance --prior-file FILE``). ``create_prior(name)`` builds
it with frozen weights; unknown names are answered with the known ones and a "did you mean".

The built-in priors here are training-free image statistics, so that the library works with no
downloaded weights. The paper's NR-IQA models join this registry under their own names:
``dlmap.priors.zoo`` (pyiqa's DBCNN, HyperIQA, PaQ-2-PiQ, UNIQUE, MUSIQ, CLIPIQA+ and LIQE) and
``dlmap.priors.niqe`` (NIQE, with an offline-fitted pristine model when LIVE's is absent).
Any other no-reference metric of pyiqa is ``pyiqa:NAME`` (``dlmap.priors.pyiqa_generic``),
resolved on lookup rather than listed here: ``dlmap priors list --all`` shows which can be.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from dlmap.errors import DlmapError, InputError
from dlmap.priors.calibration import (
    DEFAULT_SCALE,
    apply_fit,
    calibrate,
    load_constants,
    score_scale,
)


@dataclass(frozen=True)
class PriorInfo:
    """What the solver, tables and outputs need to know about a prior.

    xi3, xi4: the Eq. 21 constants (xi3 on the direction-corrected scale: for a lower-is-better
    model, on the negated score). score_range: typical raw range, as documented by its source.
    params: parameter count of the model as built (Table I's third column), None if unknown.
    trained_on_mos: False for opinion-unaware models (NIQE): Table I shows no training set.
    licence: the terms of the code (and weights) the prior runs, as far as dlmap knows.
    calibration_fitted: True when xi3 and xi4 were fitted to opinion scores for this model
    and these weights (shipped from a source, or by ``dlmap calibrate``), False for provisional
    constants (set by hand, or fitted for other weights); early stopping at a calibrated score
    applies only to fitted ones (dlmap.enhance.solver).
    checkpoint_sha256: the sha256 of a weights file the user trained (MS-LIQE); constants
    fitted for another file do not apply to it (``calibration.apply_fit``).
    """

    name: str
    display_name: str
    higher_is_better: bool
    xi3: float
    xi4: float
    score_range: tuple[float, float]
    reference: str = ""
    training_set: str = "-"
    calibration_source: str = ""
    params: int | None = None
    trained_on_mos: bool = True
    calibration_fitted: bool = False
    licence: str = ""
    checkpoint_sha256: str = ""


DLMAP_LICENCE = "MIT (dlmap's own code)"
PYIQA_LICENCE = "PolyForm-Noncommercial-1.0 (pyiqa's code); weights: their authors' terms"


class Prior(torch.nn.Module):
    """Base class: subclasses set ``info`` and implement ``forward(images) -> (B,)``."""

    info: PriorInfo

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


class UnknownPriorError(DlmapError, KeyError):
    exit_code = 2

    def __str__(self) -> str:  # KeyError quotes its message otherwise
        return str(self.args[0])


_REGISTRY: dict[str, Callable[..., Prior]] = {}

# Modules whose priors register themselves when imported: imported on the first lookup, not
# with this module (they import it back, and they bring open_clip and pyiqa's code with them).
BUILTIN_MODULES = ("dlmap.priors.zoo", "dlmap.priors.niqe", "dlmap.msliqe.model")
_builtins_loaded = False


def _load_builtins() -> None:
    global _builtins_loaded
    if not _builtins_loaded:
        _builtins_loaded = True
        for module in BUILTIN_MODULES:
            importlib.import_module(module)


def register_prior(name: str):
    """Decorator registering a ``Prior`` subclass or a factory returning a ``Prior``."""

    def decorate(factory):
        if name in _REGISTRY and _REGISTRY[name] is not factory:
            raise InputError(f"a prior named {name!r} is already registered")
        _REGISTRY[name] = factory
        return factory

    return decorate


def register_entry_point(name: str, target: str) -> None:
    """Register ``package.module:attribute`` (a Prior class or factory) under ``name``."""
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise InputError(
            f"prior entry point must look like 'package.module:factory', got {target!r}"
        )
    try:
        factory = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise InputError(f"cannot import prior {name!r} from {target!r}: {error}") from error
    register_prior(name)(factory)


def register_from_file(path) -> list[str]:
    """Register the priors a YAML file names, one ``name: package.module:factory`` entry each
    under a top-level ``priors:`` key; returns their names. Errors name the file and entry."""
    import yaml

    try:
        document = yaml.safe_load(open(path))
    except (OSError, yaml.YAMLError) as error:
        raise InputError(f"prior file {path}: {error}") from error
    entries = document.get("priors") if isinstance(document, dict) else None
    if not isinstance(entries, dict) or not entries:
        raise InputError(f"prior file {path}: needs a 'priors:' mapping of name: module:factory")
    for name, target in entries.items():
        if not isinstance(target, str):
            raise InputError(f"prior file {path}: entry {name!r} must be 'module:factory'")
        try:
            register_entry_point(str(name), target)
        except ValueError as error:
            raise InputError(f"prior file {path}: {error}") from error
    return [str(name) for name in entries]


def available_priors() -> list[str]:
    _load_builtins()
    return sorted(_REGISTRY)


def _factory(name: str):
    _load_builtins()
    if name not in _REGISTRY and name.startswith("pyiqa:"):  # any NR metric of pyiqa, by name
        from dlmap.priors import pyiqa_generic

        return pyiqa_generic.prior_factory(name.removeprefix("pyiqa:"))
    if name not in _REGISTRY:
        known = available_priors()
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise UnknownPriorError(f"unknown prior {name!r} (known: {', '.join(known)}, and "
                                f"pyiqa:NAME for pyiqa's metrics){hint}")
    return _REGISTRY[name]


def takes_argument(name: str, argument: str) -> bool:
    """Whether the factory of prior ``name`` accepts the keyword ``argument``."""
    return argument in inspect.signature(_factory(name)).parameters


def prior_info(name: str) -> PriorInfo | None:
    """A registered prior's metadata without building it (no weights needed): the ``info``
    of its class or factory, or None if the factory does not publish one."""
    return getattr(_factory(name), "info", None)


def weights_status(name: str, cache=None) -> str:
    """Whether a registered prior's weights are on disk, without building it: its factory's
    ``weights_status(cache)`` if it has one, else "none needed" for a parameter-free prior."""
    factory = _factory(name)
    if hasattr(factory, "weights_status"):
        return factory.weights_status(cache)
    info = prior_info(name)
    return "none needed" if info is not None and info.params == 0 else "-"


def weight_sets(name: str, **options) -> tuple[str, ...]:
    """The sets of the weights catalogue that building prior ``name`` with ``options`` needs:
    its factory's ``weight_sets(**options)``, or none if it publishes none."""
    sets = getattr(_factory(name), "weight_sets", None)
    return tuple(sets(**options)) if callable(sets) else ()


PAPER_PRIORS = ("niqe", "clipiqa+", "paq2piq", "hyperiqa", "musiq", "dbcnn", "unique", "liqe")
"""The eight NR-IQA models of Table I, in its row order."""


def table_one_columns(names=PAPER_PRIORS) -> list[dict]:
    """Table I's first three columns (model, training set, parameters in millions), made
    from the registry's metadata. As in the paper, a model trained on several data sets
    shows "Multiple" (the sets are in ``training_sets``) and an opinion-unaware one "-"."""
    rows = []
    for name in names:
        info = prior_info(name)
        if info is None or info.params is None:
            raise InputError(f"prior {name!r} publishes no parameter count for Table I")
        sets = [part.strip() for part in info.training_set.split(",")]
        shown = "Multiple" if len(sets) > 1 else info.training_set
        rows.append(
            {
                "model": info.display_name,
                "training_set": shown if info.trained_on_mos else "-",
                "params_millions": f"{info.params / 1e6:.3f}",
                "training_sets": info.training_set if info.trained_on_mos else "-",
                "prior": name,
            }
        )
    return rows


def create_prior(name: str, cache=None, **kwargs) -> Prior:
    """Build the registered prior ``name`` with frozen weights in eval mode.

    ``cache``: the weights folder (``dlmap.weights.cache.cache_dir``), passed to priors that read
    weights (their factories take a ``cache`` argument); others ignore it.
    """
    factory = _factory(name)
    if cache is not None and "cache" in inspect.signature(factory).parameters:
        kwargs["cache"] = cache
    prior = factory(**kwargs)
    if not isinstance(prior, Prior):
        raise TypeError(f"prior factory {name!r} returned {type(prior).__name__}, not a Prior")
    fitted = load_constants(name, cache)
    if fitted is not None:  # `dlmap calibrate` output overrides the shipped constants
        prior.info = apply_fit(prior.info, fitted)
    prior.requires_grad_(False)
    return prior.eval()


# --- training-free priors ------------------------------------------------------------------


@register_prior("colorfulness")
class Colorfulness(Prior):
    """Hasler & Suesstrunk's colourfulness M = sigma_rgyb + 0.3 mu_rgyb on 0-255 RGB.

    Their scale: 15 slightly, 33 moderately, 45 averagely, 59 quite, 82 highly colourful.
    Calibration (not fitted to MOS): centred on "moderately colourful", 15 units per e-fold.
    """

    info = PriorInfo(
        name="colorfulness",
        display_name="Colourfulness",
        higher_is_better=True,
        xi3=33.0,
        xi4=15.0,
        score_range=(0.0, 150.0),
        reference="Hasler and Suesstrunk, Proc. SPIE 5007, 2003",
        calibration_source="set from the published verbal scale, not fitted to MOS",
        params=0,
        licence=DLMAP_LICENCE,
    )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        rgb = images * 255.0
        red, green, blue = rgb[:, 0], rgb[:, 1], rgb[:, 2]
        rg = (red - green).flatten(1)
        yb = (0.5 * (red + green) - blue).flatten(1)
        spread = torch.sqrt(rg.var(dim=1) + yb.var(dim=1) + 1e-12)
        offset = torch.sqrt(rg.mean(dim=1) ** 2 + yb.mean(dim=1) ** 2 + 1e-12)
        return spread + 0.3 * offset


@register_prior("sharpness")
class Sharpness(Prior):
    """log variance of the Laplacian of luminance (0-255), a classic focus measure.

    Rises with detail and with noise alike: an image statistic, not a quality model.
    Calibration (not fitted to MOS): centred at log-variance 5.5, one unit per e-fold.
    """

    info = PriorInfo(
        name="sharpness",
        display_name="Sharpness (log Laplacian variance)",
        higher_is_better=True,
        xi3=5.5,
        xi4=1.0,
        score_range=(0.0, 12.0),
        reference="Pech-Pacheco et al., ICPR 2000",
        calibration_source="set by hand from typical photographs, not fitted to MOS",
        params=0,
        licence=DLMAP_LICENCE,
    )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        weights = torch.tensor([0.299, 0.587, 0.114], dtype=images.dtype, device=images.device)
        luma = (images * 255.0 * weights.view(1, 3, 1, 1)).sum(dim=1, keepdim=True)
        kernel = torch.tensor(
            [[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]],
            dtype=images.dtype,
            device=images.device,
        ).view(1, 1, 3, 3)
        laplacian = F.conv2d(luma, kernel).flatten(1)
        return torch.log(laplacian.var(dim=1) + 1e-6)


