"""BDIA and O-BELM as exact two-step bijections (dlmap.inversion.bijections): round trips,
gradients against finite differences, and accuracy as ODE solvers on Gaussian data, where
the optimal noise predictor and the probability-flow ODE's solution are closed-form."""

import pytest
import torch
from helpers import photo, relative_error

from dlmap.inversion import bijections, registry
from dlmap.inversion.config import SD2_SCHEDULER
from dlmap.settings import SolverConfig
from dlmap.testing.gaussian_ode import exact_flow, exact_start, gaussian_eps

T = 20


def schedule_of(name, steps=T, gamma=0.92, ends="final-alpha"):
    return bijections.make_two_step_schedule(name, steps, SD2_SCHEDULER, gamma=gamma, ends=ends)


@pytest.fixture(scope="module")
def latent64(tiny64):
    images = torch.stack([photo(64, "astronaut"), photo(64, "coffee")])
    return tiny64.encode(images, seeds=[0, 1]), tiny64.condition(images)


def test_every_member_is_consistent_and_obelms_amplification_telescopes():
    """C_k = h_k + A_k H_k: a constant eps is integrated exactly by every member."""
    for name in ("bdia", "belm"):
        schedule = schedule_of(name)
        sigma = schedule.sigma
        for k in range(1, schedule.steps):
            h, H = sigma[k] - sigma[k + 1], sigma[k - 1] - sigma[k]
            assert schedule.C[k] == pytest.approx(h + schedule.A[k] * H)
    belm = schedule_of("belm")
    sigma = belm.sigma
    assert belm.A[1] == pytest.approx(((sigma[1] - sigma[2]) / (sigma[0] - sigma[1])) ** 2)
    # the inverse's amplification telescopes to (h_1 / h_{T-1})^2 for O-BELM
    n = belm.steps
    h = [sigma[k] - sigma[k + 1] for k in range(n)]
    assert belm.inverse_amplification() == pytest.approx((h[0] / h[n - 1]) ** 2, rel=1e-9)
    # SD2's last interval (t = 0 -> final ᾱ = ᾱ_0) has zero length: the chain ends at t = 0
    assert belm.steps == T - 1 and belm.timesteps[-1] == 0 and min(h) > 0
    assert belm.inversion_timestep == belm.timesteps[T - 2] == 50
    # BELM's code ends at ᾱ = 1 instead and evaluates eps(clean, t = 1) in inversion
    one = schedule_of("belm", ends="alpha-one")
    assert one.steps == T and one.sigma[-1] == 0 and one.sqrt_alpha[-1] == 1
    assert one.inversion_timestep == 1
    # BDIA's inverse divides the raw latent by gamma per step: gamma^-(T-1) on the raw latent,
    # times the ratio of the end states' sqrt(ᾱ) products in DDIM's variables
    bdia = schedule_of("bdia", gamma=0.5)
    r, n = bdia.sqrt_alpha, bdia.steps
    expected = 0.5 ** -(n - 1) * r[n] * r[n - 1] / (r[0] * r[1])
    assert bdia.inverse_amplification() == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("name", ["bdia", "belm", "leapfrog"])
def test_round_trip_float64_both_ways(tiny64, latent64, name):
    latent, cond = latent64
    schedule = schedule_of(name)
    eps = tiny64.eps
    before_last = bijections.ddim_inversion_step(eps, latent, schedule, cond)
    first, second = bijections.invert(eps, before_last, latent, schedule, cond)
    back_before, back_last = bijections.denoise(eps, first, second, schedule, cond)
    assert relative_error(back_last, latent) <= 1e-10
    assert relative_error(back_before, before_last) <= 1e-10
    generator = torch.Generator().manual_seed(3)
    z = torch.randn(2, *latent.shape, generator=generator, dtype=torch.float64)
    out = bijections.denoise(eps, z[0], z[1], schedule, cond)
    again = bijections.invert(eps, *out, schedule, cond)
    assert max(relative_error(a, b) for a, b in zip(again, z, strict=True)) <= 1e-10
    assert relative_error(first, latent) > 0.5  # not a trivial map


@pytest.mark.parametrize("gradient", ["recompute", "reversible"])
@pytest.mark.parametrize("name", ["bdia", "belm", "leapfrog"])
def test_gradients_match_central_finite_differences_float64(tiny64, latent64, name, gradient):
    latent, cond = latent64
    latent, cond = latent[:1], cond[:1]
    schedule = schedule_of(name, steps=8)
    generator = torch.Generator().manual_seed(7)
    weights = torch.randn(2, *latent.shape, generator=generator, dtype=torch.float64)

    def function(first, second):
        before, last = bijections.denoise(
            tiny64.eps, first, second, schedule, cond, gradient=gradient
        )
        return (torch.sin(last) * weights[0]).sum() + (before**2 * weights[1]).sum()

    first = latent.clone().requires_grad_(True)
    second = (0.9 * latent).requires_grad_(True)
    g1, g2 = torch.autograd.grad(function(first, second), (first, second))
    for _ in range(2):
        d1, d2 = torch.randn(2, *latent.shape, generator=generator, dtype=torch.float64)
        step = 1e-7
        with torch.no_grad():
            numeric = (
                function(first + step * d1, second + step * d2)
                - function(first - step * d1, second - step * d2)
            ) / (2 * step)
        analytic = (g1 * d1).sum() + (g2 * d2).sum()
        assert abs(numeric - analytic) / abs(analytic) <= 1e-6, (numeric, analytic)


@pytest.mark.parametrize("name", ["bdia", "belm"])
def test_on_gaussian_data_the_error_shrinks_as_steps_grow(name):
    """Started from the exact pair (s_0, s_1), each bijection's clean latent converges to the
    ODE's exact solution as T grows (and beats DDIM at T = 50 for O-BELM)."""
    generator = torch.Generator().manual_seed(0)
    mean = torch.randn(4, 8, 8, generator=generator, dtype=torch.float64)
    std = 0.1 + torch.rand(4, 8, 8, generator=generator, dtype=torch.float64)
    eps = gaussian_eps(mean, std)
    errors = []
    for steps in (10, 20, 50):
        schedule = schedule_of(name, steps=steps)
        r, s = schedule.sqrt_alpha, schedule.sigma
        noise = torch.randn(
            4, 8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64
        )
        start, second = exact_start(schedule, mean, std, noise)
        _, last = bijections.denoise(eps, start, second, schedule)
        exact = exact_flow(start, s[0], s[-1], r[0] ** 2, r[-1] ** 2, mean, std)
        errors.append(relative_error(last, exact))
    assert errors[0] > errors[1] > errors[2], errors


@pytest.mark.parametrize("name", ["bdia", "belm", "leapfrog-int"])
def test_latent_map_with_a_one_call_bijection_writes_x_alone(tiny32, name, tmp_path, capsys):
    """The solver with BDIA or O-BELM: one output image per problem (x), Alg. 1's mean over
    one term, the prior's score raised by latent-MAP steps, and ``dlmap enhance --bijection``
    writing NAME.x.png and no NAME.y.png."""
    from helpers import photo_png, run_cli

    from dlmap.enhance import solver
    from dlmap.inversion.config import InversionConfig
    from dlmap.priors import registry as priors

    images = photo(64, "coffee", torch.float32)[None]
    config = SolverConfig(mode="latent-map", lam=1e4, iters=2, lr=0.5)
    prior = priors.create_prior("colorfulness")
    result = solver.map_solve(
        tiny32, prior, images, config, InversionConfig(steps=6, bijection=name), quiet=True
    )
    assert result.y is None and "y" not in result.final and result.x.shape == images.shape
    assert result.final["x"]["score"][0] > result.history[0]["score"][0]
    png = photo_png(tmp_path, "coffee", size=64)
    argv = [
        "enhance",
        png,
        "--out",
        tmp_path / "out",
        "--backbone",
        "tiny-seesr",
        "--device",
        "cpu",
        "--size",
        "64",
        "--iters",
        "1",
        "--steps",
        "4",
        "--bijection",
        name,
        "--quiet",
        "--prior",
        "colorfulness",
    ]
    code, _, err = run_cli(argv, capsys)
    assert code == 0, err
    assert (tmp_path / "out" / "coffee.x.png").exists()
    assert not (tmp_path / "out" / "coffee.y.png").exists()


@pytest.mark.parametrize("name", ["bdia", "belm"])
def test_round_trip_float32_at_the_defaults(tiny32, name):
    """Each one-call bijection's default (BDIA gamma = 0.92, amplification 405; O-BELM, 178)
    inverts a clean latent and regenerates it within 1e-3 in float32 at T = 20."""
    from dlmap.inversion.config import InversionConfig

    images = photo(64, "astronaut", torch.float32)[None]
    latent, cond = tiny32.encode(images, seeds=[0]), tiny32.condition(images)
    bijection = registry.make_bijection(InversionConfig(steps=T, bijection=name))
    pair = bijection.invert_latent(tiny32.eps, latent, cond)
    (last,) = bijection.denoise(tiny32.eps, *pair, cond)
    assert relative_error(last, latent) <= 1e-3
    assert bijection.schedule.inverse_amplification() < 500
