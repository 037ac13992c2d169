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
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch
import torch.nn.functional as F

from dlmap import weights
from dlmap.priors import Prior, PriorInfo, register_prior


@dataclass(frozen=True)
class WeightFile:
    """One file pyiqa reads: where it comes from and where (under the cache) it must be."""

    url: str
    path: str  # relative to the dlmap cache
    kind: str  # "pyiqa", "torchvision", "clip" or "timm" (a Hugging Face hub file)


def _pyiqa(arch: str, key: str) -> WeightFile:
    import importlib

    url = importlib.import_module(f"pyiqa.archs.{arch}").default_model_urls[key]
    return WeightFile(url, f"torch/pyiqa/{os.path.basename(urlparse(url).path)}", "pyiqa")


def _torchvision(weights_enum: str) -> WeightFile:
    import torchvision

    enum_name, member = weights_enum.split(".")
    url = getattr(getattr(torchvision.models, enum_name), member).url
    return WeightFile(
        url, f"torch/checkpoints/{os.path.basename(urlparse(url).path)}", "torchvision"
    )


def _clip(name: str) -> WeightFile:
    from pyiqa.archs.clip_model import _MODELS

    url = _MODELS[name]
    return WeightFile(url, f"torch/clip/{os.path.basename(url)}", "clip")


def _timm(name: str) -> WeightFile:
    import timm

    repo = timm.models.get_pretrained_cfg(name).hf_hub_id
    return WeightFile(f"https://huggingface.co/{repo}", f"huggingface/{repo}", "timm")


@dataclass(frozen=True)
class PyiqaModel:
    """A model of Table I as pyiqa provides it. ``files`` is a function (pyiqa and its
    backbones are imported only when asked). xi3/xi4: Eq. 21 constants on the
    direction-corrected raw scale; ``calibration_source`` says where they come from."""

    name: str
    metric: str
    display_name: str
    reference: str
    training_set: str
    higher_is_better: bool
    score_range: tuple[float, float]
    xi3: float
    xi4: float
    calibration_source: str
    files: callable

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
        )


MIN_SIDE = 224
PROVISIONAL = "provisional: mid-range and a quarter of the range, not fitted to MOS"

PYIQA_MODELS: dict[str, PyiqaModel] = {
    model.name: model
    for model in (
        PyiqaModel(
            "dbcnn",
            "dbcnn",
            "DBCNN",
            "Zhang et al., IEEE TCSVT 2020",
            "KonIQ-10k",
            True,
            (0.0, 1.0),
            0.5,
            0.25,
            PROVISIONAL,
            lambda: (
                _torchvision("VGG16_Weights.IMAGENET1K_V1"),
                _pyiqa("dbcnn_arch", "scnn"),
                _pyiqa("dbcnn_arch", "koniq"),
            ),
        ),
        PyiqaModel(
            "hyperiqa",
            "hyperiqa",
            "HyperIQA",
            "Su et al., CVPR 2020",
            "KonIQ-10k",
            True,
            (0.0, 1.0),
            0.5,
            0.25,
            PROVISIONAL,
            lambda: (_timm("resnet50"), _pyiqa("hypernet_arch", "resnet50-koniq")),
        ),
        PyiqaModel(
            "paq2piq",
            "paq2piq",
            "PaQ-2-PiQ",
            "Ying et al., CVPR 2020",
            "FLIVE",
            True,
            (0.0, 100.0),
            50.0,
            25.0,
            PROVISIONAL,
            lambda: (_torchvision("ResNet18_Weights.IMAGENET1K_V1"), _pyiqa("paq2piq_arch", "url")),
        ),
        PyiqaModel(
            "unique",
            "unique",
            "UNIQUE",
            "Zhang et al., IEEE TIP 2021",
            "LIVE, CSIQ, KADID-10k, BID, CLIVE, KonIQ-10k",
            True,
            (-3.0, 3.0),
            0.0,
            1.5,
            PROVISIONAL,
            lambda: (_torchvision("ResNet34_Weights.IMAGENET1K_V1"), _pyiqa("unique_arch", "mix")),
        ),
        PyiqaModel(
            "musiq",
            "musiq",
            "MUSIQ",
            "Ke et al., ICCV 2021",
            "KonIQ-10k",
            True,
            (0.0, 100.0),
            50.0,
            25.0,
            PROVISIONAL,
            lambda: (_pyiqa("musiq_arch", "koniq10k"),),
        ),
        PyiqaModel(
            "clipiqa+",
            "clipiqa+",
            "CLIPIQA+",
            "Wang et al., AAAI 2023",
            "KonIQ-10k",
            True,
            (0.0, 1.0),
            0.5,
            0.25,
            PROVISIONAL,
            lambda: (_clip("RN50"), _pyiqa("clipiqa_arch", "clipiqa+")),
        ),
        PyiqaModel(
            "liqe",
            "liqe_mix",
            "LIQE",
            "Zhang et al., CVPR 2023",
            "LIVE, CSIQ, KADID-10k, BID, CLIVE, KonIQ-10k",
            True,
            (1.0, 5.0),
            3.0,
            1.0,
            PROVISIONAL,
            lambda: (_clip("ViT-B/32"), _pyiqa("liqe_arch", "mix")),
        ),
    )
}


def missing_files(model: PyiqaModel, cache=None) -> list[WeightFile]:
    """The files of ``model`` that are not in the cache (timm's go to the hub cache)."""
    root = weights.cache_dir(cache)
    missing = []
    for file in model.files():
        if file.kind == "timm":
            if not _timm_cached(file.url.removeprefix("https://huggingface.co/")):
                missing.append(file)
        elif not (root / file.path).is_file():
            missing.append(file)
    return missing


def _timm_cached(repo: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return any(
        isinstance(try_to_load_from_cache(repo, name), str)
        for name in ("model.safetensors", "pytorch_model.bin")
    )


def fetch(name: str, cache=None) -> list[Path]:
    """Download every file of prior ``name`` that is not in the cache yet (the only function
    here that downloads); timm's backbone goes to the Hugging Face hub cache."""
    from huggingface_hub import hf_hub_download

    root = weights.cache_dir(cache)
    placed = []
    for file in missing_files(PYIQA_MODELS[name], cache):
        if file.kind == "timm":
            repo = file.url.removeprefix("https://huggingface.co/")
            placed.append(Path(hf_hub_download(repo, "model.safetensors")))
            continue
        target = root / file.path
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.part")
        torch.hub.download_url_to_file(file.url, str(temporary), progress=True)
        os.replace(temporary, target)
        placed.append(target)
    local = [root / f.path for f in PYIQA_MODELS[name].files() if f.kind != "timm"]
    weights.verify_files(local, cache)  # our sha256 record, checked on later loads
    return placed


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

    Raises ``WeightsMissingError`` (one line: files, URLs, folder) before building anything
    if a file is missing from the cache.
    """

    def __init__(self, name: str, cache=None):
        super().__init__()
        model = PYIQA_MODELS[name]
        missing = missing_files(model, cache)
        present = [weights.cache_dir(cache) / f.path for f in model.files() if f.kind != "timm"]
        weights.verify_files([p for p in present if p.is_file()], cache)
        if missing:
            listed = "; ".join(f"{file.path} <- {file.url}" for file in missing)
            raise weights.WeightsMissingError(
                f"{model.display_name} prior: missing in {weights.cache_dir(cache)}: {listed}; "
                f"fetch them with `dlmap weights fetch {name}`"
            )
        import pyiqa

        with torch_hub_dir(weights.cache_dir(cache) / "torch"):
            self.metric = pyiqa.create_metric(
                model.metric, as_loss=True, loss_reduction="none", device="cpu"
            )
        self.info = model.info()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Raw scores; images with a side under 224 are first upsampled (bilinear) so that
        the shorter side is 224, the smallest input every model of Table I accepts."""
        shorter = min(images.shape[-2:])
        if shorter < MIN_SIDE:
            size = [round(side * MIN_SIDE / shorter) for side in images.shape[-2:]]
            images = F.interpolate(images, size=size, mode="bilinear", align_corners=False)
        return self.metric(images).reshape(images.shape[0])


def _factory(name: str):
    def build(cache=None) -> PyiqaPrior:
        return PyiqaPrior(name, cache=cache)

    build.info = PYIQA_MODELS[name].info()  # metadata without weights (priors.prior_info)
    return build


for _name in PYIQA_MODELS:
    register_prior(_name)(_factory(_name))
