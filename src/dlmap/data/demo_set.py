"""The demo preset's test images and "other enhancers", offline (stand-ins for Sec. IV-A, V-C).

The paper enhances 500 photographs of realistic mixed distortions drawn from LIVE Challenge,
KonIQ-10k and SPAQ (Sec. IV-A, ``dlmap.data.testset``). The demo has no network and no data sets,
so it uses colour photographs bundled with scikit-image instead (``PHOTOGRAPHS``), each
degraded by a seeded realistic chain (``realistic_degradation``). Unlike the paper's images
these have pristine references, so fidelity can be measured (simulated observers).

The chain follows a camera pipeline, scene-level errors first, then the optics, the sensor and
the codec; each step is applied with its own probability at a level drawn at random, and at
least ``MIN_STEPS`` steps are applied to every image:

1. ``exposure``: under-exposure (``dlmap.data.degradations.exposure``, gain 2 ** (-0.5 level),
   levels 1-3) or over-exposure (here: gain 2 ** (0.25 level), levels 1-3, clipped; smaller
   steps than under-exposure because the clipped highlights are lost for good);
2. ``colour``: a white-balance error, warm (``dlmap.data.degradations.colour``: red up, blue down
   by 0.04 level) or cool (here: the mirror image), levels 1-3;
3. ``blur``: optical blur, Gaussian sigma 0.8 level pixels (``dlmap.data.degradations``), 1-2;
4. ``noise``: sensor noise, Gaussian sigma 0.03 level (``dlmap.data.degradations``), 1-2;
5. ``jpeg``: JPEG at quality 60, 35, 20 (``dlmap.data.degradations``), levels 1-3.

The demo's Sec. V-C ranking also needs enhancers other than the MAP one, whose outputs enter
the ranking as folders: ``CLASSICAL_ENHANCERS`` are three classical ones (denoising then unsharp
masking, a noise-adaptive total-variation denoiser, per-channel automatic levels) and
``enhance_folder`` writes one's outputs for a folder of test images.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
import torch

from dlmap.data import degradations
from dlmap.errors import InputError
from dlmap.images import center_crop_resize, read_image, save_png_atomic

PHOTOGRAPHS = ("astronaut", "coffee", "chelsea", "rocket", "motorcycle")
"""The default demo photographs: scikit-image's colour photographs of natural scenes."""

_SOURCES = {
    "astronaut": ("astronaut", None),
    "coffee": ("coffee", None),
    "chelsea": ("chelsea", None),
    "rocket": ("rocket", None),
    "motorcycle": ("stereo_motorcycle", 0),  # the left view of the stereo pair
    "hubble_deep_field": ("hubble_deep_field", None),
    "immunohistochemistry": ("immunohistochemistry", None),
}
"""Every colour RGB image scikit-image bundles (no download): name -> (loader, item of a
tuple). The last two are a telescope and a microscope image, not photographs of scenes; they
are accepted because they are colour and offline, but are not in ``PHOTOGRAPHS``."""

MIN_STEPS = 3
# step -> (probability of applying it, levels it may take)
STEPS = {
    "exposure": (0.7, (1, 2, 3)),
    "colour": (0.6, (1, 2, 3)),
    "blur": (0.7, (1, 2)),
    "noise": (0.7, (1, 2)),
    "jpeg": (0.8, (1, 2, 3)),
}


def source_name(name: str) -> str:
    """The provenance label of photograph ``name``, e.g. ``"skimage:astronaut"``."""
    _check_name(name)
    loader, item = _SOURCES[name]
    return f"skimage:{loader}" if item is None else f"skimage:{loader}[{item}]"


def _check_name(name: str) -> None:
    if name not in _SOURCES:
        raise InputError(f"unknown photograph {name!r}; known: {', '.join(_SOURCES)}")


def pristine(name: str, size: int) -> np.ndarray:
    """Photograph ``name``, bicubic-resized and centre-cropped to (size, size, 3) float64 in
    [0, 1] (``dlmap.images.center_crop_resize``, the paper's preprocessing, Sec. IV-A)."""
    from skimage import data

    _check_name(name)
    loader, item = _SOURCES[name]
    pixels = getattr(data, loader)()
    if item is not None:
        pixels = pixels[item]
    pixels = np.asarray(pixels, dtype=np.float32)[..., :3] / 255.0
    return center_crop_resize(pixels, size).astype(np.float64)


def _over_exposure(image: np.ndarray, level: int) -> np.ndarray:
    return np.clip(image * 2.0 ** (0.25 * level), 0.0, 1.0)


def _cool_cast(image: np.ndarray, level: int) -> np.ndarray:
    return np.clip(image + np.array([-0.04, 0.0, 0.04]) * level, 0.0, 1.0)


def _draw_steps(rng: np.random.Generator) -> list[str]:
    names = list(STEPS)
    applied = [rng.random() < STEPS[name][0] for name in names]
    skipped = [i for i, on in enumerate(applied) if not on]
    missing = MIN_STEPS - sum(applied)
    if missing > 0:
        for i in rng.choice(skipped, size=missing, replace=False):
            applied[int(i)] = True
    return [name for name, on in zip(names, applied, strict=True) if on]


def realistic_degradation(image: np.ndarray, seed) -> tuple[np.ndarray, dict]:
    """Degrade ``image`` ((H, W, 3) float in [0, 1]) by the seeded realistic chain of the
    module docstring (a stand-in for the authentic distortions of Sec. IV-A).

    ``seed`` is anything ``numpy.random.default_rng`` accepts (an int, a list of ints). Returns
    the degraded image (float64 in [0, 1]) and a JSON-able record: ``{"seed": ..., "steps":
    [{"step": "exposure", "direction": "under", "level": 2}, ...]}`` in the order applied.
    """
    image = np.asarray(image, dtype=np.float64)
    if image.ndim != 3 or image.shape[2] != 3:
        raise InputError(f"expected an (H, W, 3) image, got shape {image.shape}")
    rng = np.random.default_rng(seed)
    steps = []
    for name in _draw_steps(rng):
        level = int(rng.choice(STEPS[name][1]))
        step = {"step": name, "level": level}
        if name == "exposure":
            step["direction"] = "under" if rng.random() < 0.5 else "over"
            if step["direction"] == "over":
                image = _over_exposure(image, level)
            else:
                image = degradations.degrade(image, "exposure", level)
        elif name == "colour":
            step["direction"] = "warm" if rng.random() < 0.5 else "cool"
            if step["direction"] == "cool":
                image = _cool_cast(image, level)
            else:
                image = degradations.degrade(image, "colour", level)
        else:
            image = degradations.degrade(image, name, level, rng)
        steps.append(step)
    record = {"seed": seed if isinstance(seed, int) else list(np.atleast_1d(seed).tolist())}
    record["steps"] = steps
    return image, record


def image_seed(seed: int, image_id: str) -> list[int]:
    """The seed of one demo image: the set's ``seed`` and a CRC-32 of its id, so an image's
    chain does not depend on which other images are made with it (chunks stay consistent)."""
    return [int(seed), zlib.crc32(str(image_id).encode("utf-8"))]


def _save(image: np.ndarray, path: Path) -> None:
    tensor = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32))
    save_png_atomic(tensor, path)


def make_demo_set(names, size: int, seed: int, ids, references_dir, inputs_dir) -> list[dict]:
    """Write ``references_dir/{id}.png`` (pristine) and ``inputs_dir/{id}.png`` (degraded)
    for each photograph of ``names`` and its id of ``ids`` (same length; the workflow's
    "0000", "0001", ...). Returns one row per image: ``{"id", "source", "steps"}`` with
    ``steps`` the chain's record as a JSON string; the caller writes them."""
    names, ids = list(names), [str(image_id) for image_id in ids]
    if len(names) != len(ids):
        raise InputError(f"{len(names)} photographs but {len(ids)} ids")
    if len(set(ids)) != len(ids):
        raise InputError("ids must be distinct")
    for name in names:
        _check_name(name)
    references_dir, inputs_dir = Path(references_dir), Path(inputs_dir)
    references_dir.mkdir(parents=True, exist_ok=True)
    inputs_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, image_id in zip(names, ids, strict=True):
        clean = pristine(name, size)
        degraded, record = realistic_degradation(clean, image_seed(seed, image_id))
        _save(clean, references_dir / f"{image_id}.png")
        _save(degraded, inputs_dir / f"{image_id}.png")
        rows.append({"id": image_id, "source": source_name(name), "steps": json.dumps(record)})
    return rows


# --- classical "other enhancers" (Sec. V-C) -------------------------------------------------


_LUMA = np.array([0.299, 0.587, 0.114])  # BT.601

#: Unsharp masking of the luma: Gaussian radius (sigma, pixels) and amount.
UNSHARP_RADIUS, UNSHARP_AMOUNT = 1.5, 0.5
#: Total-variation weight per unit of estimated noise sigma (``noise_sigma``).
TV_WEIGHT_PER_SIGMA = 1.0
#: Percentiles of each channel that automatic levels maps to 0 and 1.
LEVELS_PERCENTILES = (0.1, 99.9)


def noise_sigma(image: np.ndarray) -> float:
    """Immerkaer's (1996) estimate of the standard deviation of white noise in the luma of
    ``image``: the mean absolute response to the 3x3 difference of two Laplacians (blind to
    planes and straight ramps), times sqrt(pi / 2) / 6."""
    from scipy import ndimage

    luma = np.asarray(image, dtype=np.float64) @ _LUMA
    if min(luma.shape) < 3:
        return 0.0
    kernel = np.array([[1.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 1.0]])
    response = ndimage.convolve(luma, kernel)[1:-1, 1:-1]
    return float(np.sqrt(np.pi / 2.0) * np.abs(response).mean() / 6.0)


def denoise(image: np.ndarray) -> np.ndarray:
    """Total-variation denoising (Chambolle's algorithm, all channels jointly) with its
    weight set by the estimated noise (``TV_WEIGHT_PER_SIGMA * noise_sigma``), so a clean
    image is nearly left alone. (A fixed weight of 0.05 lowered fidelity on the demo set:
    it smooths the blurred and the clean images as much as the noisy ones.)"""
    from skimage.restoration import denoise_tv_chambolle

    image = np.asarray(image, dtype=np.float64)
    weight = TV_WEIGHT_PER_SIGMA * noise_sigma(image)
    if weight <= 0.0:
        return image.copy()
    return np.clip(denoise_tv_chambolle(image, weight=weight, channel_axis=-1), 0.0, 1.0)


def unsharp(image: np.ndarray) -> np.ndarray:
    """Denoise (``denoise``), then unsharp-mask the luma (``UNSHARP_RADIUS``,
    ``UNSHARP_AMOUNT``; the same detail added to all channels, hues kept): a camera
    pipeline's order. Unsharp masking alone amplifies sensor noise and JPEG artefacts and
    lowered fidelity on the demo set on average (measured: -0.08 dB at radius 1.5, amount
    0.8; near 0 even with a noise-scaled threshold)."""
    from skimage.filters import gaussian

    base = denoise(image)
    luma = base @ _LUMA
    detail = luma - gaussian(luma, sigma=UNSHARP_RADIUS)
    return np.clip(base + UNSHARP_AMOUNT * detail[..., None], 0.0, 1.0)


def autolevels(image: np.ndarray) -> np.ndarray:
    """Automatic levels per channel (Photoshop's "Auto Levels"): each channel's
    ``LEVELS_PERCENTILES`` stretched to 0 and 1. Stretching each channel separately is also
    the white balance (black point and white patch per channel), undoing both exposure
    errors and colour casts. Gray-world balance (channel means made equal) was tried and
    left out: it pushes scenes of one dominant colour (the coffee, the ginger cat) far off
    and lowered fidelity on average (-0.7 dB before levels, -3 dB on the pristine images)."""
    image = np.asarray(image, dtype=np.float64)
    low, high = np.percentile(image.reshape(-1, 3), LEVELS_PERCENTILES, axis=0)
    span = high - low
    flat = span < 1e-3  # a channel of (nearly) one value is left as it is
    low, span = np.where(flat, 0.0, low), np.where(flat, 1.0, span)
    return np.clip((image - low) / span, 0.0, 1.0)


CLASSICAL_ENHANCERS = {"unsharp": unsharp, "denoise": denoise, "autolevels": autolevels}
"""name -> enhancer: (H, W, 3) float in [0, 1] -> same shape, float64 in [0, 1]. Each one
raises fidelity to the pristine reference on average over the demo set (PSNR and MS-SSIM,
``tests/test_demo_set.py``: seeds 0-3); the parameters were chosen on seeds 0-19 at 224 px,
where every block of 4 seeds improves by both measures."""


def enhance_folder(name: str, inputs_dir, out_dir) -> list[Path]:
    """Apply ``CLASSICAL_ENHANCERS[name]`` to every ``*.png`` directly in ``inputs_dir`` and
    write ``out_dir/{stem}.png``; returns the written paths (sorted by stem)."""
    if name not in CLASSICAL_ENHANCERS:
        raise InputError(f"unknown enhancer {name!r}; known: {', '.join(CLASSICAL_ENHANCERS)}")
    enhancer = CLASSICAL_ENHANCERS[name]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for source in sorted(Path(inputs_dir).glob("*.png")):
        target = out_dir / f"{source.stem}.png"
        _save(enhancer(read_image(source)), target)
        written.append(target)
    return written
