"""pyiqa's metrics as differentiable priors: the paper's models of Table I, and any other
no-reference metric of pyiqa by name, ``pyiqa:NAME``.

Every spec with a ``pyiqa_metric`` (``dlmap.priors.specs``; the paper's LIQE is pyiqa's
``liqe_mix``) is registered here under its name, with its metadata, constants and weights.
``pyiqa:NAME`` (``--prior pyiqa:topiq_nr``, or the same string in the workflow's config) is
answered by ``generic_factory``:

* a metric behind one of the paper's priors is that prior (the registry resolves it);
* a metric the classification table (``dlmap.priors.pyiqa_nr``) does not class
  ``differentiable`` is refused in one line saying why and naming an alternative;
* any other is ``PyiqaPrior`` on that metric, with weights from the catalogue's
  ``pyiqa:NAME`` set (the files the table records from pyiqa's own URLs), images under the
  metric's smallest side (``min_side`` in the table) upsampled with a warning saying so,
  metadata from pyiqa's ``DEFAULT_CONFIGS`` and the table, and provisional Eq. 21 constants
  (``provisional_constants``) until fitted with ``dlmap calibrate`` or the workflow.

``PyiqaPrior`` wraps ``pyiqa.create_metric(metric, as_loss=True, loss_reduction="none")``:
per-image raw scores with gradients (pyiqa's default reduction averages over the batch, and
``as_loss=False`` gives no gradient), pyiqa's own forward (its crops, resizing and multi-scale
protocol). Before anything is built it checks that every file is in the dlmap cache (torch's
hub folder is pointed at ``<cache>/torch`` while pyiqa builds), and raises one
``WeightsMissingError`` listing the missing files, their URLs and the folder, so that nothing
is downloaded behind the user's back (``dlmap weights fetch NAME`` does it). pyiqa is licensed
PolyForm Noncommercial.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torchvision.ops import RoIPool

from dlmap.errors import InputError
from dlmap.priors import pyiqa_nr
from dlmap.priors.base import Prior, register_prior
from dlmap.priors.specs import PAPER_METRICS, PROVISIONAL, PYIQA_PREFIX, PYIQA_SPECS, PriorInfo
from dlmap.weights import cache as weights
from dlmap.weights import catalogue

MIN_SIDE = 224
PREFIX = PYIQA_PREFIX
UNKNOWN_RANGE = (0.0, 1.0)


@contextlib.contextmanager
def torch_hub_dir(folder: Path):
    """Point torch's hub folder (and pyiqa's cache, derived from it at import) at ``folder``."""
    import pyiqa.archs.liqe_arch as liqe_arch
    import pyiqa.utils.download_util as download_util

    previous = (torch.hub.get_dir(), download_util.DEFAULT_CACHE_DIR, liqe_arch.DEFAULT_CACHE_DIR)
    (folder / "pyiqa").mkdir(parents=True, exist_ok=True)  # LIQE caches its text features
    torch.hub.set_dir(str(folder))
    download_util.DEFAULT_CACHE_DIR = liqe_arch.DEFAULT_CACHE_DIR = str(folder / "pyiqa")
    try:
        yield
    finally:
        torch.hub.set_dir(previous[0])
        download_util.DEFAULT_CACHE_DIR, liqe_arch.DEFAULT_CACHE_DIR = previous[1:]


class PyiqaPrior(Prior):
    """A pyiqa metric as a prior: (B, 3, H, W) in [0, 1] -> (B,) raw scores, differentiable.

    ``name``: a prior of ``specs.PYIQA_SPECS``, or (with ``metric`` and ``info``) any metric
    through ``generic_factory``; the weight set checked is the catalogue's set of that name.
    Raises ``WeightsMissingError`` (one line: files, URLs, folder) before building anything if
    a file is missing from the cache.

    min_side: images with a shorter side below it are upsampled (bilinear) first; ``announce``:
    say so once (a ``UserWarning``), for metrics whose own protocol sets the minimum.
    """

    def __init__(
        self,
        name: str,
        cache=None,
        *,
        metric: str | None = None,
        info: PriorInfo | None = None,
        min_side: int = MIN_SIDE,
        announce: bool = False,
    ):
        super().__init__()
        if metric is None:
            spec = PYIQA_SPECS[name]
            metric, info = spec.pyiqa_metric, spec.info()
        catalogue.get(name).require(cache)
        import pyiqa

        with torch_hub_dir(weights.cache_dir(cache) / "torch"):
            self.metric = pyiqa.create_metric(
                metric, as_loss=True, loss_reduction="none", device="cpu"
            )
        self.info, self.min_side, self.announce = info, min_side, announce
        net = getattr(self.metric, "net", None)
        if isinstance(getattr(net, "roi_pool", None), RoIPool) and not compiled_roi_pool_works():
            pooling = net.roi_pool  # torchvision's operator is not compiled in: plain torch
            net.roi_pool = PlainRoIPool(pooling.output_size, pooling.spatial_scale)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Raw scores; images with a side under ``min_side`` (224 for the paper's models, the
        smallest input every model of Table I accepts) are first upsampled (bilinear) so that
        the shorter side is ``min_side``. The input is passed as a copy: some of pyiqa's
        metrics edit theirs in place."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise InputError(
                f"{self.info.display_name} expects (B, 3, H, W), got {tuple(images.shape)}"
            )
        shorter = min(images.shape[-2:])
        if shorter < self.min_side:
            size = [round(side * self.min_side / shorter) for side in images.shape[-2:]]
            if self.announce:
                warnings.warn(
                    f"{self.info.name}: {images.shape[-2]}x{images.shape[-1]} is under its "
                    f"smallest side {self.min_side}: upsampled to {size[0]}x{size[1]} "
                    "(bilinear) before scoring",
                    stacklevel=2,
                )
                self.announce = False
            images = F.interpolate(images, size=size, mode="bilinear", align_corners=False)
        return self.metric(images.clone()).reshape(images.shape[0])


def _factory(name: str, build, info: PriorInfo):
    """``build`` as the registry's factory of prior ``name``: with its metadata (no weights
    needed), its weights' status and the catalogue set it reads (the prior's name)."""

    def weights_status(cache=None) -> str:
        missing = catalogue.get(name).missing_files(cache)
        return f"MISSING: dlmap weights fetch {name}" if missing else "present"

    build.info = info
    build.weights_status = weights_status
    build.weight_sets = lambda **options: (name,)
    return build


def _spec_factory(name: str):
    def build(cache=None) -> PyiqaPrior:
        return PyiqaPrior(name, cache=cache)

    return _factory(name, build, PYIQA_SPECS[name].info())


for _name in PYIQA_SPECS:
    register_prior(_name)(_spec_factory(_name))


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
    text = (
        f"{PROVISIONAL}: xi3 = {xi3:g}, xi4 = {(high - low) / 4:g} from {where} "
        f"{low:g} to {high:g}; fit them with `dlmap calibrate`"
    )
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


def generic_factory(metric: str):
    """The registry factory of ``pyiqa:metric`` for a metric no spec serves (see the module
    doc); raises ``pyiqa_nr.UnusablePriorError`` for a metric that cannot be a prior."""
    row = pyiqa_nr.require_usable(metric)
    name, info = PREFIX + metric, metric_info(metric)
    min_side = row.min_side or 1

    def build(cache=None) -> PyiqaPrior:
        return PyiqaPrior(name, cache, metric=metric, info=info, min_side=min_side, announce=True)

    return _factory(name, build, info)


def usable_metrics() -> list[str]:
    """Every metric ``pyiqa:NAME`` accepts: the table's differentiable ones and the paper's."""
    rows = pyiqa_nr.table()
    return sorted({m for m, row in rows.items() if row.usable} | (set(PAPER_METRICS) & set(rows)))


# --- RoI max pooling in plain torch: a stand-in for torchvision's compiled ``roi_pool`` ---
#
# pyiqa's PaQ-2-PiQ pools its ResNet-18 features over the whole image with
# ``torchvision.ops.RoIPool((2, 2), 1/32)``, a compiled operator. A torchvision wheel built
# without its C++ operators (or for another torch) imports fine and then fails on the first
# call; ``PyiqaPrior`` then swaps in ``PlainRoIPool`` below. It reproduces torchvision's kernel
# exactly (``torchvision/csrc/ops/cpu/roi_pool_kernel.cpp``): box corners are scaled and rounded
# half away from zero, the box spans at least one cell, bin h of P covers rows
# [floor(h * height / P), ceil((h + 1) * height / P)) from the box start, clipped to the map,
# each bin is the maximum over its cells (0 if empty), and the gradient flows to the arg max
# (split evenly between exact ties, where torchvision picks one).


def _round(value: torch.Tensor) -> int:
    """C's round(): half away from zero (torch.round rounds half to even)."""
    value = float(value)
    return int(math.floor(abs(value) + 0.5)) * (1 if value >= 0 else -1)


def _as_rois(boxes) -> torch.Tensor:
    """A (K, 5) tensor (batch index, x1, y1, x2, y2) or a list of (K_i, 4) boxes per image."""
    if isinstance(boxes, torch.Tensor):
        if boxes.ndim != 2 or boxes.shape[1] != 5:
            raise InputError(f"rois must be (K, 5), got {tuple(boxes.shape)}")
        return boxes
    rows = [
        torch.cat([torch.full_like(b[:, :1], index), b], dim=1) for index, b in enumerate(boxes)
    ]
    return torch.cat(rows, dim=0)


def plain_roi_pool(features, boxes, output_size, spatial_scale: float = 1.0) -> torch.Tensor:
    """(N, C, H, W) features, boxes -> (K, C, P_h, P_w), as ``torchvision.ops.roi_pool``."""
    pooled_h, pooled_w = (output_size, output_size) if isinstance(output_size, int) else output_size
    height, width = features.shape[-2:]
    out = []
    for roi in _as_rois(boxes):
        index = int(roi[0])
        x1, y1, x2, y2 = (_round(value * spatial_scale) for value in roi[1:])
        roi_h, roi_w = max(y2 - y1 + 1, 1), max(x2 - x1 + 1, 1)
        bins = []
        for ph in range(pooled_h):
            top = min(max(math.floor(ph * roi_h / pooled_h) + y1, 0), height)
            bottom = min(max(math.ceil((ph + 1) * roi_h / pooled_h) + y1, 0), height)
            for pw in range(pooled_w):
                left = min(max(math.floor(pw * roi_w / pooled_w) + x1, 0), width)
                right = min(max(math.ceil((pw + 1) * roi_w / pooled_w) + x1, 0), width)
                if bottom <= top or right <= left:
                    bins.append(features.new_zeros(features.shape[1]))
                else:
                    cell = features[index, :, top:bottom, left:right]
                    bins.append(cell.flatten(1).amax(dim=1))
        out.append(torch.stack(bins, dim=1).view(-1, pooled_h, pooled_w))
    return torch.stack(out) if out else features.new_zeros(0, features.shape[1], pooled_h, pooled_w)


class PlainRoIPool(torch.nn.Module):
    """Drop-in for ``torchvision.ops.RoIPool`` in plain torch (see the comment above)."""

    def __init__(self, output_size, spatial_scale: float):
        super().__init__()
        self.output_size, self.spatial_scale = output_size, spatial_scale

    def forward(self, features, boxes):
        return plain_roi_pool(features, boxes, self.output_size, self.spatial_scale)


def compiled_roi_pool_works() -> bool:
    """Whether torchvision's compiled ``roi_pool`` runs on CPU in this installation."""
    try:
        from torchvision.ops import roi_pool as compiled

        compiled(torch.zeros(1, 1, 2, 2), [torch.tensor([[0.0, 0.0, 1.0, 1.0]])], (1, 1))
    except (ImportError, RuntimeError, NotImplementedError):
        return False
    return True
