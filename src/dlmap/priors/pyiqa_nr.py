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

The policy that turns a probe's measurements into a class lives here, not in the probe:
``classify`` (with ``NOT_PRIORS``, ``NOT_LAUNCHED`` and ``FD_TOLERANCE``).
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


DLMAP_METRICS = ("ms-liqe",)
"""What dlmap itself adds to pyiqa's list (``dlmap.msliqe.pyiqa_metric``): not pyiqa's."""


def pyiqa_own(listed: list[str]) -> list[str]:
    """The metrics of ``listed`` (an installed pyiqa's NR list) that pyiqa ships, without
    those dlmap registered into it (``DLMAP_METRICS``)."""
    return [name for name in listed if name not in DLMAP_METRICS]


def missing_from_table(listed: list[str]) -> list[str]:
    """The metrics pyiqa ships among ``listed`` (an installed pyiqa's NR list) that the
    table lacks."""
    return sorted(set(pyiqa_own(listed)) - set(table()))


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


# --- the policy that classifies a metric from what the probe measured -----------------------

#: multimodal language models from Hugging Face: their weights and config are both needed
NOT_LAUNCHED = {
    **dict.fromkeys(("qalign", "qalign_4bit", "qalign_8bit"), "mPLUG-Owl2 (LLaMA-2 7B) from HF"),
    "qrealign": "Qwen3.5-VL 0.8B from HF (q-future/Q-ReAlign-Mini-0.8B)",
    "qrealign-mini": "Qwen3.5-VL 0.8B from HF (q-future/Q-ReAlign-Mini-0.8B)",
    "qrealign-lite": "Qwen3.5-VL 4B from HF (q-future/Q-ReAlign-Lite-4B)",
    "qrealign-pro": "Qwen3.5-VL 9B from HF (q-future/Q-ReAlign-Pro-9B)",
}
#: not per-image quality scores
NOT_PRIORS = {
    **dict.fromkeys(("fid", "sfid", "fid_dinov2"), "distribution metric (two image sets' stats)"),
    "inception_score": "distribution metric over a set of images",
    "clipscore": "image-text alignment: needs a caption",
}
#: what a score measures where the name alone does not say (pyiqa's docs, training sets)
NOTES = {
    **dict.fromkeys(
        ("laion_aes", "nima", "nima-vgg16-ava", "musiq-ava", "topiq_iaa", "topiq_iaa_res50"),
        "aesthetic (AVA / LAION aesthetics)",
    ),
    **dict.fromkeys(
        ("topiq_nr-face", "topiq_nr-face-v1", "topiq_nr_swin-face"),
        "face IQA: pyiqa aligns the face with facexlib in NumPy (it warns: no gradient)",
    ),
    "uranker": "underwater image ranking",
}
#: the largest relative error against central finite differences that a correct gradient
#: reaches, by the precision of the check (a wrong or detached term gives O(1) errors)
FD_TOLERANCE = {"float64": 1e-3, "float32": 5e-2}


def classify(record: dict) -> tuple[str, str]:
    """A metric's class (one of ``CLASSES``) and reason from the probe's record of it: what
    it built, ran, and measured (``bench/pyiqa_zoo_probe.py`` writes such records; keys it
    did not reach are absent). The first rule that applies decides."""
    name = record["metric"]
    if name in NOT_LAUNCHED:
        return "not checked offline", f"needs {NOT_LAUNCHED[name]} (not launched)"
    if name in NOT_PRIORS:
        built = (
            "builds offline" if record.get("builds") else f"build: {record.get('build_error', '?')}"
        )
        return "not a prior", f"{NOT_PRIORS[name]}; {built}"
    if record.get("killed"):
        return "not checked offline", record["killed"]
    raw = "a checkpoint entry used as a raw tensor, no random stand-in: "
    if not record.get("builds"):
        error = record.get("build_error", record.get("crash", "no result"))
        return "not checked offline", (raw if "RandomState" in error else "") + error
    if not record.get("forward_ok"):
        errors = "; ".join(f"{k}: {v}" for k, v in record.get("forward_errors", {}).items())
        if record.get("forward_ok_without_grad"):
            return "not differentiable", f"forward fails under autograd ({errors})"
        return "not checked offline", (
            raw if "RandomState" in errors else ""
        ) + f"forward: {errors}"
    if not record.get("finite", False):
        return "not differentiable", "non-finite output"
    if "grad" in record:
        return "not differentiable", record["grad"]
    if not record.get("grad_finite"):
        return "not differentiable", "non-finite gradient"
    if not record.get("grad_nonzero_fraction"):
        return "not differentiable", "gradient identically zero"
    fd = record.get("fd") or {}
    if not fd.get("rel_err"):
        return "not checked offline", "finite non-zero gradient, but no time for the FD check"
    worst, tol = max(fd["rel_err"]), FD_TOLERANCE[fd["dtype"]]
    text = f"FD {fd['dtype']} rel err max {worst:.1e} ({fd['directions']} dirs)"
    if worst < tol:
        return "differentiable", text
    jumps = ""
    for k in range(fd["directions"]):
        numeric = [abs(t["numeric"]) for t in fd["tried"] if t.get("direction") == k]
        if len(numeric) > 1 and numeric[-1] > 10 * numeric[0]:
            jumps = "; FD grows ~1/eps: the score jumps (a piecewise-constant term)"
    return "not differentiable", f"gradient disagrees with FD: {text} >= {tol:g}{jumps}"
