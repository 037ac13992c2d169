"""The leapfrog and its integer twin (dlmap.inversion.leapfrog): the integer round trip is
exact to the bit in float32, bf16 autocast and bf16 weights; straight-through gradients match
finite differences of the float leapfrog; states the float cannot carry are refused."""

import pytest
import torch
from helpers import photo, relative_error

from dlmap.diffusion.build import load_backbone
from dlmap.errors import InputError
from dlmap.inversion.config import InversionConfig, LeapfrogOptions
from dlmap.inversion.leapfrog import IntegerChain, Leapfrog, LeapfrogInt, deterministic_networks
from dlmap.inversion.registry import make_bijection
from dlmap.settings import BackboneSettings

PRECISIONS = {  # BackboneSettings' dtype, autocast and weights_dtype
    "float32": ("float32", "none", "same"),
    "bf16-autocast": ("float32", "bf16", "same"),
    "bf16-weights": ("float32", "bf16", "bf16"),
}


@pytest.mark.parametrize("precision", PRECISIONS)
def test_the_integer_round_trip_is_bitwise_exact_in_every_precision(precision):
    dtype, autocast, weights = PRECISIONS[precision]
    backbone = load_backbone(
        BackboneSettings(
            name="tiny-seesr", device="cpu", dtype=dtype, autocast=autocast, weights_dtype=weights
        )
    )
    images = torch.stack(
        [photo(64, "astronaut", torch.float32), photo(64, "coffee", torch.float32)]
    )
    latent, cond = backbone.encode(images, seeds=[0, 1]), backbone.condition(images)
    bijection = make_bijection(InversionConfig(steps=20, bijection="leapfrog-int"))
    T = bijection.schedule.steps
    with deterministic_networks():
        pair = bijection.invert_latent(backbone.eps, latent, cond)
        (back,) = bijection.denoise(backbone.eps, *pair, cond)
        states = bijection.grid_states(backbone.eps, *pair, cond)
    grid_latent = bijection.to_grid(latent, T)
    assert torch.equal(states[1], grid_latent)  # integer equality
    assert torch.equal(back, bijection.from_grid(grid_latent, T, latent.dtype))
    # the one loss is the entry's quantisation, far below an 8-bit image's step
    assert 0 < relative_error(back, latent) < 1e-3
    assert relative_error(pair[0], latent) > 0.5  # not a trivial map
    # and the other way: noise -> image -> noise gives the same integers back
    chain = IntegerChain(bijection.schedule, bijection.grid, torch.float32)
    generator = torch.Generator().manual_seed(5)
    noise = torch.randn(2, *latent.shape, generator=generator)
    start = (bijection.to_grid(noise[0], 0), bijection.to_grid(noise[1], 1))
    with torch.no_grad(), deterministic_networks():
        pair = start
        for j in range(len(chain)):
            pair = chain.step(backbone.eps, pair, j, cond)
        for j in reversed(range(len(chain))):
            pair = chain.inverse_step(backbone.eps, pair, j, cond)
    assert torch.equal(pair[0], start[0]) and torch.equal(pair[1], start[1])


@pytest.mark.parametrize("gradient", ["recompute", "reversible"])
def test_straight_through_gradients_match_finite_differences_of_the_float_leapfrog(
    tiny64, gradient
):
    """On a grid of 2^-40 in float64 the integer chain follows the float leapfrog to ~1e-12,
    so its straight-through gradient must match that map's central finite differences."""
    images = photo(64, "astronaut")[None]
    latent, cond = tiny64.encode(images, seeds=[0]), tiny64.condition(images)
    config = InversionConfig(
        steps=8, bijection="leapfrog-int", leapfrog=LeapfrogOptions(grid=2.0**-40)
    )
    integer, floating = LeapfrogInt(config), Leapfrog(config)
    generator = torch.Generator().manual_seed(7)
    weights = torch.randn(*latent.shape, generator=generator, dtype=torch.float64)

    def loss(bijection, first, second, **options):
        (last,) = bijection.denoise(tiny64.eps, first, second, cond, **options)
        return (torch.sin(last) * weights).sum()

    first = latent.clone().requires_grad_(True)
    second = (0.9 * latent).requires_grad_(True)
    g1, g2 = torch.autograd.grad(loss(integer, first, second, gradient=gradient), (first, second))
    for _ in range(2):
        d1, d2 = torch.randn(2, *latent.shape, generator=generator, dtype=torch.float64)
        step = 1e-6
        with torch.no_grad():
            numeric = (
                loss(floating, first + step * d1, second + step * d2)
                - loss(floating, first - step * d1, second - step * d2)
            ) / (2 * step)
        analytic = (g1 * d1).sum() + (g2 * d2).sum()
        assert abs(numeric - analytic) / abs(analytic) <= 1e-5, (numeric, analytic)


def test_a_state_the_float_cannot_carry_is_refused_and_the_grid_is_checked():
    bijection = make_bijection(InversionConfig(steps=6, bijection="leapfrog-int"))
    huge = torch.full((1, 4, 2, 2), 1e6)
    with pytest.raises(
        InputError, match="leapfrog-int: a state of .* exceeds what torch.float32 carries exactly"
    ):
        bijection.to_grid(huge, 0)
    for bad in (0.0, -1.0, 0.3, 2.0, 2.0**-41, "fine"):
        with pytest.raises(InputError, match="power of two"):
            LeapfrogOptions(grid=bad)
    config = InversionConfig.from_flat(steps=6, bijection="leapfrog-int", ends="alpha-one")
    assert config.method is config.leapfrog and config.leapfrog.ends == "alpha-one"
    assert make_bijection(config).schedule.A[1:] == (1.0,) * (
        make_bijection(config).schedule.steps - 1
    )


def test_the_parasitic_mode_is_undamped_but_does_not_grow_on_gaussian_data():
    """The leapfrog's odd/even split (the root -1 of its recurrence) is not damped: a kick to
    s_1 off the ODE's solution survives the chain, grown by the schedule's varying C_k but
    not exponentially (measured: 14.3 times at T = 20 on these data; a damped scheme would
    shrink it, an unstable one grow it by orders)."""
    from dlmap.inversion import bijections
    from dlmap.inversion.config import SD2_SCHEDULER
    from dlmap.testing.gaussian_ode import exact_start, gaussian_eps

    generator = torch.Generator().manual_seed(0)
    mean = torch.randn(4, 8, 8, generator=generator, dtype=torch.float64)
    std = 0.1 + torch.rand(4, 8, 8, generator=generator, dtype=torch.float64)
    eps = gaussian_eps(mean, std)
    schedule = bijections.make_two_step_schedule("leapfrog", 20, SD2_SCHEDULER)
    r = schedule.sqrt_alpha
    noise = torch.randn(4, 8, 8, generator=generator, dtype=torch.float64)
    start, second = exact_start(schedule, mean, std, noise)
    _, clean = bijections.denoise(eps, start, second, schedule)
    kick = 1e-3 * r[1] * torch.randn(4, 8, 8, generator=generator, dtype=torch.float64)
    _, kicked = bijections.denoise(eps, start, second + kick, schedule)
    growth = ((kicked - clean).norm() / (kick / r[1] * r[-1]).norm()).item()
    assert 1 < growth < 50, growth
