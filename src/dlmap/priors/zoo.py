"""The paper's NR-IQA models from pyiqa, as differentiable priors (Table I).

Each entry of ``PYIQA_MODELS`` names the pyiqa metric that implements a model (the paper's
LIQE is pyiqa's ``liqe_mix``), its metadata, and every file pyiqa reads when it builds the
metric: its own checkpoint and the ImageNet or CLIP backbone it constructs first. The URLs
come from pyiqa's, torchvision's, timm's and CLIP's own constants, never typed here.

``PyiqaPrior`` wraps ``pyiqa.create_metric(metric, as_loss=True, loss_reduction="none")``:
per-image raw scores with gradients (pyiqa's default reduction averages over the batch, and
``as_loss=False`` gives no gradient). Before anything is built it checks that every file is
in the dlmap cache (torch's hub folder is pointed at ``<cache>/torch`` while pyiqa builds),
and raises one ``WeightsMissingError`` listing the missing files, their URLs and the folder,
so that nothing is downloaded behind the user's back (``dlmap weights fetch NAME`` does it).
pyiqa is licensed PolyForm Noncommercial.
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torchvision.ops import RoIPool

from dlmap.errors import InputError
from dlmap.priors import roi_pool
from dlmap.priors.registry import PYIQA_LICENCE, Prior, PriorInfo, register_prior
from dlmap.priors.roi_pool import compiled_roi_pool_works
from dlmap.weights import cache as weights
from dlmap.weights import catalogue

PROVISIONAL = "provisional: mid-range and a quarter of the range, not fitted to MOS"
# The authors' LIVE-fitted constants for plain CLIP-IQA (pyiqa's "clipiqa"): CLIPIQA+ has
# learned prompts, so they do not carry over; kept here to be named where CLIPIQA+ is listed.
CLIPIQA_XI3, CLIPIQA_XI4 = 0.383287415616992, 0.223077718907985


@dataclass(frozen=True)
class PyiqaModel:
    """A model of Table I as pyiqa provides it (its files: ``catalogue.CATALOGUE[name]``).

    params: its parameter count as built by pyiqa (every tensor of the module, CLIP's text
    tower included; checked against the built architecture by the tests). xi3/xi4: Eq. 21
    constants on the direction-corrected raw scale; ``calibration_source`` says where they
    come from ("provisional" when nobody fitted them to MOS).
    """

    name: str
    metric: str
    display_name: str
    reference: str
    training_set: str
    params: int
    score_range: tuple[float, float]
    xi3: float
    xi4: float
    calibration_source: str = PROVISIONAL
    higher_is_better: bool = True

    @property
    def calibration_fitted(self) -> bool:
        """Whether xi3 and xi4 were fitted to opinion scores (not ``PROVISIONAL``)."""
        return not self.calibration_source.startswith("provisional")

    def info(self) -> PriorInfo:
        return PriorInfo(
            name=self.name,
            display_name=self.display_name,
            higher_is_better=self.higher_is_better,
            xi3=self.xi3,
            xi4=self.xi4,
            score_range=self.score_range,
            reference=self.reference,
            training_set=self.training_set,
            calibration_source=self.calibration_source,
            calibration_fitted=self.calibration_fitted,
            params=self.params,
            licence=PYIQA_LICENCE,
        )


MIN_SIDE = 224
SIX_SETS = "LIVE, CSIQ, BID, CLIVE, KonIQ-10k, KADID-10k"
AUTHORS = (
    "the paper's authors' public code (mapping_clean.py of their enhancement method), "
    "fitted on LIVE for pyiqa's {metric}"
)

PYIQA_MODELS: dict[str, PyiqaModel] = {
    model.name: model
    for model in (
        PyiqaModel(
            name="dbcnn",
            metric="dbcnn",
            display_name="DBCNN",
            reference="Zhang et al., IEEE TCSVT 2020",
            training_set="KonIQ-10k",
            params=15_311_345,
            score_range=(0.0, 1.0),
            xi3=0.5,
            xi4=0.25,
        ),
        PyiqaModel(
            name="hyperiqa",
            metric="hyperiqa",
            display_name="HyperIQA",
            reference="Su et al., CVPR 2020",
            training_set="KonIQ-10k",
            params=27_375_369,
            score_range=(0.0, 1.0),
            xi3=0.5,
            xi4=0.25,
        ),
        PyiqaModel(
            name="paq2piq",
            metric="paq2piq",
            display_name="PaQ-2-PiQ",
            reference="Ying et al., CVPR 2020",
            training_set="FLIVE",
            params=11_704_897,
            score_range=(0.0, 100.0),
            xi3=50.0,
            xi4=25.0,
        ),
        PyiqaModel(
            name="unique",
            metric="unique",
            display_name="UNIQUE",
            reference="Zhang et al., IEEE TIP 2021",
            training_set=SIX_SETS,
            params=22_321_962,
            score_range=(-3.0, 3.0),
            xi3=-0.4135264,
            xi4=1.6893845,
            calibration_source=(
                "provisional: the UNIQUE authors' perceptual-attack code "
                "(zwx8981/PerceptualAttack_BIQA, mapping2.py) fitted these on LIVE for their "
                "own UNIQUE checkpoint, not for pyiqa's UNIQUE.pt, which dlmap loads; the "
                "workflow fits pyiqa's (calibration.priors)"
            ),
        ),
        PyiqaModel(
            name="musiq",
            metric="musiq",
            display_name="MUSIQ",
            reference="Ke et al., ICCV 2021",
            training_set="KonIQ-10k",
            params=27_125_825,
            score_range=(0.0, 100.0),
            xi3=43.539140163575430,
            xi4=16.786801106500807,
            calibration_source=AUTHORS.format(metric="musiq"),
        ),
        PyiqaModel(
            name="clipiqa+",
            metric="clipiqa+",
            display_name="CLIPIQA+",
            reference="Wang et al., AAAI 2023",
            training_set="KonIQ-10k",
            params=102_023_521,
            score_range=(0.0, 1.0),
            xi3=0.5,
            xi4=0.25,
            calibration_source=(
                PROVISIONAL + " (the authors' constants are for plain CLIP-IQA, "
                f"xi3 = {CLIPIQA_XI3}, |xi4| = {CLIPIQA_XI4}, not for CLIPIQA+)"
            ),
        ),
        PyiqaModel(
            name="liqe",
            metric="liqe_mix",
            display_name="LIQE",
            reference="Zhang et al., CVPR 2023",
            training_set=SIX_SETS,
            params=151_277_313,
            score_range=(1.0, 5.0),
            xi3=2.077636606942305,
            xi4=1.101934158051146,
            calibration_source=AUTHORS.format(metric="liqe_mix (15 patches, pyiqa's default)"),
        ),
    )
}


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

    ``name``: a paper model of ``PYIQA_MODELS``, or (with ``metric`` and ``info``) any metric
    through ``dlmap.priors.pyiqa_generic``; the weight set checked is the catalogue's set of
    that name. Raises ``WeightsMissingError`` (one line: files, URLs, folder) before building
    anything if a file is missing from the cache.

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
            model = PYIQA_MODELS[name]
            metric, info = model.metric, model.info()
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
            net.roi_pool = roi_pool.RoIPool(pooling.output_size, pooling.spatial_scale)

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


def _factory(name: str):
    def build(cache=None) -> PyiqaPrior:
        return PyiqaPrior(name, cache=cache)

    def weights_status(cache=None) -> str:
        missing = catalogue.get(name).missing_files(cache)
        return f"MISSING: dlmap weights fetch {name}" if missing else "present"

    build.info = PYIQA_MODELS[name].info()  # metadata without weights (priors.prior_info)
    build.weights_status = weights_status
    build.weight_sets = lambda **options: (name,)  # the catalogue's set has the prior's name
    return build


for _name in PYIQA_MODELS:
    register_prior(_name)(_factory(_name))
