"""Graded image degradations on (H, W, 3) float images in [0, 1].

Each ``DEGRADATIONS[name](image, level, rng)`` returns a degraded copy; level 0 is the image
itself and distortion grows strictly with the level (1 to ``MAX_LEVEL``). Used to build a
synthetic IQA set with known quality (``dlmap.data.synthetic_iqa``) and realistic test inputs.
Strengths per level, chosen to span barely visible (1) to severe (5):

* ``blur``: Gaussian blur, sigma = 0.8 level pixels;
* ``noise``: additive white Gaussian noise, sigma = 0.03 level (of the [0, 1] range);
* ``jpeg``: JPEG at quality 60, 35, 20, 10, 5 (Pillow, 4:2:0);
* ``contrast``: blend towards the mean grey, keeping 1 - 0.16 level of the contrast;
* ``exposure``: multiply by 2 ** (-0.5 level) (underexposure);
* ``colour``: shift the red and blue channels apart by 0.04 level (a white-balance error).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
from scipy import ndimage

from dlmap.errors import InputError

MAX_LEVEL = 5
JPEG_QUALITY = (60, 35, 20, 10, 5)


def _check(image: np.ndarray, level: int) -> None:
    if image.ndim != 3 or image.shape[2] != 3:
        raise InputError(f"expected an (H, W, 3) image, got shape {image.shape}")
    if not 0 <= level <= MAX_LEVEL:
        raise InputError(f"level must be 0..{MAX_LEVEL}, got {level}")


def blur(image: np.ndarray, level: int, rng=None) -> np.ndarray:
    sigma = 0.8 * level
    return ndimage.gaussian_filter(image, sigma=(sigma, sigma, 0)) if level else image.copy()


def noise(image: np.ndarray, level: int, rng=None) -> np.ndarray:
    rng = rng if rng is not None else np.random.default_rng(0)
    return np.clip(image + rng.normal(0.0, 0.03 * level, image.shape), 0.0, 1.0)


def jpeg(image: np.ndarray, level: int, rng=None) -> np.ndarray:
    if level == 0:
        return image.copy()
    buffer = io.BytesIO()
    pixels = np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=JPEG_QUALITY[level - 1])
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return np.asarray(decoded.convert("RGB"), dtype=np.float64) / 255.0


def contrast(image: np.ndarray, level: int, rng=None) -> np.ndarray:
    keep = 1.0 - 0.16 * level
    return image.mean() + keep * (image - image.mean())


def exposure(image: np.ndarray, level: int, rng=None) -> np.ndarray:
    return image * 2.0 ** (-0.5 * level)


def colour(image: np.ndarray, level: int, rng=None) -> np.ndarray:
    shift = np.array([0.04, 0.0, -0.04]) * level
    return np.clip(image + shift, 0.0, 1.0)


DEGRADATIONS = {
    "blur": blur,
    "noise": noise,
    "jpeg": jpeg,
    "contrast": contrast,
    "exposure": exposure,
    "colour": colour,
}


def degrade(image: np.ndarray, name: str, level: int, rng=None) -> np.ndarray:
    """``DEGRADATIONS[name]`` at ``level``, checked, as float64 in [0, 1]."""
    if name not in DEGRADATIONS:
        raise InputError(f"unknown degradation {name!r}; known: {', '.join(DEGRADATIONS)}")
    image = np.asarray(image, dtype=np.float64)
    _check(image, level)
    return np.clip(DEGRADATIONS[name](image, level, rng), 0.0, 1.0)
