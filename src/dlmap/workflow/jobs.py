"""The workflow's heavy jobs: stored EDICT inversions of a chunk of images (Alg. 1 line 2)
and one enhancement job (one prior times one chunk, batched, ``pipeline.enhance_files``).
The Snakemake rules' scripts call these; everything here runs without Snakemake.

A job loads the frozen networks once and solves its chunk as batches (docs/enhance.md,
"Batching"): snakemake group jobs would still run each member in its own process, reloading
the models.
"""

from __future__ import annotations

from pathlib import Path

import torch

from dlmap import images
from dlmap.diffusion import backbones
from dlmap.diffusion.build import load_backbone
from dlmap.enhance import solver
from dlmap.enhance.pipeline import enhance_files
from dlmap.files import atomic_path, sha256_file
from dlmap.inversion.config import InversionConfig
from dlmap.priors import registry as priors
from dlmap.priors.calibration import apply_fit, read_fit
from dlmap.settings import RunSettings

#: the inversion settings an inversion file stores: the flat form, less the scheduler (SD2's)
INVERSION_KEYS = tuple(key for key in InversionConfig.FLAT_KEYS if key != "scheduler")


def load_batch(paths: list[Path], size: int, device: str, dtype: str) -> torch.Tensor:
    return torch.stack([images.load_image(p, size=size) for p in paths]).to(
        device=device, dtype=backbones.TORCH_DTYPES[dtype]
    )


def invert_chunk(
    paths: list[Path], settings: RunSettings, seed: int, out: Path, batch_size: int = 8
) -> dict:
    """Alg. 1 line 2 for a chunk of images, stored in ``out`` (a torch file) with the ids,
    the input hashes and the settings; the prior-independent half of every solve."""
    network, size = settings.backbone, settings.size
    backbone = load_backbone(network)
    config = settings.inversion
    pairs = []
    for start in range(0, len(paths), batch_size):
        part = paths[start : start + batch_size]
        batch = load_batch(part, size, network.device, network.dtype)
        x_T, y_T = solver.invert_images(backbone, batch, config, [seed] * len(part))
        pairs.append((x_T.cpu(), y_T.cpu()))
    state = {
        "ids": [Path(p).stem for p in paths],
        "input_sha256": [sha256_file(p) for p in paths],
        "x_T": torch.cat([x for x, _ in pairs]),
        "y_T": torch.cat([y for _, y in pairs]),
        "settings": {
            "backbone": network.name,
            "dtype": network.dtype,
            "autocast": network.autocast,
            "tf32": network.tf32,
            "weights_dtype": network.weights_dtype,
            "encode": network.encode,
            "vae": network.vae,
            "edict": {key: config.to_record()[key] for key in INVERSION_KEYS},
            "size": size,
            "seed": seed,
            "reduced": backbone.reduced,
        },
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as temporary:
        torch.save(state, temporary)
    return state["settings"]


def build_prior(
    name: str, cache=None, checkpoint=None, calibration=None, device="cpu", options=None
):
    """``create_prior`` plus the workflow's own inputs: an MS-LIQE checkpoint trained by the
    workflow, Eq. 21 constants fitted by its calibrate rule (a ``LogisticFit`` JSON), and
    prior options (``{"model": "live"}`` for NIQE's pristine model)."""
    kwargs = {**(options or {}), **({"checkpoint": checkpoint} if checkpoint else {})}
    prior = priors.create_prior(name, cache=cache, **kwargs)
    if calibration:
        prior.info = apply_fit(prior.info, read_fit(calibration), "fitted by the workflow")
    return prior.to(device)


def enhance_chunk(
    paths: list[Path],
    out: Path,
    prior,
    settings: RunSettings,
    inversion: Path | None = None,
    batch_size: int = 8,
    quiet: bool = True,
    extra: dict | None = None,
) -> list[dict]:
    """The workflow's enhancement job: ``enhance_files`` with the job's settings, every
    failure raised. Returns the records."""
    latent = settings.solver.mode.startswith("latent")
    backbone = load_backbone(settings.backbone) if latent else None
    run = enhance_files(
        paths,
        out,
        prior,
        backbone,
        settings,
        batch_size=batch_size,
        inversion=inversion,
        quiet=quiet,
        extra=extra,
        strict=True,
    )
    return run.records
