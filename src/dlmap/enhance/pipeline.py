"""The workflow's heavy job functions: stored EDICT inversions and one enhancement job
(one prior times one chunk of images, batched). The Snakemake rules' scripts call these;
everything here runs without Snakemake.

A job loads the frozen networks once and solves its chunk as batches (DESIGN "Batching"):
snakemake group jobs would still run each member in its own process, reloading the models.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from dlmap import images
from dlmap.diffusion import backbones, edict
from dlmap.enhance import records, solver
from dlmap.priors import registry as priors
from dlmap.priors.calibration import LogisticFit

DTYPES = {"float32": torch.float32, "float64": torch.float64}
AUTOCAST = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class BackboneSettings:
    """How the workflow builds a backbone (``backbones.load_backbone``'s arguments)."""

    name: str = "sd2-seesr"
    device: str = "cuda"
    dtype: str = "float32"
    autocast: str = "none"
    encode: str = "sample"
    cache: str | None = None
    vae: str | None = None  # tiny backbones: the trained VAE's folder (dlmap.diffusion.tiny_vae)

    def load(self):
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise RuntimeError(f"device {self.device!r}: CUDA is not available on this node")
        return backbones.load_backbone(
            self.name,
            cache=self.cache,
            dtype=DTYPES[self.dtype],
            device=self.device,
            encode_mode=self.encode,
            autocast_dtype=AUTOCAST[self.autocast],
            vae=self.vae,
        )


def edict_config(values: dict) -> edict.EdictConfig:
    keys = ("steps", "mix", "order", "steps_offset")
    return edict.EdictConfig(**{k: values[k] for k in keys if values.get(k) is not None})


def solver_config(values: dict, **overrides) -> solver.SolverConfig:
    fields = solver.SolverConfig.__dataclass_fields__
    merged = {k: v for k, v in {**values, **overrides}.items() if k in fields}
    return solver.SolverConfig(**merged)


def load_batch(paths: list[Path], size: int, device: str, dtype: str) -> torch.Tensor:
    return torch.stack([images.load_image(p, size=size) for p in paths]).to(
        device=device, dtype=DTYPES[dtype]
    )


def invert_chunk(
    paths: list[Path], settings: BackboneSettings, edict_values: dict, size: int, seed: int,
    out: Path, batch_size: int = 8,
) -> dict:  # fmt: skip
    """Alg. 1 line 2 for a chunk of images, stored in ``out`` (a torch file) with the ids,
    the input hashes and the settings; the prior-independent half of every solve."""
    backbone = settings.load()
    config = edict_config(edict_values)
    pairs = []
    for start in range(0, len(paths), batch_size):
        part = paths[start : start + batch_size]
        batch = load_batch(part, size, settings.device, settings.dtype)
        x_T, y_T = solver.invert_images(backbone, batch, config, [seed] * len(part))
        pairs.append((x_T.cpu(), y_T.cpu()))
    state = {
        "ids": [Path(p).stem for p in paths],
        "input_sha256": [records.sha256_file(p) for p in paths],
        "x_T": torch.cat([x for x, _ in pairs]),
        "y_T": torch.cat([y for _, y in pairs]),
        "settings": {
            "backbone": settings.name,
            "dtype": settings.dtype,
            "encode": settings.encode,
            "vae": settings.vae,
            "edict": edict_values,
            "size": size,
            "seed": seed,
            "reduced": backbone.reduced,
        },  # fmt: skip
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = out.with_name(f".{out.name}.part")
    torch.save(state, temporary)
    temporary.replace(out)
    return state["settings"]


def load_inversion(path, sources: list[Path]) -> tuple[torch.Tensor, torch.Tensor]:
    """The stored noise pairs of ``sources`` (matched by id, checked by hash) from one
    inversion file or a list of them (chunks)."""
    paths = [Path(p) for p in path] if isinstance(path, (list, tuple)) else [Path(path)]
    where = {}
    for file in paths:
        state = torch.load(file, map_location="cpu", weights_only=True)
        for index, name in enumerate(state["ids"]):
            where[name] = (file, state, index)
    x_rows, y_rows = [], []
    for source in sources:
        stem = Path(source).stem
        if stem not in where:
            names = ", ".join(str(p) for p in paths)
            raise ValueError(f"{names}: holds no inversion of {stem} ({len(where)} images)")
        file, state, index = where[stem]
        if state["input_sha256"][index] != records.sha256_file(source):
            raise ValueError(f"{file}: the inversion of {stem} was made from another image")
        x_rows.append(state["x_T"][index])
        y_rows.append(state["y_T"][index])
    return torch.stack(x_rows), torch.stack(y_rows)


def build_prior(
    name: str, cache=None, checkpoint=None, calibration=None, device="cpu", options=None
):
    """``create_prior`` plus the workflow's own inputs: an MS-LIQE checkpoint trained by the
    workflow, Eq. 21 constants fitted by its calibrate rule (a ``LogisticFit`` JSON), and
    prior options (``{"model": "live"}`` for NIQE's pristine model)."""
    kwargs = {**(options or {}), **({"checkpoint": checkpoint} if checkpoint else {})}
    prior = priors.create_prior(name, cache=cache, **kwargs)
    if calibration:
        fit = LogisticFit(**json.loads(Path(calibration).read_text()))
        source = f"fitted by the workflow: {fit.source} (n={fit.count}, SRCC {fit.srcc:.3f})"
        prior.info = replace(
            prior.info, xi3=fit.xi3, xi4=fit.xi4, calibration_source=source,
            calibration_fitted=True,
        )  # fmt: skip
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
    """Enhance ``paths`` with one prior in batches (Alg. 1), writing NAME.x.png, NAME.y.png
    and NAME.json per image into ``out``; latent modes start from the stored ``inversion``
    when given. Returns the records."""
    config = solver_config(solver_values)
    edict_settings = edict_config(edict_values)
    backbone = settings.load() if config.mode.startswith("latent") else None
    dtype = DTYPES[settings.dtype]
    prior = prior.to(device=settings.device, dtype=dtype)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for start in range(0, len(paths), batch_size):
        part = [Path(p) for p in paths[start : start + batch_size]]
        batch = load_batch(part, size, settings.device, settings.dtype)
        pair = None
        if inversion is not None and backbone is not None:
            pair = tuple(t.to(settings.device) for t in load_inversion(inversion, part))
        began = time.perf_counter()
        result = solver.map_solve(
            backbone, prior, batch, config, edict_settings, seeds=[config.seed] * len(part),
            quiet=quiet, description=f"{prior.info.name}: {part[0].stem}..", inversion=pair,
        )  # fmt: skip
        seconds = (time.perf_counter() - began) / len(part)
        job = {
            "size": size, "dtype": settings.dtype, "autocast": settings.autocast,
            "encode": settings.encode, "device": settings.device,
            "inversion": str(inversion) if pair is not None else None,
        }  # fmt: skip
        for index, path in enumerate(part):
            written.append(
                records.write_enhanced(
                    out, path, index, result, prior, backbone, seconds, job, extra=extra
                )
            )
    return written
