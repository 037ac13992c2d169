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
from dlmap.priors import registry as priors
from dlmap.priors.calibration import apply_fit, read_fit
from dlmap.settings import BackboneSettings, EdictConfig, SolverConfig


def edict_config(values: dict) -> EdictConfig:
    keys = ("steps", "mix", "order", "steps_offset", "bijection", "gamma", "ends")
    return EdictConfig(**{k: values[k] for k in keys if values.get(k) is not None})


def solver_config(values: dict, **overrides) -> SolverConfig:
    fields = SolverConfig.__dataclass_fields__
    merged = {k: v for k, v in {**values, **overrides}.items() if k in fields}
    return SolverConfig(**merged)


def load_batch(paths: list[Path], size: int, device: str, dtype: str) -> torch.Tensor:
    return torch.stack([images.load_image(p, size=size) for p in paths]).to(
        device=device, dtype=backbones.TORCH_DTYPES[dtype]
    )


def invert_chunk(
    paths: list[Path],
    settings: BackboneSettings,
    edict_values: dict,
    size: int,
    seed: int,
    out: Path,
    batch_size: int = 8,
) -> dict:
    """Alg. 1 line 2 for a chunk of images, stored in ``out`` (a torch file) with the ids,
    the input hashes and the settings; the prior-independent half of every solve."""
    backbone = load_backbone(settings)
    config = edict_config(edict_values)
    pairs = []
    for start in range(0, len(paths), batch_size):
        part = paths[start : start + batch_size]
        batch = load_batch(part, size, settings.device, settings.dtype)
        x_T, y_T = solver.invert_images(backbone, batch, config, [seed] * len(part))
        pairs.append((x_T.cpu(), y_T.cpu()))
    state = {
        "ids": [Path(p).stem for p in paths],
        "input_sha256": [sha256_file(p) for p in paths],
        "x_T": torch.cat([x for x, _ in pairs]),
        "y_T": torch.cat([y for _, y in pairs]),
        "settings": {
            "backbone": settings.name,
            "dtype": settings.dtype,
            "autocast": settings.autocast,
            "tf32": settings.tf32,
            "weights_dtype": settings.weights_dtype,
            "encode": settings.encode,
            "vae": settings.vae,
            "edict": edict_values,
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
    settings: BackboneSettings,
    solver_values: dict,
    edict_values: dict,
    size: int,
    inversion: Path | None = None,
    batch_size: int = 8,
    quiet: bool = True,
    extra: dict | None = None,
) -> list[dict]:
    """The workflow's enhancement job: ``enhance_files`` with the config's settings, every
    failure raised. Returns the records."""
    config = solver_config(solver_values)
    backbone = load_backbone(settings) if config.mode.startswith("latent") else None
    job = {
        "size": size,
        "dtype": settings.dtype,
        "autocast": settings.autocast,
        "weights_dtype": settings.weights_dtype,
        "encode": settings.encode,
        "device": settings.device,
        "inversion": None,
    }
    run = enhance_files(
        paths,
        out,
        prior,
        backbone,
        config,
        edict_config(edict_values),
        job,
        batch_size=batch_size,
        inversion=inversion,
        quiet=quiet,
        extra=extra,
        strict=True,
    )
    return run.records
