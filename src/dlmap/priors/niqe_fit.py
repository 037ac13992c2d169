"""NIQE's pristine model fitted offline: patch features, sharp-patch selection, the Gaussian.

NIQE (Mittal, Soundararajan and Bovik, "Making a 'completely blind' image quality analyzer",
IEEE Signal Processing Letters 20(3), 2013) compares the multivariate Gaussian (MVG) of an
image's patch features with a "pristine" MVG fitted once to sharp patches of undistorted
photographs (Sec. III: 96 x 96 patches, 36 natural-scene-statistics features at two scales,
patches kept when their sharpness exceeds T = 0.75 of the image's sharpest). LIVE's pristine
model (``dlmap.priors.niqe_live``) is the reference; where it cannot be had, dlmap fits one here
with
that procedure on the natural photographs the installed packages bundle, and labels it so.

A ``FitRecipe`` says which photographs, at which scales, and how the covariance is estimated.
``FALLBACK`` (the one dlmap uses) takes every bundled natural photograph at three scales and a
shrunk covariance; ``FALLBACK_V1`` is the earlier recipe (six scikit-image photographs, one
scale, the sample covariance), kept so that ``bench/niqe_models.py`` can compare the two.
Feature extraction is pyiqa's (``pyiqa.archs.niqe_arch``): this module only selects patches
and fits the Gaussian.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from dlmap.errors import InputError

FEATURES = 36  # 18 per scale (Mittal et al. 2013, Table I), two scales
PATCH = 96  # the paper's patch size (Sec. III-A)
SHARPNESS_THRESHOLD = 0.75  # the paper's T (Sec. III-A)


@dataclass(frozen=True)
class Photograph:
    """A photograph an installed package bundles: ``package`` and its own name there."""

    name: str
    package: str  # "skimage", "sklearn" or "matplotlib"
    file: str  # the name the package loads it by

    def pixels(self) -> np.ndarray:
        """uint8 (H, W, 3) or (H, W), loaded by the package's own function, never downloaded."""
        if self.package == "skimage":
            from skimage import data

            image = getattr(data, self.file)()
            if isinstance(image, tuple):  # stereo_motorcycle: (left, right, disparity)
                image = image[0]
            return np.asarray(image)
        if self.package == "sklearn":
            from sklearn.datasets import load_sample_image

            return np.asarray(load_sample_image(self.file))
        if self.package == "matplotlib":
            from matplotlib.cbook import get_sample_data
            from PIL import Image

            with Image.open(get_sample_data(self.file)) as image:
                return np.asarray(image.convert("RGB"))
        raise InputError(f"unknown package {self.package!r} for photograph {self.name!r}")


# Every natural photograph that scikit-image, scikit-learn and matplotlib install with them.
# Left out, by kind: the same photograph twice (skimage's cat is chelsea; the motorcycle's right
# view nearly repeats the left), deliberately degraded (clock: motion blur), telescope images
# (moon, hubble_deep_field: atmospheric blur on black sky), microscopy and medical images
# (cell, ihc, retina, microaneurysms), documents (page, text), drawings and synthetic images
# (logo, color, chessboard, phantom, horse, matplotlib's logo2 and 128-px icon), and
# lfw_subset's 25-pixel faces. Four of the kept files are JPEG (rocket, china, flower,
# grace_hopper); at the smaller scales their blocking is averaged away.
PHOTOGRAPHS = {
    photo.name: photo
    for photo in (
        Photograph("astronaut", "skimage", "astronaut"),
        Photograph("camera", "skimage", "camera"),
        Photograph("coffee", "skimage", "coffee"),
        Photograph("chelsea", "skimage", "chelsea"),
        Photograph("motorcycle", "skimage", "stereo_motorcycle"),
        Photograph("rocket", "skimage", "rocket"),
        Photograph("coins", "skimage", "coins"),
        Photograph("brick", "skimage", "brick"),
        Photograph("grass", "skimage", "grass"),
        Photograph("gravel", "skimage", "gravel"),
        Photograph("china", "sklearn", "china.jpg"),
        Photograph("flower", "sklearn", "flower.jpg"),
        Photograph("grace_hopper", "matplotlib", "grace_hopper.jpg"),
    )
}


def photograph(name: str) -> np.ndarray:
    """A bundled photograph by its ``PHOTOGRAPHS`` name, as uint8 pixels."""
    if name not in PHOTOGRAPHS:
        raise KeyError(f"unknown photograph {name!r}; known: {', '.join(PHOTOGRAPHS)}")
    return PHOTOGRAPHS[name].pixels()


@dataclass(frozen=True)
class FitRecipe:
    """How a pristine model is fitted: photographs, image scales, covariance estimator.

    ``shrinkage``: "ledoit-wolf" (features standardised, Ledoit and Wolf's shrunk correlation
    from scikit-learn, scaled back: the covariance is pulled towards its own diagonal by the
    data-chosen amount) or "none" (the unbiased sample covariance, as NIQE's paper).
    """

    version: str
    photographs: tuple[str, ...]
    scales: tuple[float, ...] = (1.0,)
    shrinkage: str = "ledoit-wolf"
    sharpness_threshold: float = SHARPNESS_THRESHOLD

    def describe(self) -> str:
        covariance = {"ledoit-wolf": "Ledoit-Wolf shrunk", "none": "sample"}[self.shrinkage]
        scales = ", ".join(f"{s:g}" for s in self.scales)
        return (
            f"{len(self.photographs)} bundled photographs at scales {scales}, sharp 96-px "
            f"patches (T = {self.sharpness_threshold:g}), {covariance} covariance"
        )


FALLBACK = FitRecipe(
    version="dlmap-niqe-fit-2",
    photographs=tuple(PHOTOGRAPHS),
    scales=(1.0, 0.75, 0.5),
    shrinkage="ledoit-wolf",
)
FALLBACK_V1 = FitRecipe(
    version="dlmap-niqe-fit-1",
    photographs=("astronaut", "camera", "motorcycle", "brick", "grass", "gravel"),
    scales=(1.0,),
    shrinkage="none",
)


def luminance(pixels: np.ndarray) -> torch.Tensor:
    """(1, 1, H, W) float64 luminance on 0-255, rounded, as pyiqa's ``calculate_niqe`` feeds it.

    RGB goes through pyiqa's ``to_y_channel`` (YIQ's Y, pyiqa's NIQE default); a grey image is
    used as is (pyiqa scales a one-channel input by 255 likewise).
    """
    from pyiqa.utils.color_util import to_y_channel

    image = torch.from_numpy(np.asarray(pixels, dtype=np.float64) / 255.0)
    if image.ndim == 2:
        return (image * 255.0).round()[None, None]
    if image.ndim != 3 or image.shape[2] != 3:
        raise InputError(f"expected an (H, W) or (H, W, 3) image, got shape {image.shape}")
    rgb = image.permute(2, 0, 1)[None]
    return to_y_channel(rgb, 255, "yiq").to(torch.float64).detach()


def rescaled(luma: torch.Tensor, scale: float) -> torch.Tensor:
    """Luminance resized by ``scale`` with pyiqa's MATLAB-style antialiased bicubic, rounded."""
    if scale == 1.0:
        return luma
    from pyiqa.matlab_utils import imresize

    return (imresize(luma / 255.0, scale=scale, antialiasing=True) * 255.0).clamp(0, 255).round()


def patch_sharpness(luma: torch.Tensor, patch_size: int = PATCH) -> torch.Tensor:
    """Mean local deviation sigma(i, j) per patch (the paper's patch sharpness, Sec. III-A).

    sigma is the Gaussian-weighted local standard deviation of NIQE's normalisation (7 x 7
    window, sigma 7/6, replicate padding, as pyiqa's MSCN uses), averaged over each
    non-overlapping patch; patches in pyiqa's ``blockproc`` order (column-major).
    """
    from pyiqa.matlab_utils import blockproc, fspecial, imfilter

    window = fspecial(7, 7.0 / 6, 1).to(luma)
    mean = imfilter(luma, window, padding="replicate")
    variance = imfilter(luma**2, window, padding="replicate") - mean**2
    deviation = variance.abs().sqrt()
    return blockproc(deviation, [patch_size, patch_size], fun=_block_mean)[0, :, 0]


def _block_mean(blocks: torch.Tensor, _arguments) -> torch.Tensor:
    return blocks.mean(dim=(1, 2, 3)).unsqueeze(1)


def patch_features(luma: torch.Tensor, patch_size: int = PATCH) -> torch.Tensor:
    """(patches, 36) NIQE features of a (1, 1, H, W) 0-255 luminance image, by pyiqa's code.

    Scale 1 on the image cropped to whole patches, scale 2 on pyiqa's MATLAB-style bicubic
    half-size image (antialiased), with patch_size // 2 patches: the same patches at both scales.
    """
    from pyiqa.archs.func_util import normalize_img_with_gauss
    from pyiqa.archs.niqe_arch import compute_feature
    from pyiqa.matlab_utils import blockproc, imresize

    rows, cols = luma.shape[-2] // patch_size, luma.shape[-1] // patch_size
    image = luma[..., : rows * patch_size, : cols * patch_size]
    per_scale = []
    for scale in (1, 2):
        normalized = normalize_img_with_gauss(image, padding="replicate")
        block = patch_size // scale
        per_scale.append(blockproc(normalized, [block, block], fun=compute_feature)[0])
        if scale == 1:
            image = imresize(image / 255.0, scale=0.5, antialiasing=True) * 255.0
    return torch.cat(per_scale, dim=-1)


@torch.no_grad()
def sharp_patch_features(
    image, patch_size: int = PATCH, sharpness_threshold: float = SHARPNESS_THRESHOLD
) -> torch.Tensor:
    """The features of one image's sharp patches: sharpness > threshold x the sharpest patch.

    ``image``: uint8 pixels (H, W, 3) or (H, W), or a (1, 1, H, W) 0-255 luminance tensor.
    Patches with a non-finite feature (flat areas) are dropped.
    """
    luma = image if torch.is_tensor(image) else luminance(image)
    if min(luma.shape[-2:]) < patch_size:
        raise InputError(f"image {tuple(luma.shape)} is smaller than one {patch_size} patch")
    sharpness = patch_sharpness(luma, patch_size)
    features = patch_features(luma, patch_size)
    chosen = features[sharpness > sharpness_threshold * sharpness.max()]
    return chosen[torch.isfinite(chosen).all(dim=1)]


def recipe_features(recipe: FitRecipe, exclude: tuple[str, ...] = ()) -> np.ndarray:
    """(patches, 36) sharp-patch features of ``recipe``'s photographs at its scales, those in
    ``exclude`` left out (for leave-one-out evaluations)."""
    kept = []
    for name in recipe.photographs:
        if name in exclude:
            continue
        luma = luminance(photograph(name))
        for scale in recipe.scales:
            scaled = rescaled(luma, scale)
            if min(scaled.shape[-2:]) >= PATCH:
                kept.append(sharp_patch_features(scaled, PATCH, recipe.sharpness_threshold))
    return torch.cat(kept).numpy()


def fit_gaussian(samples: np.ndarray, shrinkage: str = "ledoit-wolf"):
    """(mu, cov) of feature ``samples`` (patches, features) with the recipe's estimator."""
    samples = np.asarray(samples, dtype=np.float64)
    if samples.ndim != 2 or samples.shape[0] <= samples.shape[1]:
        raise InputError(
            f"{samples.shape[0]} sharp patches cannot fit a {samples.shape[-1]}-dim Gaussian"
        )
    mu = samples.mean(axis=0)
    if shrinkage == "none":
        return mu, np.cov(samples, rowvar=False)
    if shrinkage != "ledoit-wolf":
        raise InputError(f"unknown shrinkage {shrinkage!r}: 'ledoit-wolf' or 'none'")
    from sklearn.covariance import LedoitWolf

    spread = samples.std(axis=0, ddof=1)
    if np.any(spread == 0):
        raise InputError("a feature is constant over every patch: no covariance to shrink")
    correlation = LedoitWolf(assume_centered=False).fit((samples - mu) / spread).covariance_
    return mu, correlation * np.outer(spread, spread)


def fit_pristine_model(
    images,
    patch_size: int = PATCH,
    sharpness_threshold: float = SHARPNESS_THRESHOLD,
    shrinkage: str = "none",
):
    """Fit NIQE's pristine MVG (Mittal et al. 2013, Sec. III) on ``images`` -> (mu, cov).

    ``images``: uint8 arrays (H, W, 3) or (H, W), or (1, 1, H, W) 0-255 luminance tensors.
    Sharp patches of every image (``sharp_patch_features``), then ``fit_gaussian``.
    """
    samples = [sharp_patch_features(image, patch_size, sharpness_threshold) for image in images]
    return fit_gaussian(torch.cat(samples).numpy(), shrinkage)


def fit_recipe(recipe: FitRecipe = FALLBACK, exclude: tuple[str, ...] = ()):
    """(mu, cov) of ``recipe``, photographs in ``exclude`` left out."""
    return fit_gaussian(recipe_features(recipe, exclude), recipe.shrinkage)
