"""The paper's test images (Sec. IV-A): 500 photographs with realistic mixed distortions from
LIVE Challenge, KonIQ-10k and SPAQ, resized to 512x512 by bicubic interpolation and centre
cropping, excluding images "of extremely low quality or lacking a clear foreground subject".

The paper names neither the images nor its rules. Ours, all recorded with the selection:

* ``exclude``: ids ``"dataset:image"`` a person excluded by eye (no clear foreground subject
  cannot be decided by a formula);
* ``min_mos``: "extremely low quality" is a normalised MOS (``dlmap.data.manifests``: [0, 1],
  higher is better) below this value (default 0.2, the bottom fifth of the scale);
* ``min_side``: images whose shorter side is below this are left out (default 0: none; LIVE
  Challenge's images are 500x500 and the paper resizes them to 512 like the others);
* the rest is sampled without replacement, seeded, in equal shares per data set (the
  remainder going to the first sets in the order given).
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

from PIL import Image

from dlmap import images
from dlmap.errors import InputError
from dlmap.files import csv_text, write_text_atomic

COLUMNS = ("id", "dataset", "image", "mos")


@dataclass(frozen=True)
class SelectionRules:
    count: int = 500
    seed: int = 0
    exclude: list[str] = field(default_factory=list)
    min_mos: float = 0.2
    min_side: int = 0

    def __post_init__(self):
        if self.count < 1:
            raise InputError(f"count must be >= 1, got {self.count}")
        if not 0 <= self.min_mos <= 1:
            raise InputError(f"min_mos is a normalised MOS in [0, 1], got {self.min_mos}")


def _shorter_side(path: str) -> int:
    with Image.open(path) as image:  # reads the header only
        return min(image.size)


def _reason(entry, rules: SelectionRules, excluded_ids: set[str]) -> str | None:
    if f"{entry.dataset}:{Path(entry.image).name}" in excluded_ids:
        return "excluded by hand (exclude list)"
    if entry.mos < rules.min_mos:
        return f"extremely low quality (MOS {entry.mos:.3f} < {rules.min_mos})"
    if rules.min_side and _shorter_side(entry.image) < rules.min_side:
        return f"shorter side below {rules.min_side} px"
    return None


def shares(count: int, datasets: list[str]) -> dict[str, int]:
    """Equal shares of ``count`` per data set, the remainder to the first ones."""
    base, extra = divmod(count, len(datasets))
    return {name: base + (index < extra) for index, name in enumerate(datasets)}


def select_test_images(entries_by_dataset: dict, rules: SelectionRules = SelectionRules()):
    """Apply the rules, then sample each data set's share (seeded, per data set). Returns
    (selected rows ``{id, dataset, image, mos}`` with ids 0000, 0001, ... in data-set order,
    excluded rows ``{dataset, image, reason}``); ValueError when a set has too few."""
    if not entries_by_dataset:
        raise InputError("no data sets to select test images from")
    excluded_ids = set(rules.exclude)
    selected, excluded = [], []
    wanted = shares(rules.count, list(entries_by_dataset))
    for name, entries in entries_by_dataset.items():
        eligible = []
        for entry in sorted(entries, key=lambda e: e.image):
            reason = _reason(entry, rules, excluded_ids)
            if reason:
                excluded.append({"dataset": name, "image": entry.image, "reason": reason})
            else:
                eligible.append(entry)
        if len(eligible) < wanted[name]:
            raise InputError(
                f"{name}: {len(eligible)} eligible images of {len(entries)} (after the rules), "
                f"but its share of the {rules.count} test images is {wanted[name]}"
            )
        rng = random.Random(f"{rules.seed}:{name}")
        for entry in rng.sample(eligible, wanted[name]):
            selected.append({"dataset": name, "image": entry.image, "mos": entry.mos})
    for index, row in enumerate(selected):
        row["id"] = f"{index:04d}"
    return [{k: row[k] for k in COLUMNS} for row in selected], excluded


def write_selection(selected: list[dict], excluded: list[dict], rules, path) -> None:
    """The selection CSV (``id,dataset,image,mos``) and ``<path>.json`` with the rules, the
    counts and every exclusion with its reason, each written atomically."""
    text = csv_text(selected, COLUMNS)
    path = Path(path)
    record = {
        "section": "paper Sec. IV-A (test images)",
        "rules": asdict(rules),
        "selected": len(selected),
        "per_dataset": {
            d: sum(r["dataset"] == d for r in selected)
            for d in dict.fromkeys(r["dataset"] for r in selected)
        },
        "excluded": excluded,
    }
    write_text_atomic(json.dumps(record, indent=2) + "\n", path.with_name(path.name + ".json"))
    write_text_atomic(text, path)


def preprocess(source, target, size: int = 512) -> None:
    """Bicubic resize (shorter side to ``size``) and centre crop to size x size, as a PNG."""
    images.save_png_atomic(images.load_image(source, size=size), target)
