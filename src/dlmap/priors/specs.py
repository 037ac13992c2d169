"""One ``PriorSpec`` per prior: everything dlmap knows about it, written once.

A spec holds a prior's metadata (name, reference, training set, parameter count, score range
and direction), its Eq. 21 constants with their source and the checkpoint they were fitted
for, its licence, its weight files and whether it is a model of Table I. Derived from
``PRIOR_SPECS``: the registry's metadata (``PriorSpec.info``), the pyiqa-backed priors
themselves (``dlmap.priors.zoo`` registers one per spec with a ``pyiqa_metric``), each prior's
set in the weights catalogue (``file_set``), Table I's rows and order (``PAPER_PRIORS``), the
pyiqa metric each serves (``PAPER_METRICS``) and docs/priors.md's constants table
(``dlmap.priors.calibration.constants_table``, checked by a test).

Adding a pyiqa-backed prior is one entry here: its files default to those the classification
table recorded for its metric (``dlmap.priors.pyiqa_nr``). NIQE, MS-LIQE and the training-free
statistics run their own code and read their metadata from here. No torch, no pyiqa.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from dlmap.weights.downloads import (
    FileSet,
    WeightFile,
    clip_file,
    pyiqa_file,
    timm_file,
    torchvision_file,
)

DLMAP_LICENCE = "MIT (dlmap's own code)"
PYIQA_LICENCE = "PolyForm-Noncommercial-1.0 (pyiqa's code); weights: their authors' terms"
PROVISIONAL = "provisional: mid-range and a quarter of the range, not fitted to MOS"


@dataclass(frozen=True)
class PriorInfo:
    """What the solver, tables and outputs need to know about a prior as built.

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


@dataclass(frozen=True)
class PriorSpec:
    """A prior, written once (see the module doc).

    calibration_source: where xi3 and xi4 come from ("provisional: ..." for constants nobody
    fitted to opinion scores). constants_for: the checkpoint they were fitted for ("-": none);
    calibration_fitted: fitted to opinion scores for the weights dlmap loads. pyiqa_metric:
    the pyiqa metric that implements the prior (None: dlmap's own code). weights: the files it
    reads, as a function listing them from their libraries' own constants (None: pyiqa_nr's
    recorded files of ``pyiqa_metric``, or no files); fetcher: ``(cache) -> (paths, source)``
    for a set not fetched from those URLs. table_one: a model of Table I (in row order).
    """

    name: str
    display_name: str
    reference: str
    training_set: str
    params: int | None
    score_range: tuple[float, float]
    xi3: float
    xi4: float
    calibration_source: str = PROVISIONAL
    constants_for: str = "-"
    calibration_fitted: bool = False
    higher_is_better: bool = True
    trained_on_mos: bool = True
    licence: str = PYIQA_LICENCE
    pyiqa_metric: str | None = None
    weights: Callable[[], tuple[WeightFile, ...]] | None = None
    weights_description: str = ""
    fetcher: Callable | None = None
    table_one: bool = False

    def info(self) -> PriorInfo:
        """The registry's metadata of the prior (nothing built, no weights needed)."""
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
            trained_on_mos=self.trained_on_mos,
            licence=self.licence,
        )

    def file_set(self) -> FileSet | None:
        """The weights catalogue's set of this prior (named like it), None if it reads none."""
        files = self.weights
        if files is None and self.pyiqa_metric is not None:
            files = _recorded_files(self.pyiqa_metric)
        if files is None:
            return None
        description = self.weights_description or f"{self.display_name} prior ({self.reference})"
        return FileSet(self.name, description, files, paper=self.table_one, fetcher=self.fetcher)


def _recorded_files(metric: str) -> Callable[[], tuple[WeightFile, ...]]:
    """The files the classification table records for a pyiqa metric, as a listing function."""

    def files() -> tuple[WeightFile, ...]:
        from dlmap.priors import pyiqa_nr

        recorded = pyiqa_nr.files_table().get(metric, ())
        return tuple(WeightFile(url, path, kind) for kind, url, path in recorded)

    return files


NIQE_LIVE_FILE = "niqe/modelparameters.mat"  # dlmap.priors.niqe_live.MODEL_FILE


def _niqe_live_fetch(cache=None) -> tuple[list, str]:
    from dlmap.priors import niqe_live  # numpy and scipy, only when fetching

    return niqe_live.fetch_with_source(cache)


SIX_SETS = "LIVE, CSIQ, BID, CLIVE, KonIQ-10k, KADID-10k"
AUTHORS = (
    "the paper's authors' public code (mapping_clean.py of their enhancement method), "
    "fitted on LIVE for pyiqa's {metric}"
)
# The authors' LIVE-fitted constants for plain CLIP-IQA (pyiqa's "clipiqa"): CLIPIQA+ has
# learned prompts, so they do not carry over; kept here to be named where CLIPIQA+ is listed.
CLIPIQA_XI3, CLIPIQA_XI4 = 0.383287415616992, 0.223077718907985
NIQE_FEATURES = 36  # 18 per scale, two scales (dlmap.priors.niqe_fit.FEATURES)
MSLIQE_AUTHORS_CONSTANTS = (
    "the paper's authors' public code (mapping_clean.py), fitted on LIVE for their own MS-LIQE "
    "checkpoint, which is not published"
)

PRIOR_SPECS: dict[str, PriorSpec] = {
    spec.name: spec
    for spec in (
        # --- Table I, in its row order ---
        PriorSpec(
            name="niqe",
            display_name="NIQE (dlmap-fitted pristine model, bundled photographs)",
            reference="Mittal, Soundararajan, Bovik, IEEE SPL 2013",
            training_set="pristine photographs",
            params=NIQE_FEATURES + NIQE_FEATURES**2,  # the pristine mean and covariance
            score_range=(0.0, 100.0),
            xi3=-10.0,
            xi4=5.0,
            calibration_source=(
                "provisional: centred on NIQE 10, 5 units per e-fold (wide, so that strongly "
                "degraded images keep a gradient), set by hand, not fitted to MOS"
            ),
            higher_is_better=False,
            trained_on_mos=False,
            licence=PYIQA_LICENCE + " (LIVE's pristine model) or ours (the fitted one)",
            weights=lambda: (pyiqa_file("niqe_arch", "url", NIQE_LIVE_FILE),),
            weights_description=(
                "NIQE's pristine model: LIVE's, from basicsr 1.4.2's source on PyPI or "
                "pyiqa's copy on the hub, recognised by its numbers"
            ),
            fetcher=_niqe_live_fetch,
            table_one=True,
        ),
        PriorSpec(
            name="clipiqa+",
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
            pyiqa_metric="clipiqa+",
            weights=lambda: (clip_file("RN50"), pyiqa_file("clipiqa_arch", "clipiqa+")),
            weights_description="CLIPIQA+ prior: OpenAI CLIP RN50 and the learned prompts",
            table_one=True,
        ),
        PriorSpec(
            name="paq2piq",
            display_name="PaQ-2-PiQ",
            reference="Ying et al., CVPR 2020",
            training_set="FLIVE",
            params=11_704_897,
            score_range=(0.0, 100.0),
            xi3=50.0,
            xi4=25.0,
            pyiqa_metric="paq2piq",
            weights=lambda: (
                torchvision_file("ResNet18_Weights.IMAGENET1K_V1"),
                pyiqa_file("paq2piq_arch", "url"),
            ),
            weights_description="PaQ-2-PiQ prior: ResNet-18 (ImageNet) and the FLIVE checkpoint",
            table_one=True,
        ),
        PriorSpec(
            name="hyperiqa",
            display_name="HyperIQA",
            reference="Su et al., CVPR 2020",
            training_set="KonIQ-10k",
            params=27_375_369,
            score_range=(0.0, 1.0),
            xi3=0.5,
            xi4=0.25,
            pyiqa_metric="hyperiqa",
            weights=lambda: (timm_file("resnet50"), pyiqa_file("hypernet_arch", "resnet50-koniq")),
            weights_description="HyperIQA prior: timm ResNet-50 and the KonIQ-10k checkpoint",
            table_one=True,
        ),
        PriorSpec(
            name="musiq",
            display_name="MUSIQ",
            reference="Ke et al., ICCV 2021",
            training_set="KonIQ-10k",
            params=27_125_825,
            score_range=(0.0, 100.0),
            xi3=43.539140163575430,
            xi4=16.786801106500807,
            calibration_source=AUTHORS.format(metric="musiq"),
            calibration_fitted=True,
            constants_for="pyiqa's `musiq_koniq_ckpt-e95806b9.pth`",
            pyiqa_metric="musiq",
            weights=lambda: (pyiqa_file("musiq_arch", "koniq10k"),),
            weights_description="MUSIQ prior: the KonIQ-10k checkpoint",
            table_one=True,
        ),
        PriorSpec(
            name="dbcnn",
            display_name="DBCNN",
            reference="Zhang et al., IEEE TCSVT 2020",
            training_set="KonIQ-10k",
            params=15_311_345,
            score_range=(0.0, 1.0),
            xi3=0.5,
            xi4=0.25,
            pyiqa_metric="dbcnn",
            weights=lambda: (
                torchvision_file("VGG16_Weights.IMAGENET1K_V1"),
                pyiqa_file("dbcnn_arch", "scnn"),
                pyiqa_file("dbcnn_arch", "koniq"),
            ),
            weights_description="DBCNN prior: VGG16 (ImageNet), SCNN and the KonIQ-10k checkpoint",
            table_one=True,
        ),
        PriorSpec(
            name="unique",
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
            constants_for="their own UNIQUE checkpoint, not pyiqa's `UNIQUE.pt`",
            pyiqa_metric="unique",
            weights=lambda: (
                torchvision_file("ResNet34_Weights.IMAGENET1K_V1"),
                pyiqa_file("unique_arch", "mix"),
            ),
            weights_description=(
                "UNIQUE prior: ResNet-34 (ImageNet) and the multi-dataset checkpoint"
            ),
            table_one=True,
        ),
        PriorSpec(
            name="liqe-mix",
            display_name="LIQE",  # the paper's name for it
            reference="Zhang et al., CVPR 2023",
            training_set=SIX_SETS,
            params=151_277_313,
            score_range=(1.0, 5.0),
            xi3=2.077636606942305,
            xi4=1.101934158051146,
            calibration_source=AUTHORS.format(metric="liqe_mix (15 patches, pyiqa's default)"),
            calibration_fitted=True,
            constants_for="pyiqa's `liqe_mix.pt`",
            pyiqa_metric="liqe_mix",
            weights=lambda: (clip_file("ViT-B/32"), pyiqa_file("liqe_arch", "mix")),
            weights_description=(
                "LIQE prior (pyiqa's liqe_mix): OpenAI CLIP ViT-B/32 and the multi-dataset weights"
            ),
            table_one=True,
        ),
        PriorSpec(  # the same network trained on KonIQ-10k alone (pyiqa's default `liqe`)
            name="liqe",
            display_name="LIQE (KonIQ-10k)",
            reference="Zhang et al., CVPR 2023",
            training_set="KonIQ-10k",
            params=151_277_313,
            score_range=(1.0, 5.0),
            xi3=3.0,
            xi4=1.0,
            pyiqa_metric="liqe",
            weights=lambda: (clip_file("ViT-B/32"), pyiqa_file("liqe_arch", "koniq")),
            weights_description=(
                "LIQE prior (pyiqa's liqe): OpenAI CLIP ViT-B/32 and the KonIQ-10k weights"
            ),
        ),
        # --- the paper's own model (Sec. V); its weights are the checkpoint you train ---
        PriorSpec(
            name="ms-liqe",
            display_name="MS-LIQE",
            reference="this paper, Sec. V",
            training_set=SIX_SETS,
            params=151_277_313,  # CLIP ViT-B/32 with its text tower (checked by the tests)
            score_range=(1.0, 5.0),
            xi3=1.984470232985137,
            xi4=0.939839104077352,
            calibration_source=(
                f"provisional: {MSLIQE_AUTHORS_CONSTANTS}; the workflow fits a trained "
                "checkpoint's own (calibration.priors), or `dlmap calibrate --prior ms-liqe`"
            ),
            constants_for="their own MS-LIQE checkpoint, not published",
            licence=DLMAP_LICENCE + "; CLIP (open_clip, MIT); weights: the checkpoint you train",
        ),
        # --- training-free image statistics (dlmap.priors.statistics), no weights ---
        PriorSpec(
            name="colorfulness",
            display_name="Colourfulness",
            reference="Hasler and Suesstrunk, Proc. SPIE 5007, 2003",
            training_set="-",
            params=0,
            score_range=(0.0, 150.0),
            xi3=33.0,
            xi4=15.0,
            calibration_source=("set from the published verbal scale, not fitted to MOS"),
            licence=DLMAP_LICENCE,
        ),
        PriorSpec(
            name="sharpness",
            display_name="Sharpness (log Laplacian variance)",
            reference="Pech-Pacheco et al., ICPR 2000",
            training_set="-",
            params=0,
            score_range=(0.0, 12.0),
            xi3=5.5,
            xi4=1.0,
            calibration_source=("set by hand from typical photographs, not fitted to MOS"),
            licence=DLMAP_LICENCE,
        ),
    )
}

PAPER_PRIORS = tuple(name for name, spec in PRIOR_SPECS.items() if spec.table_one)
"""The eight NR-IQA models of Table I, in its row order."""
PYIQA_SPECS = {name: spec for name, spec in PRIOR_SPECS.items() if spec.pyiqa_metric}
"""The priors that a pyiqa metric implements (``dlmap.priors.zoo`` registers them)."""
PYIQA_PREFIX = "pyiqa:"
"""``pyiqa:NAME`` names pyiqa's metric NAME as a prior (``dlmap.priors.registry``)."""
PAPER_METRICS = {spec.pyiqa_metric: name for name, spec in PYIQA_SPECS.items()} | {"niqe": "niqe"}
"""pyiqa metric -> the prior that already serves it (dlmap's NIQE runs pyiqa's niqe)."""


def file_sets() -> tuple[FileSet, ...]:
    """The weights catalogue's set of every prior that reads files, in ``PRIOR_SPECS`` order."""
    return tuple(s for spec in PRIOR_SPECS.values() if (s := spec.file_set()) is not None)
