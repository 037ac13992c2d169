"""NIQE offline: the pristine model fitted on scikit-image photographs, and the NIQE prior."""

from __future__ import annotations

import io

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image, ImageFilter

from dlmap import niqe


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A weights cache holding the fitted model (fitted once for this module)."""
    folder = tmp_path_factory.mktemp("niqe_cache")
    niqe.fitted_model_path(folder)
    return folder


@pytest.fixture(scope="module")
def prior(cache):
    return niqe.NIQEPrior(cache=cache)


def as_tensor(pixels: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(pixels, dtype=np.float32) / 255).permute(2, 0, 1)[None]


def test_fitted_model_has_pyiqa_feature_layout(cache):
    path = cache / "niqe" / niqe.FITTED_FILE
    params = scipy.io.loadmat(path)
    mu, cov = np.ravel(params["mu_prisparam"]), params["cov_prisparam"]
    held_out = niqe.luminance(niqe.skimage_photograph("chelsea"))
    features = niqe.patch_features(held_out)
    assert features.shape == (12, mu.size) and mu.size == niqe.FEATURES == 36
    assert cov.shape == (36, 36) and np.all(np.isfinite(cov)) and np.all(np.isfinite(mu))
    np.testing.assert_allclose(cov, cov.T, rtol=0, atol=1e-12)
    assert np.linalg.eigvalsh(cov).min() > 0
    np.linalg.cholesky(cov)
    assert not set(niqe.FIT_PHOTOGRAPHS) & set(niqe.HELD_OUT_PHOTOGRAPHS)
    assert str(np.ravel(params["fit_version"])[0]) == niqe.FIT_VERSION


def test_cached_model_is_reused(cache):
    path = cache / "niqe" / niqe.FITTED_FILE
    stamp = path.stat().st_mtime_ns
    assert niqe.fitted_model_path(cache) == path
    assert path.stat().st_mtime_ns == stamp


def test_sharpness_follows_pyiqa_block_order():
    """The sharpest patch index must name the same patch in sharpness and in features."""
    rng = np.random.default_rng(0)
    luma = torch.full((1, 1, 288, 384), 128.0, dtype=torch.float64)
    luma[..., 96:192, 192:288] += torch.from_numpy(rng.normal(0, 40, (96, 96)))  # row 1, col 2
    sharpness = niqe.patch_sharpness(luma)
    assert sharpness.shape == (12,) and int(sharpness.argmax()) == 2 * 3 + 1


def test_fit_selects_sharp_patches():
    textures = [niqe.skimage_photograph(n) for n in ("brick", "grass")]
    with pytest.raises(ValueError, match="cannot fit a 36-dim Gaussian"):
        niqe.fit_pristine_model(textures[:1], sharpness_threshold=0.9)  # too few patches left
    mu_all, cov_all = niqe.fit_pristine_model(textures, sharpness_threshold=0.0)
    mu_sharp, cov_sharp = niqe.fit_pristine_model(textures)
    assert mu_sharp.shape == (36,) and cov_sharp.shape == (36, 36)
    assert not np.allclose(mu_all, mu_sharp)


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


@pytest.mark.parametrize("name", niqe.HELD_OUT_PHOTOGRAPHS)
def test_stronger_distortion_raises_niqe_on_held_out_photographs(prior, name):
    pixels = niqe.skimage_photograph(name)
    for kind, levels in distortions(pixels).items():
        with torch.no_grad():
            scores = [prior(as_tensor(level)).item() for level in levels]
        assert all(np.isfinite(scores)), (kind, scores)
        assert scores[0] < scores[1] < scores[2], (name, kind, scores)


def crops() -> torch.Tensor:
    return torch.cat(
        [as_tensor(niqe.skimage_photograph(n))[..., :224, :288] for n in niqe.HELD_OUT_PHOTOGRAPHS]
    )


def test_prior_equals_pyiqa_niqe_with_the_same_model_file(prior):
    import pyiqa

    assert prior.model_path.name == niqe.FITTED_FILE and not prior.official
    path = str(prior.model_path)
    reference = pyiqa.create_metric("niqe", device="cpu", pretrained_model_path=path)
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


def test_official_file_is_preferred(cache, tmp_path, prior):
    params = scipy.io.loadmat(cache / "niqe" / niqe.FITTED_FILE)
    # A copy under the official name, changed so that using it changes the scores.
    niqe.write_pristine_model(
        tmp_path / "niqe" / niqe.OFFICIAL_FILE,
        params["mu_prisparam"] * 1.1,
        params["cov_prisparam"] * 2.0,
    )
    official = niqe.NIQEPrior(cache=tmp_path)
    assert official.model_path == tmp_path / "niqe" / niqe.OFFICIAL_FILE and official.official
    assert official.info.display_name == "NIQE"
    assert prior.info.display_name == niqe.FITTED_DISPLAY
    assert not (tmp_path / "niqe" / niqe.FITTED_FILE).exists()  # nothing fitted needlessly
    images = crops()
    with torch.no_grad():
        assert not torch.allclose(official(images), prior(images))
