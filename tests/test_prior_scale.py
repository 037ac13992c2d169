"""The prior's scale (Eq. 21's xi1), the gradient balance of Eq. 17's two terms, early stopping
as the authors' MAP script does it, and records that describe the images as written."""

import csv
import json
from dataclasses import replace

import pytest
import torch
from helpers import photo, photo_png, run_cli

from dlmap import images
from dlmap.enhance import solver
from dlmap.inversion import edict
from dlmap.inversion.config import InversionConfig
from dlmap.priors import calibration
from dlmap.priors import registry as priors
from dlmap.priors.base import CallablePrior
from dlmap.priors.registry import create_prior
from dlmap.priors.specs import PriorInfo
from dlmap.settings import SolverConfig, score_scale

SMALL = InversionConfig(steps=4)
FAST = ["--backbone", "tiny-seesr", "--size", "64", "--iters", "2", "--steps", "4", "--quiet"]


@pytest.fixture(scope="module")
def two_photos():
    return torch.stack([photo(64, "astronaut"), photo(64, "coffee")])


def fitted(prior):
    """The same prior, its constants marked as fitted to MOS (early stopping applies)."""
    prior.info = replace(prior.info, calibration_fitted=True)
    return prior


# --- the scale ------------------------------------------------------------------------------


def test_the_scales_are_named_and_the_authors_one_is_the_default():
    assert SolverConfig().score_scale == "authors" and SolverConfig().xi1 == 100
    assert score_scale("printed").xi1 == 1.0
    assert SolverConfig().stop_threshold == 90.0
    assert SolverConfig(score_scale="printed").stop_threshold == pytest.approx(0.9)
    raw = torch.tensor([-1.0, 0.0, 3.0])
    on_100 = calibration.calibrate(raw, 0.5, 2.0, True, 100.0)
    assert torch.allclose(on_100, 100 * calibration.calibrate(raw, 0.5, 2.0))
    prior = create_prior("sharpness")
    image = photo(32)[None].float()
    assert prior.calibrated(image).item() == pytest.approx(
        100 * prior.calibrated(image, "printed").item(), rel=1e-6
    )


@pytest.mark.parametrize("mode", ["pixel-map", "latent-map"])
def test_lambda_on_the_authors_scale_is_100_lambda_on_the_printed_one(tiny64, two_photos, mode):
    """xi1 is lambda's unit: (authors, lambda) and (printed, 100 lambda) are one energy."""
    prior = create_prior("sharpness")
    runs = []
    for scale, lam in (("authors", 0.003), ("printed", 0.3)):
        config = SolverConfig(mode=mode, iters=3, lam=lam, score_scale=scale)
        runs.append(solver.map_solve(tiny64, prior, two_photos, config, SMALL, quiet=True))
    authors, printed = runs
    assert torch.equal(authors.x, printed.x)  # 8-bit outputs: identical
    for ours, theirs in zip(authors.history, printed.history, strict=True):
        assert ours["loss"] == pytest.approx(theirs["loss"], rel=1e-9)
        assert ours["score"] == pytest.approx([100 * v for v in theirs["score"]], rel=1e-9)
        assert ours["prior_share"] == pytest.approx(theirs["prior_share"], rel=1e-9)
    other = SolverConfig(mode=mode, iters=3, lam=0.003, score_scale="printed")
    weaker = solver.map_solve(tiny64, prior, two_photos, other, SMALL, quiet=True)
    first, first_weaker = authors.history[0], weaker.history[0]  # the same images
    assert first_weaker["grad_prior"] == pytest.approx(
        [v / 100 for v in first["grad_prior"]], rel=1e-9
    )
    assert first_weaker["grad_fidelity"] == pytest.approx(first["grad_fidelity"], rel=1e-9)


# --- the two terms' gradients ---------------------------------------------------------------


@pytest.mark.parametrize("mode", ["latent-map", "pixel-map", "latent-direct"])
def test_term_gradients_match_finite_differences_and_each_term_alone(two_photos, mode):
    x_init = two_photos
    x = (x_init + 0.05 * torch.randn_like(x_init, dtype=torch.float64)).clamp(0, 1)
    prior_list = [create_prior("sharpness").double(), create_prior("colorfulness").double()]
    config = SolverConfig(mode=mode, lam=0.01)
    loss, score, raw, fid, grad, grad_fid, grad_prior = solver.term_gradients(
        x, x_init, prior_list, config
    )
    direction = torch.randn_like(x)
    step = 1e-6

    def energy(images):
        return solver.objective(images, x_init, prior_list, config)[0].sum()

    numeric = (energy(x + step * direction) - energy(x - step * direction)) / (2 * step)
    assert (grad * direction).sum().item() == pytest.approx(numeric.item(), rel=1e-5)
    image = x.clone().requires_grad_(True)
    _, q, _, d0 = solver.objective(image, x_init, prior_list, config)
    fid_weight, prior_weight = solver.term_weights(config)
    (prior_alone,) = torch.autograd.grad(prior_weight * q.sum(), image, retain_graph=True)
    assert torch.allclose(grad_prior, prior_alone.flatten(1).norm(dim=1))
    if fid_weight:
        (fid_alone,) = torch.autograd.grad(d0.sum(), image)
        assert torch.allclose(grad_fid, fid_alone.flatten(1).norm(dim=1))
        assert (grad_fid > 0).all()
    else:
        assert (grad_fid == 0).all()
    share = solver.prior_share(grad_fid, grad_prior)
    assert torch.allclose(share, grad_prior / (grad_fid + grad_prior))


def test_the_latent_step_is_the_gradient_of_eq_17_through_h(tiny64, two_photos):
    """The solver carries the decoded images' gradient back through h: its first step equals
    -alpha times the gradient of the pair-averaged energy taken by autograd end to end."""
    prior = create_prior("sharpness")
    config = SolverConfig(iters=1, grad_clip=None, lam=0.05)
    result = solver.map_solve(tiny64, prior, two_photos, config, SMALL, quiet=True)
    start = solver.invert_images(tiny64, two_photos, SMALL, [0, 0])
    schedule = edict.make_schedule(SMALL)
    cond = tiny64.condition(two_photos)
    noise = torch.cat(start).requires_grad_(True)
    z_x, z_y = edict.denoise(tiny64.eps, noise[:2], noise[2:], schedule, cond)
    pair = tiny64.decode(torch.cat([z_x, z_y])).clamp(0, 1)
    loss, *_ = solver.objective(pair, torch.cat([two_photos] * 2), [prior] * 4, config)
    (expected,) = torch.autograd.grad(((loss[:2] + loss[2:]) / 2).sum(), noise)
    taken = (noise.detach() - torch.cat(result.noise)) / config.lr
    assert torch.allclose(taken, expected, rtol=1e-6, atol=1e-12)


def test_decoded_images_are_clamped_before_the_prior_and_fidelity_see_them(tiny64, two_photos):
    seen = []

    def spy(images):
        seen.append((images.min().item(), images.max().item()))
        return images.flatten(1).mean(dim=1)

    info = PriorInfo("spy", "Spy", True, 0.5, 0.1, (0, 1))
    config = SolverConfig(iters=2)
    solver.map_solve(tiny64, CallablePrior(spy, info), two_photos, config, SMALL, quiet=True)
    assert seen and all(0 <= low and high <= 1 for low, high in seen)
    latent = tiny64.encode(two_photos, [0, 0])
    raw = tiny64.decode(latent)  # the random tiny VAE decodes outside [0, 1]: clamping matters
    assert raw.min() < 0 or raw.max() > 1


# --- early stopping -------------------------------------------------------------------------


class Counter(CallablePrior):
    """Scores rise by one per call (one call per iteration), plus a faint image term."""

    def __init__(self):
        info = PriorInfo("counter", "Counter", True, xi3=2.5, xi4=0.5, score_range=(0, 9))
        super().__init__(self._score, info)
        self.calls = 0

    def _score(self, images):
        self.calls += 1
        return self.calls - 1 + 1e-3 * images.flatten(1).mean(dim=1)


def test_a_problem_stops_where_the_score_reaches_the_threshold_and_freezes(tiny64, two_photos):
    # calls 0-4 give calibrated 0.7, 4.7, 26.9, 73.1, 95.3: 90 is reached at iteration 4
    config = SolverConfig(iters=8, lam=0.5)
    counter = fitted(Counter())
    sharp = create_prior("sharpness")  # provisional constants: never stops
    together = solver.map_solve(tiny64, [counter, sharp], two_photos, config, SMALL, quiet=True)
    stop = together.early_stop
    assert stop["applied"] == [True, False] and stop["iteration"] == [4, None]
    assert stop["threshold"] == 90.0 and "provisional" in stop["reason"][1]
    assert [step["active"] for step in together.history][3:6] == [
        [True, True],
        [True, True],
        [False, True],
    ]
    assert len(together.history) == 8
    alone = solver.map_solve(
        tiny64,
        fitted(Counter()),
        two_photos[:1],
        replace(config, iters=4, early_stop=False),
        SMALL,
        quiet=True,
    )  # the state after 4 updates, as the stopped problem froze
    for ours, theirs in zip(together.noise, alone.noise, strict=True):
        assert torch.allclose(ours[0], theirs[0], rtol=0, atol=1e-12)
    other = solver.map_solve(tiny64, sharp, two_photos[1:], config, SMALL, quiet=True)
    # batched vs alone: equal up to float64 inversion noise (one step moves it ~1e-3)
    assert torch.allclose(together.noise[0][1], other.noise[0][0], rtol=0, atol=1e-9)


def test_early_stopping_applies_only_to_latent_map_with_fitted_constants(tiny64, two_photos):
    counter = fitted(Counter())
    for kwargs, reason in (
        ({"mode": "latent-direct"}, "not in latent-direct mode"),
        ({"mode": "pixel-map"}, "not in pixel-map mode"),
        ({"early_stop": False}, "switched off"),
    ):
        counter.calls = 0
        config = SolverConfig(iters=6, **kwargs)
        result = solver.map_solve(tiny64, counter, two_photos[:1], config, SMALL, quiet=True)
        assert result.early_stop["applied"] == [False] and reason in result.early_stop["reason"][0]
        assert len(result.history) == 6 and all(s["active"] == [True] for s in result.history)
    counter.calls = 0
    config = SolverConfig(iters=6, stop_score=20.0)  # a threshold of one's own
    result = solver.map_solve(tiny64, counter, two_photos[:1], config, SMALL, quiet=True)
    assert result.early_stop["iteration"] == [2] and len(result.history) == 3


def test_the_record_keeps_only_the_iterations_a_problem_ran(tiny64, two_photos, tmp_path):
    from dlmap.enhance import records

    config = SolverConfig(iters=7, lam=0.5)
    mixed = [fitted(Counter()), create_prior("sharpness")]
    result = solver.map_solve(tiny64, mixed, two_photos, config, SMALL, quiet=True)
    sources = []
    for index, name in enumerate(("astronaut", "coffee")):
        source = tmp_path / f"{name}.png"
        images.save_png_atomic(two_photos[index], source)
        sources.append(source)
    out = tmp_path / "o"
    out.mkdir()
    stopped = records.write_enhanced(out, sources[0], 0, result, mixed[0], tiny64, 1, {})
    running = records.write_enhanced(out, sources[1], 1, result, mixed[1], tiny64, 1, {})
    assert [s["iteration"] for s in stopped["history"]] == [0, 1, 2, 3, 4]
    assert stopped["early_stop"] == {
        "threshold": 90.0,
        "applied": True,
        "reason": "applies",
        "iteration": 4,
    }
    assert len(running["history"]) == 7 and running["early_stop"]["iteration"] is None


def test_the_registry_says_which_constants_are_fitted(tmp_path):
    assert priors.prior_info("liqe-mix").calibration_fitted
    assert priors.prior_info("musiq").calibration_fitted
    assert not priors.prior_info("clipiqa+").calibration_fitted
    assert not priors.prior_info("sharpness").calibration_fitted
    assert not priors.prior_info("niqe").calibration_fitted
    fit = calibration.LogisticFit(5.0, 1.0, 20, 0.8, 0.7, 0.75, "my set")
    calibration.save_constants("sharpness", fit, cache=tmp_path)
    assert create_prior("sharpness", cache=tmp_path).info.calibration_fitted
    random_msliqe = create_prior("ms-liqe", allow_random=True, cache=tmp_path)
    assert not random_msliqe.info.calibration_fitted
    assert "provisional" in random_msliqe.info.calibration_source


# --- the command line: warning, records, `dlmap score` --------------------------------------


@pytest.fixture()
def coffee_png(tmp_path):
    return photo_png(tmp_path / "in", "coffee")


def test_a_prior_that_barely_acts_is_named_with_lambda(tmp_path, coffee_png, capsys):
    argv = ["enhance", coffee_png, *FAST, "--prior", "sharpness"]
    code, _, err = run_cli([*argv, "--out", tmp_path / "a", "--score-scale", "printed"], capsys)
    record = json.loads((tmp_path / "a" / "coffee.json").read_text())
    shares = [step["prior_share"] for step in record["history"]]
    assert code == 0 and max(shares) < 0.01
    (line,) = err.strip().splitlines()
    assert line.startswith("dlmap: warning:") and "--lambda" in line and "coffee.png" in line
    code, _, err = run_cli([*argv, "--out", tmp_path / "b", "--lambda", "1"], capsys)
    record = json.loads((tmp_path / "b" / "coffee.json").read_text())
    assert code == 0 and err == "" and max(s["prior_share"] for s in record["history"]) > 0.01


@pytest.mark.parametrize("mode", ["latent-map", "pixel-map"])
def test_score_of_the_written_pngs_reproduces_the_recorded_final_scores(
    tmp_path, coffee_png, capsys, mode
):
    out = tmp_path / "out"
    argv = ["enhance", coffee_png, "--out", out, *FAST, "--prior", "sharpness", "--mode", mode]
    assert run_cli(argv, capsys)[0] == 0
    record = json.loads((out / "coffee.json").read_text())
    table = tmp_path / "scores.csv"
    code, printed, _ = run_cli(
        ["score", out / "coffee.x.png", "--prior", "sharpness", "--out", table], capsys
    )
    assert code == 0 and "(0-100)" in printed
    (row,) = list(csv.DictReader(open(table)))
    final = record["final"]["x"]
    assert float(row["raw_score"]) == pytest.approx(final["raw_score"], rel=1e-6, abs=1e-6)
    assert float(row["calibrated_score"]) == pytest.approx(final["score"], rel=1e-6, abs=1e-5)
    assert row["score_scale"] == "authors" and row["calibration_fitted"] == "False"
    assert (row["width"], row["height"]) == ("64", "64")


def test_score_reports_bad_inputs_one_line_each_and_scores_the_rest(tmp_path, coffee_png, capsys):
    broken = tmp_path / "broken.png"
    broken.write_text("not an image")
    table = tmp_path / "s.csv"
    argv = ["score", coffee_png, broken, tmp_path / "missing.png", "--prior", "colorfulness"]
    code, printed, err = run_cli([*argv, "--out", table, "--score-scale", "printed"], capsys)
    errors = [line for line in err.splitlines() if line.startswith("dlmap: error:")]
    assert code == 2 and len(errors) == 2
    (row,) = list(csv.DictReader(open(table)))
    assert 0 < float(row["calibrated_score"]) < 1 and row["width"] == "96"
    code, _, err = run_cli(["score", coffee_png, "--prior", "sharpnes"], capsys)
    assert code == 2 and "did you mean 'sharpness'" in err
    code, _, err = run_cli(["score", coffee_png, "--prior", "sharpness", "--size", "3"], capsys)
    assert code == 2 and "--size" in err
    code, _, err = run_cli(
        ["score", coffee_png, "--prior", "sharpness", "--device", "cuda:7"], capsys
    )
    assert code == 2 and "CUDA is not available" in err and len(err.strip().splitlines()) == 1


def test_priors_list_shows_the_scale_of_calibrated_scores(capsys):
    code, printed, _ = run_cli(["priors", "list"], capsys)
    assert code == 0 and "authors scale, 0-100" in printed and "printed: 0-1" in printed
