"""LIVE's NIQE pristine model: recognised by its numbers, fetched from PyPI or pyiqa's hub copy.

NIQE's reference pristine model is the Gaussian (mu, Sigma) that LIVE publishes as
``modelparameters.mat`` with NIQE's MATLAB code (Mittal et al. 2013). It reaches a machine in
one of two ways, both used by ``dlmap weights fetch niqe`` (the first that works wins):

1. basicsr's source distribution on PyPI (``basicsr-1.4.2.tar.gz``) carries the same mu and
   Sigma as ``basicsr/metrics/niqe_pris_params.npz``. The archive's sha256 comes from PyPI's
   index (PEP 691) and is checked; only that one member is read, nothing is installed or run.
   Wherever pip works, this works.
2. pyiqa's copy of ``modelparameters.mat`` on the Hugging Face hub.

Whatever the source, and for any file a user places in the cache, the model counts as LIVE's
only if its numbers are LIVE's: ``LIVE_FINGERPRINT`` holds five summaries of LIVE's mu and
Sigma (computed by dlmap, not copied from anywhere) and a model matches when all five agree to
1e-6 relative. A file name proves nothing. The fetched model is written in pyiqa's layout to
``<cache>/niqe/modelparameters.mat`` with its provenance, and its sha256 is recorded in the
cache's manifest like every other weight file.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.io

from dlmap.errors import InputError
from dlmap.files import atomic_path, partial_path, sha256_file
from dlmap.weights import cache as weights
from dlmap.weights.cache import ChecksumError
from dlmap.weights.sources import DownloadError

MODEL_FILE = "niqe/modelparameters.mat"  # relative to the dlmap cache

# sum(mu), mu . w, trace(Sigma), w' Sigma w, ||Sigma||_F with w_i = cos(i), i = 0..35,
# computed from LIVE's model (equal in LIVE's modelparameters.mat and basicsr's npz).
LIVE_FINGERPRINT = (
    17.32876552816881,
    5.951996355050821,
    1.6309188316421013,
    1.2989656440767248,
    1.1974770225375395,
)
FINGERPRINT_RTOL = 1e-6

PYPI_INDEX = os.environ.get("DLMAP_PYPI_INDEX", "https://pypi.org/simple")


@dataclass(frozen=True)
class SdistMember:
    """One file inside a source distribution on a PyPI index."""

    project: str
    version: str
    member: str  # path inside the archive, below its top folder

    @property
    def filename(self) -> str:
        return f"{self.project}-{self.version}.tar.gz"

    def describe(self) -> str:
        return f"{self.member} in {self.filename} (PyPI: {self.project}=={self.version})"


BASICSR_SDIST = SdistMember("basicsr", "1.4.2", "basicsr/metrics/niqe_pris_params.npz")


class NotLiveModelError(InputError):
    """A model file that claims, or was expected, to be LIVE's but whose numbers are not."""


def fingerprint(mu, cov) -> np.ndarray:
    """The five summaries ``LIVE_FINGERPRINT`` holds, for any 36-dim (mu, Sigma)."""
    mu = np.ravel(np.asarray(mu, dtype=np.float64))
    cov = np.asarray(cov, dtype=np.float64)
    w = np.cos(np.arange(mu.size, dtype=np.float64))
    return np.array([mu.sum(), mu @ w, np.trace(cov), w @ cov @ w, np.linalg.norm(cov)])


def is_live_model(mu, cov) -> bool:
    """Whether (mu, Sigma) are LIVE's pristine model, to float tolerance."""
    mu, cov = np.ravel(np.asarray(mu)), np.asarray(cov)
    if mu.shape != (36,) or cov.shape != (36, 36):
        return False
    return bool(np.allclose(fingerprint(mu, cov), LIVE_FINGERPRINT, rtol=FINGERPRINT_RTOL, atol=0))


def read_model(path) -> tuple[np.ndarray, np.ndarray, dict]:
    """(mu (36,), Sigma (36, 36), other fields) of a pristine model in pyiqa's .mat layout
    (``mu_prisparam``, ``cov_prisparam``) or basicsr's .npz layout (``mu_pris_param``,
    ``cov_pris_param``); a clear ``ValueError`` for anything else."""
    path = Path(path)
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as data:
                fields = {key: data[key] for key in data.files}
            keys = ("mu_pris_param", "cov_pris_param")
        else:
            fields = {k: v for k, v in scipy.io.loadmat(path).items() if not k.startswith("__")}
            keys = ("mu_prisparam", "cov_prisparam")
    except FileNotFoundError:
        raise
    except Exception as error:  # noqa: BLE001 - any parse failure of an outside file is one error
        raise InputError(f"{path}: not a readable NIQE pristine model ({error})") from None
    missing = [key for key in keys if key not in fields]
    if missing:
        raise InputError(f"{path}: a NIQE pristine model needs {', '.join(keys)}; lacks {missing}")
    mu = np.ravel(np.asarray(fields.pop(keys[0]), dtype=np.float64))
    cov = np.asarray(fields.pop(keys[1]), dtype=np.float64)
    if mu.shape != (36,) or cov.shape != (36, 36):
        raise InputError(
            f"{path}: NIQE's pristine model is a 36-dim Gaussian; got mu {mu.shape}, "
            f"Sigma {cov.shape}"
        )
    if not (np.all(np.isfinite(mu)) and np.all(np.isfinite(cov))):
        raise InputError(f"{path}: the pristine model holds non-finite numbers")
    return mu, cov, fields


#: the text of every model's MAT-file header: scipy writes the time of writing there, which
#: would give the same model different bytes at every fetch (and a sha256 that never repeats)
MAT_HEADER = b"MATLAB 5.0 MAT-file, written by dlmap (NIQE pristine model)"
MAT_HEADER_BYTES = 116  # the header's text field in the MAT 5 format, padded with spaces


def write_model(path, mu, cov, **metadata) -> Path:
    """Write (mu, Sigma) atomically in the .mat layout pyiqa's NIQE reads, with metadata.
    The same numbers and metadata always give the same bytes (``MAT_HEADER``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    contents = {
        "mu_prisparam": np.asarray(mu, dtype=np.float64).reshape(1, -1),
        "cov_prisparam": np.asarray(cov, dtype=np.float64),
        **metadata,
    }
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, contents, appendmat=False)
    data = bytearray(buffer.getvalue())
    data[:MAT_HEADER_BYTES] = MAT_HEADER.ljust(MAT_HEADER_BYTES)
    with atomic_path(path) as temporary:  # a concurrent reader never sees half a file
        Path(temporary).write_bytes(bytes(data))
    return path


def sdist_location(source: SdistMember, index: str | None = None) -> tuple[str, str]:
    """(URL, sha256) of ``source``'s archive, as the index's JSON API (PEP 691) lists it."""
    index = (index or PYPI_INDEX).rstrip("/")
    request = urllib.request.Request(
        f"{index}/{source.project}/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        listing = json.load(response)
    files = listing.get("files") if isinstance(listing, dict) else None
    if not isinstance(files, list):
        raise InputError(f"{index}/{source.project}/: not a PEP 691 listing (no 'files' list)")
    for entry in files:
        if not isinstance(entry, dict) or entry.get("filename") != source.filename:
            continue
        hashes, url = entry.get("hashes"), entry.get("url")
        digest = hashes.get("sha256") if isinstance(hashes, dict) else None
        if not isinstance(url, str) or not url:
            raise InputError(f"{index} lists {source.filename} without a URL")
        if not isinstance(digest, str) or not digest:
            raise weights.ChecksumError(f"{index} lists {source.filename} without a sha256")
        return urllib.request.urljoin(f"{index}/{source.project}/", url), digest
    raise FileNotFoundError(f"{index}/{source.project}/ does not list {source.filename}")


def read_sdist_member(archive, source: SdistMember) -> bytes:
    """The bytes of ``source.member`` inside a .tar.gz, read without extracting anything."""
    wanted = f"{source.project}-{source.version}/{source.member}"
    with tarfile.open(archive, "r:gz") as tar:
        try:
            member = tar.getmember(wanted)
        except KeyError:
            raise FileNotFoundError(f"{archive} has no {wanted}") from None
        if not member.isfile():
            raise FileNotFoundError(f"{archive}: {wanted} is not a regular file")
        return tar.extractfile(member).read()


def _download(url: str, target: Path) -> None:
    from dlmap.weights.sources import download

    download(url, target, progress=False)


def from_pypi(workdir, source: SdistMember = BASICSR_SDIST, index: str | None = None):
    """(mu, Sigma, provenance) from a PyPI source distribution, its sha256 checked."""
    url, published = sdist_location(source, index)
    with tempfile.TemporaryDirectory(dir=workdir) as folder:
        archive = Path(folder) / source.filename
        _download(url, archive)
        digest = sha256_file(archive)
        if digest != published:
            raise weights.ChecksumError(
                f"{source.filename}: sha256 {digest} differs from the {published} the index "
                f"publishes for {url}"
            )
        member = Path(folder) / Path(source.member).name
        member.write_bytes(read_sdist_member(archive, source))
        mu, cov, _ = read_model(member)
    return mu, cov, f"{source.describe()}, archive sha256 {digest}, from {url}"


def from_hub(workdir):
    """(mu, Sigma, provenance) from pyiqa's hub copy of LIVE's modelparameters.mat."""
    from pyiqa.archs.niqe_arch import default_model_urls

    url = default_model_urls["url"]
    with tempfile.TemporaryDirectory(dir=workdir) as folder:
        target = Path(folder) / "modelparameters.mat"
        _download(url, target)
        digest = sha256_file(target)
        mu, cov, _ = read_model(target)
    return mu, cov, f"{url} (sha256 {digest})"


SOURCES = (("PyPI", from_pypi), ("Hugging Face hub", from_hub))


def fetch(cache=None, sources=None) -> list[Path]:
    """Place LIVE's model at ``<cache>/niqe/modelparameters.mat`` from the first source that
    works (``SOURCES`` by default: each ``(label, source(workdir))``); the numbers must be
    LIVE's. A file already there that cannot be read or differs from what the manifest
    recorded is moved aside to ``.bad`` and replaced; a readable model with other numbers (a
    custom one) is refused, not touched.
    The model's identity is its numbers: the file is recorded in the manifest with the
    sha256 of the bytes written, which are the same for the same source (``write_model``).
    Returns the placed paths (none if already there)."""
    sources = SOURCES if sources is None else sources
    target = weights.cache_dir(cache) / MODEL_FILE
    if target.is_file():
        try:
            weights.verify_files([target], cache)
            mu, cov, _ = read_model(target)
        except (InputError, weights.ChecksumError) as error:  # damaged: replace it
            weights.set_aside(target, error)
        else:
            if not is_live_model(mu, cov):  # a readable model of its own: someone's choice
                raise NotLiveModelError(
                    f"{target} is not LIVE's NIQE model (its numbers differ); move it away "
                    "and fetch again, or pass it as a custom model"
                )
            return []
    # downloads go to a hidden .NAME.PID.part folder beside the model, which the next fetch
    # removes if this process is killed (files.partial_path)
    workdir = partial_path(target)
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        failures = []
        for label, source in sources:
            try:
                mu, cov, provenance = source(workdir)
            except (OSError, ValueError, tarfile.TarError, DownloadError, ChecksumError) as error:
                failures.append(f"{label}: {error}")
                continue
            if not is_live_model(mu, cov):
                failures.append(f"{label}: {provenance} holds another model than LIVE's")
                continue
            write_model(target, mu, cov, source=provenance, model="LIVE NIQE pristine model")
            weights.record(
                target,
                sha256_file(target),
                cache,
                source=label,
                identity="LIVE's numbers (dlmap.priors.niqe_live.is_live_model)",
            )
            return [target]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    raise weights.WeightsMissingError(
        "LIVE's NIQE pristine model could not be fetched: " + "; ".join(failures) + ". Offline, "
        f"place LIVE's modelparameters.mat at {target} (it is recognised by its numbers), or "
        "use the fitted fallback (NIQE model 'fitted')"
    )


def fetch_with_source(cache=None) -> tuple[list[Path], str]:
    """``fetch``, and which source the model came from (the weights catalogue's report)."""
    placed = fetch(cache)
    provenance = str(read_model(placed[0])[2].get("source", "")) if placed else ""
    return placed, "PyPI (basicsr 1.4.2)" if "PyPI" in provenance else "pyiqa's copy on the hub"
