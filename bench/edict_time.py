"""Time of one MAP iteration of the latent-map solver against one no-grad forward h.

Both on the tiny SeeSR backbone (image-attention ControlNet), float32, batch 1, T = 20 (by default):

* forward h: ``edict.denoise`` under ``torch.no_grad`` (2T network evaluations), timed
  before, between and after each method's solves (the machine's speed drifts), median;
* one MAP iteration: exactly one pass of the loop of ``dlmap.enhance.solver._latent_solve`` (denoise
  with grad, decode, prior and objective, gradient of the loss, clip, momentum update),
  measured inside the real ``map_solve``: the prior is wrapped so that it records the time of
  each call, and the prior is called once per iteration, so the time between two consecutive
  calls is one whole iteration (from one iteration's prior to the next). We run
  ``map_solve(iters=1 + repeats)`` and take the median of the ``repeats`` intervals.
  As a cross-check we also print (map_solve(iters=1 + repeats) - map_solve(iters=1)) / repeats,
  in which encoding, inversion and the final decode cancel.

for each way of differentiating h (``--gradients``; "recompute" and "reversible" are ours,
"autograd" is for reference). The last line is
``MAP iteration / forward h = X.XX (target <= 4.5, recompute)``.

    python bench/edict_time.py            # 256x256 image (32x32 latent), T = 20, 3 repeats
    python bench/edict_time.py --quick    # 64x64 image, T = 4, 1 repeat (the test)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
from _common import TimedPrior, load_warning, setup_torch, timed

from dlmap.diffusion.tiny import tiny_backbone
from dlmap.enhance import solver
from dlmap.inversion import edict
from dlmap.inversion.config import InversionConfig
from dlmap.priors.registry import create_prior
from dlmap.settings import SolverConfig

GRADIENTS = ("autograd", "reversible", "recompute")
TARGET = 4.5


def time_iteration(backbone, prior, images, gradient, steps, repeats, device, forward_h):
    """(median interval between iterations, difference estimate, forward h times) in seconds.

    Forward h is timed just before, between and after the two solves, so that the ratio
    compares times measured under the same machine conditions (this machine drifts by 50%).
    """
    edict_config = InversionConfig(steps=steps)

    def solve(iters):
        config = SolverConfig(iters=iters, gradient=gradient)
        return solver.map_solve(backbone, prior, images, config, edict_config, quiet=True)

    forward = [timed(forward_h, device)]
    prior.calls.clear()
    one = timed(lambda: solve(1), device)
    forward.append(timed(forward_h, device))
    prior.calls.clear()
    many = timed(lambda: solve(1 + repeats), device)
    forward.append(timed(forward_h, device))
    # calls[0 .. repeats] are the iterations' prior calls, calls[-1] the final evaluation
    calls = prior.calls
    intervals = [calls[i + 1] - calls[i] for i in range(min(repeats, len(calls) - 1))]
    assert len(intervals) == repeats, (len(prior.calls), repeats)
    return statistics.median(intervals), (many - one) / repeats, forward


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, help="image side in pixels (default 256)")
    parser.add_argument("--steps", type=int, help="EDICT steps T (default 20)")
    parser.add_argument("--repeats", type=int, help="timed repeats (default 3)")
    parser.add_argument("--gradients", nargs="+", choices=GRADIENTS, default=list(GRADIENTS))
    parser.add_argument("--prior", default="colorfulness")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--quick", action="store_true", help="64x64, T = 4, 1 repeat")
    args = parser.parse_args(argv)
    size = args.size or (64 if args.quick else 256)
    steps = args.steps or (4 if args.quick else 20)
    repeats = args.repeats or (1 if args.quick else 3)
    if size % 8:
        parser.error("--size must be a multiple of 8")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("edict_time: --device cuda needs CUDA, which torch does not see", file=sys.stderr)
        return 2

    setup_torch(args.threads)
    device = torch.device(args.device)
    backbone = tiny_backbone("seesr", seed=0, dtype=torch.float32).to(device)
    prior = TimedPrior(create_prior(args.prior), device).to(device)
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(1, 3, size, size, generator=generator).to(device)
    side = size // backbone.downsampling
    print(
        f"EDICT timing: tiny backbone + SeeSR ControlNet, float32, batch 1, image {size}x{size} "
        f"(latent {side}x{side}), T = {steps}, prior {args.prior}, device {args.device}, "
        f"{args.threads} threads, {repeats} timed iterations per method"
    )
    warning = load_warning(args.threads, args.device)
    if warning:
        print(warning)
    wall = time.perf_counter()

    schedule = edict.make_schedule(InversionConfig(steps=steps))
    cond = backbone.condition(images)
    x_T = torch.randn(1, 4, side, side, generator=generator).to(device)
    y_T = torch.randn(1, 4, side, side, generator=generator).to(device)

    def forward_h():
        with torch.no_grad():
            edict.denoise(backbone.eps, x_T, y_T, schedule, cond)

    forward_h()  # warm-up
    forward_all = []
    rows, ratios = [], {}
    for gradient in (g for g in GRADIENTS if g in args.gradients):
        iteration, difference, forward = time_iteration(
            backbone, prior, images, gradient, steps, repeats, device, forward_h
        )
        forward_all += forward
        local = statistics.median(forward)
        ratios[gradient] = iteration / local
        rows.append(
            f"{'MAP iteration (' + gradient + ')':<32}{iteration:>9.3f} s   (forward h around "
            f"it {local:.3f} s; difference of map_solve runs {difference:.3f} s)"
        )
    print(
        f"{'forward h (no grad)':<32}{statistics.median(forward_all):>9.3f} s   (median of "
        f"{len(forward_all)} calls spread over the run, {min(forward_all):.3f}-"
        f"{max(forward_all):.3f} s)"
    )
    print("\n".join(rows))
    print(
        f"(total wall time {time.perf_counter() - wall:.0f} s; each ratio divides by the median "
        "forward h measured around that method's solves)"
    )
    for gradient, ratio in ratios.items():
        target = "reference" if gradient == "autograd" else f"target <= {TARGET}"
        print(f"MAP iteration / forward h = {ratio:.2f} ({target}, {gradient})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
