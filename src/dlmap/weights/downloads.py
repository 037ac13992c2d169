"""Weight sets fetched from plain URLs: the priors' and the comparison metrics' checkpoints.

A ``FileSet`` lists its files lazily (``resolve``), so that the URLs come from pyiqa's,
torchvision's, timm's and OpenAI CLIP's own constants (``pyiqa_file``, ``torchvision_file``,
``clip_file``, ``timm_file``), never typed here, and pyiqa is imported only when asked. Files
live under the dlmap cache (``dlmap.weights.cache.cache_dir``), where pyiqa finds them once
torch's hub folder points at ``<cache>/torch`` (``zoo.torch_hub_dir``); timm's go to the
Hugging Face hub cache.

Only ``FileSet.fetch`` downloads. Where a source publishes a file's sha256, the download is
checked against it and deleted on mismatch: OpenAI's CLIP URLs contain the full sha256,
torchvision's file names its first digits (torch.hub's convention), and Hugging Face records
the sha256 of every LFS file (pyiqa's checkpoints and timm's weights live there). Every file's
sha256 is also recorded in the cache's manifest at first placement and checked on later loads.
"""

from __future__ import annotations

import csv
import functools
import importlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from dlmap.files import sha256_file
from dlmap.weights import cache as weights
from dlmap.weights import sources
from dlmap.weights.fetching import FAILED, FETCHED, PRESENT, Attempt, FetchResult, Wanted


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
    """Files fetched from URLs into the cache. ``resolve`` lists them (imports pyiqa, timm or
    torchvision only when called); ``paper``: needed to reproduce the paper (else an
    alternative); ``fetcher``: (cache) -> placed paths, for a set not fetched from its URLs."""

    name: str
    description: str
    resolve: Callable[[], tuple[WeightFile, ...]]
    paper: bool = True
    fetcher: Callable | None = None

    def files(self) -> tuple[WeightFile, ...]:
        return tuple(self.resolve())

    def where(self, cache=None) -> Path:
        """The folder the files are placed under: the cache itself."""
        return weights.cache_dir(cache)

    def outputs(self, cache=None) -> list[Path]:
        """What the workflow's fetch rule produces: the files in the dlmap cache (timm's,
        in the Hugging Face hub cache, are not tracked)."""
        return [local_path(file, cache) for file in self.files() if file.kind != "timm"]

    def missing_files(self, cache=None) -> list[WeightFile]:
        """The files that are not on disk."""
        missing = []
        for file in self.files():
            path = local_path(file, cache)
            if path is None or not path.is_file():
                missing.append(file)
        return missing

    def present_paths(self, cache=None) -> list[tuple[WeightFile, Path]]:
        found = [(file, local_path(file, cache)) for file in self.files()]
        return [(file, path) for file, path in found if path is not None and path.is_file()]

    def missing_message(self, missing: list[WeightFile], cache=None) -> str:
        """One line: the missing files, their URLs, the folder and the fetch command."""
        listed = "; ".join(
            f"{file.path if file.kind != 'timm' else file.path + ' (Hugging Face hub cache)'}"
            f" <- {file.url}"
            for file in missing
        )
        return (
            f"{self.description}: missing in {weights.cache_dir(cache)}: {listed}; "
            f"fetch them with `dlmap weights fetch {self.name}`"
        )

    def verify(self, cache=None, full: bool = False) -> int:
        """Check every present file against our manifest and against the sha256 its URL
        publishes; returns how many were checked against a published sha256."""
        present = self.present_paths(cache)
        recorded = weights.verify_files([path for _, path in present], cache, full=full)
        published = 0
        for file, path in present:
            check_published(file, recorded[str(path.resolve())])
            published += file.published_sha256() is not None
        return published

    def set_aside_damaged(self, cache=None) -> list[Path]:
        """Each present file that fails its check (a size or sha256 other than the one
        recorded at first placement, or than its URL publishes) moved aside to ``NAME.bad``,
        so that a fetch replaces it; its manifest record stays, so the replacement must be
        the same file. Returns the files set aside."""
        aside = []
        for file, path in self.present_paths(cache):
            try:
                recorded = weights.verify_files([path], cache)
                check_published(file, recorded[str(path.resolve())])
            except weights.ChecksumError as error:
                weights.set_aside(path, error)
                aside.append(path)
        return aside

    def require(self, cache=None, full: bool = False) -> int:
        """Every file present (else one ``WeightsMissingError`` naming the files, their URLs,
        the folder and the fetch command) and verified (``verify``)."""
        missing = self.missing_files(cache)
        if missing:
            raise weights.WeightsMissingError(self.missing_message(missing, cache))
        return self.verify(cache, full=full)

    def provenance(self, cache=None) -> list[dict]:
        """``require``, then each file's path, URL and sha256, for the records of results."""
        self.require(cache)
        present = self.present_paths(cache)
        digests = weights.verify_files([path for _, path in present], cache)
        return [
            {"file": str(path), "url": file.url, "sha256": digests[str(path.resolve())]}
            for file, path in present
        ]

    def check(self, cache=None, full: bool = False) -> str:
        """Present and unchanged (``full``: re-hash every file), else raise; says where."""
        published = self.require(cache, full=full)
        note = f"; {published} against the published sha256" if published else ""
        return f"present in {weights.cache_dir(cache)} (sha256 verified{note})"

    def fetch(self, cache=None, mirrors=(), progress: bool = True) -> FetchResult:
        """Bring the missing files into the cache (the only method here that downloads): each
        from the mirrors (``<mirror>/<its path in the cache>``), then its own URL (a
        huggingface.co URL through ``$HF_ENDPOINT`` when set); each checked against the
        sha256 its source publishes and recorded in the manifest. Never raises for a host's
        failure: returns what happened (``FetchResult``)."""
        from dlmap.weights.fetching import fetch_files

        self.set_aside_damaged(cache)
        if not self.missing_files(cache):
            self.verify(cache)
            return FetchResult(self.name, PRESENT)
        if self.fetcher is not None:  # raises WeightsMissingError when no source works
            _, label = self.fetcher(cache)
            self.require(cache)
            return FetchResult(self.name, FETCHED, label)
        used, attempts = [], []
        for file in self.missing_files(cache):
            if file.kind == "timm":  # into the Hugging Face hub cache, where timm looks
                try:
                    _download_timm(file)
                except sources.DownloadError as error:
                    attempts.append(Attempt(file.url, str(error)))
                    continue
                used.append(sources.hub_endpoint())
                continue
            target = weights.cache_dir(cache) / file.path
            wanted = Wanted(file.path, target, file.published_sha256())
            tried = [*mirrors, sources.FixedUrl(file.url)]
            labels, failed, _ = fetch_files([wanted], tried, cache, progress)
            used += labels
            attempts += failed
        used = ", ".join(dict.fromkeys(used)) or "-"
        still = self.missing_files(cache)
        if still:
            todo = "; ".join(f"{f.path} <- {f.url}" for f in still)
            todo = f"still missing: {todo}; retry, or place them by hand"
            return FetchResult(self.name, FAILED, used, todo, attempts)
        self.verify(cache)
        return FetchResult(self.name, FETCHED, used, "-", attempts)


def _download_timm(file: WeightFile) -> Path:
    """A timm network's weights into the Hugging Face hub cache (where timm looks), checked
    against the sha256 the hub records; host errors as one-line ``DownloadError``."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    repo = file.url.removeprefix("https://huggingface.co/")
    sources.reachable(sources.hub_url_source(f"{file.url}/resolve/main/model.safetensors"))
    try:
        path = Path(hf_hub_download(repo, "model.safetensors", endpoint=sources.hub_endpoint()))
        expected = _hub_sha256(f"{file.url}/resolve/main/model.safetensors")
    except (HfHubHTTPError, LocalEntryNotFoundError, OSError) as error:
        first = " ".join(str(error).split())[:300]
        raise sources.DownloadError(f"Hugging Face {repo}: {first}") from None
    check_published(file, sha256_file(path), expected)
    return path


LIBRARY_VALUES = Path(__file__).with_name("library_values.csv")
"""The weight URLs (and timm's hub repositories) that dlmap reads from its libraries' own
constants, recorded so that listing a weight set imports none of pyiqa, torchvision or timm
(the workflow lists every set while it builds its DAG). tests/test_library_values.py checks
every row against the installed libraries and that every lookup finds its row."""


@functools.cache
def library_values() -> dict[tuple[str, str], str]:
    """``LIBRARY_VALUES`` as {(library, key): value}."""
    with LIBRARY_VALUES.open(newline="") as table:
        return {(row["library"], row["key"]): row["value"] for row in csv.DictReader(table)}


def library_value(library: str, key: str, lookup) -> str:
    """The recorded value of ``key`` in ``library``; ``lookup()`` (which imports the library)
    only for a key the table does not hold."""
    recorded = library_values().get((library, key))
    return recorded if recorded is not None else lookup()


def _pyiqa_url(arch: str, key: str) -> str:
    return importlib.import_module(f"pyiqa.archs.{arch}").default_model_urls[key]


def _torchvision_url(weights_enum: str) -> str:
    import torchvision

    enum_name, member = weights_enum.split(".")
    return getattr(getattr(torchvision.models, enum_name), member).url


def _clip_url(name: str) -> str:
    from pyiqa.archs.clip_model import _MODELS

    return _MODELS[name]


def _timm_repo(name: str) -> str:
    import timm

    return timm.models.get_pretrained_cfg(name).hf_hub_id


#: each library's lookup by key: what ``LIBRARY_VALUES`` records
LOOKUPS = {
    "pyiqa": lambda key: _pyiqa_url(*key.split(":")),
    "torchvision": _torchvision_url,
    "clip": _clip_url,
    "timm": _timm_repo,
}


def pyiqa_file(arch: str, key: str, path: str | None = None) -> WeightFile:
    """A checkpoint from ``pyiqa.archs.<arch>.default_model_urls[key]``."""
    url = library_value("pyiqa", f"{arch}:{key}", lambda: _pyiqa_url(arch, key))
    return WeightFile(url, path or f"torch/pyiqa/{os.path.basename(urlparse(url).path)}", "pyiqa")


def torchvision_file(weights_enum: str) -> WeightFile:
    """An ImageNet network from torchvision's weights enum, e.g. ``VGG16_Weights.IMAGENET1K_V1``."""
    url = library_value("torchvision", weights_enum, lambda: _torchvision_url(weights_enum))
    return WeightFile(
        url, f"torch/checkpoints/{os.path.basename(urlparse(url).path)}", "torchvision"
    )


def clip_file(name: str) -> WeightFile:
    """An OpenAI CLIP checkpoint, from the URL table pyiqa copies from OpenAI's package."""
    url = library_value("clip", name, lambda: _clip_url(name))
    return WeightFile(url, f"torch/clip/{os.path.basename(url)}", "clip")


def timm_file(name: str) -> WeightFile:
    """A timm network's pretrained weights (a Hugging Face hub repository)."""
    repo = library_value("timm", name, lambda: _timm_repo(name))
    return WeightFile(f"https://huggingface.co/{repo}", repo, "timm")


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


def check_published(file: WeightFile, digest: str, expected: str | None = None) -> None:
    """Raise ``ChecksumError`` if ``digest`` disagrees with the sha256 its source publishes
    (``expected`` if given, else the one in the URL; nothing to check without either)."""
    expected = expected or file.published_sha256()
    if expected is not None and not digest.startswith(expected):
        raise weights.ChecksumError(
            f"{file.path}: sha256 {digest} does not match the {expected} published for "
            f"{file.url}; delete the file and fetch it again"
        )


def _hub_sha256(url: str) -> str | None:
    """The LFS sha256 Hugging Face records for a ``.../resolve/<revision>/<file>`` URL."""
    from huggingface_hub import HfApi

    match = re.match(r"https://huggingface\.co/(.+?/.+?)/resolve/([^/]+)/(.+)$", url)
    if match is None:
        return None
    repo, revision, filename = match.group(1), match.group(2), unquote(match.group(3))
    hub = HfApi(endpoint=sources.hub_endpoint())
    info = hub.get_paths_info(repo, [filename], revision=revision)
    lfs = getattr(info[0], "lfs", None) if info else None
    return getattr(lfs, "sha256", None)
