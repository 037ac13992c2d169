"""Any differentiable no-reference metric of pyiqa as a prior, by name: ``pyiqa:NAME``.

``prior_factory("NAME")`` answers the registry's lookup of ``pyiqa:NAME`` (``--prior
pyiqa:topiq_nr``, or the same string in the workflow's config):

* a metric behind one of the paper's priors (``dbcnn``, ``liqe_mix``, ``clipiqa+``, ``niqe``,
  ...) is that prior, with its name, metadata, constants and weights (``PAPER_METRICS``);
* a metric the classification table (``dlmap.priors.pyiqa_nr``) does not class
  ``differentiable`` is refused in one line saying why and naming an alternative;
* any other is ``zoo.PyiqaPrior`` on that metric: pyiqa's own forward (its crops, resizing and
  multi-scale protocol as pyiqa applies them), per-image scores with gradients
  (``as_loss=True, loss_reduction="none"``), weights from the catalogue's ``pyiqa:NAME`` set
  (the files the table records from pyiqa's own URLs), and images under the metric's smallest
  side (``min_side`` in the table) upsampled, with a warning saying so.

Metadata: score direction and range from pyiqa's ``DEFAULT_CONFIGS``; reference, training set
and parameter count from the table. Eq. 21 constants: provisional (``provisional_constants``)
until fitted with ``dlmap calibrate`` or the workflow's ``calibrate_prior`` on LIVE.
"""

from __future__ import annotations

from dlmap.priors import pyiqa_nr
from dlmap.priors.registry import PriorInfo
from dlmap.priors.zoo import PROVISIONAL, PYIQA_MODELS, PyiqaPrior

PREFIX = "pyiqa:"
PAPER_METRICS = {model.metric: name for name, model in PYIQA_MODELS.items()} | {"niqe": "niqe"}
"""pyiqa metric -> the paper's prior that already serves it (dlmap's NIQE is its own code)."""
UNKNOWN_RANGE = (0.0, 1.0)


def provisional_constants(metric: str) -> tuple[float, float, str]:
    """xi3, xi4 of Eq. 21 before any fit: the middle of pyiqa's score range (negated for a
    lower-is-better metric: xi3 lives on the direction-corrected scale) and a quarter of the
    range per e-fold, with a sentence saying so."""
    lower_better = pyiqa_nr.pyiqa_metadata(metric)["lower_better"]
    found = pyiqa_nr.score_range(metric)
    low, high = found or UNKNOWN_RANGE
    middle = (low + high) / 2
    xi3 = -middle if lower_better else middle
    where = "pyiqa's score range" if found else "an assumed range (pyiqa records none)"
    text = (f"{PROVISIONAL}: xi3 = {xi3:g}, xi4 = {(high - low) / 4:g} from {where} "
            f"{low:g} to {high:g}; fit them with `dlmap calibrate`")  # fmt: skip
    return xi3, (high - low) / 4, text


def metric_info(metric: str) -> PriorInfo:
    """The ``PriorInfo`` of ``pyiqa:metric`` (nothing built, no weights needed)."""
    row = pyiqa_nr.table()[metric]
    lower_better = pyiqa_nr.pyiqa_metadata(metric)["lower_better"]
    xi3, xi4, source = provisional_constants(metric)
    training = row.training_set
    return PriorInfo(
        name=PREFIX + metric,
        display_name=metric,
        higher_is_better=not lower_better,
        xi3=xi3,
        xi4=xi4,
        score_range=pyiqa_nr.score_range(metric) or UNKNOWN_RANGE,
        reference=row.reference,
        training_set=training,
        calibration_source=source,
        params=row.params,
        trained_on_mos=not training.startswith("none"),
        licence=row.licence,
    )


def prior_factory(metric: str):
    """The registry factory of ``pyiqa:metric`` (see the module doc); raises
    ``pyiqa_nr.UnusablePriorError`` for a metric that cannot be a prior."""
    from dlmap.priors import registry

    if metric in PAPER_METRICS:
        return registry._factory(PAPER_METRICS[metric])
    row = pyiqa_nr.require_usable(metric)
    name, info = PREFIX + metric, metric_info(metric)
    min_side = row.min_side or 1

    def build(cache=None) -> PyiqaPrior:
        return PyiqaPrior(name, cache, metric=metric, info=info, min_side=min_side, announce=True)

    def weights_status(cache=None) -> str:
        from dlmap.weights import catalogue

        missing = catalogue.get(name).missing_files(cache)
        return f"MISSING: dlmap weights fetch {name}" if missing else "present"

    build.info = info
    build.weights_status = weights_status
    build.weight_sets = lambda **options: (name,)
    return build


def usable_metrics() -> list[str]:
    """Every metric ``pyiqa:NAME`` accepts: the table's differentiable ones and the paper's."""
    rows = pyiqa_nr.table()
    return sorted({m for m, row in rows.items() if row.usable} | (set(PAPER_METRICS) & set(rows)))
