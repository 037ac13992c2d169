"""NIQE as a prior: pyiqa's metric around a pristine model, LIVE's or one fitted offline.

NIQE (Mittal, Soundararajan and Bovik, IEEE SPL 20(3), 2013) scores an image by the distance
between the Gaussian of its patch features and a "pristine" Gaussian. Which pristine model a
prior uses, and what it is called everywhere (records, figures, ``dlmap weights check``), is
decided here by the model's numbers, never by a file name:

- LIVE's model (``dlmap.priors.niqe_live``; ``dlmap weights fetch niqe`` places it in the cache):
  displayed as plain "NIQE".
- the fallback dlmap fits offline on bundled photographs (``dlmap.priors.niqe_fit.FALLBACK``),
cached
  in ``<cache>/niqe`` on first use and tagged with its recipe's version: "NIQE (dlmap-fitted
  ...)".
- any other file: "NIQE (custom: PATH)".

``model``: "auto" (LIVE's if the cache holds it, else the fitted fallback), "live" (LIVE's or
an error naming the fetch command), "fitted", or the path of a model file (.mat in pyiqa's
layout or .npz in basicsr's). Feature extraction and the distance are pyiqa's.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from dlmap.errors import InputError, MissingInputError
from dlmap.priors import niqe_fit, niqe_live
from dlmap.priors.base import Prior, register_prior
from dlmap.priors.specs import PRIOR_SPECS
from dlmap.weights.cache import WeightsMissingError, cache_dir

FITTED_FILE = "niqe_pristine_dlmap_fitted.mat"
MIN_SIZE = 192  # pyiqa crops to whole 96-blocks; its covariance needs >= 2 x 2 of them
MODELS = ("auto", "live", "fitted")

LIVE_DISPLAY = "NIQE"
FITTED_DISPLAY = PRIOR_SPECS["niqe"].display_name


@dataclass(frozen=True)
class PristineModel:
    """A pristine model file and what it is: "live", "dlmap-fitted" or "custom"."""

    path: Path
    kind: str

    @property
    def display_name(self) -> str:
        if self.kind == "live":
            return LIVE_DISPLAY
        if self.kind == "dlmap-fitted":
            return FITTED_DISPLAY
        return f"NIQE (custom: {self.path})"

    @property
    def source(self) -> str:
        if self.kind == "live":
            return f"LIVE's (Mittal et al. 2013), recognised by its numbers: {self.path}"
        if self.kind == "dlmap-fitted":
            return f"dlmap-fitted: {niqe_fit.FALLBACK.describe()}: {self.path}"
        return f"custom: {self.path}"


def identify(path) -> PristineModel:
    """What the model file at ``path`` is, by its numbers (LIVE's) or its fit tag (dlmap's)."""
    path = Path(path)
    mu, cov, fields = niqe_live.read_model(path)
    if niqe_live.is_live_model(mu, cov):
        return PristineModel(path, "live")
    version = fields.get("fit_version")
    if version is not None and str(np.ravel(version)[0]) == niqe_fit.FALLBACK.version:
        return PristineModel(path, "dlmap-fitted")
    return PristineModel(path, "custom")


def _is_current_fit(path: Path) -> bool:
    try:
        return identify(path).kind == "dlmap-fitted"
    except ValueError:
        return False


def fitted_model_path(cache=None, refit: bool = False) -> Path:
    """The fallback pristine model in ``cache_dir(cache)/niqe``, fitted on first use (about
    10 s on 2 CPU cores) and refitted when its recipe changed."""
    path = cache_dir(cache) / "niqe" / FITTED_FILE
    if refit or not path.exists() or not _is_current_fit(path):
        recipe = niqe_fit.FALLBACK
        mu, cov = niqe_fit.fit_recipe(recipe)
        niqe_live.write_model(
            path,
            mu,
            cov,
            fit_version=recipe.version,
            photographs=" ".join(
                f"{niqe_fit.PHOTOGRAPHS[n].package}:{niqe_fit.PHOTOGRAPHS[n].file}"
                for n in recipe.photographs
            ),
            procedure=recipe.describe(),
        )
    return path


def live_model_path(cache=None) -> Path:
    return cache_dir(cache) / niqe_live.MODEL_FILE


def resolve_model(model: str | Path = "auto", cache=None) -> PristineModel:
    """The pristine model a NIQE prior uses (see the module docstring for ``model``)."""
    if isinstance(model, Path) or model not in MODELS:
        path = Path(model)
        if not path.is_file():
            raise MissingInputError(
                f"NIQE model {str(model)!r}: not a file, nor one of {', '.join(MODELS)}"
            )
        if path.suffix != ".mat":
            raise InputError(
                f"NIQE model {path}: pyiqa reads .mat files (mu_prisparam, cov_prisparam)"
            )
        return identify(path)
    live = live_model_path(cache)
    if model == "fitted":
        return PristineModel(fitted_model_path(cache), "dlmap-fitted")
    if live.is_file():
        found = identify(live)
        if model == "live" and found.kind != "live":
            raise niqe_live.NotLiveModelError(
                f"{live} is not LIVE's NIQE model (its numbers differ): move it away and run "
                "`dlmap weights fetch niqe`"
            )
        return found
    if model == "live":
        raise WeightsMissingError(
            f"LIVE's NIQE pristine model is not in {live.parent}: fetch it with "
            "`dlmap weights fetch niqe` (from PyPI, 170 kB), or use the NIQE model 'fitted'"
        )
    return PristineModel(fitted_model_path(cache), "dlmap-fitted")


@register_prior("niqe")
class NIQEPrior(Prior):
    """NIQE (Mittal et al. 2013) as a prior: pyiqa's metric, per image, differentiable.

    ``model``: "auto", "live", "fitted" or a model file (``resolve_model``); ``pristine``
    says which model is used and names it. Images (B, 3, H, W) in [0, 1], H and W >= 192;
    lower scores are better.
    """

    info = PRIOR_SPECS["niqe"].info()

    def __init__(self, cache=None, model: str | Path = "auto"):
        super().__init__()
        import pyiqa

        self.pristine = resolve_model(model, cache)
        self.model_path = self.pristine.path
        self.metric = pyiqa.create_metric(
            "niqe",
            as_loss=True,
            loss_reduction="none",
            device=torch.device("cpu"),
            pretrained_model_path=str(self.model_path),
        )
        self.info = replace(
            NIQEPrior.info,
            display_name=self.pristine.display_name,
            training_set=f"pristine photographs ({self.pristine.source})",
        )

    @property
    def official(self) -> bool:
        """Whether the pristine model is LIVE's."""
        return self.pristine.kind == "live"

    @staticmethod
    def weight_sets(model: str | Path = "auto", **options) -> tuple[str, ...]:
        """LIVE's model (the catalogue's ``niqe``) when asked for by name; ``auto`` falls back
        to the fitted model offline, so it needs nothing."""
        return ("niqe",) if str(model) == "live" else ()

    @staticmethod
    def weights_status(cache=None) -> str:
        live = live_model_path(cache)
        if not live.is_file():
            return "dlmap-fitted (offline); LIVE's: dlmap weights fetch niqe"
        try:
            found = identify(live)
        except ValueError as error:
            return f"unreadable: {error}"
        return "LIVE's model" if found.kind == "live" else found.display_name

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != 3:
            raise InputError(f"NIQE expects (B, 3, H, W) images, got {tuple(images.shape)}")
        if min(images.shape[-2:]) < MIN_SIZE:
            raise InputError(
                f"NIQE needs images of at least {MIN_SIZE} x {MIN_SIZE} (two 96-pixel "
                f"blocks per side), got {tuple(images.shape[-2:])}"
            )
        return self.metric(images).reshape(images.shape[0]).to(images.dtype)
