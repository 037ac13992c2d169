"""The trade-off of each exact bijection's parameter: inverse amplification, float32 round trip
on the tiny backbone, and accuracy as an ODE solver on Gaussian data (closed form), with DDIM's
for reference; then the same for where the chain ends (``--ends``), inversion included.

    python bench/bijection_tradeoffs.py [--steps 20]

Gaussian data: x0 ~ N(mean, diag(std^2)) with random mean and std in [0.1, 1.1] per element;
the optimal noise predictor is eps = σ̄ (x̄ - mean) / (std^2 + σ̄^2) in DDIM's variables and
the probability-flow ODE maps x̄ - mean by sqrt((std^2 + σ̄^2) / (std^2 + σ̄'^2)). SD2's
schedule with set_alpha_to_one = False. Sampling: each chain starts from the same s_0 drawn
from the marginal at t_0 and gets the exact s_1, so the error is that of its own steps;
error ||s_T - exact|| / ||exact|| at the chain's own end. Inversion: from the exact clean
latent at the chain's end through ``ddim_inversion_step`` and ``invert``; error of s_0
against the exact flow back to t_0. s1 gain: how much of a move of s_1 alone (which the
solver makes, moving s_0 and s_1 independently) reaches the clean latent, ||d s_T|| / ||d s_1||,
on Gaussian data at T = --steps; the same move of both states passes with a gain of about 0.64.
"""

from __future__ import annotations

import argparse

import torch

GAMMAS = (0.5, 0.7, 0.8, 0.9, 0.92, 0.95, 1.0)
LABELS = {"belm": "o-belm", "leapfrog": "leapfrog"}  # A_k = 1 in x̄ (dlmap.inversion.leapfrog)


def main() -> None:
    from dlmap.diffusion import tiny
    from dlmap.images import center_crop_resize
    from dlmap.inversion import bijections
    from dlmap.inversion.config import SD2_SCHEDULER, InversionConfig
    from dlmap.testing.gaussian_ode import exact_flow, exact_start, gaussian_eps

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

    def schedule_of(name, gamma, steps, ends="final-alpha"):
        return bijections.make_two_step_schedule(name, steps, SD2_SCHEDULER, gamma=gamma, ends=ends)

    def relative(a, b):
        return ((a - b).norm() / b.norm()).item()

    def gaussian_error(name, gamma, steps, ends="final-alpha"):
        schedule = schedule_of(name, gamma, steps, ends)
        r, s = schedule.sqrt_alpha, schedule.sigma
        start, second = exact_start(schedule, mean, std, noise)
        _, last = bijections.denoise(eps, start, second, schedule)
        exact = exact_flow(start, s[0], s[-1], r[0] ** 2, r[-1] ** 2, mean, std)
        return relative(last, exact)

    def s1_gain(name, gamma, steps):
        schedule = schedule_of(name, gamma, steps)
        start, second = exact_start(schedule, mean, std, noise)
        move = 1e-3 * torch.randn(
            start.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64
        )
        _, last = bijections.denoise(eps, start, second, schedule)
        _, moved = bijections.denoise(eps, start, second + move, schedule)
        return ((moved - last).norm() / move.norm()).item()

    def inversion_error(name, gamma, steps, ends):
        schedule = schedule_of(name, gamma, steps, ends)
        r, s = schedule.sqrt_alpha, schedule.sigma
        start = r[0] * (mean + torch.sqrt(std**2 + s[0] ** 2) * noise)
        clean = exact_flow(start, s[0], s[-1], r[0] ** 2, r[-1] ** 2, mean, std)
        before = bijections.ddim_inversion_step(eps, clean, schedule)
        first, _ = bijections.invert(eps, before, clean, schedule)
        return relative(first, start)

    def ddim_error(steps):
        schedule = schedule_of("bdia", 1.0, steps)
        r, s = schedule.sqrt_alpha, schedule.sigma
        z = r[0] * (mean + torch.sqrt(std**2 + s[0] ** 2) * noise)
        exact = exact_flow(z, s[0], s[-1], r[0] ** 2, r[-1] ** 2, mean, std)
        for k in range(schedule.steps):  # the same states: DDIM's zero last step dropped
            bar = z / r[k] - (s[k] - s[k + 1]) * eps(z, schedule.timesteps[k])
            z = r[k + 1] * bar
        return relative(z, exact)

    def round_trip32(name, gamma, ends="final-alpha"):
        schedule = schedule_of(name, gamma, args.steps, ends)
        with torch.no_grad():
            before = bijections.ddim_inversion_step(backbone.eps, latent, schedule, cond)
            pair = bijections.invert(backbone.eps, before, latent, schedule, cond)
            _, last = bijections.denoise(backbone.eps, *pair, schedule, cond)
        return relative(last, latent), schedule.inverse_amplification()

    default = InversionConfig().bdia.gamma
    print(f"T = {args.steps} for the round trip; Gaussian ODE error at T = 10, 20, 50")
    header = f"{'method':<26}{'amplification':>14}{'fp32 trip':>11}{'s1 gain':>9}"
    header += "".join(f"{f'T={n}':>10}" for n in (10, 20, 50))
    print(header)
    print("-" * len(header))
    rows = [("bdia", g) for g in GAMMAS] + [("belm", None), ("leapfrog", None)]
    for name, gamma in rows:
        value = gamma if gamma is not None else 1.0
        trip, amplification = round_trip32(name, value)
        errors = [gaussian_error(name, value, n) for n in (10, 20, 50)]
        label = f"{name} gamma={gamma}" if gamma is not None else LABELS[name]
        label += " (default)" if gamma == default else ""
        gain = s1_gain(name, value, args.steps)
        print(
            f"{label:<26}{amplification:>14.3g}{trip:>11.2e}{gain:>9.2f}"
            + "".join(f"{e:>10.2e}" for e in errors)
        )
    print(
        f"{'ddim (reference)':<26}{'-':>14}{'-':>11}{'-':>9}"
        + "".join(f"{ddim_error(n):>10.2e}" for n in (10, 20, 50))
    )

    print()
    print(f"where the chain ends: fp32 round trip at T = {args.steps}; Gaussian sampling and")
    print("inversion error at T = 10, 20")
    header = f"{'method':<26}{'fp32 trip':>11}{'sample10':>10}{'sample20':>10}"
    header += f"{'invert10':>10}{'invert20':>10}"
    print(header)
    print("-" * len(header))
    for name, gamma in (("bdia", default), ("belm", 1.0)):
        for ends in ("final-alpha", "alpha-one"):
            trip, _ = round_trip32(name, gamma, ends)
            sample = [gaussian_error(name, gamma, n, ends) for n in (10, 20)]
            inverse = [inversion_error(name, gamma, n, ends) for n in (10, 20)]
            label = f"{'bdia' if name == 'bdia' else 'o-belm'} ends={ends}"
            print(f"{label:<26}{trip:>11.2e}" + "".join(f"{e:>10.2e}" for e in sample + inverse))

    def kick_growth(name, gamma, steps):
        """A kick to s_1 alone, in x̄: its size at the clean end over its own. Its part along
        the parasitic mode (the root -1 / A_k) is what survives or dies."""
        schedule = schedule_of(name, gamma, steps)
        r = schedule.sqrt_alpha
        start, second = exact_start(schedule, mean, std, noise)
        kick = 1e-3 * torch.randn(
            start.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64
        )
        _, last = bijections.denoise(eps, start, second, schedule)
        _, kicked = bijections.denoise(eps, start, second + r[1] * kick, schedule)
        return ((kicked - last).norm() / r[-1] / kick.norm()).item()

    print()
    print("the parasitic mode: a kick to s_1 alone (in x̄), its size at the clean end over its")
    print("own, at T = 10, 20, 50 (damped below the consistent part's; the leapfrog's undamped)")
    header = f"{'method':<26}" + "".join(f"{f'T={n}':>10}" for n in (10, 20, 50))
    print(header)
    print("-" * len(header))
    for name, gamma, label in (
        ("bdia", default, f"bdia gamma={default}"),
        ("bdia", 1.0, "bdia gamma=1.0"),
        ("belm", 1.0, "o-belm"),
        ("leapfrog", 1.0, "leapfrog"),
    ):
        growth = [kick_growth(name, gamma, n) for n in (10, 20, 50)]
        print(f"{'kick ' + label:<26}" + "".join(f"{g:>10.3g}" for g in growth))


if __name__ == "__main__":
    main()
