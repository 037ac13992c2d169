"""Where weights live (the cache folder), their sha256 manifest, and the errors raised when
they are missing or changed. Nothing here downloads."""

from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path

from dlmap import progress
from dlmap.errors import DlmapError
from dlmap.files import sha256_file, write_text_atomic

CACHE_ENV = "DLMAP_CACHE"


class WeightsMissingError(DlmapError, RuntimeError):
    """Weights needed by a model are not on disk."""


class WeightKeyError(DlmapError, RuntimeError):
    """A checkpoint's keys do not match the network it is loaded into."""


class ChecksumError(DlmapError, RuntimeError):
    """A weight file differs from the one whose sha256 was recorded at first placement
    (``what``: what is wrong, without the file's name and what to do)."""

    def __init__(self, message: str, what: str | None = None) -> None:
        super().__init__(message)
        self.what = what or message


def cache_dir(cache: str | os.PathLike | None = None) -> Path:
    """The weights folder: ``cache`` if given, else $DLMAP_CACHE, else ~/.cache/dlmap."""
    if cache is not None:
        return Path(cache).expanduser()
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    return Path.home() / ".cache" / "dlmap"


# --- our own sha256 records ------------------------------------------------------------------

MANIFEST = "sha256-manifest.json"


def verify_files(paths: list[Path], cache=None, full: bool = False) -> dict[str, str]:
    """Record each file's sha256 the first time it is seen; check it every time after.

    The records live in ``<cache>/sha256-manifest.json``, keyed by absolute path, with size
    and modification time. A file whose size changed, or whose modification time changed
    and whose sha256 differs, raises ``ChecksumError``. ``full=True`` (``dlmap weights
    check``) re-hashes every file whatever its modification time. Returns path -> sha256.
    """
    manifest_path = cache_dir(cache) / MANIFEST
    records = _read_manifest(manifest_path)
    changed, digests, to_hash = False, {}, []
    for path in paths:
        key, stat = str(path.resolve()), path.stat()
        record = records.get(key)
        if record is not None and record["size"] != stat.st_size:
            raise _changed(path, record, f"size {stat.st_size}", manifest_path)
        if record is not None and record["mtime_ns"] == stat.st_mtime_ns and not full:
            digests[key] = record["sha256"]
        else:
            to_hash.append((path, key, stat, record))
    total = sum(stat.st_size for _, _, stat, _ in to_hash)
    with progress.bar(
        quiet=total < 1 << 28, total=total, unit="B", unit_scale=True, desc="sha256"
    ) as bar:
        for path, key, stat, record in to_hash:
            digest = sha256_file(path, progress=bar)
            if record is not None and digest != record["sha256"]:
                raise _changed(path, record, f"sha256 {digest}", manifest_path)
            digests[key] = digest
            entry = {
                **(record or {}),  # keeps where the file came from (``record``)
                "sha256": digest,
                "size": stat.st_size,
                "mtime_ns": stat.st_mtime_ns,
            }
            changed = changed or records.get(key) != entry
            records[key] = entry
    if changed:
        _write_manifest(records, manifest_path)
    return digests


def _read_manifest(manifest_path: Path) -> dict:
    return json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}


def _write_manifest(records: dict, manifest_path: Path) -> None:
    try:
        manifest_path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(json.dumps(records, indent=1, sort_keys=True) + "\n", manifest_path)
    except OSError as error:  # a read-only shared cache: verify, but cannot record
        warnings.warn(f"cannot record sha256 in {manifest_path}: {error}", stacklevel=3)


def recorded_sha256(path: Path, cache=None) -> str | None:
    """The sha256 recorded for ``path`` when it was first placed, if any (it stays recorded
    after the file is deleted, so a refetch must bring the same bytes)."""
    record = _read_manifest(cache_dir(cache) / MANIFEST).get(str(Path(path).resolve()))
    return record["sha256"] if record else None


def record(path: Path, digest: str, cache=None, **provenance: str) -> None:
    """Record a file just fetched: its sha256, size, time, and where it came from and how
    its identity was established (``provenance``: source, identity)."""
    manifest_path = cache_dir(cache) / MANIFEST
    records = _read_manifest(manifest_path)
    stat = Path(path).stat()
    records[str(Path(path).resolve())] = {
        "sha256": digest,
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        **provenance,
    }
    _write_manifest(records, manifest_path)


def _changed(path: Path, record: dict, now: str, manifest: Path) -> ChecksumError:
    what = (
        f"changed since its first placement (recorded size {record['size']}, sha256 "
        f"{record['sha256']}; now {now})"
    )
    return ChecksumError(
        f"{path} {what}: `dlmap weights fetch` sets it aside and places the recorded file "
        f"again, or delete its entry in {manifest} if the replacement is deliberate",
        what,
    )


def set_aside(path: Path, reason) -> Path:
    """Move a damaged cache file out of the way, to ``NAME.bad`` beside it (replacing an
    older one), saying so in one line on stderr, so that a fetch can place a good copy while
    the bad one stays for inspection. Returns where it went."""
    bad = Path(path).with_name(Path(path).name + ".bad")
    os.replace(path, bad)
    reason = " ".join(str(getattr(reason, "what", reason)).split())
    print(f"dlmap: {path} is damaged ({reason}); kept aside as {bad}", file=sys.stderr)
    return bad
