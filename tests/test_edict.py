"""EDICT (Eqs. 6-15): schedule, exact inversion, and gradients with memory flat in T."""

import pytest
import torch
from diffusers import DDIMScheduler
from helpers import photo, relative_error

from dlmap.inversion import edict
from dlmap.inversion.config import ORDERS, EdictOptions, InversionConfig
from dlmap.settings import GRADIENTS

T = 20


@pytest.fixture(scope="module")
def latent64(tiny64):
    images = torch.stack([photo(64, "astronaut"), photo(64, "coffee")])
    return tiny64.encode(images, seeds=[0, 1]), tiny64.condition(images)


def test_default_mixing_is_093_to_the_50_over_T():
    for steps in (10, 20, 50):
        assert InversionConfig(steps=steps).mixing == pytest.approx(0.93 ** (50 / steps))
    assert InversionConfig(steps=20, edict=EdictOptions(mix=0.5)).mixing == 0.5


def test_timesteps_follow_steps_offset():
    authors = edict.make_schedule(InversionConfig(steps=20, steps_offset=0))
    sd2 = edict.make_schedule(InversionConfig(steps=20, steps_offset=1))
    assert authors.timesteps == tuple(range(950, -1, -50))
    assert sd2.timesteps == tuple(range(951, 0, -50))


def test_coefficients_reproduce_diffusers_ddim_step():
    """a_t x + b_t eps (Eq. 4) is exactly DDIMScheduler.step with eta = 0."""
    config = InversionConfig(steps=T)
    schedule = edict.make_schedule(config)
    scheduler = DDIMScheduler(**config.scheduler, steps_offset=config.steps_offset)
    scheduler.set_timesteps(T)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, 8, 8, generator=generator, dtype=torch.float64)
    noise = torch.randn(1, 4, 8, 8, generator=generator, dtype=torch.float64)
    for k, t in enumerate(schedule.timesteps):
        expected = scheduler.step(noise, t, x, eta=0.0).prev_sample
        ours = schedule.a[k] * x + schedule.b[k] * noise
        assert relative_error(ours, expected) < 1e-5  # diffusers keeps alphas in float32


def test_alternating_order_swaps_every_other_step():
    alternating = edict.make_schedule(InversionConfig(steps=6))
    fixed = edict.make_schedule(InversionConfig(steps=6, edict=EdictOptions(order="fixed")))
    assert alternating.swapped == (False, True, False, True, False, True)
    assert not any(fixed.swapped)


@pytest.mark.parametrize("order", ORDERS)
def test_inversion_round_trip_float64(tiny64, latent64, order):
    latent, cond = latent64
    schedule = edict.make_schedule(InversionConfig(steps=T, edict=EdictOptions(order=order)))
    x_T, y_T = edict.invert(tiny64.eps, latent, latent, schedule, cond)
    x0, y0 = edict.denoise(tiny64.eps, x_T, y_T, schedule, cond)
    assert relative_error(x0, latent) <= 1e-10 and relative_error(y0, latent) <= 1e-10
    # and the other way round: d(h(z)) = z for a noise pair that did not come from d
    z = torch.randn(2, *latent.shape, generator=torch.Generator().manual_seed(3)).double()
    x0, y0 = edict.denoise(tiny64.eps, z[0], z[1], schedule, cond)
    x_T, y_T = edict.invert(tiny64.eps, x0, y0, schedule, cond)
    assert relative_error(x_T, z[0]) <= 1e-10 and relative_error(y_T, z[1]) <= 1e-10
    # the transform is not trivial: the noise pair is far from the image latents
    assert relative_error(x_T, x0) > 0.5


def test_inversion_round_trip_float32(tiny32):
    images = torch.stack([photo(64, "astronaut", torch.float32)])
    latent, cond = tiny32.encode(images, seeds=[0]), tiny32.condition(images)
    schedule = edict.make_schedule(InversionConfig(steps=T))
    x_T, y_T = edict.invert(tiny32.eps, latent, latent, schedule, cond)
    x0, y0 = edict.denoise(tiny32.eps, x_T, y_T, schedule, cond)
    error = max(relative_error(x0, latent), relative_error(y0, latent))
    print(f"float32 round-trip relative error h(d(x)) at T={T}: {error:.2e}")
    assert error <= 1e-3


def test_inversion_round_trip_without_controlnet(tiny_vanilla64, latent64):
    latent, _ = latent64
    cond = tiny_vanilla64.condition(torch.zeros(2, 3, 64, 64, dtype=torch.float64))
    schedule = edict.make_schedule(InversionConfig(steps=T))
    x_T, y_T = edict.invert(tiny_vanilla64.eps, latent, latent, schedule, cond)
    x0, _ = edict.denoise(tiny_vanilla64.eps, x_T, y_T, schedule, cond)
    assert relative_error(x0, latent) <= 1e-10


def _scalar(backbone, schedule, cond, weights, gradient):
    def function(x_T, y_T):
        x0, y0 = edict.denoise(backbone.eps, x_T, y_T, schedule, cond, gradient=gradient)
        return (torch.sin(x0) * weights[0]).sum() + (y0**2 * weights[1]).sum()

    return function


@pytest.mark.parametrize("gradient", ["recompute", "reversible"])
def test_gradient_matches_central_finite_differences_float64(tiny64, latent64, gradient):
    latent, cond = latent64
    latent, cond = latent[:1], cond[:1]
    schedule = edict.make_schedule(InversionConfig(steps=T))
    x_T, y_T = edict.invert(tiny64.eps, latent, latent, schedule, cond)
    generator = torch.Generator().manual_seed(7)
    weights = torch.randn(2, *latent.shape, generator=generator, dtype=torch.float64)
    function = _scalar(tiny64, schedule, cond, weights, gradient)
    x_T, y_T = x_T.requires_grad_(True), y_T.requires_grad_(True)
    grad_x, grad_y = torch.autograd.grad(function(x_T, y_T), (x_T, y_T))
    # truncation error ~ step**2 * f''' (measured: 1e-7 relative at step 1e-6, 3e-9 at 1e-7),
    # round-off ~ 1e-16 * |f| / step ~ 3e-8 absolute
    step = 1e-7
    for _ in range(2):
        dx, dy = torch.randn(2, *latent.shape, generator=generator, dtype=torch.float64)
        with torch.no_grad():
            plus = function(x_T + step * dx, y_T + step * dy)
            minus = function(x_T - step * dx, y_T - step * dy)
        numeric = (plus - minus) / (2 * step)
        analytic = (grad_x * dx).sum() + (grad_y * dy).sum()
        assert abs(numeric - analytic) / abs(analytic) <= 1e-6


def test_memory_lean_gradients_equal_plain_autograd(tiny64, latent64):
    latent, cond = latent64
    schedule = edict.make_schedule(InversionConfig(steps=6))
    weights = torch.randn(2, *latent.shape, generator=torch.Generator().manual_seed(1)).double()
    grads = {}
    for gradient in GRADIENTS:
        x_T = latent.clone().requires_grad_(True)
        y_T = (latent * 0.9).requires_grad_(True)
        value = _scalar(tiny64, schedule, cond, weights, gradient)(x_T, y_T)
        grads[gradient] = torch.autograd.grad(value, (x_T, y_T))
    for gradient in ("recompute", "reversible"):
        for ours, reference in zip(grads[gradient], grads["autograd"], strict=True):
            assert relative_error(ours, reference) <= 1e-10


def test_network_weights_get_no_gradient(tiny64, latent64):
    latent, cond = latent64
    schedule = edict.make_schedule(InversionConfig(steps=2))
    x_T = latent.clone().requires_grad_(True)
    x0, y0 = edict.denoise(tiny64.eps, x_T, latent, schedule, cond)
    (x0.sum() + y0.sum()).backward()
    assert x_T.grad is not None
    assert all(p.grad is None and not p.requires_grad for p in tiny64.parameters())


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"steps": 0}, "positive integer"),
        ({"steps": 2000}, "exceed"),
        ({"mix": 0.0}, "(0, 1]"),
        ({"mix": 1.5}, "(0, 1]"),
        ({"order": "zigzag"}, "order must be one of"),
        ({"steps_offset": -1}, "steps_offset"),
    ],
)
def test_bad_config_is_rejected_with_a_clear_error(kwargs, message):
    with pytest.raises(ValueError, match=__import__("re").escape(message)):
        InversionConfig.from_flat(**kwargs)


def test_unknown_gradient_method_is_rejected(tiny64, latent64):
    latent, cond = latent64
    schedule = edict.make_schedule(InversionConfig(steps=2))
    with pytest.raises(ValueError, match="gradient must be one of"):
        edict.denoise(tiny64.eps, latent, latent, schedule, cond, gradient="magic")


def test_alternating_step_swaps_the_coupling_but_not_the_mixing():
    """Odd steps update y first (Eqs. 8-9 exchanged); Eqs. 10-11 still mix x first."""

    def eps(latent, t, cond):  # a nonlinear stand-in network
        return torch.tanh(3 * latent) + 0.1 * t

    schedule = edict.make_schedule(InversionConfig(steps=4))
    a, b, p, t = schedule.a[1], schedule.b[1], schedule.mix, schedule.timesteps[1]
    x, y = torch.tensor([0.3], dtype=torch.float64), torch.tensor([-0.7], dtype=torch.float64)
    y_mid = a * y + b * eps(x, t, None)
    x_mid = a * x + b * eps(y_mid, t, None)
    x_new = p * x_mid + (1 - p) * y_mid
    y_new = p * y_mid + (1 - p) * x_new
    ours = edict.denoise_step(eps, x, y, 1, schedule)
    assert torch.equal(ours[0], x_new) and torch.equal(ours[1], y_new)
    back = edict.invert_step(eps, *ours, 1, schedule)
    assert torch.allclose(back[0], x, atol=1e-14) and torch.allclose(back[1], y, atol=1e-14)
