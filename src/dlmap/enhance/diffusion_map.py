"""``DiffusionMAP``: the enhancer as a pipeline object, the way diffusers users hold a model.

    pipe = DiffusionMAP.from_pretrained("sd2-seesr", prior="liqe-mix", lam=0.01).to("cuda")
    out = pipe(load_image("photo.png"))      # or a path, a PIL image, an array, a list
    out.images[0].save("enhanced.png"); out.records[0]["final"]

It holds a loaded backbone, a prior and the run's ``RunSettings``, and calls the one solver
(``solver.map_solve``, Alg. 1); nothing here is a second path to the results.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from dlmap import images as image_io
from dlmap.diffusion.specs import BACKBONE_SPECS
from dlmap.enhance import records, solver
from dlmap.errors import InputError
from dlmap.inversion.config import InversionConfig
from dlmap.priors.base import Prior
from dlmap.settings import BackboneSettings, RunSettings, SolverConfig


@dataclass
class DiffusionMAPOutput:
    """What a call returns: x* of each image as a PIL image (8-bit, as ``dlmap enhance``
    writes it), each image's record (what NAME.json holds) and the solve itself (tensors,
    the EDICT partner y*, the trajectory)."""

    images: list = field(default_factory=list)
    records: list[dict] = field(default_factory=list)
    result: solver.SolveResult | None = None


class DiffusionMAP:
    """MAP enhancement (Eq. 17, Alg. 1) of images by ``prior`` in the latent space of the
    exactly invertible ``backbone``, with ``settings`` (solver, inversion, backbone)."""

    def __init__(self, backbone, prior: Prior, settings: RunSettings):
        self.backbone, self.prior, self.settings = backbone, prior, settings

    @classmethod
    def from_pretrained(
        cls,
        backbone: str | Path = "sd2-seesr",
        prior: str | Prior = "liqe-mix",
        *,
        lam: float = 0.01,
        iters: int = 40,
        steps: int = 20,
        device: str | None = None,
        cache: str | Path | None = None,
        download: bool = False,
        solver_options: dict | None = None,
        backbone_options: dict | None = None,
    ) -> DiffusionMAP:
        """Load a backbone and a prior. ``backbone``: a name (``sd2-seesr``, the paper's;
        ``tiny-seesr`` and the other tiny twins run anywhere), a folder holding a trained tiny
        VAE (``dlmap train-vae``; the tiny SeeSR twin), or a weights folder (the paper's
        backbone from there). ``prior``: a registered name or a ``Prior``. ``lam``, ``iters``:
        Eq. 17's lambda and Alg. 1's iterations; ``steps``: T of the inversion.
        ``solver_options``/``backbone_options``: any other field of ``SolverConfig`` /
        ``BackboneSettings``. ``device``: default CUDA when there is one. ``download``:
        fetch missing weights first (the backbone's and the prior's, verified)."""
        from dlmap.diffusion import build
        from dlmap.priors.registry import create_prior

        name, folders = _backbone_source(backbone)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        folders = {"cache": None if cache is None else str(cache), **folders}
        network = BackboneSettings(name=name, device=device, **folders, **(backbone_options or {}))
        settings = RunSettings(
            backbone=network,
            solver=SolverConfig(lam=lam, iters=iters, **(solver_options or {})),
            inversion=InversionConfig(steps=steps),
        )
        if download:
            from dlmap.weights import catalogue

            sets = BACKBONE_SPECS[name].weight_sets
            catalogue.fetch_or_raise(sets, network.cache, what=f"backbone {name!r}")
        if isinstance(prior, str):
            prior = create_prior(prior, cache=cache, download=download)
        backbone_module = build.load_backbone(network)
        return cls(backbone_module, prior, settings).to(device)

    def to(self, device=None, dtype=None) -> DiffusionMAP:
        """Move the backbone and the prior (as ``torch.nn.Module.to``); returns ``self``."""
        dtype = dtype or image_io_dtype(self.settings)
        self.backbone = self.backbone.to(device=device) if self.backbone is not None else None
        self.prior = self.prior.to(device=device, dtype=dtype)
        if device is not None:
            network = replace(self.settings.backbone, device=str(torch.device(device)))
            self.settings = replace(self.settings, backbone=network)
        return self

    @property
    def device(self) -> torch.device:
        return torch.device(self.settings.backbone.device)

    def __call__(self, images, seed: int | None = None, quiet: bool = True) -> DiffusionMAPOutput:
        """Enhance ``images``: a (B, 3, H, W) or (3, H, W) tensor in [0, 1] (``load_image``'s
        output goes straight in), a path, a PIL image, an array, or a list of them, all of
        one size (H and W multiples of 8). ``seed``: the VAE posterior sample's (default the
        solver's)."""
        sources = _sources(images)
        batch = image_io.as_batch(images)
        batch = batch.to(device=self.device, dtype=image_io_dtype(self.settings))
        config = self.settings.solver
        seed = config.seed if seed is None else seed
        began = time.perf_counter()
        result = solver.map_solve(
            self.backbone,
            self.prior,
            batch,
            config,
            self.settings.inversion,
            seeds=[seed] * len(batch),
            quiet=quiet,
        )
        seconds = (time.perf_counter() - began) / len(batch)
        settings = self.settings.to_record()
        out = DiffusionMAPOutput(result=result)
        for index in range(len(batch)):
            pixels = image_io.to_uint8(result.x[index].float())
            out.images.append(_pil(pixels))
            source = sources[index] if sources else None
            digest = _input_sha256(source, batch[index])
            record = records.build_record(
                result, index, self.prior, self.backbone, seconds, settings, source, digest
            )
            out.records.append(record)
        return out


def image_io_dtype(settings: RunSettings) -> torch.dtype:
    """The run's float dtype (``BackboneSettings.dtype``) as torch's."""
    from dlmap.diffusion.backbones import TORCH_DTYPES

    return TORCH_DTYPES[settings.backbone.dtype]


def _backbone_source(backbone: str | Path) -> tuple[str, dict]:
    """(backbone name, its folder settings) for ``from_pretrained``'s ``backbone``."""
    if isinstance(backbone, str) and backbone in BACKBONE_SPECS:
        return backbone, {}
    folder = Path(backbone)
    if (folder / "training.json").is_file():  # a trained tiny VAE
        return "tiny-seesr", {"vae": str(folder)}
    if folder.is_dir():  # a weights folder: the paper's backbone from there
        return "sd2-seesr", {"cache": str(folder)}
    raise InputError(
        f"backbone {str(backbone)!r}: not a backbone name ({', '.join(BACKBONE_SPECS)}), a "
        "trained tiny VAE's folder or a weights folder"
    )


def _sources(images) -> list[str | None]:
    items = images if isinstance(images, (list, tuple)) else [images]
    if isinstance(images, torch.Tensor) and images.ndim == 4:
        return []
    return [str(item) if isinstance(item, (str, Path)) else None for item in items]


def _input_sha256(source: str | None, image: torch.Tensor) -> str:
    """A file's sha256, or, for an image in memory, that of its 8-bit pixels."""
    if source is not None:
        from dlmap.files import sha256_file

        return sha256_file(source)
    return hashlib.sha256(image_io.to_uint8(image.detach().float().cpu()).tobytes()).hexdigest()


def _pil(pixels):
    from PIL import Image

    return Image.fromarray(pixels)
