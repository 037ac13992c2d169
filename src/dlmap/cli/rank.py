"""``dlmap rank``: JOD scores, 95% intervals, group letters, p-values and an observer report
from pairwise-comparison counts (Eq. 19, reproducing pwcmp; see ``dlmap.compare.ranking`` and
``dlmap.compare.significance``); the analysis and files are
``dlmap.compare.rank_files``'s, this module only parses and prints.

Input: COUNTS.csv is a square matrix: a header row of condition names (its first cell is a
label of your choice), then one row per condition, named in its first cell in the header's
order; cell (row i, column j) = the number of times i was preferred over j (non-negative
integers, 0 on the diagonal). ``--per-subject DIR`` holds one such file per subject (*.csv,
same conditions, same order) whose sum must equal COUNTS.csv.

Outputs: SCORES.csv (condition, jod, ci_low, ci_high, group; best first) and, beside it,
SCORES.pvalues.csv, SCORES.outliers.csv and SCORES.json (``dlmap.compare.rank_files``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dlmap.cli.main import add_command
from dlmap.files import check_output_file
from dlmap.settings import RANK_RESAMPLES as DEFAULT_RESAMPLES


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


def rank_command(args) -> int:
    from dlmap.compare import rank_files, significance

    check_output_file(args.out, "--out")  # before the bootstrap
    result = rank_files.rank_counts(args.counts, args.per_subject, args.bootstrap, args.seed)
    written = rank_files.write_rank_files(result, args.out)
    for note in result.notes:
        print(f"dlmap rank: warning: {note}", file=sys.stderr)
    if result.simulated:
        print("dlmap rank: these counts come from SIMULATED observers (dlmap simulate)")
    names = result.names
    width = max(len("condition"), *(len(name) for name in names))
    print(f"{'condition':<{width}}  {'jod':>8}  {'95% interval':>19}  group")
    for i in result.order:
        interval = (
            f"[{result.ci_low[i]:7.3f}, {result.ci_high[i]:7.3f}]" if result.bootstrapped else ""
        )
        print(f"{names[i]:<{width}}  {result.jod[i]:8.3f}  {interval:>19}  {result.groups[i]}")
    if result.outliers is not None:
        flagged = rank_files.flagged_subjects(result)
        print(
            f"observer screening (pw_outlier_analysis, distance > {significance.OUTLIER_DISTANCE}"
            f"; reported, nobody excluded): {', '.join(flagged) if flagged else 'none flagged'}"
        )
    print(f"wrote {', '.join(str(path) for path in written)}")
    return 0


def add_parsers(commands) -> None:
    add_rank_parser(commands)


HANDLERS = {"rank": rank_command}
