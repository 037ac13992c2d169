"""Write dlmap's pyiqa classification tables from the zoo probe's JSON.

    python bench/pyiqa_nr_table.py results/pyiqa-probe.json

Rewrites ``src/dlmap/priors/pyiqa_nr.csv`` (class, reason, params, min_side from the probe;
alternative recomputed; aesthetic, training set, reference, licence and source kept from the
existing table, which is their source of truth) and ``pyiqa_nr_files.csv`` (every file each
metric's real build reads, as the probe recorded it). A metric the probe has and the table
lacks is refused: its reference and training set must be written first.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from pathlib import Path

from dlmap.priors import pyiqa_nr

PRIORS = Path(__file__).resolve().parents[1] / "src" / "dlmap" / "priors"
CLASSES = {
    "differentiable": "differentiable",
    "not differentiable": "not differentiable",
    "not a prior": "not a prior",
    "not an image-quality prior": "not a prior",  # the name in probe files before 0.33
    "not checked offline": "not checked offline",
}
FALLBACK = ("topiq_nr", "hyperiqa", "dbcnn", "cnniqa")  # general technical-quality models
CLIP_FAMILY = ("clipiqa", "qualiclip", "liqe", "maclip", "afine", "fgresq", "laion_aes")


def family(metric: str) -> str:
    return re.split(r"[-_+]", metric)[0]


def alternative(metric: str, usable: set[str]) -> str:
    """A differentiable metric to use instead: the same family, else a CLIP one for a CLIP
    model, else a general technical-quality model."""
    same = sorted(m for m in usable if family(m) == family(metric))
    if same:
        return same[0]
    if metric.startswith(CLIP_FAMILY):
        return next(m for m in ("clipiqa", "clipiqa+_rn50_512") if m in usable)
    return next(m for m in FALLBACK if m in usable)


def clean(text: str) -> str:
    text = re.sub(r"/tmp/\S*/placeholders/", "", text or "").replace("\n", " ")
    text = re.sub(r", <object object at 0x[0-9a-f]+>", "", text)
    return text if len(text) <= 220 else text[:217] + "..."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("probe", type=Path, help="the JSON bench/pyiqa_zoo_probe.py wrote")
    probe = json.loads(parser.parse_args().probe.read_text())
    results = probe["metrics"]
    table = PRIORS / "pyiqa_nr.csv"
    with open(table, newline="", encoding="utf-8") as handle:
        header = handle.readline()
        old = {row["metric"]: row for row in csv.DictReader(handle)}
    new = sorted(set(results) - set(old))
    if new:
        sys.exit(f"write the reference and training set of {', '.join(new)} into {table} first")
    usable = {m for m, r in results.items() if CLASSES[r["class"]] == "differentiable"}
    columns = list(pyiqa_nr.COLUMNS)
    with open(table, "w", newline="", encoding="utf-8") as handle:
        handle.write(header)
        writer = csv.DictWriter(handle, columns, lineterminator="\n", extrasaction="ignore")
        writer.writeheader()
        for metric in sorted(results):
            record, row = results[metric], dict(old[metric])
            row["class"] = CLASSES[record["class"]]
            row["reason"] = clean(record.get("reason", ""))
            row["alternative"] = "" if metric in usable else alternative(metric, usable)
            row["params"] = record.get("params", "")
            row["min_side"] = record.get("min_side") or ""
            writer.writerow(row)
    with open(PRIORS / "pyiqa_nr_files.csv", "w", newline="", encoding="utf-8") as handle:
        handle.write(
            f"# files each metric's real build reads (pyiqa {probe['pyiqa']}), recorded by "
            "bench/pyiqa_zoo_probe.py from pyiqa's, torchvision's, timm's and CLIP's loaders\n"
        )
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["metric", "kind", "url", "path"])
        for metric in sorted(results):
            for file in results[metric].get("files", []):
                path = file["path"].replace(str(Path.home()), "~", 1)  # as the probe now writes
                writer.writerow([metric, file["kind"], file["url"], path])
    counts = {
        kind: sum(CLASSES[r["class"]] == kind for r in results.values())
        for kind in CLASSES.values()
    }
    print(f"wrote {table} ({len(results)} metrics: {counts}) and pyiqa_nr_files.csv")


if __name__ == "__main__":
    main()
