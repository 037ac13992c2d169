"""NIQE offline: the fallback pristine model fitted on bundled photographs, and the NIQE prior
(which model it uses and how it is labelled)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image, ImageFilter

from dlmap.priors import niqe, niqe_fit, niqe_live
from dlmap.weights.cache import WeightsMissingError


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A weights cache holding the fitted fallback (fitted once for this module)."""
    folder = tmp_path_factory.mktemp("niqe_cache")
    niqe.fitted_model_path(folder)
    return folder


@pytest.fixture(scope="module")
def prior(cache):
    return niqe.NIQEPrior(cache=cache)


@pytest.fixture(scope="module")
def features():
    """Sharp-patch features of every fallback photograph, by name (for leave-one-out fits)."""
    recipe = niqe_fit.FALLBACK
    return {
        name: niqe_fit.recipe_features(
            niqe_fit.FitRecipe("one", (name,), recipe.scales, recipe.shrinkage)
        )
        for name in recipe.photographs
    }


def as_tensor(pixels: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(pixels, dtype=np.float32) / 255).permute(2, 0, 1)[None]


def test_every_fallback_photograph_loads_offline_as_a_photograph():
    assert {p.package for p in niqe_fit.PHOTOGRAPHS.values()} == {
        "skimage",
        "sklearn",
        "matplotlib",
    }
    assert set(niqe_fit.FALLBACK.photographs) == set(niqe_fit.PHOTOGRAPHS)
    assert set(niqe_fit.FALLBACK_V1.photographs) < set(niqe_fit.PHOTOGRAPHS)
    for name in niqe_fit.PHOTOGRAPHS:
        pixels = niqe_fit.photograph(name)
        assert pixels.dtype == np.uint8 and min(pixels.shape[:2]) >= 300, name
        assert pixels.ndim == 2 or pixels.shape[2] == 3, name
        assert np.ptp(pixels) > 100, name  # a photograph, not a flat or binary image
    with pytest.raises(KeyError, match="unknown photograph 'moon'"):
        niqe_fit.photograph("moon")


def test_fitted_model_has_pyiqa_layout_and_its_recipe(cache):
    path = cache / "niqe" / niqe.FITTED_FILE
    mu, cov, fields = niqe_live.read_model(path)
    held_out = niqe_fit.luminance(niqe_fit.photograph("chelsea"))
    assert niqe_fit.patch_features(held_out).shape == (12, mu.size) and mu.size == 36
    np.testing.assert_allclose(cov, cov.T, rtol=0, atol=1e-12)
    np.linalg.cholesky(cov)
    assert str(np.ravel(fields["fit_version"])[0]) == niqe_fit.FALLBACK.version
    assert "Ledoit-Wolf" in str(np.ravel(fields["procedure"])[0])
    assert "sklearn:china.jpg" in str(np.ravel(fields["photographs"])[0])
    assert niqe.identify(path).kind == "dlmap-fitted" and not niqe_live.is_live_model(mu, cov)


def test_cached_model_is_reused_and_an_older_recipe_refitted(cache, tmp_path):
    path = cache / "niqe" / niqe.FITTED_FILE
    stamp = path.stat().st_mtime_ns
    assert niqe.fitted_model_path(cache) == path
    assert path.stat().st_mtime_ns == stamp
    mu, cov, _ = niqe_live.read_model(path)
    stale = tmp_path / "niqe" / niqe.FITTED_FILE
    niqe_live.write_model(stale, mu * 2, cov, fit_version=niqe_fit.FALLBACK_V1.version)
    assert niqe.identify(stale).kind == "custom"  # another recipe's file is not ours now
    niqe.fitted_model_path(tmp_path)
    np.testing.assert_allclose(niqe_live.read_model(stale)[0], mu)  # refitted: the same fit


def test_sharpness_follows_pyiqa_block_order():
    """The sharpest patch index must name the same patch in sharpness and in features."""
    rng = np.random.default_rng(0)
    luma = torch.full((1, 1, 288, 384), 128.0, dtype=torch.float64)
    luma[..., 96:192, 192:288] += torch.from_numpy(rng.normal(0, 40, (96, 96)))  # row 1, col 2
    sharpness = niqe_fit.patch_sharpness(luma)
    assert sharpness.shape == (12,) and int(sharpness.argmax()) == 2 * 3 + 1


def test_fit_selects_sharp_patches():
    textures = [niqe_fit.photograph(n) for n in ("brick", "grass")]
    with pytest.raises(ValueError, match="cannot fit a 36-dim Gaussian"):
        niqe_fit.fit_pristine_model(textures[:1], sharpness_threshold=0.9)  # too few patches left
    mu_all, _ = niqe_fit.fit_pristine_model(textures, sharpness_threshold=0.0)
    mu_sharp, cov_sharp = niqe_fit.fit_pristine_model(textures)
    assert mu_sharp.shape == (36,) and cov_sharp.shape == (36, 36)
    assert not np.allclose(mu_all, mu_sharp)


def test_several_scales_add_patches_of_the_smaller_images():
    one = niqe_fit.FitRecipe("s", ("astronaut",), (1.0,))
    three = niqe_fit.FitRecipe("s", ("astronaut",), (1.0, 0.75, 0.5))
    single, multi = niqe_fit.recipe_features(one), niqe_fit.recipe_features(three)
    assert multi.shape[0] > single.shape[0] and np.array_equal(multi[: len(single)], single)
    luma = niqe_fit.luminance(niqe_fit.photograph("astronaut"))
    assert niqe_fit.rescaled(luma, 0.5).shape[-2:] == (256, 256)


def test_ledoit_wolf_shrinks_towards_the_diagonal_and_keeps_the_variances(features):
    samples = np.concatenate(list(features.values()))
    assert samples.shape[0] > 200  # the old fallback had 86 patches
    mu, sample = niqe_fit.fit_gaussian(samples, "none")
    mu_lw, shrunk = niqe_fit.fit_gaussian(samples, "ledoit-wolf")
    np.testing.assert_allclose(mu_lw, mu)
    # standardised Ledoit-Wolf keeps the diagonal (up to its 1/n vs 1/(n-1) convention) ...
    np.testing.assert_allclose(np.diag(shrunk), np.diag(sample) * (len(samples) - 1) / len(samples))
    off = ~np.eye(36, dtype=bool)
    ratio = shrunk[off] / sample[off]
    assert 0 < ratio.min() and ratio.max() < 1 and np.allclose(ratio, ratio[0])  # one factor
    assert np.linalg.cond(shrunk) < np.linalg.cond(sample)
    with pytest.raises(ValueError, match="unknown shrinkage"):
        niqe_fit.fit_gaussian(samples, "oas")
    with pytest.raises(ValueError, match="constant"):
        niqe_fit.fit_gaussian(np.ones((50, 36)))


def distortions(pixels: np.ndarray) -> dict[str, list[np.ndarray]]:
    image = Image.fromarray(pixels)
    rng = np.random.default_rng(0)

    def jpeg(quality: int) -> np.ndarray:
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=quality)
        return np.asarray(Image.open(buffer).convert("RGB"))

    def noise(sigma: float) -> np.ndarray:
        noisy = pixels + rng.normal(0, sigma, pixels.shape)
        return np.clip(noisy, 0, 255).round().astype(np.uint8)

    return {
        "blur": [np.asarray(image.filter(ImageFilter.GaussianBlur(s))) for s in (1, 2, 4)],
        "noise": [noise(s) for s in (5, 15, 40)],
        "jpeg": [jpeg(q) for q in (75, 10, 5)],
    }


@pytest.mark.parametrize("name", ["chelsea", "coffee", "grace_hopper"])
def test_stronger_distortion_raises_niqe_on_a_photograph_left_out_of_the_fit(features, name):
    from pyiqa.archs.niqe_arch import calculate_niqe

    kept = [f for other, f in features.items() if other != name]
    mu, cov = niqe_fit.fit_gaussian(np.concatenate(kept), niqe_fit.FALLBACK.shrinkage)
    pixels = niqe_fit.photograph(name)
    for kind, levels in distortions(pixels).items():
        scores = [
            float(
                calculate_niqe(
                    as_tensor(level).double(),
                    0,
                    True,
                    "yiq",
                    torch.from_numpy(mu),
                    torch.from_numpy(cov),
                )
            )
            for level in levels
        ]
        assert all(np.isfinite(scores)), (kind, scores)
        assert scores[0] < scores[1] < scores[2], (name, kind, scores)


def crops() -> torch.Tensor:
    return torch.cat(
        [as_tensor(niqe_fit.photograph(n))[..., :224, :288] for n in ("chelsea", "coffee")]
    )


def test_prior_equals_pyiqa_niqe_with_the_same_model_file(prior):
    import pyiqa

    assert prior.model_path.name == niqe.FITTED_FILE and not prior.official
    assert prior.pristine.kind == "dlmap-fitted" and prior.info.display_name == niqe.FITTED_DISPLAY
    reference = pyiqa.create_metric(
        "niqe", device="cpu", pretrained_model_path=str(prior.model_path)
    )
    images = crops().double()
    with torch.no_grad():
        ours = prior(images)
        theirs = reference(images).reshape(-1)
    assert ours.shape == (2,)
    torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-10)


def test_gradients_and_per_image_scores(prior):
    images = crops().double().requires_grad_(True)
    scores = prior(images)
    scores.sum().backward()
    gradient = images.grad
    assert torch.isfinite(gradient).all()
    assert (gradient.flatten(1).abs().sum(dim=1) > 0).all()
    with torch.no_grad():
        alone = torch.cat([prior(images[i : i + 1]) for i in range(2)])
    torch.testing.assert_close(scores.detach(), alone, rtol=1e-10, atol=1e-10)
    assert scores[0] != scores[1]


def test_too_small_images_are_refused(prior):
    with pytest.raises(ValueError, match="at least 192"):
        prior(torch.rand(1, 3, 160, 300))


def another_model(cache, path):
    """A model file with other numbers than LIVE's or the fitted one: using it changes scores."""
    mu, cov, _ = niqe_live.read_model(cache / "niqe" / niqe.FITTED_FILE)
    return niqe_live.write_model(path, mu * 1.1, cov * 2.0)


def test_a_file_at_lives_path_with_other_numbers_is_labelled_custom(cache, tmp_path, prior):
    path = another_model(cache, tmp_path / niqe_live.MODEL_FILE)
    custom = niqe.NIQEPrior(cache=tmp_path)
    assert custom.model_path == path and not custom.official
    assert custom.info.display_name == f"NIQE (custom: {path})"
    assert custom.info.training_set.endswith(f"(custom: {path})")
    assert niqe.NIQEPrior.weights_status(tmp_path) == f"NIQE (custom: {path})"
    assert not (tmp_path / "niqe" / niqe.FITTED_FILE).exists()  # nothing fitted needlessly
    with torch.no_grad():
        assert not torch.allclose(custom(crops()), prior(crops()))
    with pytest.raises(niqe_live.NotLiveModelError, match="not LIVE's NIQE model"):
        niqe.NIQEPrior(cache=tmp_path, model="live")
    with pytest.raises(niqe_live.NotLiveModelError, match="numbers differ"):
        niqe_live.fetch(tmp_path, sources=())


def test_model_choices_and_their_errors(cache, tmp_path):
    assert niqe.resolve_model("fitted", cache).kind == "dlmap-fitted"
    assert niqe.resolve_model("auto", cache).kind == "dlmap-fitted"
    with pytest.raises(WeightsMissingError, match="dlmap weights fetch niqe"):
        niqe.resolve_model("live", cache)
    elsewhere = another_model(cache, tmp_path / "mine.mat")
    chosen = niqe.NIQEPrior(cache=cache, model=str(elsewhere))
    assert chosen.pristine.kind == "custom" and str(elsewhere) in chosen.info.display_name
    with pytest.raises(FileNotFoundError, match="not a file, nor one of auto, live, fitted"):
        niqe.resolve_model("LIVE", cache)
    np.savez(tmp_path / "model.npz", mu_pris_param=np.zeros((1, 36)), cov_pris_param=np.eye(36))
    with pytest.raises(ValueError, match="pyiqa reads .mat files"):
        niqe.resolve_model(tmp_path / "model.npz", cache)
    broken = tmp_path / "broken.mat"
    scipy.io.savemat(broken, {"mu_prisparam": np.zeros((1, 35)), "cov_prisparam": np.eye(35)})
    with pytest.raises(ValueError, match="36-dim Gaussian"):
        niqe.resolve_model(broken, cache)
    scipy.io.savemat(broken, {"mu": np.zeros(36)})
    with pytest.raises(ValueError, match="lacks"):
        niqe.resolve_model(broken, cache)
    broken.write_bytes(b"not a mat file at all")
    with pytest.raises(ValueError, match="not a readable NIQE pristine model"):
        niqe.resolve_model(broken, cache)


def test_cli_niqe_model_option(cache, tmp_path, capsys):
    from helpers import photo_png, run_cli

    image = photo_png(tmp_path, "coffee", size=224)
    table = tmp_path / "scores.csv"
    code, out, err = run_cli(
        [
            "score",
            image,
            "--prior",
            "niqe",
            "--niqe-model",
            "fitted",
            "--cache",
            cache,
            "--out",
            table,
        ],
        capsys,
    )
    assert code == 0, err
    assert "coffee.png: niqe raw" in out and niqe.FITTED_DISPLAY in table.read_text()
    code, _, err = run_cli(
        ["score", image, "--prior", "niqe", "--niqe-model", "live", "--cache", cache], capsys
    )
    assert code == 1 and "dlmap weights fetch niqe" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli(["score", image, "--prior", "sharpness", "--niqe-model", "live"], capsys)
    assert code == 2 and "--niqe-model: only for --prior niqe" in err
    custom = another_model(cache, tmp_path / "mine.mat")
    code, out, err = run_cli(
        [
            "score",
            image,
            "--prior",
            "niqe",
            "--niqe-model",
            custom,
            "--cache",
            cache,
            "--out",
            table,
        ],
        capsys,
    )
    assert code == 0, err
    assert f"NIQE (custom: {custom})" in table.read_text()
