"""``dlmap check-results``: verify a results folder (the workflow's ``out``, or a folder
``dlmap enhance`` wrote) and list what must be made again.

Each file is checked by the strongest means it allows:

- a folder that carries a ``SHA256SUMS`` (every folder a workflow job makes, every
  ``dlmap enhance`` output folder; ``files.write_manifest``): each listed file against its
  digest, so a truncated or altered PNG, JSON or model file is found whatever its format;
- any other file by its format: a ``.pt`` is torch's zip archive (every member's CRC is read),
  a ``.png``/``.jpg`` is read through its decoder's own check, a ``.json`` parses, a
  ``.csv``/``.tsv`` parses with every row as wide as its header, and a ``.sqlite`` passes
  SQLite's ``quick_check``;
- anything else (logs, PDFs, HTML) is counted as unchecked.

What must be made again is the unit Snakemake makes: the folder that holds the manifest or
Snakemake's ``.snakemake_timestamp`` (a ``directory()`` output), or else the damaged file.
Removing them (``--remove``) makes the next workflow run rebuild them and everything made from
them. The hidden ``.NAME.*.tmp``/``.part`` a killed writer left are listed as leftovers.
Snakemake's own ``.snakemake`` folders are not results and are skipped.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import sqlite3
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from dlmap.files import MANIFEST, manifest_problems, read_manifest

FORMAT_CHECKED = (".pt", ".png", ".jpg", ".jpeg", ".json", ".csv", ".tsv", ".sqlite")
SKIPPED_FOLDERS = (".snakemake",)
SNAKEMAKE_MARKER = ".snakemake_timestamp"  # Snakemake's stamp in a directory() output


@dataclass
class Damaged:
    """A damaged ``file`` (why: ``reason``) and the output to make again, ``remake``."""

    remake: Path
    file: Path
    reason: str


@dataclass
class ResultsCheck:
    """What ``check_results`` found under ``root``: files and bytes read, how each was
    checked, the damaged ones and the leftovers of killed writers."""

    root: Path
    files: int = 0
    bytes: int = 0
    by_digest: int = 0
    by_format: int = 0
    unchecked: int = 0
    damaged: list[Damaged] = field(default_factory=list)
    leftovers: list[Path] = field(default_factory=list)

    def remake(self) -> list[Path]:
        """The outputs to make again (each once, sorted)."""
        return sorted({item.remake for item in self.damaged})


def format_problem(path: Path) -> str | None:
    """What is wrong with ``path`` by its format (None when it reads whole, or when its
    format is not one of ``FORMAT_CHECKED``)."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".pt":
            with zipfile.ZipFile(path) as archive:
                broken = archive.testzip()
            return f"member {broken} fails its CRC" if broken else None
        if suffix in (".png", ".jpg", ".jpeg"):
            from PIL import Image

            with Image.open(path) as image:
                image.verify()
            return None
        if suffix == ".json":
            json.loads(path.read_bytes())
            return None
        if suffix in (".csv", ".tsv"):
            return _table_problem(path, "\t" if suffix == ".tsv" else ",")
        if suffix == ".sqlite":
            return _sqlite_problem(path)
    except Exception as error:  # noqa: BLE001 - whatever a reader says of a damaged file
        return " ".join(str(error).split())[:200] or type(error).__name__
    return None


def _table_problem(path: Path, delimiter: str) -> str | None:
    with open(path, encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle, delimiter=delimiter))
    width = len(rows[0]) if rows else 0
    for number, row in enumerate(rows[1:], start=2):
        if len(row) != width:
            return f"row {number} has {len(row)} fields, its header {width}"
    return None


def _sqlite_problem(path: Path) -> str | None:
    connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        verdict = connection.execute("PRAGMA quick_check").fetchone()[0]
    finally:
        connection.close()
    return None if verdict == "ok" else f"SQLite quick_check: {verdict}"


def _leftover(name: str) -> bool:
    return name.startswith(".") and name.endswith((".tmp", ".part"))


def check_results(root: str | os.PathLike, progress=None) -> ResultsCheck:
    """Check every file under ``root`` (module docstring); ``progress``: a tqdm bar advanced
    by bytes read."""
    root = Path(root)
    found = ResultsCheck(root)
    for folder, subfolders, names in os.walk(root):
        folder = Path(folder)
        if MANIFEST in names or SNAKEMAKE_MARKER in names:
            _check_output_folder(folder, found, progress)
            subfolders[:] = []  # one output, made (and to be made again) whole
            continue
        found.leftovers += [folder / n for n in subfolders + names if _leftover(n)]
        subfolders[:] = sorted(
            n for n in subfolders if n not in SKIPPED_FOLDERS and not _leftover(n)
        )
        for name in sorted(n for n in names if not _leftover(n)):
            _check_loose(folder / name, folder / name, found, progress)
    return found


def _count(path: Path, found: ResultsCheck, progress) -> None:
    size = path.stat().st_size if path.is_file() else 0
    found.files += 1
    found.bytes += size
    if progress is not None:
        progress.update(size)


def _check_output_folder(folder: Path, found: ResultsCheck, progress) -> None:
    """A folder a job made (it carries a manifest or Snakemake's stamp): its listed files by
    digest, the rest by format; a damaged file makes the whole folder to be made again."""
    problems = manifest_problems(folder) or []
    found.damaged += [Damaged(folder, path, reason) for path, reason in problems]
    try:
        listed = set(read_manifest(folder))
    except ValueError:  # an unreadable manifest: already among the problems
        listed = set()
    for path in sorted(folder.rglob("*")):
        name = path.relative_to(folder).as_posix()
        if any(_leftover(part) for part in name.split("/")):
            found.leftovers += [path] if _leftover(path.name) else []
            continue
        if not path.is_file() or name in (MANIFEST, SNAKEMAKE_MARKER):
            continue
        if name in listed:
            _count(path, found, progress)
            found.by_digest += 1
        else:
            _check_loose(path, folder, found, progress)


def _check_loose(path: Path, remake: Path, found: ResultsCheck, progress) -> None:
    if not path.is_file():
        return
    _count(path, found, progress)
    if path.suffix.lower() not in FORMAT_CHECKED:
        found.unchecked += 1
        return
    found.by_format += 1
    problem = format_problem(path)
    if problem is not None:
        found.damaged.append(Damaged(remake, path, problem))


def remove(paths) -> None:
    """Remove each file or folder of ``paths`` (a missing one is no error)."""
    for path in map(Path, paths):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
