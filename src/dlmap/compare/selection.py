"""Pair selection for the debiased 2AFC experiment (paper Sec. III-C, Eq. 18).

For every pair of enhancers (i, j) we greedily pick K images from the candidate set X:

    x^(k+1) = argmax over x in X \\ S^(k) of D1(r_i(x), r_j(x)) + gamma * D2(x, S^(k)),

with D1 and D2 from ``dlmap.compare.distances`` and no D2 term for the first pick (S^(0) is empty).
N enhancers give N(N-1)/2 pairs of K images each (the paper's "KN(N-1)").

Input layout: one folder per enhancer, each holding one PNG per candidate image under the
same file names (``NAME.png``; a folder written by ``dlmap enhance``, which holds
``NAME.x.png`` and ``NAME.y.png``, contributes its x images as ``NAME``); optionally a folder
of originals (any image format, matched by file stem). D2 embeds the paper's x: the original
image when originals are given, else the first enhancer's output, for every pair alike.

Costs: each (enhancer, image) passes through D1's network once and each image through D2's
embedding once; D1 of every pair is then computed from cached features, one image at a time
(only the features of the N outputs of one image are held at once).

Ties: candidates are sorted by name (Python's string order) and the first maximum wins, so
among exactly equal objectives the first image name is picked.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from dlmap import images
from dlmap.errors import InputError
from dlmap.files import write_rows, write_text_atomic
from dlmap.progress import bar as progress_bar

ORIGINAL_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
CSV_COLUMNS = ("enhancer_i", "enhancer_j", "image", "order", "d1", "d2", "objective")
CSV_COLUMNS += ("file_i", "file_j")
TIE_BREAK = "equal objectives: the first image name in Python's string order wins"


class SelectionInputError(InputError):
    """The enhanced images or the selection settings do not fit together (one line)."""


@dataclass(frozen=True)
class Pick:
    index: int  # into the candidate list
    d1: float
    d2: float | None  # None for the first pick (no D2 term)
    objective: float


def greedy_select(d1: np.ndarray, embeddings: np.ndarray, k: int, gamma: float) -> list[Pick]:
    """Eq. 18: ``k`` candidates picked greedily, in order, each maximising
    ``d1[x] + gamma * min over selected s of (1 - embeddings[x] . embeddings[s])``;
    the first pick maximises ``d1`` alone. ``embeddings`` rows are unit-norm. Ties go to
    the lowest index."""
    d1 = np.asarray(d1, dtype=np.float64)
    count = d1.shape[0]
    if not 1 <= k <= count:
        raise SelectionInputError(f"K = {k} must be between 1 and the {count} candidate images")
    if not gamma >= 0:
        raise SelectionInputError(f"gamma must be >= 0, got {gamma}")
    if not (np.isfinite(d1).all() and np.isfinite(embeddings).all()):
        raise SelectionInputError("a D1 value or D2 embedding is not finite (NaN or inf)")
    nearest = np.zeros(count)  # D2(x, S): no term while S is empty
    available = np.ones(count, dtype=bool)
    picks = []
    for _ in range(k):
        objective = np.where(available, d1 + gamma * nearest, -np.inf)
        best = int(np.argmax(objective))  # the first maximum: lowest index
        d2 = float(nearest[best]) if picks else None
        picks.append(Pick(best, float(d1[best]), d2, float(objective[best])))
        available[best] = False
        cosine_distance = 1.0 - embeddings @ embeddings[best]
        nearest = cosine_distance if len(picks) == 1 else np.minimum(nearest, cosine_distance)
    return picks


@dataclass
class Candidates:
    """Enhancer name -> folder (in pair order), image names (sorted), their files."""

    enhancers: dict[str, Path]
    names: list[str]
    files: dict[str, dict[str, Path]]  # enhancer -> image name -> file
    originals: dict[str, Path] | None = None  # image name -> original, if given
    originals_folder: Path | None = None

    @property
    def pairs(self) -> list[tuple[str, str]]:
        return list(itertools.combinations(self.enhancers, 2))

    @property
    def d2_image(self) -> str:
        first = next(iter(self.enhancers))
        return "originals" if self.originals else f"output of enhancer {first!r} (first)"


def enhancer_folders(folder: Path) -> dict[str, Path]:
    """The ``--enhanced`` layout: one subfolder per enhancer, named after it (sorted)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SelectionInputError(f"{folder}: not a folder of enhancer subfolders")
    found = {path.name: path for path in sorted(folder.iterdir()) if path.is_dir()}
    if not found:
        raise SelectionInputError(f"{folder}: no enhancer subfolders")
    return found


def _enhanced_files(name: str, folder: Path | list[Path]) -> dict[str, Path]:
    """One enhancer's images by name; ``folder`` may be a list of folders (the workflow's
    chunks), whose images are merged (a name in two of them is refused)."""
    if isinstance(folder, (list, tuple)):
        merged: dict[str, Path] = {}
        for part in folder:
            for image, path in _enhanced_files(name, Path(part)).items():
                if image in merged:
                    raise SelectionInputError(f"enhancer {name}: {merged[image]} and {path} clash")
                merged[image] = path
        return merged
    if not folder.is_dir():
        raise SelectionInputError(f"enhancer {name}: {folder} is not a folder")
    pngs = sorted(path for path in folder.iterdir() if path.suffix.lower() == ".png")
    written_by_enhance = [path for path in pngs if path.name.lower().endswith(".x.png")]
    if written_by_enhance:  # dlmap enhance's NAME.x.png (the y image and plots are skipped)
        return {path.name[: -len(".x.png")]: path for path in written_by_enhance}
    if not pngs:
        raise SelectionInputError(f"enhancer {name}: no PNG images in {folder}")
    return {path.stem: path for path in pngs}


def _original_files(folder: Path, names: list[str]) -> dict[str, Path]:
    if not Path(folder).is_dir():
        raise SelectionInputError(f"originals: {folder} is not a folder")
    found: dict[str, Path] = {}
    for path in sorted(Path(folder).iterdir()):
        if path.suffix.lower() in ORIGINAL_SUFFIXES:
            if path.stem in found:
                raise SelectionInputError(f"originals: {found[path.stem]} and {path} share a name")
            found[path.stem] = path
    missing = [name for name in names if name not in found]
    if missing:
        raise SelectionInputError(
            f"originals {folder}: no image for {len(missing)} of {len(names)} candidates: "
            f"{_listing(missing)}"
        )
    return {name: found[name] for name in names}


def _listing(names: list[str], shown: int = 5) -> str:
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def find_candidates(enhancers: dict[str, Path], originals: Path | None = None) -> Candidates:
    """The candidate set: the image names every enhancer's folder holds. Raises
    ``SelectionInputError`` naming each enhancer that lacks images the others have."""
    if len(enhancers) < 2:
        raise SelectionInputError(f"need at least two enhancers, got {len(enhancers)}")
    files = {
        name: _enhanced_files(name, folder if isinstance(folder, list) else Path(folder))
        for name, folder in enhancers.items()
    }
    every = sorted(set().union(*files.values()))
    problems = [
        f"enhancer {name} ({enhancers[name]}) lacks {_listing(sorted(set(every) - set(own)))}"
        for name, own in files.items()
        if len(own) < len(every)
    ]
    if problems:
        raise SelectionInputError("the enhancers' image names differ: " + "; ".join(problems))
    found = _original_files(originals, every) if originals is not None else None
    folder = Path(originals) if originals is not None else None
    folders = {k: v if isinstance(v, list) else Path(v) for k, v in enhancers.items()}
    return Candidates(folders, every, files, found, folder)


def _read(path: Path, size: int | None) -> torch.Tensor:
    return images.load_image(path, size=size)[None]


@dataclass
class DistanceTables:
    """D1 of every pair and image, and one D2 embedding per image."""

    candidates: Candidates
    d1: np.ndarray  # (pairs, images)
    embeddings: np.ndarray  # (images, d), unit-norm rows
    settings: dict = field(default_factory=dict)


def distance_tables(
    candidates: Candidates, d1_metric, d2_embedding, size: int | None = None, progress=True
) -> DistanceTables:
    """One pass over the images: for each, the N enhancers' outputs go through D1's
    ``features`` as one batch, D1 of every pair comes from those features, and the D2 image
    is embedded once. ``size`` resizes (bicubic, centre crop) every image first."""
    enhancers, pairs = list(candidates.enhancers), candidates.pairs
    d1 = np.zeros((len(pairs), len(candidates.names)))
    embeddings = []
    for index, name in enumerate(progress_bar(candidates.names, not progress, desc="features")):
        outputs = [_read(candidates.files[e][name], size) for e in enhancers]
        shapes = {tuple(out.shape[-2:]) for out in outputs}
        if len(shapes) > 1:
            sizes = ", ".join(
                f"{e} {tuple(o.shape[-2:])}" for e, o in zip(enhancers, outputs, strict=True)
            )
            raise SelectionInputError(f"image {name}: the enhancers' sizes differ ({sizes})")
        features = dict(zip(enhancers, d1_metric.features(torch.cat(outputs)), strict=True))
        for p, (first, second) in enumerate(pairs):
            d1[p, index] = d1_metric.distance(features[first], features[second])
        x = _read(candidates.originals[name], size) if candidates.originals else outputs[0]
        embeddings.append(d2_embedding.embed(x)[0])
    settings = {
        "d1": d1_metric.provenance,
        "d2": d2_embedding.provenance,
        "d2_image": candidates.d2_image,
        "size": size,
    }
    return DistanceTables(candidates, d1, np.stack(embeddings), settings)


def select_pairs(
    tables: DistanceTables, k: int = 20, gamma: float = 0.1, anchor: str | None = None
) -> list[dict]:
    """Eq. 18 for every pair of enhancers: K rows per pair, in order of selection. With
    ``anchor``, only the pairs that include it (Sec. V-B: MS-LIQE against each of the
    three models that inspired it, 3 x 20 pairs)."""
    candidates = tables.candidates
    if anchor is not None and anchor not in candidates.enhancers:
        raise SelectionInputError(f"anchor {anchor!r} is not one of the enhancers")
    rows = []
    for p, (first, second) in enumerate(candidates.pairs):
        if anchor is not None and anchor not in (first, second):
            continue
        for order, pick in enumerate(greedy_select(tables.d1[p], tables.embeddings, k, gamma)):
            name = candidates.names[pick.index]
            rows.append(
                {
                    "enhancer_i": first,
                    "enhancer_j": second,
                    "image": name,
                    "order": order + 1,
                    "d1": pick.d1,
                    "d2": pick.d2,
                    "objective": pick.objective,
                    "file_i": str(candidates.files[first][name]),
                    "file_j": str(candidates.files[second][name]),
                }
            )
    return rows


def selection_settings(tables: DistanceTables, k: int, gamma: float, rows: list) -> dict:
    """What the sidecar records: Eq. 18's settings, D1/D2 and their weights, the inputs."""
    import dlmap

    candidates = tables.candidates
    return {
        "equation": "Eq. 18 (greedy)",
        "k": k,
        "gamma": gamma,
        **tables.settings,
        "tie_break": TIE_BREAK,
        "enhancers": {
            name: [str(f) for f in folder] if isinstance(folder, list) else str(folder)
            for name, folder in candidates.enhancers.items()
        },
        "originals": None
        if candidates.originals_folder is None
        else str(candidates.originals_folder),
        "candidates": len(candidates.names),
        "pairs": len(candidates.pairs),
        "rows": len(rows),
        "inputs_sha256": inputs_sha256(candidates),
        "dlmap_version": dlmap.__version__,
    }


def inputs_sha256(candidates: Candidates) -> str:
    """One sha256 over every input file's name and content (enhanced images, originals)."""
    digest = hashlib.sha256()
    sources = [(e, candidates.files[e]) for e in candidates.enhancers]
    if candidates.originals:
        sources.append(("(originals)", candidates.originals))
    for label, files in sources:
        for name in candidates.names:
            content = hashlib.sha256(Path(files[name]).read_bytes()).hexdigest()
            digest.update(f"{label}\t{name}\t{content}\n".encode())
    return digest.hexdigest()


def write_pairs(rows: list[dict], settings: dict, out: Path) -> Path:
    """Write the rows as CSV (``out``) and the settings as ``<out>.json``, atomically;
    a first pick's d2 is left empty. Returns the sidecar's path."""
    shown = [{**row, "d2": "" if row["d2"] is None else row["d2"]} for row in rows]
    out = Path(out)
    sidecar = out.with_name(out.name + ".json")
    write_text_atomic(json.dumps(settings, indent=2) + "\n", sidecar)
    write_rows(shown, out, CSV_COLUMNS)
    return sidecar
