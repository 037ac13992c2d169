"""The prior registry: NR-IQA models (and other image scores) usable as q_w in Eq. 17, looked up
and built by name.

A prior is a ``dlmap.priors.base.Prior``: a torch module from RGB images (B, 3, H, W) in
[0, 1] to raw scores (B,), each image scored on its own (a score that averages over the batch
couples the problems of a batched solve and rescales lambda), differentiable with respect to
the images, and carrying a ``PriorInfo``: its name, score direction and the Eq. 21 calibration
constants. What dlmap knows of each built-in prior is its spec (``dlmap.priors.specs``).

Register one with the ``register_prior`` decorator (``dlmap.priors.base``), or point at any
Python callable with ``register_entry_point("name", "package.module:factory")`` or with a YAML
file of such entries (``register_from_file``; ``dlmap enhance --prior-file FILE``).
``create_prior(name)`` builds it with frozen weights; unknown names are answered with the
known ones and a "did you mean".

The built-in priors register themselves when their modules are imported, which happens on the
first lookup, not with this module (they bring open_clip and pyiqa's code with them): the
training-free statistics (``dlmap.priors.statistics``), the paper's pyiqa models and any other
no-reference metric of pyiqa as ``pyiqa:NAME`` (``dlmap.priors.zoo``), NIQE
(``dlmap.priors.niqe``) and MS-LIQE (``dlmap.msliqe.model``). ``dlmap priors list --all``
shows which of pyiqa's metrics can be priors.
"""

from __future__ import annotations

import difflib
import importlib
import inspect

from dlmap.errors import DlmapError, InputError
from dlmap.priors.base import REGISTERED, Prior, register_prior
from dlmap.priors.calibration import apply_fit, load_constants
from dlmap.priors.specs import PAPER_METRICS, PAPER_PRIORS, PYIQA_PREFIX, PriorInfo


class UnknownPriorError(DlmapError, KeyError):
    exit_code = 2

    def __str__(self) -> str:  # KeyError quotes its message otherwise
        return str(self.args[0])


_builtins_loaded = False


def _load_builtins() -> None:
    """Import the modules whose priors register themselves (once, on the first lookup)."""
    global _builtins_loaded
    if not _builtins_loaded:
        _builtins_loaded = True
        from dlmap.msliqe import model  # noqa: F401
        from dlmap.priors import niqe, statistics, zoo  # noqa: F401


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
    return sorted(REGISTERED)


def prior_factory(name: str):
    """The registered factory of prior ``name``: a ``Prior`` class or a function returning one.
    ``pyiqa:METRIC`` is the paper's prior for a metric that one serves (``pyiqa:liqe_mix`` is
    ``liqe-mix``), else pyiqa's metric as a generic prior (``dlmap.priors.zoo.generic_factory``)."""
    _load_builtins()
    if name not in REGISTERED and name.startswith(PYIQA_PREFIX):
        metric = name.removeprefix(PYIQA_PREFIX)
        if metric in PAPER_METRICS:
            return REGISTERED[PAPER_METRICS[metric]]
        from dlmap.priors import zoo

        return zoo.generic_factory(metric)
    if name not in REGISTERED:
        known = available_priors()
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise UnknownPriorError(
            f"unknown prior {name!r} (known: {', '.join(known)}, and "
            f"pyiqa:NAME for pyiqa's metrics){hint}"
        )
    return REGISTERED[name]


def takes_argument(name: str, argument: str) -> bool:
    """Whether the factory of prior ``name`` accepts the keyword ``argument``."""
    return argument in inspect.signature(prior_factory(name)).parameters


def prior_info(name: str) -> PriorInfo | None:
    """A registered prior's metadata without building it (no weights needed): the ``info``
    of its class or factory, or None if the factory does not publish one."""
    return getattr(prior_factory(name), "info", None)


def weights_status(name: str, cache=None) -> str:
    """Whether a registered prior's weights are on disk, without building it: its factory's
    ``weights_status(cache)`` if it has one, else "none needed" for a parameter-free prior."""
    factory = prior_factory(name)
    if hasattr(factory, "weights_status"):
        return factory.weights_status(cache)
    info = prior_info(name)
    return "none needed" if info is not None and info.params == 0 else "-"


def weight_sets(name: str, **options) -> tuple[str, ...]:
    """The sets of the weights catalogue that building prior ``name`` with ``options`` needs:
    its factory's ``weight_sets(**options)``, or none if it publishes none."""
    sets = getattr(prior_factory(name), "weight_sets", None)
    return tuple(sets(**options)) if callable(sets) else ()


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


def create_prior(name: str, cache=None, download: bool = False, **kwargs) -> Prior:
    """Build the registered prior ``name`` with frozen weights in eval mode.

    ``cache``: the weights folder (``dlmap.weights.cache.cache_dir``), passed to priors that read
    weights (their factories take a ``cache`` argument); others ignore it. ``download``
    (opt-in): first fetch the prior's weight set into that folder and verify it, as
    ``dlmap weights fetch NAME`` does (``fetch_weights``); without it, missing weights raise
    an error naming that command.
    """
    factory = prior_factory(name)
    if download:
        fetch_weights(name, cache)
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


def fetch_weights(name: str, cache=None) -> None:
    """Fetch and verify the weight set of prior ``name`` (the catalogue's set of that name;
    a prior without one, such as a statistics prior, needs nothing); one that could not be
    fetched raises ``WeightsMissingError`` (``catalogue.fetch_or_raise``)."""
    from dlmap.weights import catalogue

    if catalogue.has(name):
        catalogue.fetch_or_raise([name], cache, what=f"prior {name!r}")
