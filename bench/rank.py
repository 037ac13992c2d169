"""Time ``dlmap rank`` (Eq. 19 + bootstrap) on simulated subjects, and one fit's gradients.

Subjects are simulated from known utilities with Thurstonian noise (``dlmap.compare.observers``): on
each trial both conditions get a draw u + N(0, 1.0484^2) and the larger one wins, so P(i over
j) = Phi((u_i - u_j) / 1.4826), the model ``dlmap.compare.ranking`` fits. Every subject compares
every
pair ``--trials`` times (the paper: K = 20 images per pair). The files are written to a
temporary folder and ranked by the command's own function (``rank_command``, in this process:
no interpreter or import start-up in the time). Printed, from one run on this machine:

* one fit of the summed counts with our analytic gradient against scipy's finite
  differences (what a plain port of pw_scale's objective would use), and their ratio;
* ``dlmap rank`` with ``--resamples`` bootstrap resamples, the outlier analysis and the
  output files: total seconds and milliseconds per resample.

    python bench/rank.py                          # 9 conditions, 25 subjects, 500 resamples
    python bench/rank.py --resamples 20           # quick
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy.optimize import minimize

from dlmap.cli.rank import add_rank_parser, rank_command
from dlmap.compare import observers, ranking


def simulate(utilities: np.ndarray, subjects: int, trials: int, seed: int) -> np.ndarray:
    """Per-subject count matrices (K x N x N): every pair ``trials`` times per subject."""
    names = [f"c{index}" for index in range(len(utilities))]
    pairs = [(a, b, str(t)) for a, b in itertools.combinations(names, 2) for t in range(trials)]
    utility = observers.table_utility(dict(zip(names, utilities, strict=True)))
    return observers.simulate_counts(pairs, utility, names, subjects, seed=seed)


def best_time(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conditions", type=int, default=9)
    parser.add_argument("--subjects", type=int, default=25)
    parser.add_argument("--trials", type=int, default=20, help="per pair and subject")
    parser.add_argument("--resamples", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    utilities = np.linspace(0.0, 3.0, args.conditions)  # JOD, 3 JOD from worst to best
    names = [f"c{index}" for index in range(args.conditions)]
    stack = simulate(utilities, args.subjects, args.trials, args.seed)
    counts = stack.sum(axis=0).astype(np.float64)

    design = ranking.build_design(counts)
    start = np.zeros(args.conditions)
    analytic = best_time(lambda: ranking.scale(counts), 5)
    numeric_fit = None

    def numeric():
        nonlocal numeric_fit
        numeric_fit = minimize(lambda q: ranking.objective(q, design)[0], start, method="L-BFGS-B")

    numerical = best_time(numeric, 3)
    jod = ranking.scale(counts).jod
    gap = np.max(np.abs(numeric_fit.x - np.mean(numeric_fit.x) - jod))
    truth = np.max(np.abs(jod - (utilities - utilities.mean())))
    print(
        f"one fit, {args.conditions} conditions: analytic gradient {analytic * 1e3:.2f} ms, "
        f"finite differences {numerical * 1e3:.2f} ms ({numerical / analytic:.1f}x); "
        f"scores differ by {gap:.1e} JOD; max error against the true utilities {truth:.3f} JOD"
    )

    command_line = argparse.ArgumentParser(prog="dlmap")
    add_rank_parser(command_line.add_subparsers(dest="command"))
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "subjects").mkdir()
        for index, matrix in enumerate(stack):
            observers.write_counts(matrix, names, root / "subjects" / f"s{index:02d}.csv")
        observers.write_counts(stack.sum(axis=0), names, root / "counts.csv")
        argv = [
            "rank",
            str(root / "counts.csv"),
            "--per-subject",
            str(root / "subjects"),
            "--bootstrap",
            str(args.resamples),
            "--seed",
            str(args.seed),
            "--out",
            str(root / "scores.csv"),
        ]
        rank_args = command_line.parse_args(argv)
        output, errors = io.StringIO(), io.StringIO()
        start_time = time.perf_counter()
        with contextlib.redirect_stdout(output), contextlib.redirect_stderr(errors):
            code = rank_command(rank_args)
        total = time.perf_counter() - start_time
    if code != 0:
        print(output.getvalue(), errors.getvalue(), file=sys.stderr)
        return code
    print(
        f"dlmap rank, {args.resamples} resamples, {args.conditions} conditions, "
        f"{args.subjects} subjects ({args.trials} trials per pair each): {total:.2f} s "
        f"({total / max(args.resamples, 1) * 1e3:.2f} ms per resample)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
