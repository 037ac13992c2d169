"""What the enhancement stage costs on a GPU: one formula behind the workflow's SLURM requests
and ``bench/gpu_iteration.py``'s projection of the paper's GPU-hours.

A MAP iteration (Alg. 1) runs h forward (T steps of 2 UNet + ControlNet calls), its gradient
(the same calls again plus their backward pass: the ``recompute`` mode keeps memory
independent of T), the VAE decoder and the prior: its time grows with T and the image size,
its memory with the batch only. So, for one job solving ``images`` problems in batches of
``batch`` (``GpuCosts`` holds the measured constants, per image at that batch):

    enhance_chunk   seconds = load + images * iters * iteration_seconds
    invert_chunk    seconds = load + images * inversion_seconds
    GPU memory      weights_gib + batch * activation_gib

and the requested runtime is that times ``margin`` (queues kill jobs that overrun). Early
stopping only shortens a job. ``bench/gpu_iteration.py`` measures the constants on your GPU and
prints them; the shipped iteration, inversion and activation values are estimates for an
80 GB A100/H100-class GPU at bf16 autocast until someone measures them (the weights and host
memory come from ``bench/full_size.py``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from dlmap.errors import InputError


@dataclass(frozen=True)
class GpuCosts:
    """Measured costs of the paper's backbone at 512 x 512, T = 20, one GPU (per image)."""

    iteration_seconds: float = 6.0  # one MAP iteration of one image, at the workflow's batch
    inversion_seconds: float = 1.5  # one EDICT inversion (Alg. 1 line 2) of one image
    load_seconds: float = 120.0  # reading and moving the networks to the GPU, once per job
    host_gib: float = 16.0  # peak resident memory of a job (bench/full_size.py: 15.1 GiB)
    weights_gib: float = 6.7  # the networks in float32: 1786 M parameters (bench/full_size.py)
    activation_gib: float = 6.0  # one image's share of a MAP iteration's peak
    margin: float = 1.5  # requested runtime over the formula's

    def __post_init__(self):
        for name, value in asdict(self).items():
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise InputError(f"gpu_costs.{name} must be a positive number, got {value!r}")


def enhance_job_minutes(images: int, iters: int, costs: GpuCosts) -> int:
    """Runtime to request for one enhancement job (one prior x one chunk), in minutes."""
    seconds = costs.load_seconds + images * iters * costs.iteration_seconds
    return math.ceil(seconds * costs.margin / 60)


def invert_job_minutes(images: int, costs: GpuCosts) -> int:
    """Runtime to request for one inversion job (one chunk), in minutes."""
    return math.ceil((costs.load_seconds + images * costs.inversion_seconds) * costs.margin / 60)


def host_mem_mb(costs: GpuCosts) -> int:
    """Host memory to request for a GPU job, in MB."""
    return math.ceil(costs.host_gib * 1024 * costs.margin / 1000) * 1000


def gpu_gib(batch: int, costs: GpuCosts) -> float:
    """GPU memory one job needs at ``batch`` images per solve."""
    return costs.weights_gib + batch * costs.activation_gib


def project_gpu_hours(config: dict, costs: GpuCosts) -> dict[str, float]:
    """GPU-hours of the enhancement stages of a workflow ``config`` (config.yaml's keys):
    every prior on every test image, Figs. 1-2, 7-8's ablations (the latent ones; the pixel
    ones cost next to nothing) and Sec. V-D's post-enhancement, each with its inversions."""
    iters = config["solver"]["iters"]
    images = config["images"]["count"]
    ablation_images = config["ablations"]["images"]
    post = config.get("post_enhancement") or {}
    post_images = len(post.get("bases", [])) * post.get("images", 0)
    hours = {
        "inversions (every test image, once)": images * costs.inversion_seconds,
        f"MAP, {len(config['priors'])} priors x {images} images x {iters} iterations": (
            len(config["priors"]) * images * iters * costs.iteration_seconds
        ),
        f"ablations (latent-map, latent-direct, vanilla SD2) x {ablation_images} images": (
            3 * ablation_images * (iters * costs.iteration_seconds + costs.inversion_seconds)
        ),
        f"post-enhancement, {post_images} outputs": post_images
        * (iters * costs.iteration_seconds + costs.inversion_seconds),
    }
    return {stage: seconds / 3600 for stage, seconds in hours.items()}
