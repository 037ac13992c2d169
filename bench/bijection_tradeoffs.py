"""The trade-off of each exact bijection's parameter: inverse amplification, float32 round trip
on the tiny backbone, and accuracy as an ODE solver on Gaussian data (closed form), with DDIM's
and EDICT's for reference.

    python bench/bijection_tradeoffs.py [--steps 20]

Gaussian data: x0 ~ N(mean, diag(std^2)) with random mean and std in [0.1, 1.1] per element;
the optimal noise predictor is eps = σ̄ (x̄ - mean) / (std^2 + σ̄^2) in DDIM's variables and
the probability-flow ODE maps x̄ - mean by sqrt((std^2 + σ̄^2) / (std^2 + σ̄'^2)). SD2's
schedule with set_alpha_to_one = False: the final ᾱ is ᾱ at t = 0 (0.99915). Each chain starts
from the same s_0 drawn from the marginal at t_0; the two-step methods get the exact s_1, so
the error is that of their own steps. Error: ||z_0 - exact|| / ||exact||.
"""

from __future__ import annotations

import argparse

import torch


def main() -> None:
    from dlmap.diffusion import bijections, tiny
    from dlmap.images import center_crop_resize
    from dlmap.settings import SD2_SCHEDULER
    from dlmap.testing.gaussian_ode import exact_flow, gaussian_eps

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(2)
    backbone = tiny.tiny_backbone("seesr", seed=0, dtype=torch.float32)
    from skimage import data

    pixels = center_crop_resize(data.astronaut().astype("float32") / 255, 64)
    images = torch.from_numpy(pixels).permute(2, 0, 1)[None]
    latent, cond = backbone.encode(images, seeds=[0]), backbone.condition(images)

    generator = torch.Generator().manual_seed(0)
    mean = torch.randn(4, 16, 16, generator=generator, dtype=torch.float64)
    std = 0.1 + torch.rand(4, 16, 16, generator=generator, dtype=torch.float64)
    noise = torch.randn(4, 16, 16, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    eps = gaussian_eps(mean, std)

    def gaussian_error(name, gamma, steps):
        schedule = bijections.make_two_step_schedule(name, steps, SD2_SCHEDULER, gamma=gamma)
        r, s = schedule.sqrt_alpha, schedule.sigma
        start = r[0] * (mean + torch.sqrt(std**2 + s[0] ** 2) * noise)
        second = exact_flow(start, s[0], s[1], r[0] ** 2, r[1] ** 2, mean, std)
        _, last = bijections.denoise(eps, start, second, schedule)
        exact = exact_flow(start, s[0], s[-1], r[0] ** 2, r[-1] ** 2, mean, std)
        return ((last - exact).norm() / exact.norm()).item()

    def ddim_error(steps):
        schedule = bijections.make_two_step_schedule("bdia", steps, SD2_SCHEDULER, gamma=1.0)
        r, s = schedule.sqrt_alpha, schedule.sigma
        z = r[0] * (mean + torch.sqrt(std**2 + s[0] ** 2) * noise)
        exact = exact_flow(z, s[0], s[-1], r[0] ** 2, r[-1] ** 2, mean, std)
        for k in range(schedule.steps):  # the same states: DDIM's zero last step dropped
            bar = z / r[k] - (s[k] - s[k + 1]) * eps(z, schedule.timesteps[k])
            z = r[k + 1] * bar
        return ((z - exact).norm() / exact.norm()).item()

    def round_trip32(name, gamma):
        schedule = bijections.make_two_step_schedule(name, args.steps, SD2_SCHEDULER, gamma=gamma)
        with torch.no_grad():
            before = bijections.ddim_inversion_step(backbone.eps, latent, schedule, cond)
            pair = bijections.invert(backbone.eps, before, latent, schedule, cond)
            _, last = bijections.denoise(backbone.eps, *pair, schedule, cond)
        return ((last - latent).norm() / latent.norm()).item(), schedule.inverse_amplification()

    print(f"T = {args.steps} for the round trip; Gaussian ODE error at T = 10, 20, 50")
    header = f"{'method':<18}{'amplification':>14}{'fp32 trip':>11}"
    header += "".join(f"{f'T={n}':>10}" for n in (10, 20, 50))
    print(header)
    print("-" * len(header))
    rows = [("bdia", g) for g in (0.5, 0.7, 0.8, 0.9, 0.95, 1.0)] + [("belm", None)]
    for name, gamma in rows:
        trip, amplification = round_trip32(name, gamma if gamma is not None else 1.0)
        value = gamma if gamma is not None else 1.0
        errors = [gaussian_error(name, value, n) for n in (10, 20, 50)]
        label = f"{name} gamma={gamma}" if gamma is not None else "o-belm"
        print(f"{label:<18}{amplification:>14.3g}{trip:>11.2e}"
              + "".join(f"{e:>10.2e}" for e in errors))  # fmt: skip
    print(f"{'ddim (reference)':<18}{'-':>14}{'-':>11}"
          + "".join(f"{ddim_error(n):>10.2e}" for n in (10, 20, 50)))  # fmt: skip


if __name__ == "__main__":
    main()
