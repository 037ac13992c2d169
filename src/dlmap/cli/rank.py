"""``dlmap rank``: JOD scores, 95% intervals, group letters, p-values and an observer report
from pairwise-comparison counts (Eq. 19, reproducing pwcmp; see ``dlmap.compare.ranking`` and
``dlmap.compare.significance``).

Input: COUNTS.csv is a square matrix: a header row of condition names (its first cell is a
label of your choice), then one row per condition, named in its first cell in the header's
order; cell (row i, column j) = the number of times i was preferred over j (non-negative
integers, 0 on the diagonal). ``--per-subject DIR`` holds one such file per subject (*.csv,
same conditions, same order) whose sum must equal COUNTS.csv.

Outputs, all written after every input has been checked:

* SCORES.csv - ``condition,jod,ci_low,ci_high,group``, best first. The intervals and group
  letters need the bootstrap over subjects: without ``--per-subject`` (or with
  ``--bootstrap 0``) those cells are left empty.
* SCORES.pvalues.csv - the one-sided p of every pair (pw_significance_matrix; two conditions
  differ when p < 0.025), rows and columns in SCORES.csv's order; empty without bootstrap.
* SCORES.outliers.csv - with ``--per-subject``: pw_outlier_analysis per subject (reported
  only; nobody is excluded).
* SCORES.json - where the numbers came from: input files and their sha256, resamples, seed,
  method, warnings.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import math
import sys
from pathlib import Path

import numpy as np

from dlmap.cli.main import add_command
from dlmap.errors import UsageError

DEFAULT_RESAMPLES = 500  # pwcmp's example default


def add_rank_parser(commands) -> argparse.ArgumentParser:
    """Add ``rank`` to an argparse subparsers object; returns its parser."""
    rank = add_command(
        commands,
        "rank",
        description=__doc__.split("\n\n")[0],
    )
    rank.add_argument(
        "counts", type=Path, metavar="COUNTS.csv", help="square matrix: C_ij = i preferred to j"
    )
    rank.add_argument(
        "--per-subject",
        type=Path,
        metavar="DIR",
        help="one COUNTS-like *.csv per subject, summing to COUNTS.csv (for the bootstrap and "
        "the observer screening)",
    )
    rank.add_argument(
        "--bootstrap",
        type=int,
        default=DEFAULT_RESAMPLES,
        metavar="N",
        help=f"resamples of subjects (default {DEFAULT_RESAMPLES}; 0: no intervals)",
    )
    rank.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default 0)")
    rank.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="SCORES.csv",
        help="scores; SCORES.pvalues.csv, SCORES.outliers.csv and SCORES.json go beside it",
    )
    return rank


def _number(path: Path, row: str, column: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        message = f"{path}: row {row!r}, column {column!r}: {text!r} is not a number"
        raise UsageError(message) from None
    if not math.isfinite(value) or value < 0 or value != round(value):
        raise UsageError(
            f"{path}: row {row!r}, column {column!r}: {text.strip()!r} is not a count "
            "(a non-negative integer)"
        )
    return value


def read_counts(path: Path, allow_empty: bool = False) -> tuple[list[str], np.ndarray]:
    """Condition names and the count matrix of one CSV; UsageError naming the file."""
    try:
        with open(path, newline="") as handle:
            rows = [row for row in csv.reader(handle) if any(cell.strip() for cell in row)]
    except OSError as error:
        raise UsageError(f"{path}: {error.strerror or error}") from error
    except (UnicodeDecodeError, csv.Error) as error:
        raise UsageError(f"{path}: not a readable CSV file ({error})") from error
    if len(rows) < 2:
        raise UsageError(
            f"{path}: empty matrix (needs a header row of condition names and one row each)"
        )
    names = [cell.strip() for cell in rows[0][1:]]
    if len(names) < 2 or not all(names) or len(set(names)) != len(names):
        raise UsageError(f"{path}: the header needs 2 or more distinct, non-empty names")
    if len(rows) - 1 != len(names):
        raise UsageError(
            f"{path}: not square: {len(names)} names in the header, {len(rows) - 1} rows"
        )
    matrix = np.zeros((len(names), len(names)))
    for index, row in enumerate(rows[1:]):
        if len(row) != len(names) + 1:
            raise UsageError(
                f"{path}: not square: row {index + 1} has {len(row) - 1} counts, "
                f"expected {len(names)}"
            )
        if row[0].strip() != names[index]:
            raise UsageError(
                f"{path}: row {index + 1} is named {row[0].strip()!r} but column {index + 1} "
                f"is {names[index]!r} (the first column must list the header's names in order)"
            )
        for column, text in enumerate(row[1:]):
            matrix[index, column] = _number(path, names[index], names[column], text)
    if np.any(np.diag(matrix)):
        raise UsageError(f"{path}: the diagonal must be 0 (a condition is not compared to itself)")
    if not allow_empty and not matrix.any():
        raise UsageError(f"{path}: holds no comparison (every count is 0)")
    return names, matrix


def read_per_subject(folder: Path, names: list[str], counts: np.ndarray, counts_path: Path):
    """The per-subject files of ``folder`` (sorted by name) as K x N x N, and their paths."""
    if not folder.is_dir():
        raise UsageError(f"--per-subject {folder}: not a folder")
    paths = sorted(folder.glob("*.csv"))
    if not paths:
        raise UsageError(f"--per-subject {folder}: holds no *.csv file")
    stack = []
    for path in paths:
        subject_names, matrix = read_counts(path, allow_empty=True)
        if subject_names != names:
            raise UsageError(
                f"{path}: its conditions {subject_names} differ from {counts_path}'s {names} "
                "(same names, same order)"
            )
        stack.append(matrix)
    stack = np.stack(stack)
    mismatch = np.argwhere(stack.sum(axis=0) != counts)
    if len(mismatch):
        row, column = mismatch[0]
        raise UsageError(
            f"--per-subject {folder}: the subjects sum to {stack.sum(axis=0)[row, column]:g} "
            f"for row {names[row]!r}, column {names[column]!r}, but {counts_path} has "
            f"{counts[row, column]:g}"
        )
    return stack, paths


def _write_atomic(path: Path, text: str) -> None:
    from dlmap.files import write_text_atomic

    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(text, path)


def _csv(rows: list[list]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue()


def _fmt(value: float) -> str:
    return "" if not math.isfinite(value) else f"{value:.6f}"


def _fmt_p(value: float) -> str:
    return "" if not math.isfinite(value) else f"{value:.6g}"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def output_paths(out: Path) -> dict[str, Path]:
    """SCORES.csv and the files written beside it."""
    base = out.with_suffix("") if out.suffix.lower() == ".csv" else out
    return {
        "scores": out,
        "pvalues": base.with_name(base.name + ".pvalues.csv"),
        "outliers": base.with_name(base.name + ".outliers.csv"),
        "record": base.with_name(base.name + ".json"),
    }


def _simulated(path: Path) -> bool:
    """Counts from ``dlmap simulate`` say so in their header's first cell."""
    from dlmap.compare.observers import LABEL

    with open(path, newline="") as handle:
        first = next(csv.reader(handle), [""])
    return bool(first) and first[0].strip() == LABEL


def rank_command(args) -> int:
    from dlmap.compare import ranking, significance

    if args.bootstrap < 0 or args.bootstrap == 1:
        raise UsageError(
            f"--bootstrap must be 0 (no intervals) or at least 2, got {args.bootstrap}"
        )
    paths = output_paths(args.out)
    inputs = [args.counts.resolve()]
    names, counts = read_counts(args.counts)
    stack = files = None
    if args.per_subject is not None:
        stack, files = read_per_subject(args.per_subject, names, counts, args.counts)
        inputs += [path.resolve() for path in files]
        if len(stack) < 2:
            raise UsageError(
                f"--per-subject {args.per_subject}: holds 1 subject; the bootstrap and the "
                "observer screening need 2 or more"
            )
    if any(path.resolve() in inputs for path in paths.values()):
        raise UsageError(f"--out {args.out}: would overwrite an input file")

    fit = ranking.scale(counts)
    notes = list(fit.notes)
    size = len(names)
    low = high = np.full(size, np.nan)
    p_values = np.full((size, size), np.nan)
    groups = [""] * size
    boot = None
    if stack is not None and args.bootstrap:
        boot = significance.bootstrap_scale(stack, args.bootstrap, args.seed, start=fit.jod)
        low, high = boot.ci_low, boot.ci_high
        p_values = significance.significance_matrix(fit.jod, boot.covariance)
        groups = significance.compact_letters(fit.jod, significance.significant(p_values))
        for count, what in (
            (boot.disconnected, "a disconnected comparison graph (linked as pwcmp does)"),
            (boot.bounded, "no finite maximum (the bounded result)"),
            (boot.unconverged, "an optimiser that did not converge"),
        ):
            if count:
                notes.append(f"{count} of {args.bootstrap} bootstrap resamples had {what}")
    else:
        notes.append(
            "no bootstrap (needs --per-subject and --bootstrap >= 2): ci_low, ci_high, group "
            "and the p-values are left empty"
        )
    outliers = significance.outlier_analysis(stack) if stack is not None else None

    order = [int(i) for i in np.argsort(-fit.jod, kind="stable")]
    scores = [["condition", "jod", "ci_low", "ci_high", "group"]]
    scores += [[names[i], _fmt(fit.jod[i]), _fmt(low[i]), _fmt(high[i]), groups[i]] for i in order]
    matrix = [["condition", *(names[i] for i in order)]]
    matrix += [[names[i], *(_fmt_p(p_values[i, j]) for j in order)] for i in order]
    record = {
        "command": "dlmap rank",
        "method": "Thurstone Case V ML (Eq. 19), pwcmp pw_scale: prior 'gaussian', mean0; "
        "sigma 1.4826 per difference (1 JOD = 75%)",
        "counts": {"path": str(args.counts), "sha256": _sha256(args.counts)},
        "per_subject": [{"path": str(p), "sha256": _sha256(p)} for p in files or []],
        "bootstrap": {"resamples": args.bootstrap if boot else 0, "seed": args.seed},
        "alpha": significance.ALPHA,
        "conditions": names,
        "simulated": _simulated(args.counts),
        "warnings": notes,
    }
    written = [paths["scores"], paths["pvalues"], paths["record"]]
    _write_atomic(paths["scores"], _csv(scores))
    _write_atomic(paths["pvalues"], _csv(matrix))
    if outliers is not None:
        report = [["subject", "log10_likelihood", "distance", "flagged"]]
        report += [
            [path.stem, _fmt(like), _fmt(dist) if math.isfinite(dist) else "inf", str(flag)]
            for path, like, dist, flag in zip(
                files, outliers.log10_likelihood, outliers.distance, outliers.flagged, strict=True
            )
        ]
        _write_atomic(paths["outliers"], _csv(report))
        record["outlier_threshold"] = significance.OUTLIER_DISTANCE
        written.insert(2, paths["outliers"])
    _write_atomic(paths["record"], json.dumps(record, indent=2) + "\n")

    for note in notes:
        print(f"dlmap rank: warning: {note}", file=sys.stderr)
    if record["simulated"]:
        print("dlmap rank: these counts come from SIMULATED observers (dlmap simulate)")
    width = max(len("condition"), *(len(name) for name in names))
    print(f"{'condition':<{width}}  {'jod':>8}  {'95% interval':>19}  group")
    for i in order:
        interval = f"[{low[i]:7.3f}, {high[i]:7.3f}]" if boot else ""
        print(f"{names[i]:<{width}}  {fit.jod[i]:8.3f}  {interval:>19}  {groups[i]}")
    if outliers is not None:
        flagged = [path.stem for path, flag in zip(files, outliers.flagged, strict=True) if flag]
        print(
            f"observer screening (pw_outlier_analysis, distance > {significance.OUTLIER_DISTANCE}"
            f"; reported, nobody excluded): {', '.join(flagged) if flagged else 'none flagged'}"
        )
    print(f"wrote {', '.join(str(path) for path in written)}")
    return 0


def add_parsers(commands) -> None:
    add_rank_parser(commands)


HANDLERS = {"rank": rank_command}
