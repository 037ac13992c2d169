"""The workflow's bookkeeping, light enough to import while Snakemake builds the DAG (no
torch): test-image ids and their chunks, and digests that Snakemake's params carry so that
changed library code or changed outside folders rerun what depends on them."""

from __future__ import annotations

import hashlib
from pathlib import Path

from dlmap.errors import InputError

SRC = Path(__file__).resolve().parents[1]  # the dlmap package

# The library code that decides an inversion's numbers, hashed into the cached rule's params
# (Snakemake hashes neither imported code nor, under an editable install, versions): every
# module of these subpackages, and these top-level modules.
INVERSION_PACKAGES = ("diffusion", "inversion", "enhance")
INVERSION_MODULES = ("images",)


def image_ids(count: int) -> list[str]:
    """Test images are named by position, 0000, 0001, ...: known before any data exists,
    so the whole DAG can be built without data (the selection maps each id to its source)."""
    if count < 1:
        raise InputError(f"the number of test images must be >= 1, got {count}")
    return [f"{index:04d}" for index in range(count)]


def chunks(count: int, chunk_size: int) -> list[list[str]]:
    """Deterministic chunk assignment: chunk c holds ids c*S ... (c+1)*S - 1."""
    if chunk_size < 1:
        raise InputError(f"chunk_size must be >= 1, got {chunk_size}")
    ids = image_ids(count)
    return [ids[start : start + chunk_size] for start in range(0, count, chunk_size)]


def source_files(packages=INVERSION_PACKAGES, modules=INVERSION_MODULES) -> list[Path]:
    """The source files of ``dlmap`` subpackages (every module, recursively) and modules."""
    found = [path for package in packages for path in (SRC / package).rglob("*.py")]
    found += [SRC / f"{name}.py" for name in modules]
    missing = [path for path in found if not path.is_file()]
    if missing or not found:
        raise FileNotFoundError(f"dlmap sources missing: {missing or (packages, modules)}")
    return sorted(found)


def source_digest(packages=INVERSION_PACKAGES, modules=INVERSION_MODULES) -> str:
    """sha256 over those source files (paths relative to the package, and bytes)."""
    digest = hashlib.sha256()
    for path in source_files(packages, modules):
        name = path.relative_to(SRC).as_posix()
        digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def folder_digest(folder: Path, suffixes=(".png", ".jpg", ".jpeg")) -> str:
    """sha256 over a folder's image names, sizes and modification times ("missing" if it
    does not exist): a cheap change detector for folders the workflow reads but no rule
    writes (other enhancers' outputs, exported human studies)."""
    folder = Path(folder)
    if not folder.is_dir():
        return "missing"
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file() and (not suffixes or path.suffix.lower() in suffixes):
            stat = path.stat()
            digest.update(
                f"{path.relative_to(folder)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode()
            )
    return digest.hexdigest()
