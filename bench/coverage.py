"""Coverage of ``dlmap rank``'s bootstrap 95% intervals, on simulated observers.

Each experiment simulates ``--subjects`` observers (``dlmap.compare.observers``: Thurstone Case V,
sigma = 1.0484 per condition, so utilities are in JOD) comparing every pair of ``--conditions``
conditions ``--trials`` times, scales the counts (``dlmap.compare.ranking``, pwcmp's prior) and
bootstraps over subjects (``--resamples``). An interval covers when it contains the true
centred utility. Printed: coverage per condition and overall, each with its Monte-Carlo
standard error sqrt(c (1 - c) / n), from one run. pwcmp's distance prior pulls large gaps
towards each other, so the extreme conditions are expected to be covered less than 95%.

    python bench/coverage.py                        # 4 conditions, 100 experiments x 100 resamples
    python bench/coverage.py --experiments 10 --resamples 30      # quick
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time

import numpy as np

from dlmap.compare import observers, ranking, significance


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conditions", type=int, default=4)
    parser.add_argument("--spread", type=float, default=2.0, help="JOD from worst to best")
    parser.add_argument("--subjects", type=int, default=25)
    parser.add_argument("--trials", type=int, default=5, help="per pair and subject")
    parser.add_argument("--experiments", type=int, default=100)
    parser.add_argument("--resamples", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    names = [f"c{index}" for index in range(args.conditions)]
    truth = np.linspace(0.0, args.spread, args.conditions)
    utility = observers.table_utility(dict(zip(names, truth, strict=True)))
    trials = [
        (a, b, str(t)) for a, b in itertools.combinations(names, 2) for t in range(args.trials)
    ]
    centred = truth - truth.mean()
    covered = np.zeros((args.experiments, args.conditions), dtype=bool)
    started = time.perf_counter()
    for experiment in range(args.experiments):
        seed = args.seed * 100_003 + experiment
        stack = observers.simulate_counts(trials, utility, names, args.subjects, seed=seed)
        start = ranking.scale(stack.sum(axis=0).astype(np.float64)).jod
        boot = significance.bootstrap_scale(stack, args.resamples, seed=seed, start=start)
        covered[experiment] = (boot.ci_low <= centred) & (centred <= boot.ci_high)
    seconds = time.perf_counter() - started

    def share(values) -> str:
        rate = float(np.mean(values))
        error = np.sqrt(rate * (1 - rate) / np.size(values))
        return f"{rate:.3f} +- {error:.3f}"

    print(
        f"{args.experiments} experiments x {args.resamples} resamples, {args.conditions} "
        f"conditions {args.spread:g} JOD apart in all, {args.subjects} subjects x "
        f"{args.trials} trials per pair ({seconds:.1f} s)"
    )
    for index, name in enumerate(names):
        print(
            f"{name} (true centred {centred[index]:+.3f} JOD): coverage {share(covered[:, index])}"
        )
    print(f"all conditions: coverage {share(covered)} (nominal 0.95)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
