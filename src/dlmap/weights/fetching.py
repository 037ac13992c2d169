"""Fetching a set's missing files from its ordered sources, and what became of each set.

``fetch_files`` tries the sources in order. A source that fails once (a host error, a cut-off
body, a wrong digest) is not asked again for the rest of the set; the files it did deliver,
each complete and verified, stay. Every failure is kept as one ``Attempt`` line. The identity
of each file is checked against, in order of strength: a sha256 pinned in the catalogue, one
the host publishes, and the one recorded in the cache's manifest when the file was first
placed; a file fetched with none of these has its sha256 recorded now, and the manifest says
so (``identity``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from dlmap.weights import cache as weights
from dlmap.weights.sources import DownloadError, download

PRESENT = "present, verified"
FETCHED = "fetched"
MANUAL = "manual step needed"
FAILED = "FAILED"


@dataclass(frozen=True)
class Attempt:
    """One source that did not deliver, and why (one line)."""

    source: str
    error: str


@dataclass
class FetchResult:
    """What ``dlmap weights fetch`` did for one set: its state, the sources it used, what is
    left to do, and every failed attempt."""

    name: str
    state: str
    source: str = "-"
    todo: str = "-"
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.state in (PRESENT, FETCHED)


@dataclass(frozen=True)
class Wanted:
    """A file to fetch: its path at the sources, where it goes, and a pinned sha256 (or a
    leading part of one, as torchvision's file names carry)."""

    path: str
    target: Path
    pinned: str | None = None


def fetch_files(wanted: list[Wanted], sources, cache=None, progress=True):
    """Fetch every file of ``wanted`` from the first source of ``sources`` that delivers it.

    Returns (labels of the sources used, failed attempts, files still missing)."""
    remaining, used, failures = list(wanted), [], []
    for source in sources:
        if not remaining:
            break
        left = []
        for number, item in enumerate(remaining):
            recorded = weights.recorded_sha256(item.target, cache)
            try:
                digest, published = download(
                    source.url(item.path), item.target, item.pinned or recorded, progress
                )
            except (DownloadError, weights.ChecksumError, OSError) as error:
                failures.append(Attempt(source.label, _one_line(error)))
                left.extend(remaining[number:])  # this source is not asked again for the set
                break
            identity = (
                "pinned in dlmap's catalogue"
                if item.pinned and len(item.pinned) == 64
                else "published by the host"
                if published
                else "matches the sha256 recorded at first placement"
                if recorded
                else "recorded at this first fetch (no source publishes it)"
            )
            weights.record(item.target, digest, cache, source=source.label, identity=identity)
            used.append(source.label)
        remaining = left
    return list(dict.fromkeys(used)), failures, remaining


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text or type(error).__name__
