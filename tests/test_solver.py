"""The MAP solver (Alg. 1, Eq. 17): batching, independence, stopping, optimisation."""

import pytest
import torch
from helpers import photo

from dlmap.enhance import solver
from dlmap.inversion import edict
from dlmap.inversion.config import InversionConfig
from dlmap.priors.base import CallablePrior
from dlmap.priors.registry import create_prior
from dlmap.priors.specs import PriorInfo
from dlmap.settings import SolverConfig

SMALL = InversionConfig(steps=4)


def quadratic_prior(target: torch.Tensor) -> CallablePrior:
    """q(x) = -mean((x - target)^2): known maximiser x = target."""
    info = PriorInfo("quadratic", "Quadratic", True, xi3=-0.1, xi4=0.1, score_range=(-1, 0))
    return CallablePrior(lambda x: -((x - target) ** 2).flatten(1).mean(dim=1), info)


@pytest.fixture(scope="module")
def two_photos():
    return torch.stack([photo(64, "astronaut"), photo(64, "coffee")])


def test_batched_solve_equals_solving_each_alone_float64(tiny64, two_photos):
    config = SolverConfig(iters=3)
    mixed = [create_prior("colorfulness"), create_prior("sharpness")]
    together = solver.map_solve(tiny64, mixed, two_photos, config, SMALL, quiet=True)
    for i in range(2):
        alone = solver.map_solve(tiny64, mixed[i], two_photos[i : i + 1], config, SMALL, quiet=True)
        for ours, reference in ((together.x[i], alone.x[0]), (together.y[i], alone.y[0])):
            assert (ours - reference).abs().max() <= 1e-10
        assert together.history[-1]["loss"][i] == pytest.approx(alone.history[-1]["loss"][0])


def test_batched_solve_equals_solving_each_alone_float32(tiny32, two_photos):
    """float32: equal up to float32 inversion noise (p^-2T amplifies rounding ~1e3-fold)."""
    config = SolverConfig(iters=2)
    prior = create_prior("colorfulness")
    photos = two_photos.float()
    together = solver.map_solve(tiny32, prior, photos, config, SMALL, quiet=True)
    for i in range(2):
        alone = solver.map_solve(tiny32, prior, photos[i : i + 1], config, SMALL, quiet=True)
        ours, reference = together.noise[0][i], alone.noise[0][0]
        relative = ((ours - reference).abs().max() / reference.abs().max()).item()
        print(f"float32 batched vs alone after 2 iterations: max latent difference {relative:.1e}")
        assert relative <= 1e-4
        loss_ours, loss_alone = together.history[-1]["loss"][i], alone.history[-1]["loss"][0]
        assert loss_ours == pytest.approx(loss_alone, rel=1e-4)


def _problem_gradients(backbone, prior, images, config):
    """Gradient of problem 0's loss with respect to both problems' noise pairs."""
    schedule = edict.make_schedule(SMALL)
    cond = backbone.condition(images)
    latent = backbone.encode(images, [0] * len(images))
    x_T, y_T = edict.invert(backbone.eps, latent, latent, schedule, cond)
    noise = torch.cat([x_T, y_T]).requires_grad_(True)
    batch = len(images)
    z_x, z_y = edict.denoise(backbone.eps, noise[:batch], noise[batch:], schedule, cond)
    pair = backbone.decode(torch.cat([z_x, z_y]))
    loss, *_ = solver.objective(pair, torch.cat([images, images]), [prior] * 2 * batch, config)
    (grad,) = torch.autograd.grad(loss[0] + loss[batch], noise)
    return grad[:batch], grad[batch:]


def test_gradient_of_one_problem_ignores_the_others(tiny64, two_photos):
    grad_x, grad_y = _problem_gradients(
        tiny64, create_prior("colorfulness"), two_photos, SolverConfig()
    )
    assert grad_x[0].abs().max() > 0 and grad_y[0].abs().max() > 0
    assert torch.count_nonzero(grad_x[1]) == 0 and torch.count_nonzero(grad_y[1]) == 0


def test_a_batch_averaging_prior_would_be_caught(tiny64, two_photos):
    """The independence test can fail: a prior that averages over the batch couples problems."""
    info = PriorInfo("coupled", "Coupled", True, 0.0, 1.0, (0, 1))
    coupled = CallablePrior(lambda x: x.mean().expand(x.shape[0]), info)
    grad_x, _ = _problem_gradients(tiny64, coupled, two_photos, SolverConfig())
    assert torch.count_nonzero(grad_x[1]) > 0


class NaNAfter(CallablePrior):
    """A prior that turns NaN from its ``when``-th call on."""

    def __init__(self, when: int):
        info = PriorInfo("nan", "NaN", True, 0.0, 1.0, (0, 1))
        super().__init__(self._score, info)
        self.calls, self.when = 0, when

    def _score(self, images):
        self.calls += 1
        score = images.flatten(1).mean(dim=1)
        return score * float("nan") if self.calls > self.when else score


@pytest.mark.parametrize("mode", ["latent-map", "pixel-map"])
def test_non_finite_loss_stops_the_solve_naming_the_iteration(tiny32, two_photos, mode):
    config = SolverConfig(mode=mode, iters=5)
    with pytest.raises(solver.NonFiniteError, match=r"iteration 2: non-finite loss"):
        solver.map_solve(tiny32, NaNAfter(2), two_photos.float(), config, SMALL, quiet=True)


def test_pixel_direct_reaches_the_known_optimum():
    target = photo(32, "coffee", torch.float32)[None]
    start = photo(32, "astronaut", torch.float32)[None]
    config = SolverConfig(mode="pixel-direct", iters=300, pixel_lr=0.02)
    result = solver.map_solve(None, quadratic_prior(target), start, config, quiet=True)
    assert (result.x - target).abs().max() < 0.02
    assert result.y is None


def test_pixel_map_trades_fidelity_against_the_prior():
    """Eq. 2: a larger lambda moves x* further from x_init towards the prior's optimum."""
    target = torch.full((1, 3, 16, 16), 0.8)
    start = torch.full((1, 3, 16, 16), 0.2)
    prior = quadratic_prior(target)
    results = {}
    for lam in (0.1, 10.0):
        config = SolverConfig(
            mode="pixel-map", iters=400, lam=lam, pixel_lr=0.005, score_scale="printed"
        )
        results[lam] = solver.map_solve(None, prior, start, config, quiet=True).x.mean().item()
    assert 0.2 < results[0.1] < results[10.0] < 0.8


def test_latent_map_lowers_the_energy(tiny32, two_photos):
    config = SolverConfig(iters=6)
    result = solver.map_solve(
        tiny32, create_prior("colorfulness"), two_photos.float(), config, SMALL, quiet=True
    )
    first, last = result.history[0]["loss"], result.final["loss"]
    assert all(b < a for a, b in zip(first, last, strict=True))
    assert len(result.history) == 6


def test_gradient_clip_bounds_the_first_step_and_can_be_switched_off(tiny32, two_photos):
    photos = two_photos[:1].float()
    prior = create_prior("sharpness")
    schedule = edict.make_schedule(SMALL)
    latent = tiny32.encode(photos, [0])
    start, _ = edict.invert(tiny32.eps, latent, latent, schedule, tiny32.condition(photos))
    steps = {}
    for clip in (1e-3, None):
        config = SolverConfig(iters=1, grad_clip=clip, lam=100.0)
        result = solver.map_solve(tiny32, prior, photos, config, SMALL, quiet=True)
        steps[clip] = (result.noise[0] - start).abs().max().item()
    assert steps[1e-3] <= 2.0 * 1e-3 + 1e-6  # float32 inversion noise
    assert steps[None] > 2.0 * 1e-3


def test_same_seed_same_output_and_seed_matters(tiny32, two_photos):
    prior = create_prior("colorfulness")
    photos = two_photos[:1].float()
    runs = [
        solver.map_solve(tiny32, prior, photos, SolverConfig(iters=1, seed=s), SMALL, quiet=True).x
        for s in (5, 5, 6)
    ]
    assert torch.equal(runs[0], runs[1])
    assert not torch.equal(runs[0], runs[2])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"mode": "latent"}, "mode must be one of"),
        ({"iters": -1}, "iters"),
        ({"lam": -0.1}, "lambda"),
        ({"momentum": 1.0}, "momentum"),
        ({"grad_clip": 0.0}, "grad_clip"),
        ({"gradient": "sloppy"}, "gradient must be one of"),
        ({"score_scale": "percent"}, "score scale must be one of authors, printed"),
        ({"stop_score": 0.0}, r"stop_score must lie in \(0, 100\]"),
        ({"stop_score": 1.5, "score_scale": "printed"}, r"stop_score must lie in \(0, 1\]"),
    ],
)
def test_bad_solver_settings_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SolverConfig(**kwargs)


def test_prior_with_wrong_output_shape_is_rejected(tiny32, two_photos):
    info = PriorInfo("scalar", "Scalar", True, 0.0, 1.0, (0, 1))
    scalar = CallablePrior(lambda x: x.mean(), info)
    config = SolverConfig(mode="pixel-map", iters=1)
    with pytest.raises(ValueError, match="one score per image"):
        solver.map_solve(None, scalar, two_photos.float(), config, quiet=True)


@pytest.mark.parametrize(
    "images, message",
    [
        (torch.full((1, 3, 64, 64), 1.5), r"in \[0, 1\]"),
        (torch.full((1, 3, 64, 64), float("nan")), "finite"),
        (torch.zeros(1, 64, 64), r"\(B, 3, H, W\)"),
        (torch.zeros(1, 3, 60, 64), "multiple of the VAE's factor 8"),
    ],
)
def test_bad_images_are_rejected_before_any_work(tiny32, images, message):
    prior = create_prior("colorfulness")
    with pytest.raises(ValueError, match=message):
        solver.map_solve(tiny32, prior, images, SolverConfig(iters=1), SMALL, quiet=True)


def test_non_finite_gradient_stops_the_solve_naming_the_iteration(tiny32, two_photos):
    """A finite score whose gradient is NaN (sqrt at 0) is caught at the gradient check."""
    info = PriorInfo("kinked", "Kinked", True, 0.0, 1.0, (0, 1))
    kinked = CallablePrior(lambda x: torch.sqrt(x * 0).flatten(1).mean(1) + x.mean((1, 2, 3)), info)
    for mode in ("latent-map", "pixel-map"):
        config = SolverConfig(mode=mode, iters=3)
        with pytest.raises(solver.NonFiniteError, match="iteration 0: non-finite gradient"):
            solver.map_solve(tiny32, kinked, two_photos.float(), config, SMALL, quiet=True)


def test_a_stored_inversion_reused_for_two_priors_gives_the_same_result(tiny64, two_photos):
    """The workflow inverts each image once (Alg. 1 line 2) and reuses it for every prior."""
    config = SolverConfig(iters=2, seed=3)
    inversion = solver.invert_images(tiny64, two_photos, SMALL, seeds=[3, 3])
    for name in ("colorfulness", "sharpness"):
        prior = create_prior(name)
        fresh = solver.map_solve(tiny64, prior, two_photos, config, SMALL, quiet=True)
        reused = solver.map_solve(
            tiny64, prior, two_photos, config, SMALL, quiet=True, inversion=inversion
        )
        assert torch.equal(fresh.x, reused.x) and torch.equal(fresh.y, reused.y)
        assert fresh.history == reused.history


def test_an_inversion_of_other_images_is_refused(tiny64, two_photos):
    inversion = solver.invert_images(tiny64, two_photos[:1], SMALL)
    with pytest.raises(ValueError, match="1 pairs for 2 images"):
        solver.map_solve(
            tiny64,
            create_prior("colorfulness"),
            two_photos,
            SolverConfig(iters=1),
            SMALL,
            quiet=True,
            inversion=inversion,
        )
