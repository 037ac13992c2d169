"""What the demo's 4x tiny VAE costs: one MAP iteration on the tiny SeeSR backbone with the
trained VAE's architecture (dlmap.diffusion.tiny_vae_store.TRAINED_VAE: 4x, so a 224-pixel
image gives a 56x56 latent, with the UNet of dlmap.diffusion.tiny.TINY_UNET_4X) against the
random 8x tiny VAE (28x28), at the demo's settings (T = 4, batch 1).

The cost does not depend on the weights, so the 4x VAE is built with random weights here. One
iteration is timed as (map_solve(iters=1 + repeats) - map_solve(iters=1)) / repeats, in which
encoding, inversion and the final decode cancel; the two backbones alternate, median of
``--rounds`` rounds. The last line is ``4x VAE / 8x VAE per MAP iteration = X.XX``.

    python bench/tiny_vae_cost.py            # 224 px, T = 4, 3 repeats, 3 rounds
    python bench/tiny_vae_cost.py --quick    # 64 px, T = 2, 1 repeat, 1 round (the test)
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from _common import load_warning, setup_torch
from diffusers import AutoencoderKL

from dlmap.diffusion.tiny import tiny_backbone
from dlmap.diffusion.tiny_vae_store import TRAINED_VAE
from dlmap.enhance import solver
from dlmap.inversion.config import InversionConfig
from dlmap.priors.registry import create_prior
from dlmap.settings import SolverConfig


def iteration_seconds(backbone, prior, image, steps: int, repeats: int) -> float:
    def solve(iters: int) -> float:
        began = time.perf_counter()
        solver.map_solve(
            backbone,
            prior,
            image,
            SolverConfig(iters=iters),
            InversionConfig(steps=steps),
            quiet=True,
        )
        return time.perf_counter() - began

    return max(solve(1 + repeats) - solve(1), 1e-9) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=4, help="EDICT steps T")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="64 px, T = 2, 1 repeat, 1 round")
    args = parser.parse_args()
    if args.quick:
        args.size, args.steps, args.repeats, args.rounds = 64, 2, 1, 1
    setup_torch(args.threads)
    warning = load_warning(args.threads)
    if warning:
        print(warning)
    backbones = {
        "8x (random tiny VAE)": tiny_backbone("seesr"),
        "4x (trained VAE's architecture)": tiny_backbone("seesr", vae=AutoencoderKL(**TRAINED_VAE)),
    }
    prior = create_prior("sharpness")
    image = torch.rand(1, 3, args.size, args.size)
    times = {name: [] for name in backbones}
    for _ in range(args.rounds):
        for name, backbone in backbones.items():
            times[name].append(iteration_seconds(backbone, prior, image, args.steps, args.repeats))
    print(f"{args.size}x{args.size} image, T = {args.steps}, batch 1, {args.threads} threads")
    print(f"{'VAE':<34} {'latent':>8} {'s / MAP iteration':>18}")
    medians = {}
    for name, backbone in backbones.items():
        side = args.size // backbone.downsampling
        medians[name] = statistics.median(times[name])
        print(f"{name:<34} {f'{side}x{side}':>8} {medians[name]:18.3f}")
    eight, four = medians.values()
    print(f"4x VAE / 8x VAE per MAP iteration = {four / eight:.2f}")


if __name__ == "__main__":
    main()
