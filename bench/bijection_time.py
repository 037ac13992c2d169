"""Time of one MAP iteration with each exact bijection over the same with EDICT.

On the tiny SeeSR backbone (image-attention ControlNet), float32, batch 1, the same T and image
size for every bijection. One MAP iteration is measured inside the real ``map_solve`` as in
``bench/edict_time.py``: the prior records the time of each call, and it is called once per
iteration, so consecutive calls bound one whole iteration; median of ``--repeats``. EDICT is
timed before and after the others (this machine drifts) and the median of its two is the
reference. BDIA, O-BELM and the leapfrogs evaluate the networks T - 2 times per pass at SD2's
schedule (the zero-length last interval dropped, the first state given), EDICT 2T times; EDICT
also decodes and scores two images per problem, they one.

    python bench/bijection_time.py            # 256x256 (32x32 latent), T = 20, 3 repeats
    python bench/bijection_time.py --quick    # 64x64, T = 6, 1 repeat (the test)

The last lines read ``MAP iteration NAME / EDICT = X.XX (target <= 0.6, GRADIENT)``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
from _common import TimedPrior, load_warning, setup_torch

from dlmap.diffusion.tiny import tiny_backbone
from dlmap.enhance import solver
from dlmap.inversion.config import InversionConfig
from dlmap.priors.registry import create_prior
from dlmap.settings import SolverConfig

TARGET = 0.6
ONE_CALL = ("bdia", "belm", "leapfrog", "leapfrog-int")  # one network call per step


def iteration_time(backbone, prior, images, bijection, steps, repeats, gradient) -> float:
    """The median time between consecutive prior calls of one ``map_solve``: one iteration."""
    config = SolverConfig(iters=1 + repeats, gradient=gradient)
    edict_config = InversionConfig(steps=steps, bijection=bijection)
    prior.calls.clear()
    solver.map_solve(backbone, prior, images, config, edict_config, quiet=True)
    calls = prior.calls
    return statistics.median(calls[i + 1] - calls[i] for i in range(repeats))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, help="image side in pixels (default 256)")
    parser.add_argument("--steps", type=int, help="T (default 20)")
    parser.add_argument("--repeats", type=int, help="timed iterations (default 3)")
    parser.add_argument("--gradient", default="recompute", choices=("recompute", "reversible"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="64x64, T = 6, 1 repeat")
    args = parser.parse_args(argv)
    size = args.size or (64 if args.quick else 256)
    steps = args.steps or (6 if args.quick else 20)
    repeats = args.repeats or (1 if args.quick else 3)
    setup_torch(args.threads)
    backbone = tiny_backbone("seesr", seed=0, dtype=torch.float32)
    prior = TimedPrior(create_prior("colorfulness"), torch.device("cpu"))
    images = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    print(
        f"bijection timing: tiny backbone + SeeSR ControlNet, float32, batch 1, image "
        f"{size}x{size}, T = {steps}, gradient {args.gradient}, {repeats} timed "
        "iterations"
    )
    warning = load_warning(args.threads, "cpu")
    if warning:
        print(warning)
    wall = time.perf_counter()
    times = {
        "edict": [iteration_time(backbone, prior, images, "edict", steps, repeats, args.gradient)]
    }
    for name in ONE_CALL:
        times[name] = [iteration_time(backbone, prior, images, name, steps, repeats, args.gradient)]
    times["edict"].append(
        iteration_time(backbone, prior, images, "edict", steps, repeats, args.gradient)
    )
    reference = statistics.median(times["edict"])
    for name, values in times.items():
        print(f"{name:<8}{statistics.median(values):>9.3f} s per MAP iteration")
    print(f"(total wall time {time.perf_counter() - wall:.0f} s)")
    for name in ONE_CALL:
        ratio = statistics.median(times[name]) / reference
        print(f"MAP iteration {name} / EDICT = {ratio:.2f} (target <= {TARGET}, {args.gradient})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
