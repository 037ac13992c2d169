"""Checkpoints fetched from plain URLs: the priors' and the comparison metrics' files.

``FILE_SETS`` names every set of such files: one per pyiqa prior (its checkpoint and the
ImageNet or CLIP backbone pyiqa builds first), NIQE's pristine model (LIVE's, which
``dlmap.priors.niqe_live`` fetches from PyPI or the hub and recognises by its numbers), and the
networks of the comparison metrics (LPIPS's AlexNet, DISTS's VGG16 and the CLIP ViT-B/32 used
for semantic distance and as MS-LIQE's starting point). URLs come from pyiqa's, torchvision's,
timm's and OpenAI CLIP's own constants, never typed here. Files live under the dlmap cache
(``dlmap.weights.cache.cache_dir``), where pyiqa finds them once torch's hub folder points at
``<cache>/torch`` (``zoo.torch_hub_dir``); timm's go to the Hugging Face hub cache.

Only ``fetch`` downloads. Where a source publishes a file's sha256, the download is checked
against it and deleted on mismatch: OpenAI's CLIP URLs contain the full sha256, torchvision's
file names its first digits (torch.hub's convention), and Hugging Face records the sha256 of
every LFS file (pyiqa's checkpoints and timm's weights live there). Every file's sha256 is
also recorded in the cache's manifest at first placement and checked on later loads.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from dlmap.weights import cache as weights


@dataclass(frozen=True)
class WeightFile:
    """One downloadable file: where it comes from and where (under the cache) it must be."""

    url: str
    path: str  # relative to the dlmap cache
    kind: str  # "pyiqa", "torchvision", "clip" or "timm" (a Hugging Face hub repository)

    def published_sha256(self) -> str | None:
        """The sha256 (or, for torchvision, its leading digits) that the URL itself states."""
        if self.kind == "clip":
            match = re.search(r"/([0-9a-f]{64})/[^/]+$", urlparse(self.url).path)
            return match.group(1) if match else None
        if self.kind == "torchvision":
            match = re.search(r"-([0-9a-f]{8,})\.\w+$", urlparse(self.url).path)
            return match.group(1) if match else None
        return None


@dataclass(frozen=True)
class FileSet:
    name: str
    description: str
    files: callable  # () -> tuple[WeightFile, ...]; imports pyiqa etc. only when asked
    paper: bool = True  # needed to reproduce the paper (else an alternative)
    fetcher: callable = None  # (cache) -> placed paths, for a set not fetched from plain URLs


def _pyiqa(arch: str, key: str, path: str | None = None) -> WeightFile:
    import importlib

    url = importlib.import_module(f"pyiqa.archs.{arch}").default_model_urls[key]
    return WeightFile(url, path or f"torch/pyiqa/{os.path.basename(urlparse(url).path)}", "pyiqa")


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
    return WeightFile(f"https://huggingface.co/{repo}", repo, "timm")


NIQE_OFFICIAL = "niqe/modelparameters.mat"  # dlmap.priors.niqe_live.MODEL_FILE


def _niqe_live_fetch(cache=None) -> list[Path]:
    from dlmap.priors import niqe_live

    return niqe_live.fetch(cache)

FILE_SETS: dict[str, FileSet] = {
    entry.name: entry
    for entry in (
        FileSet(
            "niqe",
            "NIQE's pristine model: LIVE's, from basicsr 1.4.2's source on PyPI or pyiqa's copy "
            "on the hub, recognised by its numbers",
            lambda: (_pyiqa("niqe_arch", "url", NIQE_OFFICIAL),),
            fetcher=_niqe_live_fetch,
        ),
        FileSet(
            "dbcnn",
            "DBCNN prior: VGG16 (ImageNet), SCNN and the KonIQ-10k checkpoint",
            lambda: (
                _torchvision("VGG16_Weights.IMAGENET1K_V1"),
                _pyiqa("dbcnn_arch", "scnn"),
                _pyiqa("dbcnn_arch", "koniq"),
            ),
        ),
        FileSet(
            "hyperiqa",
            "HyperIQA prior: timm ResNet-50 and the KonIQ-10k checkpoint",
            lambda: (_timm("resnet50"), _pyiqa("hypernet_arch", "resnet50-koniq")),
        ),
        FileSet(
            "paq2piq",
            "PaQ-2-PiQ prior: ResNet-18 (ImageNet) and the FLIVE checkpoint",
            lambda: (_torchvision("ResNet18_Weights.IMAGENET1K_V1"), _pyiqa("paq2piq_arch", "url")),
        ),
        FileSet(
            "unique",
            "UNIQUE prior: ResNet-34 (ImageNet) and the multi-dataset checkpoint",
            lambda: (_torchvision("ResNet34_Weights.IMAGENET1K_V1"), _pyiqa("unique_arch", "mix")),
        ),
        FileSet(
            "musiq",
            "MUSIQ prior: the KonIQ-10k checkpoint",
            lambda: (_pyiqa("musiq_arch", "koniq10k"),),
        ),
        FileSet(
            "clipiqa+",
            "CLIPIQA+ prior: OpenAI CLIP RN50 and the learned prompts",
            lambda: (_clip("RN50"), _pyiqa("clipiqa_arch", "clipiqa+")),
        ),
        FileSet(
            "liqe",
            "LIQE prior (pyiqa's liqe_mix): OpenAI CLIP ViT-B/32 and the multi-dataset weights",
            lambda: (_clip("ViT-B/32"), _pyiqa("liqe_arch", "mix")),
        ),
        FileSet(
            "clip-vit-b-32",
            "OpenAI CLIP ViT-B/32: semantic distance D2 (Eq. 18) and MS-LIQE's initialisation",
            lambda: (_clip("ViT-B/32"),),
        ),
        FileSet(
            "lpips",
            "LPIPS (D1 of Eq. 18): AlexNet (ImageNet); its linear layers ship with `lpips`",
            lambda: (_torchvision("AlexNet_Weights.IMAGENET1K_V1"),),
        ),
        FileSet(
            "dists",
            "DISTS (an alternative D1): VGG16 (ImageNet); alpha/beta ship with `dists-pytorch`",
            lambda: (_torchvision("VGG16_Weights.IMAGENET1K_V1"),),
            paper=False,
        ),
    )
}


def files(name: str) -> tuple[WeightFile, ...]:
    if name not in FILE_SETS:
        raise KeyError(f"unknown file set {name!r}; known: {', '.join(sorted(FILE_SETS))}")
    return tuple(FILE_SETS[name].files())


def local_path(file: WeightFile, cache=None) -> Path | None:
    """Where ``file`` is (or must be) on disk; for a timm repository, its cached weights file
    if present, else None."""
    if file.kind != "timm":
        return weights.cache_dir(cache) / file.path
    from huggingface_hub import try_to_load_from_cache

    repo = file.url.removeprefix("https://huggingface.co/")
    for name in ("model.safetensors", "pytorch_model.bin"):
        found = try_to_load_from_cache(repo, name)
        if isinstance(found, str):
            return Path(found)
    return None


def missing_files(name: str, cache=None) -> list[WeightFile]:
    """The files of set ``name`` that are not on disk."""
    missing = []
    for file in files(name):
        path = local_path(file, cache)
        if path is None or not path.is_file():
            missing.append(file)
    return missing


def present_paths(name: str, cache=None) -> list[tuple[WeightFile, Path]]:
    found = [(file, local_path(file, cache)) for file in files(name)]
    return [(file, path) for file, path in found if path is not None and path.is_file()]


def missing_message(name: str, missing: list[WeightFile], cache=None) -> str:
    """One line: the missing files, their URLs, the folder and the command that fetches them."""
    listed = "; ".join(
        f"{file.path if file.kind != 'timm' else file.path + ' (Hugging Face hub cache)'}"
        f" <- {file.url}"
        for file in missing
    )
    return (
        f"{FILE_SETS[name].description}: missing in {weights.cache_dir(cache)}: {listed}; "
        f"fetch them with `dlmap weights fetch {name}`"
    )


def check_published(file: WeightFile, digest: str, expected: str | None = None) -> None:
    """Raise ``ChecksumError`` if ``digest`` disagrees with the sha256 its source publishes
    (``expected`` if given, else the one in the URL; nothing to check without either)."""
    expected = expected or file.published_sha256()
    if expected is not None and not digest.startswith(expected):
        raise weights.ChecksumError(
            f"{file.path}: sha256 {digest} does not match the {expected} published for "
            f"{file.url}; delete the file and fetch it again"
        )


def verify(name: str, cache=None, full: bool = False) -> int:
    """Check every present file of ``name`` against our manifest and against the sha256 its
    URL publishes; returns how many were checked against a published sha256."""
    present = present_paths(name, cache)
    recorded = weights.verify_files([path for _, path in present], cache, full=full)
    published = 0
    for file, path in present:
        check_published(file, recorded[str(path.resolve())])
        published += file.published_sha256() is not None
    return published


def require(name: str, cache=None, full: bool = False) -> int:
    """Every file of set ``name`` present (else one ``WeightsMissingError`` naming the files,
    their URLs, the folder and the fetch command) and verified (``verify``)."""
    missing = missing_files(name, cache)
    if missing:
        raise weights.WeightsMissingError(missing_message(name, missing, cache))
    return verify(name, cache, full=full)


def _hub_sha256(url: str) -> str | None:
    """The LFS sha256 Hugging Face records for a ``.../resolve/<revision>/<file>`` URL."""
    from huggingface_hub import HfApi

    match = re.match(r"https://huggingface\.co/(.+?/.+?)/resolve/([^/]+)/(.+)$", url)
    if match is None:
        return None
    repo, revision, filename = match.group(1), match.group(2), unquote(match.group(3))
    info = HfApi().get_paths_info(repo, [filename], revision=revision)
    lfs = getattr(info[0], "lfs", None) if info else None
    return getattr(lfs, "sha256", None)


def fetch(name: str, cache=None) -> list[Path]:
    """Download the missing files of set ``name`` (the only function here that downloads),
    check each against its published sha256 and record it in the manifest."""
    import torch
    from huggingface_hub import hf_hub_download

    if FILE_SETS[name].fetcher is not None:
        placed = FILE_SETS[name].fetcher(cache)
        verify(name, cache)
        return placed
    placed = []
    for file in missing_files(name, cache):
        if file.kind == "timm":  # into the Hugging Face hub cache, where timm looks
            repo = file.url.removeprefix("https://huggingface.co/")
            path = Path(hf_hub_download(repo, "model.safetensors"))
            expected = _hub_sha256(f"{file.url}/resolve/main/model.safetensors")
            check_published(file, weights.sha256_of(path), expected)
            placed.append(path)
            continue
        path = weights.cache_dir(cache) / file.path
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.part")
        torch.hub.download_url_to_file(file.url, str(temporary), progress=True)
        try:
            check_published(file, weights.sha256_of(temporary), _hub_sha256(file.url))
        except weights.ChecksumError:
            temporary.unlink()
            raise
        os.replace(temporary, path)
        placed.append(path)
    verify(name, cache)
    return placed
