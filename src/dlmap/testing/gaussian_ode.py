"""Gaussian data, where diffusion is solvable in closed form: the optimal noise predictor and
the probability-flow ODE's exact solution under SD2's forward process, for measuring how
accurately a sampler or bijection integrates the ODE (tests and bench/bijection_tradeoffs.py)."""

from __future__ import annotations

import math

import torch

from dlmap.inversion.config import SD2_SCHEDULER


def gaussian_eps(mean, std):
    """The optimal noise predictor for data N(mean, diag(std^2)) under SD2's forward process,
    in DDIM's variables: eps = σ̄ (x̄ - mean) / (std^2 + σ̄^2), with x̄ = z / sqrt(ᾱ)."""
    from diffusers import DDIMScheduler

    alphas = DDIMScheduler(**SD2_SCHEDULER).alphas_cumprod.double()

    def eps(z, t, cond=None):
        alpha = float(alphas[t])
        sigma = math.sqrt((1 - alpha) / alpha)
        bar = z / math.sqrt(alpha)
        return sigma * (bar - mean) / (std**2 + sigma**2)

    return eps


def exact_flow(z, sigma_from, sigma_to, alpha_from, alpha_to, mean, std):
    """The probability-flow ODE's exact solution for Gaussian data: x̄ - mean scales by
    sqrt((std^2 + σ̄_to^2) / (std^2 + σ̄_from^2))."""
    bar = z / math.sqrt(alpha_from)
    scale = torch.sqrt((std**2 + sigma_to**2) / (std**2 + sigma_from**2))
    return math.sqrt(alpha_to) * (mean + (bar - mean) * scale)


def exact_start(schedule, mean, std, noise):
    """A two-step chain's starting pair on the ODE's exact solution: s_0 drawn from the
    marginal at the chain's first time (``noise`` standard normal), s_1 its exact flow one
    state on (``schedule``: a ``dlmap.inversion.bijections.TwoStepSchedule``)."""
    r, s = schedule.sqrt_alpha, schedule.sigma
    start = r[0] * (mean + torch.sqrt(std**2 + s[0] ** 2) * noise)
    return start, exact_flow(start, s[0], s[1], r[0] ** 2, r[1] ** 2, mean, std)
