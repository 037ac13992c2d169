"""Loaders for the seven IQA data sets as distributed, and the one manifest format.

``load(name)`` reads a set's own score files (``.mat``, ``.xlsx``, ``.csv``) from the folder
``dlmap.data.sources`` names, checks that every image they list is on disk and returns one
``Entry`` per scored image. ``build_manifest`` assigns seeded splits and writes the manifest.

The manifest is a CSV with the columns ``COLUMNS``:

- ``image``: the path relative to the data root (``live/jp2k/img2.bmp``), so a manifest
  moves with its data; the JSON sidecar ``<manifest>.json`` records the root and settings.
- ``mos``: the score mapped to [0, 1] by the set's documented range (``SETS``), higher is
  better (DMOS sets are flipped: 1 - DMOS / range). Not clipped.
- ``mos_std``: the set's standard deviation in the same units (divided by the range), or
  empty where the set gives none (LIVE's dmos.mat, BID, SPAQ).
- ``reference``: the reference image the entry was made from (LIVE, CSIQ, KADID-10k),
  empty for the authentic sets; ``mos_original`` and ``scale_original``: the score as
  distributed and its scale.
- ``split``: ``train``, ``val`` or ``test``; synthetic-distortion sets are split by
  reference image (no reference in two splits), authentic sets by image, each set with its
  own ``random.Random(f"{name}:{seed}")``.

Reading (``read_manifest``), only ``REQUIRED_COLUMNS`` (``image`` and ``mos``) must be there,
so a manifest of one's own images and scores serves ``dlmap evaluate``; a missing optional
column, or an empty cell in one, reads as ``OPTIONAL_DEFAULTS`` says: ``dataset`` the
manifest's file stem, ``split`` empty (no split), ``mos_std`` none, ``reference`` empty,
``mos_original`` the ``mos`` as given and ``scale_original`` empty. Training needs ``split``
(a ``train`` split); ``dataset`` groups the correlations and the training pairs.

Excluded: LIVE's copies of its references (``orgs`` = 1) and LIVE Challenge's 7 training
images. SPAQ's originals (about 4000x3000) are resized once, shorter side to 512 as SPAQ's
protocol does, into ``<root>/spaq-short512/`` (``spaq_resized``); ``load("spaq")`` itself
points at the originals.
"""

from __future__ import annotations

import csv
import io
import json
import os
import random
from collections import Counter
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from dlmap import progress
from dlmap.data import readers, sources
from dlmap.data.sources import DatasetError, DatasetMissingError
from dlmap.errors import InputError
from dlmap.files import csv_text, write_bytes_atomic

COLUMNS = tuple("dataset image mos mos_std split reference mos_original scale_original".split())
REQUIRED_COLUMNS = ("image", "mos")
OPTIONAL_COLUMNS = tuple(column for column in COLUMNS if column not in REQUIRED_COLUMNS)
OPTIONAL_DEFAULTS = {  # what an absent optional column (or an empty cell) reads as
    "dataset": "the manifest's file stem",
    "split": "empty: no split",
    "mos_std": "empty: none",
    "reference": "empty: none",
    "mos_original": "the mos as given",
    "scale_original": "empty",
}
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Entry:
    """One scored image of the manifest (see the module docstring for each field)."""

    dataset: str
    image: str
    mos: float
    mos_std: float | None
    reference: str
    mos_original: float
    scale_original: str
    split: str = ""


# --- loading and checking ----------------------------------------------------------------------


def load(name: str, root=None) -> list[Entry]:
    """The scored images of set ``name`` with normalised scores (no split yet).

    Raises ``DatasetMissingError`` if the set's folder or a score file is absent and
    ``DatasetError`` (one line, naming the file) for a malformed file or a listed image that
    is not on disk.
    """
    facts, folder = sources.spec(name), sources.set_folder(name, root)
    if not folder.is_dir():
        raise DatasetMissingError(f"{name}: no folder {folder}; see `dlmap data fetch {name}`")
    for entry in facts.score_files:
        readers.score_file(folder, entry)
    records = readers.READERS[facts.name](folder, facts)
    _check_records(facts, folder, records)
    return [
        Entry(
            dataset=facts.name,
            image=f"{facts.name}/{record.image}",
            mos=facts.normalise(record.score),
            mos_std=None if record.std is None else facts.normalise_std(record.std),
            reference=record.reference,
            mos_original=record.score,
            scale_original=facts.scale,
        )
        for record in records
    ]


def _check_records(facts, folder: Path, records: list[readers.Record]) -> None:
    images = [record.image for record in records]
    twice = [image for image, times in Counter(images).items() if times > 1]
    if twice:
        raise DatasetError(f"{facts.name}: {twice[0]} is scored twice in {folder}")
    absent = [image for image in images if not (folder / image).is_file()]
    if absent:
        raise DatasetError(
            f"{facts.name}: {len(absent)} of {len(images)} images listed in its score file are "
            f"absent from {folder}, e.g. {absent[0]}"
        )


def check(name: str, root=None) -> str:
    """Verify the placement of set ``name`` (score files, known files, every listed image,
    the official count); returns a one-line summary, raises ``DatasetError`` otherwise."""
    facts, folder = sources.spec(name), sources.set_folder(name, root)
    missing = sources.missing_files(name, root)
    if missing:
        raise DatasetMissingError(
            f"missing {', '.join(missing)}. {sources.manual_steps(name, root)}"
        )
    entries = load(name, root)
    if len(entries) != facts.count:
        raise DatasetError(
            f"{len(entries)} scored images in {folder}, the official release has {facts.count}"
        )
    references = len({entry.reference for entry in entries if entry.reference})
    origin = f" from {references} references" if references else ""
    return f"{len(entries)} scored images{origin} in {folder}"


# --- splits and the manifest -----------------------------------------------------------------


def assign_splits(entries: list[Entry], seed=0, val_fraction=0.1, test_fraction=0.2):
    """Seeded train/val/test splits, per set: by reference for the synthetic-distortion sets,
    by image for the authentic ones. Defaults are LIQE's 7:1:2 (zwx8981/LIQE splits2)."""
    if val_fraction < 0 or test_fraction < 0 or val_fraction + test_fraction >= 1:
        raise InputError(
            f"fractions must be >= 0 and leave a training split: val {val_fraction:g}, "
            f"test {test_fraction:g}"
        )
    result = []
    for name in dict.fromkeys(entry.dataset for entry in entries):
        members = [entry for entry in entries if entry.dataset == name]
        by_reference = sources.spec(name).split_by == "reference"
        key = (lambda e: e.reference) if by_reference else (lambda e: e.image)  # noqa: E731
        groups = sorted({key(entry) for entry in members})
        random.Random(f"{name}:{seed}").shuffle(groups)
        n_test = int(test_fraction * len(groups) + 0.5)
        n_val = int(val_fraction * len(groups) + 0.5)
        split = {group: "train" for group in groups}
        split.update({group: "test" for group in groups[:n_test]})
        split.update({group: "val" for group in groups[n_test : n_test + n_val]})
        result += [replace(entry, split=split[key(entry)]) for entry in members]
    return result


def spaq_resized(entries: list[Entry], root=None, short_side: int = 512) -> list[Entry]:
    """SPAQ's protocol (h4nwei/SPAQ Prepare_image.py: torchvision Resize(512), bilinear, on
    the image as opened, EXIF orientation not applied; images with a side under 512 kept):
    write resized copies once into ``<root>/spaq-short<N>/`` as PNG (no second JPEG loss),
    in threads, and point the entries at them."""
    from concurrent.futures import ThreadPoolExecutor

    base = sources.data_root(root)
    cache = base / f"spaq-short{short_side}"
    cache.mkdir(parents=True, exist_ok=True)
    targets = [cache / (Path(entry.image).stem + ".png") for entry in entries]
    todo = [(base / e.image, t) for e, t in zip(entries, targets, strict=True) if not t.is_file()]
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        jobs = pool.map(lambda job: _resize_shorter_side(*job, short_side), todo)
        for _ in progress.bar(jobs, len(todo) < 100, total=len(todo), desc="SPAQ resize"):
            pass
    return [
        replace(entry, image=target.relative_to(base).as_posix())
        for entry, target in zip(entries, targets, strict=True)
    ]


def _resize_shorter_side(source: Path, target: Path, short_side: int) -> None:
    from PIL import Image

    with Image.open(source) as original:
        image = original.convert("RGB")
    width, height = image.size
    short, long = min(width, height), max(width, height)
    if short >= short_side:
        other = int(short_side * long / short)  # torchvision's truncation
        size = (short_side, other) if width <= height else (other, short_side)
        image = image.resize(size, Image.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    _write_atomic(target, buffer.getvalue())


def build_manifest(
    names, out, root=None, seed=0, val_fraction=0.1, test_fraction=0.2, spaq_short_side=512
) -> list[Entry]:
    """Load ``names``, split them, resize SPAQ (``spaq_short_side``; None or 0 keeps the
    originals) and write the manifest to ``out`` with its settings in ``<out>.json``."""
    entries = []
    for name in names:
        loaded = load(name, root)
        if sources.spec(name).name == "spaq" and spaq_short_side:
            loaded = spaq_resized(loaded, root, spaq_short_side)
        entries += loaded
    entries = assign_splits(entries, seed, val_fraction, test_fraction)
    settings = {
        "data_root": str(sources.data_root(root).resolve()),
        "image_paths": "relative to data_root",
        "seed": seed,
        "val_fraction": val_fraction,
        "test_fraction": test_fraction,
        "spaq_short_side": spaq_short_side or None,
        "mos": "score normalised to [0, 1] by the set's documented range, higher is better",
        "datasets": {
            name: {
                "entries": sum(e.dataset == name for e in entries),
                "scale": spec.scale,
                "split_by": spec.split_by,
                "page": spec.page,
            }
            for name, spec in ((n, sources.spec(n)) for n in names)
        },
    }
    write_manifest(entries, out, settings)
    return entries


def write_manifest(entries: list[Entry], path, settings: dict | None = None) -> None:
    """Write the manifest CSV (and ``<path>.json`` with ``settings``), each atomically."""
    rows = []
    for entry in entries:
        row = asdict(entry)
        row["mos_std"] = "" if entry.mos_std is None else repr(entry.mos_std)
        row["mos"], row["mos_original"] = repr(entry.mos), repr(entry.mos_original)
        rows.append(row)
    path = Path(path)
    _write_atomic(path, csv_text(rows, COLUMNS).encode())
    if settings is not None:
        text = json.dumps(settings, indent=2) + "\n"
        _write_atomic(path.with_name(path.name + ".json"), text.encode())


def read_manifest(path) -> list[Entry]:
    """The entries of a manifest written by ``write_manifest``, or of any CSV with at least
    the ``REQUIRED_COLUMNS`` (the others default as ``OPTIONAL_DEFAULTS`` says). Raises
    ``DatasetError`` (one line) for an unreadable file, a missing required column (naming
    the required and the optional columns), a bad number or split."""
    path = Path(path)
    rows = readers.read_csv(path, ())  # an unreadable file raises here
    header = list(rows[0]) if rows else _header(path)
    missing = [column for column in REQUIRED_COLUMNS if column not in header]
    if missing:
        found = ", ".join(name for name in header if name) or "none"
        raise DatasetError(
            f"{path}: no column {', '.join(missing)}; a manifest needs the columns "
            f"{', '.join(REQUIRED_COLUMNS)} (optional: {', '.join(OPTIONAL_COLUMNS)}; "
            f"header: {found})"
        )
    entries = []
    for number, row in enumerate(rows, start=2):
        where = f"{path} row {number}"
        text = {column: _cell(row.get(column)) for column in COLUMNS}
        if not text["image"]:
            raise DatasetError(f"{where}: no image")
        if text["split"] not in ("", *SPLITS):
            raise DatasetError(f"{where}: split {text['split']!r} not one of {', '.join(SPLITS)}")
        mos = readers.number(text["mos"], where)
        std, original = text["mos_std"], text["mos_original"]
        std = None if std == "" else readers.number(std, where)
        original = mos if original == "" else readers.number(original, where)
        values = dict(text, dataset=text["dataset"] or path.stem)
        values.update(mos=mos, mos_std=std, mos_original=original)
        entries.append(Entry(**values))
    return entries


def _cell(value) -> str:
    """A CSV cell as stripped text; an absent column or a short row reads as empty."""
    return "" if value is None else str(value).strip()


def _header(path: Path) -> list[str]:
    """The header row of a CSV file that ``readers.read_csv`` could read (it has no rows)."""
    with open(path, newline="", encoding="utf-8-sig") as handle:
        return [cell.strip() for cell in next(csv.reader(handle), [])]


def read_manifest_resolved(path) -> list[Entry]:
    """The manifest's entries with absolute image paths: relative ones are taken from the
    ``data_root`` its sidecar records (itself relative to the manifest's folder if it is
    relative), else from the manifest's own folder."""
    path = Path(path)
    sidecar = path.with_name(path.name + ".json")
    root = path.parent
    if sidecar.is_file():
        root = path.parent / json.loads(sidecar.read_text()).get("data_root", ".")
    return [
        replace(
            entry,
            image=str(Path(entry.image) if Path(entry.image).is_absolute() else root / entry.image),
        )
        for entry in read_manifest(path)
    ]


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, data)
