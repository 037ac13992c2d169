"""dlmap's BDIA and O-BELM against independent transcriptions of their authors' code
(dlmap.testing.official_bijections cites file and line): every step, every inverse step and
whole chains agree to 1e-12 (relative to the states' size) in float64 on a nonlinear toy
noise predictor."""

import pytest
import torch

from dlmap.inversion import bijections, registry
from dlmap.inversion.config import SD2_SCHEDULER, InversionConfig
from dlmap.testing import official_bijections as official
from dlmap.testing.official_bijections import reference_alphas

GAMMA = 0.92


def toy_eps(z, t, cond=None):
    """Nonlinear in z and dependent on t, so that a wrong evaluation point shows."""
    return torch.tanh(z * (0.5 + t / 1000.0)) + 0.05 * z**2 - 0.1 * torch.roll(z, 1, dims=-1)


def max_difference(a, b):
    return max((x - y).abs().max().item() for x, y in zip(a, b, strict=True))


def relative_difference(a, b):
    """The largest difference over the largest magnitude (chains grow the toy's states)."""
    scale = max(y.abs().max().item() for y in b)
    return max_difference(a, b) / scale


def states(seed, n=3):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, 2, 4, 8, 8, generator=generator, dtype=torch.float64)


CASES = [
    (name, offset, ends)
    for name in ("bdia", "belm")
    for offset in (0, 1)
    for ends in ("final-alpha", "alpha-one")
]


@pytest.mark.parametrize(("name", "offset", "ends"), CASES)
def test_schedule_states_are_the_references(name, offset, ends):
    schedule = bijections.make_two_step_schedule(name, 20, SD2_SCHEDULER, GAMMA, offset, ends)
    alpha_bar, _ = reference_alphas(20, offset, ends)
    assert [r * r for r in schedule.sqrt_alpha] == pytest.approx(alpha_bar, rel=1e-14)
    if name == "bdia":  # the published coefficient on x̄_{k-1}: gamma sqrt(ᾱ_{k-1} / ᾱ_{k+1})
        for k in range(1, schedule.steps):
            ratio = (alpha_bar[k - 1] / alpha_bar[k + 1]) ** 0.5
            assert schedule.A[k] == pytest.approx(GAMMA * ratio, rel=1e-14)


@pytest.mark.parametrize(("name", "offset", "ends"), CASES)
def test_every_step_and_inverse_step_equal_the_official_updates(name, offset, ends):
    schedule = bijections.make_two_step_schedule(name, 20, SD2_SCHEDULER, GAMMA, offset, ends)
    alpha_bar, timesteps = reference_alphas(20, offset, ends)
    worst = 0.0
    for k in range(1, schedule.steps):
        before, current, after = states(k)
        a, t = (alpha_bar[k - 1], alpha_bar[k], alpha_bar[k + 1]), timesteps[k]
        mine = bijections.step(toy_eps, before, current, k, schedule)
        back = bijections.inverse_step(toy_eps, current, after, k, schedule)
        if name == "belm":
            theirs = official.belm_step(toy_eps, before, current, *a, t)
            their_back = official.belm_inverse_step(toy_eps, after, current, *a, t)
        else:
            theirs = official.bdia_step(toy_eps, before, current, *a, t, GAMMA)
            their_back = official.bdia_inverse_step(toy_eps, after, current, *a, t, GAMMA)
        worst = max(worst, max_difference([mine, back], [theirs, their_back]))
    assert worst <= 1e-12, worst


@pytest.mark.parametrize("steps", [10, 20])
@pytest.mark.parametrize(("name", "offset", "ends"), CASES)
def test_whole_chains_sample_and_invert_as_the_official_code(name, offset, ends, steps):
    """Sampling from a pair and inverting a clean latent, first inversion step included (to
    1e-12 times the inverse's amplification of round-off): ``alpha-one`` evaluates
    eps(clean, t = 1) as BELM.py does, ``final-alpha`` at t_{T-1}."""
    config = InversionConfig.from_flat(
        steps=steps, bijection=name, gamma=GAMMA, steps_offset=offset, ends=ends
    )
    bijection = registry.make_bijection(config)
    alpha_bar, timesteps = reference_alphas(steps, offset, ends)
    first, second, clean = states(100 + steps)
    gamma = GAMMA if name == "bdia" else None
    mine = bijections.denoise(toy_eps, first, second, bijection.schedule)
    theirs = official.sample(name, toy_eps, first, second, alpha_bar, timesteps, gamma)
    assert relative_difference(mine, theirs) <= 1e-12
    clean_timestep = 1 if ends == "alpha-one" else timesteps[len(alpha_bar) - 2]
    mine = bijection.invert_latent(toy_eps, clean)
    theirs = official.invert(name, toy_eps, clean, alpha_bar, timesteps, clean_timestep, gamma)
    # two equal formulas round differently, and inversion amplifies round-off (module doc)
    amplification = max(1.0, bijection.schedule.inverse_amplification())
    assert relative_difference(mine, theirs) <= 1e-12 * amplification


def test_the_transcriptions_are_exact_inverses_of_each_other():
    """A check of the transcriptions themselves: the official inverse undoes the official
    step (so a test above cannot pass against two wrong references)."""
    alpha_bar, timesteps = reference_alphas(20, 1, "alpha-one")
    before, current, _ = states(7)
    a, t = (alpha_bar[4], alpha_bar[5], alpha_bar[6]), timesteps[5]
    after = official.belm_step(toy_eps, before, current, *a, t)
    again = official.belm_inverse_step(toy_eps, after, current, *a, t)
    assert (again - before).abs().max() <= 1e-12
    after = official.bdia_step(toy_eps, before, current, *a, t, GAMMA)
    again = official.bdia_inverse_step(toy_eps, after, current, *a, t, GAMMA)
    assert (again - before).abs().max() <= 1e-12
