"""The demo's VAE: diffusers' ``AutoencoderKL`` at toy size, trained on the spot.

A random decoder cannot reconstruct a photograph, so latent MAP (Eq. 17) on the tiny random
backbone returned noise. This module trains the tiny backbone's VAE, the same class and code
path as SD2's VAE, in about eight minutes on 2 CPU cores, so that x = h(x_T) decodes to a
photograph. The UNet and ControlNet stay random: EDICT's bijection (Eqs. 6-15) is exact for
any noise network, so latent MAP then returns the input photograph changed by the prior.

* Architecture (``TRAINED_VAE``): three blocks of 16, 32 and 64 channels, so the VAE
  downsamples 4x, so a 224-pixel image has a 56x56x4 latent (SD2's VAE downsamples 8x; an
  8x VAE of this size, four blocks, trained the same way for five minutes stayed below
  bicubic at 8x: 21.7 against 21.9 dB). The tiny backbone's ControlNet follows the VAE's
  factor, and its UNet attends at its lower resolution (``dlmap.diffusion.tiny.TINY_UNET_4X``), so
  attention runs at 28x28 as under the 8x VAE; a MAP iteration on the 4x latent still costs
  about 2.4x one on the random 8x VAE's (``bench/tiny_vae_cost.py``).
* Material (``TRAINING_PHOTOGRAPHS``): colour photographs that Python packages ship and that
  are none of the demo's test images (``dlmap.data.demo_set``): scikit-learn's ``china.jpg`` and
  ``flower.jpg`` and matplotlib's ``grace_hopper.jpg``. Each is used at four scales, as
  random 48-pixel crops with horizontal flips, half of them with their hue rotated and their
  saturation changed (``_recolour``), so that colours the three photographs lack decode too.
* Objective: the VAE's evidence lower bound with a small KL weight, as latent-diffusion VAEs
  are trained: the mean squared error of the decoded posterior sample (reparameterised) plus
  ``kl_weight`` times the KL divergence to N(0, I) per latent element. Adam, linear warm-up
  then cosine decay, the gradient's norm clipped; the returned weights are an exponential
  moving average of the trained ones.
* Scale: like SD's 0.18215, ``scaling_factor`` is set after training to one over the standard
  deviation of the posterior means of the training material, so scaled latents have unit
  variance, as the diffusion process expects.
* Measured (``evaluate``): on held-out photographs (the demo's test photographs) at the
  demo's 224 px, the PSNR of the reconstruction from the posterior mean and from the seeded
  posterior sample the solver encodes with, against bicubic down- and up-sampling by the
  VAE's own factor.

Every output is stamped reduced: the VAE is a toy, trained briefly on three photographs.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from dlmap import progress
from dlmap.diffusion import tiny_vae_store
from dlmap.diffusion.tiny_vae_eval import HELD_OUT, evaluate, psnr  # noqa: F401 (re-exported)
from dlmap.diffusion.tiny_vae_store import (
    KIND,
    TRAINED_VAE,
    TrainedVaeError,
    VaeTraining,
    _partial,
    copy_vae,
    factor_of,
    file_digests,
    verify_vae,
)

TRAINING_PHOTOGRAPHS = {
    "china": "scikit-learn: sklearn/datasets/images/china.jpg",
    "flower": "scikit-learn: sklearn/datasets/images/flower.jpg",
    "grace_hopper": "matplotlib: mpl-data/sample_data/grace_hopper.jpg",
}
"""The training material and where it comes from (none is a demo test image)."""

SCALES = (1.0, 0.7, 0.5, 0.35)
"""Scales at which each training photograph is cropped (bicubic, antialiased)."""

LOGVAR_START = -8.0
"""Added to the posterior's log-variance at initialisation: a random encoder's posterior has
a standard deviation near 1, whose samples would drown its means at the start of training."""


def training_photographs() -> dict[str, np.ndarray]:
    """The material of ``TRAINING_PHOTOGRAPHS`` as (H, W, 3) float32 arrays in [0, 1]."""
    import matplotlib.cbook
    from PIL import Image
    from sklearn.datasets import load_sample_image

    photographs = {
        "china": load_sample_image("china.jpg"),
        "flower": load_sample_image("flower.jpg"),
    }
    with Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg")) as image:
        photographs["grace_hopper"] = np.asarray(image.convert("RGB"))
    return {name: np.asarray(p, dtype=np.float32) / 255.0 for name, p in photographs.items()}


def _pyramid(photographs: dict[str, np.ndarray], crop: int) -> list[torch.Tensor]:
    """Every photograph at every scale of ``SCALES`` whose sides are at least ``crop``."""
    levels = []
    for pixels in photographs.values():
        image = torch.from_numpy(pixels).permute(2, 0, 1)[None]
        height, width = image.shape[-2:]
        for scale in SCALES:
            size = (round(height * scale), round(width * scale))
            if min(size) < crop:
                continue
            if scale != 1.0:
                image_at = F.interpolate(
                    image, size=size, mode="bicubic", antialias=True, align_corners=False
                ).clamp(0, 1)
            else:
                image_at = image
            levels.append(image_at[0])
    return levels


YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
"""RGB to YIQ: luma and two chroma axes."""


def _recolour(patch: torch.Tensor, rng) -> torch.Tensor:
    """The patch with its chroma rotated by a random hue angle and scaled by a random
    saturation in [0.6, 1.4], luma kept (clipped to [0, 1]). Three photographs hold few of the
    colours of the world; without this the VAE casts unseen colours (a bluish sky turned
    green by 0.07 on average in one run)."""
    angle, saturation = rng.uniform(-np.pi, np.pi), rng.uniform(0.6, 1.4)
    cos, sin = saturation * np.cos(angle), saturation * np.sin(angle)
    rotation = np.array([[1.0, 0.0, 0.0], [0.0, cos, -sin], [0.0, sin, cos]])
    matrix = torch.from_numpy((np.linalg.inv(YIQ) @ rotation @ YIQ).astype(np.float32))
    return torch.einsum("ij,jhw->ihw", matrix, patch).clamp(0, 1)


def _crops(levels: list[torch.Tensor], count: int, crop: int, rng, colour: float = 0.0):
    """``count`` random crops (a random level, position and horizontal flip each; a share
    ``colour`` of them recoloured) as one (count, 3, crop, crop) batch in [0, 1]."""
    batch = []
    for _ in range(count):
        level = levels[int(rng.integers(len(levels)))]
        top = int(rng.integers(level.shape[1] - crop + 1))
        left = int(rng.integers(level.shape[2] - crop + 1))
        patch = level[:, top : top + crop, left : left + crop]
        patch = patch.flip(-1) if rng.random() < 0.5 else patch
        batch.append(_recolour(patch, rng) if rng.random() < colour else patch)
    return torch.stack(batch)


def _learning_rate(config: VaeTraining, step: int) -> float:
    """Linear warm-up over ``warmup`` of the steps, then cosine decay to zero."""
    progress = step / config.steps
    if progress < config.warmup:
        return config.lr * (step + 1) / (config.warmup * config.steps)
    remaining = (progress - config.warmup) / (1 - config.warmup)
    return config.lr * 0.5 * (1 + math.cos(math.pi * remaining))


@torch.no_grad()
def latent_scale(vae, levels: list[torch.Tensor], crop: int = 128) -> float:
    """One over the standard deviation of the posterior means of the training material
    (centre crops of every level), the role of SD's 0.18215."""
    means = []
    for level in levels:
        height, width = level.shape[1:]
        side = min(crop, height, width) // factor_of(vae.config) * factor_of(vae.config)
        top, left = (height - side) // 2, (width - side) // 2
        patch = level[None, :, top : top + side, left : left + side]
        means.append(vae.encode(patch * 2 - 1).latent_dist.mean.flatten())
    return float(1 / torch.cat(means).std())


def train_vae(config: VaeTraining = VaeTraining(), quiet: bool = False, until: int | None = None):
    """Train the tiny VAE with ``config.threads`` torch threads; returns (the VAE in eval
    mode, the per-step history). ``until`` stops after that many of the recipe's steps (its
    schedule unchanged): the tests compare the start of a training with the shipped one's."""
    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        return _train(config, quiet, until)
    finally:
        torch.set_num_threads(threads)


def _train(config: VaeTraining, quiet: bool, until: int | None = None):
    """The training loop of ``train_vae``."""
    import copy

    from diffusers import AutoencoderKL

    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    vae = AutoencoderKL(**TRAINED_VAE)
    with torch.no_grad():  # start near-deterministic: posterior std e^-4, not 1
        vae.quant_conv.bias[TRAINED_VAE["latent_channels"] :] += LOGVAR_START
    vae.train()
    average = copy.deepcopy(vae).requires_grad_(False)
    levels = _pyramid(training_photographs(), config.crop)
    optimiser = torch.optim.Adam(vae.parameters(), lr=config.lr)
    history = []
    began = time.perf_counter()
    steps = range(config.steps if until is None else min(until, config.steps))
    for step in progress.bar(steps, quiet, desc="tiny VAE", unit="step"):
        for group in optimiser.param_groups:
            group["lr"] = _learning_rate(config, step)
        batch = _crops(levels, config.batch_size, config.crop, rng, config.colour) * 2 - 1
        posterior = vae.encode(batch).latent_dist
        decoded = vae.decode(posterior.sample()).sample
        reconstruction = F.mse_loss(decoded, batch)
        kl = posterior.kl().mean() / posterior.mean[0].numel()  # per latent element
        loss = reconstruction + config.kl_weight * kl
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), config.clip)
        optimiser.step()
        with torch.no_grad():
            for kept, trained in zip(average.parameters(), vae.parameters(), strict=True):
                kept.lerp_(trained, 1 - config.ema)
        history.append(
            {
                "step": step + 1,
                "loss": loss.item(),
                "mse": reconstruction.item(),
                "kl": kl.item(),
                "lr": optimiser.param_groups[0]["lr"],
                "seconds": round(time.perf_counter() - began, 3),
            }
        )
    average.eval()
    average.register_to_config(scaling_factor=latent_scale(average, levels))
    return average, history


def _write(folder: Path, config: VaeTraining, quiet: bool) -> dict:
    """Train and write everything into the (new, empty) ``folder``; returns the record."""
    from dlmap.figures import plots as figures
    from dlmap.files import write_bytes_atomic, write_rows, write_text_atomic

    began = time.perf_counter()
    vae, history = train_vae(config, quiet)
    seconds = time.perf_counter() - began
    rows = evaluate(vae, size=config.eval_size, seed=config.seed)
    record = {
        "kind": KIND,
        "reduced": True,
        "note": "a toy VAE trained briefly on three photographs: not SD2's VAE",
        "architecture": {**TRAINED_VAE, "class": "diffusers.AutoencoderKL"},
        "factor": factor_of(TRAINED_VAE),
        "scaling_factor": vae.config.scaling_factor,
        "training": asdict(config),
        "key": training_key(config),
        "recipe": recipe_key(config),
        "sources": TRAINING_PHOTOGRAPHS,
        "training_seconds": round(seconds, 1),
        "held_out": rows,
        "mean": {
            key: float(np.mean([row[key] for row in rows]))
            for key in ("vae_mean_psnr", "vae_sample_psnr", "bicubic_psnr")
        },
        "versions": {"torch": torch.__version__},
    }
    vae.save_pretrained(folder)
    record["files"] = file_digests(folder)  # verified at every load (verify_vae)
    write_rows(history, folder / "training.csv")
    figure = figures.plot_vae_training(history, rows, record["factor"], reduced=True)
    write_bytes_atomic(folder / "training.png", figures.figure_png_bytes(figure))
    write_text_atomic(json.dumps(record, indent=2) + "\n", folder / "training.json")
    return record


def write_trained_vae(
    out: str | Path, config: VaeTraining = VaeTraining(), quiet: bool = False
) -> dict:
    """Train the tiny VAE and write it to ``out`` as a diffusers folder (``config.json``,
    ``diffusion_pytorch_model.safetensors``) with ``training.json`` (settings, sources,
    held-out PSNR against bicubic, seconds; written last), ``training.csv`` and
    ``training.png``. The folder appears whole or not at all. Returns the record."""
    out = Path(out)
    partial = _partial(out)
    try:
        record = _write(partial, config, quiet)
        shutil.rmtree(out, ignore_errors=True)
        partial.replace(out)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return record


def training_key(config: VaeTraining = VaeTraining()) -> str:
    """What decides the trained weights, hashed: the settings, this module's code (the
    architecture and the recipe), the material's pixels and the torch and diffusers
    versions. The cache keeps one trained VAE per key."""
    import diffusers

    digest = hashlib.sha256()
    facts = {
        "training": asdict(config),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
    }
    digest.update(json.dumps(facts, sort_keys=True).encode())
    digest.update(Path(__file__).read_bytes())
    digest.update(Path(tiny_vae_store.__file__).read_bytes())
    for name, pixels in sorted(training_photographs().items()):
        digest.update(name.encode() + np.ascontiguousarray(pixels).tobytes())
    return digest.hexdigest()[:16]


def recipe_key(config: VaeTraining = VaeTraining()) -> str:
    """The recipe, hashed: the settings, the architecture, the initial log-variance offset,
    the crop scales and the material's pixels; neither this code's text nor the library
    versions (``training_key`` holds those). The shipped VAE of a recipe
    (``tiny_vae_store.SHIPPED``) is found by it; tests/test_tiny_vae.py checks that the recipe
    still trains the way the shipped VAE was trained."""
    digest = hashlib.sha256()
    facts = {
        "training": asdict(config),
        "architecture": TRAINED_VAE,
        "logvar_start": LOGVAR_START,
        "scales": SCALES,
        "sources": TRAINING_PHOTOGRAPHS,
    }
    digest.update(json.dumps(facts, sort_keys=True).encode())
    for name, pixels in sorted(training_photographs().items()):
        digest.update(name.encode() + np.ascontiguousarray(pixels).tobytes())
    return digest.hexdigest()[:16]


def cached_vae(
    config: VaeTraining = VaeTraining(), cache=None, quiet: bool = False
) -> tuple[Path, dict]:
    """The folder and record of the tiny VAE trained with ``config``, from the weights
    cache (``<cache>/tiny-vae/<training_key>``). If it is not there yet, the VAE that ships
    with dlmap for this recipe (``recipe_key``) is copied there, or, for a recipe none ships
    for, one is trained and stored. Two processes asking at once both train; the first to
    finish is kept."""
    from dlmap.weights.cache import cache_dir

    folder = cache_dir(cache) / "tiny-vae" / training_key(config)
    try:
        return folder, verify_vae(folder, todo="training the cached VAE again")
    except TrainedVaeError as error:
        if folder.exists():  # unfinished (no training.json) or damaged: trained again
            print(f"dlmap: {error}", file=sys.stderr)
    shutil.rmtree(folder, ignore_errors=True)
    shipped = tiny_vae_store.shipped_vae(recipe_key(config))
    if shipped is not None:
        try:
            copy_vae(shipped, folder)
            return folder, verify_vae(folder)
        except TrainedVaeError as error:  # a damaged installation: train instead
            print(f"dlmap: the shipped VAE: {error}; training one instead", file=sys.stderr)
    partial = _partial(folder)
    try:
        _write(partial, config, quiet)
        try:
            partial.rename(folder)
        except OSError:  # another process stored it meanwhile
            pass
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return folder, verify_vae(folder)


def load_trained_vae(folder: str | Path):
    """The trained tiny VAE in ``folder`` (strict keys, ``loading.load_strict``)."""
    from diffusers import AutoencoderKL

    from dlmap.diffusion.loading import load_strict

    verify_vae(folder)
    return load_strict(AutoencoderKL, Path(folder))
