"""Every no-reference metric of the pinned pyiqa, classified once as a prior candidate.

``pyiqa_nr.csv`` (beside this module) has one row per metric that
``pyiqa.list_models(metric_mode="NR")`` lists in pyiqa ``PYIQA_VERSION``, with its class:

* ``differentiable``: builds offline with random weights of its real architecture, and its
  score's gradient is finite, non-zero and matches central finite differences along random
  directions (``bench/pyiqa_zoo_probe.py`` measured it);
* ``not differentiable``: builds, but the gradient is missing, zero or wrong (``reason``);
* ``not a prior``: not a per-image quality score (distribution metrics such as FID, a
  caption-image score such as CLIPScore);
* ``not checked offline``: could not be built here (``reason``: e.g. a 7B language model).

Columns: ``metric``, ``class``, ``reason``, ``alternative`` (a differentiable metric to use
instead, for the classes that cannot be priors), ``aesthetic`` (yes: trained to predict
aesthetics, not technical quality), ``training_set``, ``reference``, ``licence``, ``source``
(where the row's facts come from), ``params`` (parameters as pyiqa builds it, every module
counted once, CLIP's text tower included; empty if it does not build offline) and
``min_side`` (the smallest square side, of 32, 64, ..., 224, that its pyiqa protocol scores;
the generic prior upsamples smaller images to it and says so). pyiqa's own tables hold the
rest of each metric's metadata (``lower_better``, ``score_range``): ``pyiqa_metadata`` reads
them there.

``pyiqa_nr_files.csv`` lists, for each metric that builds offline, every file a real build
reads (its URL, its kind and its path under the dlmap cache), as recorded by the probe from
pyiqa's, torchvision's, timm's and CLIP's own loaders: the weights catalogue's ``pyiqa:NAME``
sets are made from it. Both files are written by ``bench/pyiqa_nr_table.py`` from the probe's
JSON (the reference, training-set and licence columns are kept from the existing table).
"""

from __future__ import annotations

import csv
import difflib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from dlmap.errors import InputError

PYIQA_VERSION = "0.1.16"
TABLE = Path(__file__).with_name("pyiqa_nr.csv")
FILES = Path(__file__).with_name("pyiqa_nr_files.csv")
FILE_COLUMNS = ("metric", "kind", "url", "path")
CLASSES = ("differentiable", "not differentiable", "not a prior", "not checked offline")
COLUMNS = (
    "metric",
    "class",
    "reason",
    "alternative",
    "aesthetic",
    "training_set",
    "reference",
    "licence",
    "source",
    "params",
    "min_side",
)


class UnusablePriorError(InputError):
    """A pyiqa metric that cannot serve as a prior; the message says why and what to use."""


@dataclass(frozen=True)
class MetricRow:
    """One metric of the table (see the module doc for the columns)."""

    metric: str
    kind: str
    reason: str
    alternative: str
    aesthetic: bool
    training_set: str
    reference: str
    licence: str
    source: str
    params: int | None = None
    min_side: int | None = None

    @property
    def usable(self) -> bool:
        return self.kind == "differentiable"


def _number(text: str, metric: str) -> int | None:
    if not text:
        return None
    if not text.isdigit():
        raise InputError(f"{TABLE}: {metric}: {text!r} is not a whole number")
    return int(text)


@cache
def table() -> dict[str, MetricRow]:
    """The classification table, by pyiqa metric name; InputError if the file is malformed."""
    with open(TABLE, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(row for row in handle if not row.startswith("#"))
        if tuple(reader.fieldnames or ()) != COLUMNS:
            raise InputError(f"{TABLE}: columns {reader.fieldnames}, expected {COLUMNS}")
        rows = {}
        for line in reader:
            row = MetricRow(
                metric=line["metric"],
                kind=line["class"],
                reason=line["reason"],
                alternative=line["alternative"],
                aesthetic=line["aesthetic"] == "yes",
                training_set=line["training_set"],
                reference=line["reference"],
                licence=line["licence"],
                source=line["source"],
                params=_number(line["params"], line["metric"]),
                min_side=_number(line["min_side"], line["metric"]),
            )
            if row.kind not in CLASSES or row.metric in rows:
                raise InputError(f"{TABLE}: {row.metric}: bad class {row.kind!r} or a repeat")
            rows[row.metric] = row
    for row in rows.values():
        if not row.usable and (row.alternative not in rows or not rows[row.alternative].usable):
            raise InputError(
                f"{TABLE}: {row.metric}: alternative {row.alternative!r} is not "
                "a differentiable metric of the table"
            )
    return rows


def counts() -> dict[str, int]:
    """How many metrics the table has in each class."""
    rows = table().values()
    return {kind: sum(row.kind == kind for row in rows) for kind in CLASSES}


def missing_from_table(listed: list[str]) -> list[str]:
    """The metrics of ``listed`` (an installed pyiqa's NR list) that the table lacks."""
    return sorted(set(listed) - set(table()))


def require_usable(metric: str) -> MetricRow:
    """The row of ``metric`` if it can be a prior; else ``UnusablePriorError`` in one line
    saying why and naming a differentiable alternative (or the closest names, if unknown)."""
    rows = table()
    if metric not in rows:
        close = difflib.get_close_matches(metric, list(rows), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UnusablePriorError(f"pyiqa {PYIQA_VERSION} lists no NR metric {metric!r}{hint}")
    row = rows[metric]
    if not row.usable:
        raise UnusablePriorError(
            f"pyiqa:{metric} cannot be a prior ({row.kind}: {row.reason}); a close "
            f"alternative: pyiqa:{row.alternative}"
        )
    return row


def pyiqa_metadata(metric: str) -> dict:
    """What pyiqa's own table records of ``metric``: ``lower_better`` (False if unset) and
    ``score_range`` (its text, e.g. "~0, ~100")."""
    from pyiqa.default_model_configs import DEFAULT_CONFIGS

    config = DEFAULT_CONFIGS[metric]
    return {
        "lower_better": bool(config.get("lower_better", False)),
        "score_range": str(config.get("score_range", "")),
    }


@cache
def files_table() -> dict[str, tuple[tuple[str, str, str], ...]]:
    """``pyiqa_nr_files.csv``: metric -> its files as (kind, url, path under the cache)."""
    files: dict[str, list] = {}
    with open(FILES, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(row for row in handle if not row.startswith("#"))
        if tuple(reader.fieldnames or ()) != FILE_COLUMNS:
            raise InputError(f"{FILES}: columns {reader.fieldnames}, expected {FILE_COLUMNS}")
        for line in reader:
            files.setdefault(line["metric"], []).append((line["kind"], line["url"], line["path"]))
    return {metric: tuple(rows) for metric, rows in files.items()}


def score_range(metric: str) -> tuple[float, float] | None:
    """pyiqa's ``score_range`` text (e.g. "~0, ~100", "1, 5") as two numbers, or None."""
    import re

    numbers = re.findall(r"-?\d+(?:\.\d+)?", pyiqa_metadata(metric)["score_range"])
    if len(numbers) != 2 or float(numbers[0]) >= float(numbers[1]):
        return None
    return float(numbers[0]), float(numbers[1])
