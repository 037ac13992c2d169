"""Where weight files come from: ordered sources, one downloader, and one-line host errors.

Every downloadable file has an ordered list of sources, tried in turn until one gives the file
whole and with the right identity:

- ``HubRepo``: a Hugging Face repository pinned to a revision, read over plain HTTP at
  ``<endpoint>/<repo>/resolve/<revision>/<file>``; the endpoint is ``$HF_ENDPOINT`` (a lab's
  hub mirror) or huggingface.co, and ``$HF_TOKEN`` is sent to it for gated repositories. The
  hub states the sha256 of every large (LFS) file in its ``X-Linked-Etag`` header: a download
  that disagrees is refused.
- ``UrlBase``: files under a base URL (ModelScope, a lab's web server).
- ``LocalFolder``: a folder on a shared disk.

A lab's own copy of the weights is a *mirror*: a folder or URL laid out like a dlmap cache
(``MIRROR/sd2-base/unet/config.json``, ``MIRROR/torch/pyiqa/...``). Mirrors come first, from
``--mirror`` or ``$DLMAP_WEIGHTS_MIRRORS`` (several separated by spaces), then the public
sources.

``download`` writes a hidden ``.NAME.PID.part`` file beside the target, hashes it while it
streams, checks the length the host announced, the sha256 it publishes and the sha256 we
expect (pinned or recorded), and only then renames it into place: a cut-off body, a timeout or
a wrong digest leaves nothing behind. Host failures (404, 401/403, timeout, DNS, refused,
truncated) raise ``DownloadError`` with one line; a wrong digest raises ``ChecksumError``
naming both digests.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import socket
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlparse

from dlmap import progress as bars
from dlmap.errors import DlmapError, UsageError
from dlmap.files import partial_path
from dlmap.weights.cache import ChecksumError

HUB = "https://huggingface.co"
TIMEOUT_ENV = "DLMAP_DOWNLOAD_TIMEOUT"
MIRRORS_ENV = "DLMAP_WEIGHTS_MIRRORS"
DEFAULT_TIMEOUT = 60.0  # seconds without a byte before a host counts as timed out
CHUNK = 1 << 20


class DownloadError(DlmapError, RuntimeError):
    """A host did not deliver a file (404, 401/403, timeout, DNS, refused, cut-off body)."""


def hub_endpoint() -> str:
    """The Hugging Face endpoint: ``$HF_ENDPOINT`` (a mirror of the hub) or huggingface.co."""
    return (os.environ.get("HF_ENDPOINT") or HUB).rstrip("/")


def timeout() -> float:
    """Seconds a host may stay silent: ``$DLMAP_DOWNLOAD_TIMEOUT`` or 60."""
    value = os.environ.get(TIMEOUT_ENV)
    if not value:
        return DEFAULT_TIMEOUT
    try:
        seconds = float(value)
    except ValueError:
        seconds = float("nan")
    if not 0 < seconds < float("inf"):
        raise UsageError(f"${TIMEOUT_ENV}: {value!r} is not a positive number of seconds")
    return seconds


@dataclass(frozen=True)
class HubRepo:
    """A Hugging Face repository at a revision; ``note`` says whose it is."""

    repo_id: str
    revision: str = "main"
    repo_type: str = "model"  # or "space"
    note: str = ""

    def url(self, path: str) -> str:
        kind = "spaces/" if self.repo_type == "space" else ""
        return f"{hub_endpoint()}/{kind}{self.repo_id}/resolve/{self.revision}/{quote(path)}"

    @property
    def label(self) -> str:
        kind = "space " if self.repo_type == "space" else ""
        where = "" if hub_endpoint() == HUB else f" via {hub_endpoint()}"
        return f"hf {kind}{self.repo_id}@{self.revision}{where}"


@dataclass(frozen=True)
class UrlBase:
    """Files under a base URL: ``<base>/<path>``."""

    base: str
    note: str = ""

    def url(self, path: str) -> str:
        return f"{self.base.rstrip('/')}/{quote(path)}"

    @property
    def label(self) -> str:
        return self.note or self.base


@dataclass(frozen=True)
class LocalFolder:
    """Files in a folder on this machine or a shared disk."""

    folder: Path
    note: str = ""

    def url(self, path: str) -> str:
        return str(Path(self.folder) / path)

    @property
    def label(self) -> str:
        return self.note or f"folder {self.folder}"


@dataclass(frozen=True)
class FixedUrl:
    """One file's own URL (a prior's checkpoint as its library names it)."""

    address: str

    def url(self, path: str) -> str:
        return hub_url_source(self.address)

    @property
    def label(self) -> str:
        return _host(hub_url_source(self.address))


Source = HubRepo | UrlBase | LocalFolder | FixedUrl


def parse_mirror(spec: str) -> UrlBase | LocalFolder:
    """A mirror given by a user: an http(s) URL or a folder (``file://`` URLs too), laid out
    like a dlmap cache. Anything else raises ``UsageError`` naming it."""
    text = spec.strip() if isinstance(spec, str) else ""
    if not text or any(ord(c) < 32 for c in text):
        raise UsageError(f"mirror {spec!r}: give an http(s) URL or a folder")
    parsed = urlparse(text)
    if parsed.scheme in ("http", "https"):
        if not parsed.netloc or parsed.query or parsed.fragment:
            raise UsageError(f"mirror {spec!r}: a URL needs a host and no query or fragment")
        return UrlBase(text.rstrip("/"), note=f"mirror {text.rstrip('/')}")
    if parsed.scheme == "file":
        text = urllib.request.url2pathname(parsed.path)
    elif parsed.scheme and len(parsed.scheme) > 1:  # c:\ is a drive, not a scheme
        raise UsageError(f"mirror {spec!r}: scheme {parsed.scheme!r} is not http, https or file")
    try:
        folder = Path(text).expanduser()
    except RuntimeError:  # "~someone" without such a user
        raise UsageError(f"mirror {spec!r}: no home folder for {text.split('/')[0]!r}") from None
    try:
        is_folder = folder.is_dir()
    except OSError as error:  # a name too long, say
        raise UsageError(f"mirror {spec!r}: {error.strerror}") from None
    if not is_folder:
        raise UsageError(f"mirror {spec!r}: {folder} is not a folder")
    return LocalFolder(folder.resolve(), note=f"mirror {folder.resolve()}")


def mirrors(given=()) -> tuple[UrlBase | LocalFolder, ...]:
    """The mirrors to try first: ``given`` (``--mirror``), then ``$DLMAP_WEIGHTS_MIRRORS``."""
    specs = [*given, *os.environ.get(MIRRORS_ENV, "").split()]
    return tuple(parse_mirror(spec) for spec in dict.fromkeys(specs))


def under(source: UrlBase | LocalFolder, folder: str) -> UrlBase | LocalFolder:
    """A mirror seen from one of its sub-folders (a folder set's ``<mirror>/<name>``)."""
    if isinstance(source, LocalFolder):
        return LocalFolder(Path(source.folder) / folder, source.note)
    return UrlBase(f"{source.base.rstrip('/')}/{quote(folder)}", source.note)


def hub_url_source(url: str) -> str:
    """A huggingface.co URL moved to ``$HF_ENDPOINT`` (a lab's hub mirror); others as given."""
    if url.startswith(HUB + "/"):
        return hub_endpoint() + url[len(HUB) :]
    return url


# --- the downloader -----------------------------------------------------------------------------


class _Redirects(urllib.request.HTTPRedirectHandler):
    """Follows redirects and keeps the sha256 the hub announces before redirecting (LFS)."""

    def __init__(self):
        super().__init__()
        self.linked_etag = None

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        etag = headers.get("X-Linked-Etag")
        if etag:
            self.linked_etag = etag
        request = super().redirect_request(req, fp, code, msg, headers, newurl)
        if request is not None and urlparse(newurl).netloc != urlparse(req.full_url).netloc:
            request.remove_header("Authorization")  # never hand a token to another host
        return request


def _published(etag: str | None) -> str | None:
    value = (etag or "").strip().strip('"').removeprefix("W/").strip('"')
    return value if len(value) == 64 and all(c in "0123456789abcdef" for c in value) else None


def _host(url: str) -> str:
    return urlparse(url).netloc or url


def _explain(error: BaseException, url: str, seconds: float) -> str:
    """One line for a failed request."""
    host = _host(url)
    if isinstance(error, urllib.error.HTTPError):
        reasons = {
            401: "unauthorised: the repository is gated or private (set $HF_TOKEN, or use "
            "another source)",
            403: "forbidden: the repository is gated or private (accept its licence on the "
            "hub and set $HF_TOKEN, or use another source)",
            404: "not found (removed or renamed?)",
        }
        return f"HTTP {error.code} from {host}: {reasons.get(error.code, error.reason)}"
    reason = getattr(error, "reason", error)
    if isinstance(reason, (TimeoutError, socket.timeout)):
        return f"{host} timed out (no answer for {seconds:g} s)"
    if isinstance(reason, socket.gaierror):
        return f"cannot resolve host {host} (offline, or a wrong address?)"
    if isinstance(reason, ConnectionRefusedError):
        return f"{host} refused the connection"
    if isinstance(reason, ssl.SSLError):
        return f"TLS error with {host}: {reason}"
    return f"{host}: {reason}"

    return True


def reachable(url: str) -> None:
    """Ask ``url`` for its headers once (no retries, the usual timeout): a host that is down,
    unknown or refuses raises ``DownloadError`` before a library's own retries begin."""
    request = urllib.request.Request(url, method="HEAD", headers={"User-Agent": "dlmap"})
    try:
        urllib.request.urlopen(request, timeout=timeout()).close()
    except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
        raise DownloadError(_explain(error, url, timeout())) from None


def download(
    source_url: str,
    target: Path,
    expected: str | None = None,
    progress: bool = True,
) -> tuple[str, str | None]:
    """Fetch ``source_url`` (a URL, or a file path) to ``target``, whole or not at all.

    The bytes go to ``.NAME.PID.part`` beside ``target``, hashed as they stream; the length
    the host announced, the sha256 it publishes (the hub's ``X-Linked-Etag``) and
    ``expected`` (a pinned or recorded sha256, or its leading digits) must all agree before
    the file is renamed into place.
    Returns (sha256, the sha256 the host published or None). Raises ``DownloadError`` (one
    line) or ``ChecksumError`` (both digests named); the partial file is always removed.
    """

    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = partial_path(target)
    seconds = timeout()
    digest, received, published = hashlib.sha256(), 0, None
    try:
        if "://" not in source_url:  # a local folder's file
            path = Path(source_url)
            if not path.is_file():
                raise DownloadError(f"{path}: no such file")
            announced = path.stat().st_size
            stream = open(path, "rb")  # noqa: SIM115 (closed below)
        else:
            redirects = _Redirects()
            opener = urllib.request.build_opener(redirects)
            request = urllib.request.Request(source_url, headers={"User-Agent": "dlmap"})
            token = os.environ.get("HF_TOKEN")
            if token and _host(source_url) == _host(hub_endpoint()):
                request.add_header("Authorization", f"Bearer {token}")
            try:
                stream = opener.open(request, timeout=seconds)
            except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
                raise DownloadError(_explain(error, source_url, seconds)) from None
            length = stream.headers.get("Content-Length")
            announced = int(length) if length and length.isdigit() else None
            published = _published(redirects.linked_etag or stream.headers.get("X-Linked-Etag"))
        with (
            stream,
            open(partial, "wb") as handle,
            bars.bar(
                quiet=not progress or (announced or 0) < 1 << 24,
                total=announced,
                unit="B",
                unit_scale=True,
                desc=target.name,
                leave=False,
            ) as bar,
        ):
            while True:
                try:
                    block = stream.read(CHUNK)
                except TimeoutError:
                    raise DownloadError(
                        f"{_host(source_url)} timed out after {received} of "
                        f"{announced if announced is not None else '?'} bytes"
                    ) from None
                except http.client.IncompleteRead as error:
                    received += len(error.partial)
                    raise DownloadError(
                        f"{_host(source_url)} cut the body off at {received} of {announced} bytes"
                    ) from None
                except (OSError, http.client.HTTPException) as error:
                    raise DownloadError(f"{_host(source_url)}: {error}") from None
                if not block:
                    break
                handle.write(block)
                digest.update(block)
                received += len(block)
                bar.update(len(block))
        if announced is not None and received != announced:
            raise DownloadError(
                f"{_host(source_url)} cut the body off at {received} of {announced} bytes"
            )
        sha256 = digest.hexdigest()
        for what, wanted in (("published by the host", published), ("expected", expected)):
            if wanted is not None and not sha256.startswith(wanted):  # or a leading part
                raise ChecksumError(
                    f"{source_url}: sha256 {sha256}, but {wanted} is {what} for {target.name}; "
                    "refused"
                )
        os.replace(partial, target)
        return sha256, published
    finally:
        partial.unlink(missing_ok=True)
