"""Export a study's answers: the long table, one count matrix per subject and their total.

``OUT/answers.csv`` has one row per stored answer (training included, flagged).
``OUT/subjects/NAME.csv`` and ``OUT/counts.csv`` are in the format ``dlmap rank`` reads: a
header row ``winner\\loser`` then the condition names (sorted), one row per condition in the
same order, cell (i, j) = times i was preferred over j. Every condition is in every file.
Training answers are not counted; subjects without a counted answer get no file. The totals
are the sum of the subject files. ``OUT/export.json`` carries the pairs file's sha256 and
every image's sha256, so that ranking can refuse counts whose images have changed since.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import re
import sqlite3
from pathlib import Path

import numpy as np

from dlmap.experiment import study
from dlmap.files import check_output_folder, csv_text, write_text_atomic

ANSWER_COLUMNS = (
    "subject",
    "trial",
    "training",
    "pair_row",
    "image",
    "left",
    "right",
    "chosen",
    "chosen_side",
    "input",
    "response_ms",
    "shown_at",
    "answered_at",
    "received_at",
    "screen_width",
    "screen_height",
    "device_pixel_ratio",
    "zoom",
    "window_width",
    "window_height",
)
CORNER = "winner\\loser"


def safe_file_name(name: str) -> str:
    """``name`` with every character outside [A-Za-z0-9._-] replaced by ``_``."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", name).strip("._")
    return cleaned or "subject"


def answers(connection: sqlite3.Connection) -> list[dict]:
    """Every stored answer with its subject, trial number (1-based) and condition names."""
    rows = connection.execute(
        "SELECT s.id AS subject_id, s.name AS subject, t.position + 1 AS trial, t.training,"
        " t.swapped, p.row AS pair_row, p.image, p.enhancer_i, p.enhancer_j, a.*"
        " FROM answers a JOIN trials t ON t.id = a.trial JOIN subjects s ON s.id = t.subject"
        " JOIN pairs p ON p.id = t.pair ORDER BY s.id, t.position"
    )
    result = []
    for row in rows:
        record = dict(row)
        pair = (record["enhancer_i"], record["enhancer_j"])
        record["left"], record["right"] = pair[::-1] if record["swapped"] else pair
        record["chosen_side"] = record["chosen"]
        record["chosen"] = record[record["chosen_side"]]
        result.append(record)
    return result


def count_matrix(records: list[dict], conditions: list[str]) -> np.ndarray:
    """C[i, j] = times condition i was chosen over condition j (training not counted)."""
    index = {name: i for i, name in enumerate(conditions)}
    counts = np.zeros((len(conditions), len(conditions)), dtype=int)
    for record in records:
        if record["training"]:
            continue
        loser = record["right"] if record["chosen_side"] == "left" else record["left"]
        counts[index[record["chosen"]], index[loser]] += 1
    return counts


def matrix_csv(counts: np.ndarray, conditions: list[str]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([CORNER, *conditions])
    for name, row in zip(conditions, counts, strict=True):
        writer.writerow([name, *(int(value) for value in row)])
    return buffer.getvalue()


def subject_file_stems(subjects: list[dict]) -> dict[int, str]:
    """A file stem per subject (by id): the name made file-safe (``safe_file_name``), then
    ``-ID`` and ``-ID-2``, ``-ID-3``... until it is unique, compared case-insensitively (so
    it stays unique on case-insensitive file systems) against every stem given before."""
    stems, used = {}, set()
    for subject in subjects:
        base = safe_file_name(subject["name"])
        candidates = itertools.chain(
            [base, f"{base}-{subject['id']}"],
            (f"{base}-{subject['id']}-{n}" for n in itertools.count(2)),
        )
        stem = next(c for c in candidates if c.lower() not in used)
        used.add(stem.lower())
        stems[subject["id"]] = stem
    return stems


def spreadsheet_safe(value):
    """``value`` for a CSV cell a person may open in a spreadsheet: text that begins with
    ``= + - @`` (or a tab or carriage return) gets a leading apostrophe, so it is shown, not
    run as a formula. Only for answers.csv, which no dlmap command reads back."""
    if isinstance(value, str) and value.startswith(("=", "+", "-", "@", "\t", "\r")):
        return "'" + value
    return value


def read_study(db: Path) -> tuple[dict, list[dict], dict, list[dict]]:
    """(meta, answers, image sha256 by path, progress) of the study ``db``, read in one
    transaction: one consistent snapshot even while subjects are answering."""
    connection = study.open_study(db)
    try:
        connection.execute("BEGIN")
        values = study.meta(connection)
        records = answers(connection)
        images = {r["path"]: r["sha256"] for r in connection.execute("SELECT * FROM images")}
        subjects = study.progress(connection)
        connection.execute("COMMIT")
        try:
            study.verify_study(connection)
        except study.StudyError as error:
            raise study.StudyError(f"{db}: {error}; not exported") from None
    finally:
        connection.close()
    return values, records, images, subjects


def export_study(db: Path, out: Path) -> dict:
    """Write answers.csv, subjects/*.csv, counts.csv and export.json to ``out``; returns the
    contents of export.json. Refused, with nothing written, when ``out`` cannot be a folder,
    already holds subject files, or the study's pairs file or an image changed since it was
    created (``study.verify_study``). Every file is written whole or not at all."""
    out = check_output_folder(out, "--out")
    check_output_folder(out / "subjects", "--out")
    if (out / "subjects").is_dir() and any((out / "subjects").glob("*.csv")):
        stale = len(list((out / "subjects").glob("*.csv")))
        raise study.StudyError(
            f"{out / 'subjects'}: holds {stale} CSV file(s) already; export into an empty "
            "folder (old subject files would be mixed into the ranking)"
        )
    values, records, images, subjects = read_study(db)
    conditions = sorted(values["conditions"])
    safe = ({k: spreadsheet_safe(v) for k, v in record.items()} for record in records)
    texts = {"answers.csv": csv_text(safe, ANSWER_COLUMNS, extrasaction="ignore")}
    total = np.zeros((len(conditions), len(conditions)), dtype=int)
    counted = []
    for subject in subjects:
        counts = count_matrix([r for r in records if r["subject_id"] == subject["id"]], conditions)
        if counts.any():
            counted.append((subject, counts))
            total += counts
    stems = subject_file_stems([subject for subject, _ in counted])
    files = {}
    for subject, counts in counted:
        files[subject["name"]] = f"subjects/{stems[subject['id']]}.csv"
        texts[files[subject["name"]]] = matrix_csv(counts, conditions)
    texts["counts.csv"] = matrix_csv(total, conditions)
    summary = {
        "study": str(Path(db).resolve()),
        "exported": study.now(),
        "pairs_file": values["pairs_file"],
        "pairs_sha256": values["pairs_sha256"],
        "pairs_sidecar_sha256": values.get("pairs_sidecar_sha256"),
        "images_dir": values["images_dir"],
        "image_sha256": images,
        "conditions": conditions,
        "seed": values["seed"],
        "training_pairs": values["training"],
        "repeats": values["repeats"],
        "subject_files": files,
        "subjects": [
            {"name": s["name"], "answered": s["answered"], "trials": s["total"]} for s in subjects
        ],
        "counted_answers": int(total.sum()),
        "note": "training answers are in answers.csv but not in the counts",
    }
    texts["export.json"] = json.dumps(summary, indent=2) + "\n"
    (out / "subjects").mkdir(parents=True, exist_ok=True)
    for name, text in texts.items():  # export.json last: it marks a complete export
        write_text_atomic(text, out / name)
    return summary


def verify_export(export: Path, pairs: Path, images_dir: Path) -> dict:
    """Check that an exported study still matches the pairs file and the images it was
    built from (docs/compare.md, "The 2AFC experiment": old answers are never mixed with new
    images). Returns export.json's contents; raises ``StudyError`` naming the first mismatch."""
    export, images_dir = Path(export), Path(images_dir)
    summary_path = export / "export.json"
    if not summary_path.is_file():
        raise study.StudyError(
            f"{export}: no export.json; run `dlmap experiment export --db STUDY --out {export}`"
            " after the subjects have answered"
        )
    try:
        summary = json.loads(summary_path.read_text())
        summary["pairs_sha256"], summary["image_sha256"].items()  # noqa: B018 (shape check)
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError):
        raise study.StudyError(
            f"{summary_path}: not an export.json of dlmap experiment export (unreadable or "
            "incomplete); export the study again"
        ) from None
    if summary["pairs_sha256"] != study.sha256_file(pairs):
        raise study.StudyError(
            f"{export}: the study was built from other pairs than {pairs} (sha256 "
            f"{summary['pairs_sha256'][:12]} vs {study.sha256_file(pairs)[:12]}); its answers "
            "do not belong to the current enhanced images"
        )
    for relative, digest in summary["image_sha256"].items():
        path = images_dir / relative
        if not path.is_file() or study.sha256_file(path) != digest:
            raise study.StudyError(
                f"{export}: {path} changed since the study was built; rerun the study"
            )
    return summary
