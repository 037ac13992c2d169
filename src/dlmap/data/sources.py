"""The seven IQA data sets: one table of facts, where each set comes from, and fetching.

``SETS`` is the only place that states a set's files, score range and direction, expected
size and source; the readers in ``dlmap.data.readers`` (whose docstrings say where each
format fact comes from) rely on it. Each set lives in
``<data root>/<name>/`` laid out exactly as its official archive unpacks (the set's own top
folder, e.g. LIVE's ``databaserelease2/``, is dropped). The data root is ``--root``, else
``$DLMAP_DATA``, else ``~/.cache/dlmap/data``.

Only ``fetch`` downloads, and only sets whose files have a public, direct URL (CSIQ,
KonIQ-10k, KADID-10k). None of them publishes a checksum, so the sha256 of each downloaded
file is recorded at first download in ``<data root>/sha256-manifest.json`` by
``dlmap.weights.cache.verify_files`` and checked on every later download. LIVE and LIVE Challenge
need a request form, BID and SPAQ come from web folders: ``manual_steps`` says what to do.

Sources of the table: ranges and directions as docs/data.md lists them, CSIQ's readme as
quoted by public loaders (DMOS in [0, 1], 1 the worst) and KADID-10k's page (``dmos`` is a
1-5 MOS); counts: LIVE 982 entries less 203 reference copies, CSIQ 866 (30 references),
BID 586 (its loaders read rows 2-587), LIVE Challenge 1169 less 7 training images, KonIQ-10k
10073, KADID-10k 81 x 25 x 5 = 10125, SPAQ 11125 (h4nwei/SPAQ README); URLs from the
sets' pages (KonIQ and KADID archives on datasets.vqa.mmsp-kn.de, CSIQ's files under
s2.smu.edu/~eclarson/csiq/) as public download scripts use them.
"""

from __future__ import annotations

import difflib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from dlmap.errors import DlmapError, InputError
from dlmap.weights import cache as weights
from dlmap.weights.folders import present_files

DATA_ENV = "DLMAP_DATA"


class DatasetError(DlmapError, RuntimeError):
    """A data set is missing, incomplete or malformed (the message is one line)."""


class DatasetMissingError(DatasetError):
    """A data set's folder or one of its score or known files is not in place."""


class UnknownDatasetError(InputError):
    """A name that is not in ``SETS``."""


@dataclass(frozen=True)
class Download:
    """A file with a public, direct URL and what it provides: ``members`` are paths relative
    to the set's folder (a zip archive is unpacked and each member looked up by name, at any
    depth; an archive without a top folder becomes the member itself)."""

    url: str
    members: tuple[str, ...]
    sha256: str | None = None  # a checksum published by the source (none of ours has one)

    @property
    def file_name(self) -> str:
        return os.path.basename(urlparse(self.url).path)

    @property
    def is_archive(self) -> bool:  # by name: an .xlsx file is a zip file too
        return self.file_name.lower().endswith(".zip")


@dataclass(frozen=True)
class DatasetSpec:
    """The facts about one set. ``score_files`` and ``known_files`` are paths relative to the
    set's folder (a tuple entry lists alternatives); ``count`` is the number of manifest
    entries (references and LIVE Challenge's training images excluded); ``parts`` is LIVE's
    (folder, entries) in ``dmos.mat`` order."""

    name: str
    title: str
    page: str
    score_files: tuple
    known_files: tuple
    score: str
    low: float
    high: float
    higher_is_better: bool
    split_by: str  # "reference" (synthetic distortions) or "image" (authentic)
    count: int
    downloads: tuple[Download, ...] = ()
    manual: str = ""
    parts: tuple[tuple[str, int], ...] = ()

    @property
    def scale(self) -> str:
        """The original score and its scale, as written in the manifest's scale_original."""
        better = "higher" if self.higher_is_better else "lower"
        return f"{self.score} {self.low:g}-{self.high:g}, {better} is better"

    def normalise(self, value: float) -> float:
        """Map a score of this set to [0, 1] by its documented range, higher is better.
        Values outside the documented range land outside [0, 1]; they are not clipped."""
        unit = (value - self.low) / (self.high - self.low)
        return unit if self.higher_is_better else 1.0 - unit

    def normalise_std(self, std: float) -> float:
        return std / (self.high - self.low)


_LIVE_FORM = "https://live.ece.utexas.edu/research/quality/subjective.htm"
_CHALLENGE_PAGE = "https://live.ece.utexas.edu/research/ChallengeDB/index.html"
_CSIQ = "https://s2.smu.edu/~eclarson/csiq"
_MMSP = "https://datasets.vqa.mmsp-kn.de/archives"

SETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec(
            name="live",
            title="LIVE Image Quality Assessment Database, release 2",
            page=_LIVE_FORM,
            score_files=("dmos.mat", "refnames_all.mat"),
            known_files=("jp2k/info.txt", "refimgs/bikes.bmp", "jp2k/img1.bmp"),
            score="DMOS",
            low=0.0,
            high=100.0,
            higher_is_better=False,
            split_by="reference",
            count=779,
            parts=(("jp2k", 227), ("jpeg", 233), ("wn", 174), ("gblur", 174), ("fastfading", 174)),
            manual=(
                f"fill in the request form at {_LIVE_FORM}; the reply gives the password of "
                "databaserelease2.zip; unzip it and move the contents of databaserelease2/ "
                "(dmos.mat, refnames_all.mat, refimgs/, jp2k/, jpeg/, wn/, gblur/, fastfading/) "
                "into the target folder"
            ),
        ),
        DatasetSpec(
            name="csiq",
            title="CSIQ (Larson and Chandler)",
            page=f"{_CSIQ}.html",
            score_files=("csiq.DMOS.xlsx",),
            known_files=("src_imgs/1600.png", "dst_imgs/awgn/1600.AWGN.1.png"),
            score="DMOS",
            low=0.0,
            high=1.0,
            higher_is_better=False,
            split_by="reference",
            count=866,
            downloads=(
                Download(f"{_CSIQ}/csiq.DMOS.xlsx", ("csiq.DMOS.xlsx",)),
                Download(f"{_CSIQ}/src_imgs.zip", ("src_imgs",)),
                Download(f"{_CSIQ}/dst_imgs.zip", ("dst_imgs",)),
            ),
        ),
        DatasetSpec(
            name="bid",
            title="BID, the Blurred Image Database (Ciancio et al.)",
            page="http://www.lps.ufrj.br/profs/eduardo/ImageDatabase.htm",
            score_files=(("DatabaseGrades.xlsx", "ImageDatabase/DatabaseGrades.xlsx"),),
            known_files=("ImageDatabase/DatabaseImage0004.JPG",),
            score="MOS",
            low=0.0,
            high=5.0,
            higher_is_better=True,
            split_by="image",
            count=586,
            manual=(
                "open http://www.lps.ufrj.br/profs/eduardo/ImageDatabase.htm (images also under "
                "http://www02.smt.ufrj.br/~eduardo/ImageDatabase/), download the 586 images "
                "and the grades spreadsheet; put the images (DatabaseImage0001.JPG ...) in "
                "ImageDatabase/ inside the target folder and DatabaseGrades.xlsx beside it "
                "(save a DatabaseGrades.xls as .xlsx first). Where those pages are down: the "
                "UNIQUE authors' repository https://github.com/zwx8981/UNIQUE carries the "
                "grades file (IQA_database/BID/splits2/DatabaseGrades.xls) and its authors link "
                "cloud-drive copies of the images; `dlmap data check bid` verifies the file "
                "names and the 586 grades, whatever the copy"
            ),
        ),
        DatasetSpec(
            name="clive",
            title="LIVE In the Wild Image Quality Challenge Database (LIVE Challenge)",
            page=_CHALLENGE_PAGE,
            score_files=(
                "Data/AllImages_release.mat",
                "Data/AllMOS_release.mat",
                "Data/AllStdDev_release.mat",
            ),
            known_files=("Images/100.bmp",),
            score="MOS",
            low=0.0,
            high=100.0,
            higher_is_better=True,
            split_by="image",
            count=1162,
            manual=(
                f"request ChallengeDB_release.zip through the form at {_CHALLENGE_PAGE}; unzip "
                "it and move the contents of ChallengeDB_release/ (Data/, Images/) into the "
                "target folder"
            ),
        ),
        DatasetSpec(
            name="koniq10k",
            title="KonIQ-10k (Hosu, Lin, Sziranyi, Saupe)",
            page="https://database.mmsp-kn.de/koniq-10k-database.html",
            score_files=("koniq10k_scores_and_distributions.csv",),
            known_files=("1024x768/10004473376.jpg",),
            score="MOS",
            low=1.0,
            high=5.0,
            higher_is_better=True,
            split_by="image",
            count=10073,
            downloads=(
                Download(
                    f"{_MMSP}/koniq10k_scores_and_distributions.zip",
                    ("koniq10k_scores_and_distributions.csv",),
                ),
                Download(f"{_MMSP}/koniq10k_1024x768.zip", ("1024x768",)),
            ),
        ),
        DatasetSpec(
            name="kadid10k",
            title="KADID-10k (Lin, Hosu, Saupe)",
            page="https://database.mmsp-kn.de/kadid-10k-database.html",
            score_files=("dmos.csv",),
            known_files=("images/I01.png", "images/I01_01_01.png"),
            score="dmos (a MOS despite its name)",
            low=1.0,
            high=5.0,
            higher_is_better=True,
            split_by="reference",
            count=10125,
            downloads=(Download(f"{_MMSP}/kadid10k.zip", ("dmos.csv", "images")),),
        ),
        DatasetSpec(
            name="spaq",
            title="SPAQ, Smartphone Photography Attribute and Quality (Fang et al.)",
            page="https://github.com/h4nwei/SPAQ",
            score_files=("Annotations/MOS and Image attribute scores.xlsx",),
            known_files=("TestImage/00001.jpg",),
            score="MOS",
            low=0.0,
            high=100.0,
            higher_is_better=True,
            split_by="image",
            count=11125,
            manual=(
                "open https://github.com/h4nwei/SPAQ and download the SPAQ database from its "
                "Google Drive folder or Baidu Yun (code b29m); repair and unpack the split zip "
                "(zip -FF SPAQ.zip --out SPAQ_fixed.zip; unzip SPAQ_fixed.zip) and move "
                "Annotations/ and TestImage/ into the target folder"
            ),
        ),
    )
}


def spec(name: str) -> DatasetSpec:
    """The facts about set ``name``; an unknown name gets a "did you mean"."""
    if name in SETS:
        return SETS[name]
    close = difflib.get_close_matches(name.lower(), list(SETS), n=1, cutoff=0.4)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise UnknownDatasetError(f"unknown data set {name!r}{hint} (known: {', '.join(SETS)})")


def data_root(root: str | os.PathLike | None = None) -> Path:
    """``root`` if given, else $DLMAP_DATA, else ~/.cache/dlmap/data."""
    if root is not None:
        return Path(root).expanduser()
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV]).expanduser()
    return Path.home() / ".cache" / "dlmap" / "data"


def set_folder(name: str, root=None) -> Path:
    return data_root(root) / spec(name).name


def _first(entry) -> str:
    return entry[0] if isinstance(entry, tuple) else entry


def manual_steps(name: str, root=None) -> str:
    """What to do to place set ``name`` by hand: the exact folder and the files it needs."""
    facts = spec(name)
    wanted = ", ".join(_first(entry) for entry in (*facts.score_files, *facts.known_files))
    how = facts.manual or f"run `dlmap data fetch {name}`"
    return (
        f"{facts.title}: {how}. Target folder: {set_folder(name, root)}; it must then hold "
        f"{wanted} (the set's images, {facts.count} scored)"
    )


def missing_files(name: str, root=None) -> list[str]:
    """The score files and known files of set ``name`` that are not in place."""
    facts = spec(name)
    _, missing = present_files(set_folder(name, root), (*facts.score_files, *facts.known_files))
    return missing


def fetch(name: str, root=None, download=None) -> Path:
    """Download set ``name`` into its folder (the only function here that downloads).

    Sets without direct URLs raise ``DatasetError`` with the manual steps unless their files
    are in place. Files already in place are not downloaded again. Each downloaded file's
    sha256 is checked against the source's published one (if any) and recorded or checked in
    the data root's manifest; archives are unpacked and deleted. ``download(url, path)`` is
    the transfer function (tests replace it).
    """
    facts, folder = spec(name), set_folder(name, root)
    if not facts.downloads:
        missing = missing_files(name, root)
        if missing:
            raise DatasetMissingError(
                f"cannot be downloaded automatically; missing {', '.join(missing)}. "
                + manual_steps(name, root)
            )
        return folder
    transfer = download or _download
    for item in facts.downloads:
        if all((folder / member).exists() for member in item.members):
            continue
        staging = data_root(root) / "downloads"
        staging.mkdir(parents=True, exist_ok=True)
        path = staging / item.file_name
        transfer(item.url, path)
        _verify(path, item, data_root(root))
        _place(path, item, folder)
    return folder


def _download(url: str, path: Path) -> None:
    """Stream ``url`` to ``path`` (through ``path.part``, renamed when complete)."""
    partial = path.with_name(path.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(partial, "wb") as out:
            shutil.copyfileobj(response, out, length=1 << 20)
    except (urllib.error.URLError, OSError) as error:
        partial.unlink(missing_ok=True)
        raise DatasetError(f"download of {url} failed: {error}") from error
    os.replace(partial, path)


def _verify(path: Path, item: Download, root: Path) -> None:
    try:
        digests = weights.verify_files([path], cache=root)
    except weights.ChecksumError as error:
        path.unlink(missing_ok=True)
        raise DatasetError(f"{item.url}: {error}") from error
    digest = digests[str(path.resolve())]
    if item.sha256 is not None and digest != item.sha256:
        path.unlink(missing_ok=True)
        raise DatasetError(f"{item.url}: sha256 {digest} differs from the published {item.sha256}")


def _place(path: Path, item: Download, folder: Path) -> None:
    """Move a downloaded file, or the members of a downloaded zip archive, into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    if not item.is_archive:
        os.replace(path, folder / item.members[0])
        return
    with tempfile.TemporaryDirectory(dir=folder, prefix=".unpack-") as scratch:
        try:
            with zipfile.ZipFile(path) as archive:
                archive.extractall(scratch)
        except (zipfile.BadZipFile, OSError) as error:
            raise DatasetError(f"{path}: cannot unpack: {error}") from error
        for member in item.members:
            found = _find(Path(scratch), Path(member).name)
            if found is None and len(item.members) == 1:
                found = Path(scratch)  # an archive without a top folder is the member
            if found is None:
                raise DatasetError(f"{item.url}: the archive holds no {member}")
            target = folder / member
            if target.exists():
                continue  # what is in place stays
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(found), str(target))
            if found == Path(scratch):
                Path(scratch).mkdir()  # let TemporaryDirectory clean up
    path.unlink()


def _find(top: Path, name: str) -> Path | None:
    """The shallowest path called ``name`` under ``top``."""
    matches = sorted(top.rglob(name), key=lambda found: len(found.parts))
    return matches[0] if matches else None
