"""Counts files: the pairwise-comparison matrices that ``dlmap rank`` (Eq. 19) reads.

A counts file is a square CSV: a header row of condition names (its first cell is a label of
your choice; ``dlmap simulate`` writes ``observers.LABEL`` there), then one row per
condition, named in its first cell in the header's order; cell (row i, column j) = the
number of times i was preferred over j (non-negative integers, 0 on the diagonal). A
per-subject folder holds one such file per subject (*.csv, same conditions, same order)
whose sum must equal the total.

Files are read as UTF-8; a byte-order mark at the start (Excel's "CSV UTF-8") is skipped.
A count is written as an integer ("12"; "12.0" and "1.2e1" are read as 12 too), at most
``MAX_COUNT``: the largest integer a float64 holds exactly, beyond which Eq. 19's fit loses
its precision.
"""

from __future__ import annotations

import csv
from decimal import Decimal, InvalidOperation
from pathlib import Path

import numpy as np

from dlmap.errors import InputError

MAX_COUNT = 2**53  # the largest integer a float64 holds exactly
ENCODING = "utf-8-sig"  # UTF-8, with or without a byte-order mark at the start


class CountsError(InputError):
    """A counts file (or per-subject folder) that is not a valid comparison matrix."""


def _shown(text: str, limit: int = 40) -> str:
    """A cell as an error message shows it: quoted, escaped, and cut short when long."""
    text = text.strip()
    return repr(text) if len(text) <= limit else repr(text[:limit]) + "..."


def _number(path: Path, row: str, column: str, text: str) -> float:
    where = f"{path}: row {row!r}, column {column!r}"
    try:  # exact: a float would round "9007199254740993" to an even neighbour
        value = Decimal(text)
    except (InvalidOperation, ValueError):
        raise CountsError(f"{where}: {_shown(text)} is not a number") from None
    if not value.is_finite() or value < 0 or value != value.to_integral_value():
        raise CountsError(f"{where}: {_shown(text)} is not a count (a non-negative integer)")
    if value > MAX_COUNT:
        raise CountsError(f"{where}: {_shown(text)} is over {MAX_COUNT}, the largest count")
    return float(value)


def read_counts(path: Path, allow_empty: bool = False) -> tuple[list[str], np.ndarray]:
    """Condition names and the count matrix of one CSV; ``CountsError`` naming the file.

    On return: 2 or more names, distinct, non-empty and stripped of surrounding blanks, in
    the header's order (the first column repeats them); the matrix is N x N float64 with
    integer counts in [0, ``MAX_COUNT``], 0 on the diagonal, and (unless ``allow_empty``) not
    all 0. Blank lines are skipped."""
    try:
        with open(path, newline="", encoding=ENCODING) as handle:
            rows = [row for row in csv.reader(handle) if any(cell.strip() for cell in row)]
    except OSError as error:
        raise CountsError(f"{path}: {error.strerror or error}") from error
    except (UnicodeDecodeError, csv.Error) as error:
        raise CountsError(f"{path}: not a readable CSV file ({error})") from error
    if len(rows) < 2:
        raise CountsError(
            f"{path}: empty matrix (needs a header row of condition names and one row each)"
        )
    names = [cell.strip() for cell in rows[0][1:]]
    if len(names) < 2 or not all(names) or len(set(names)) != len(names):
        raise CountsError(f"{path}: the header needs 2 or more distinct, non-empty names")
    if len(rows) - 1 != len(names):
        raise CountsError(
            f"{path}: not square: {len(names)} names in the header, {len(rows) - 1} rows"
        )
    matrix = np.zeros((len(names), len(names)))
    for index, row in enumerate(rows[1:]):
        if len(row) != len(names) + 1:
            raise CountsError(
                f"{path}: not square: row {index + 1} has {len(row) - 1} counts, "
                f"expected {len(names)}"
            )
        if row[0].strip() != names[index]:
            raise CountsError(
                f"{path}: row {index + 1} is named {row[0].strip()!r} but column {index + 1} "
                f"is {names[index]!r} (the first column must list the header's names in order)"
            )
        for column, text in enumerate(row[1:]):
            matrix[index, column] = _number(path, names[index], names[column], text)
    if np.any(np.diag(matrix)):
        raise CountsError(f"{path}: the diagonal must be 0 (a condition is not compared to itself)")
    if not allow_empty and not matrix.any():
        raise CountsError(f"{path}: holds no comparison (every count is 0)")
    return names, matrix


def read_per_subject(
    folder: Path, names: list[str], counts: np.ndarray, counts_path: Path
) -> tuple[np.ndarray, list[Path]]:
    """The per-subject files of ``folder`` (sorted by name) as K x N x N, and their paths;
    they must list ``names`` in order and sum to ``counts`` (read from ``counts_path``)."""
    if not folder.is_dir():
        raise CountsError(f"--per-subject {folder}: not a folder")
    paths = sorted(folder.glob("*.csv"))
    if not paths:
        raise CountsError(f"--per-subject {folder}: holds no *.csv file")
    stack = []
    for path in paths:
        subject_names, matrix = read_counts(path, allow_empty=True)
        if subject_names != names:
            raise CountsError(
                f"{path}: its conditions {subject_names} differ from {counts_path}'s {names} "
                "(same names, same order)"
            )
        stack.append(matrix)
    stack = np.stack(stack)
    mismatch = np.argwhere(stack.sum(axis=0) != counts)
    if len(mismatch):
        row, column = mismatch[0]
        raise CountsError(
            f"--per-subject {folder}: the subjects sum to {stack.sum(axis=0)[row, column]:g} "
            f"for row {names[row]!r}, column {names[column]!r}, but {counts_path} has "
            f"{counts[row, column]:g}"
        )
    return stack, paths


def is_simulated_counts(path: Path) -> bool:
    """Counts from ``dlmap simulate`` say so in their header's first cell (the header: the
    first line that is not blank, as ``read_counts`` reads it)."""
    from dlmap.compare.observers import LABEL

    try:
        with open(path, newline="", encoding=ENCODING) as handle:
            rows = (row for row in csv.reader(handle) if any(cell.strip() for cell in row))
            first = next(rows, [""])
    except (OSError, UnicodeDecodeError, csv.Error):
        return False  # not readable: says nothing (read_counts reports why)
    return first[0].strip() == LABEL
