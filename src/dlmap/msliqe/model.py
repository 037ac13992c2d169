"""MS-LIQE (paper Sec. V): multi-scale LIQE, a CLIP model scoring images on a 5-level scale.

For an image x, U views of 224 x 224 go through CLIP's image encoder (F(x), U x L) and the five
prompts "a photo with {bad, poor, fair, good, perfect} quality" through its text encoder
(G, 5 x L). Then, per quality level v = 1..5,

    logit(v | x) = 1/U sum_u exp(logit_scale) cos(F_u(x), G_v)               (Eq. 23)
    p(v | x)     = softmax_v(logit(v | x) / tau)                               (Eq. 24)
    q(x)         = sum_v v p(v | x),  in [1, 5], higher is better              (Eq. 22)

tau is ``MSLIQEConfig.temperature``: the value training learned, which the checkpoint
records, or 2, the authors' LIQE_ms value. Eq. 23 as printed has the bare cosine; CLIP's
exp(logit_scale) factor is kept, as in the authors' public code. Views (``MSLIQE.views``)
follow the authors' public version (U = 15) and pyiqa's LIQE: the whole image resized to 224 x
224 (the pyramid's top level), then for each scale s in ``scales`` (1, 0.75) up to
``crops_per_scale`` (k = 7) crops of 224 x 224 from that level:

* the level is the image itself for s = 1, else the image resized by the factor s as
  ``F.interpolate(scale_factor=s)`` does (size floored: 512 -> 384); a level whose shorter side
  falls below 224 is instead resized from the image so that its shorter side is exactly 224,
  keeping the aspect ratio (sizes by Python's ``round``);
* resizing is bicubic without antialiasing, as the authors' ``F.interpolate`` calls
  (``MSLIQEConfig.antialias`` turns it on);
* crop positions are those of a stride-32 unfold: top-left corners (y, x) with
  y in {0, 32, ..., <= H - 224}, x likewise, numbered row-major n = 0..N-1 (N = ny * nx);
* k crops take positions n_i = (N // k) i, i = 0..k-1, the authors' and pyiqa's rule (for a
  512 x 512 image, N = 100: 0, 14, ..., 84). When N < k the authors' step would be 0 (k copies
  of position 0); we follow pyiqa and take each of the N positions once, so such an image has
  fewer views (U = include_whole + sum over scales of min(k, N)).

Views are normalised with CLIP's mean and std. Everything is differentiable in the images and
each image is scored on its own. The paper's top level keeps the aspect ratio (shorter side
224) before cropping; the public version, followed here, resizes the whole image to 224 x 224.
Single-scale LIQE-style scoring is the same code with ``scales=(1.0,)``.

Weights: ``MSLIQE.from_config(config, checkpoint)`` builds the CLIP model with random
initialisation (nothing is downloaded) and loads a state dict of the CLIP model strictly.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, fields, replace
from pathlib import Path

import open_clip
import torch
import torch.nn.functional as F

from dlmap.errors import InputError
from dlmap.files import sha256_file
from dlmap.priors.base import Prior, register_prior
from dlmap.priors.specs import MSLIQE_AUTHORS_CONSTANTS, PRIOR_SPECS
from dlmap.weights.cache import WeightKeyError, WeightsMissingError, cache_dir

LEVELS = ("bad", "poor", "fair", "good", "perfect")
PROMPTS = tuple(f"a photo with {level} quality" for level in LEVELS)

TINY_CLIP = {
    "embed_dim": 16,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 224, "layers": 2, "width": 32, "head_width": 16, "patch_size": 32},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}
"""A toy CLIP (open_clip's ``CLIP(**cfg)`` arguments) with ViT-B/32's code path, for tests."""


@dataclass(frozen=True)
class MSLIQEConfig:
    """Architecture of MS-LIQE. ``clip``: an open_clip config name or a dict of ``CLIP`` kwargs.

    OpenAI's ViT-B/32 weights need ``ViT-B-32-quickgelu``: plain ``ViT-B-32`` builds GELU and
    would run those weights with the wrong activation, silently.
    """

    clip: str | dict = "ViT-B-32-quickgelu"
    prompts: tuple[str, ...] = PROMPTS
    scales: tuple[float, ...] = (1.0, 0.75)
    crops_per_scale: int = 7
    include_whole: bool = True
    stride: int = 32
    crop: int = 224
    temperature: float = 2.0
    mean: tuple[float, ...] = open_clip.OPENAI_DATASET_MEAN
    std: tuple[float, ...] = open_clip.OPENAI_DATASET_STD
    antialias: bool = False  # the authors resize without antialiasing

    @property
    def num_views(self) -> int:
        """U for an image whose every level holds at least k crop positions (fewer otherwise)."""
        return int(self.include_whole) + self.crops_per_scale * len(self.scales)


def config_from_dict(values: dict) -> MSLIQEConfig:
    """The ``MSLIQEConfig`` a training checkpoint records (its ``config`` entry)."""
    known = {field.name for field in fields(MSLIQEConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise InputError(f"MS-LIQE config: unknown keys {', '.join(unknown)}")
    return MSLIQEConfig(
        **{key: tuple(value) if isinstance(value, list) else value for key, value in values.items()}
    )


def crop_indices(count: int, positions: int) -> list[int]:
    """Up to ``count`` of ``positions`` row-major crop positions: (N // k) i for i < k, as the
    authors' code and pyiqa's LIQE; every position once when there are fewer than k (pyiqa)."""
    if positions < count:
        return list(range(positions))
    step = positions // count
    return [step * i for i in range(count)]


def _resize(images: torch.Tensor, size: tuple[int, int], antialias: bool) -> torch.Tensor:
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    return F.interpolate(
        images, size=size, mode="bicubic", align_corners=False, antialias=antialias
    )


def pyramid_level(images: torch.Tensor, scale: float, crop: int, antialias: bool = False):
    """The level of scale ``scale`` that the crops come from (see the module docstring)."""
    height, width = images.shape[-2:]
    low_h, low_w = math.floor(height * scale), math.floor(width * scale)
    if min(low_h, low_w) < crop:
        factor = crop / min(low_h, low_w)
        size = (max(crop, round(low_h * factor)), max(crop, round(low_w * factor)))
        return _resize(images, size, antialias)
    if scale == 1:
        return images
    return F.interpolate(
        images, scale_factor=scale, mode="bicubic", align_corners=False, antialias=antialias
    )


def _grid(level: torch.Tensor, config: MSLIQEConfig) -> tuple[int, int]:
    """(rows, columns) of the stride-``config.stride`` crop positions of a level."""
    height, width = level.shape[-2:]
    size, stride = config.crop, config.stride
    return (height - size) // stride + 1, (width - size) // stride + 1


def _crop_at(level: torch.Tensor, n: int, columns: int, config: MSLIQEConfig) -> torch.Tensor:
    y, x = (n // columns) * config.stride, (n % columns) * config.stride
    return level[..., y : y + config.crop, x : x + config.crop]


def test_views(images: torch.Tensor, config: MSLIQEConfig) -> torch.Tensor:
    """The deterministic views: (B, 3, H, W) -> (B, U, 3, crop, crop) (module docstring)."""
    size = config.crop
    views = [_resize(images, (size, size), config.antialias)] if config.include_whole else []
    for scale in config.scales:
        level = pyramid_level(images, scale, size, config.antialias)
        rows, columns = _grid(level, config)
        for n in crop_indices(config.crops_per_scale, rows * columns):
            views.append(_crop_at(level, n, columns, config))
    return torch.stack(views, dim=1)


def training_views(image: torch.Tensor, config: MSLIQEConfig, draws) -> torch.Tensor:
    """Random views for training, one per level of the pyramid: (3, H, W) -> (L, 3, crop,
    crop), the top level (the whole image at crop x crop) and, from each scale's level, the
    crop at one stride-32 position that ``draws`` (one number in [0, 1) per scale) picks
    uniformly. LIQE trains on 3 random crops per image and scores 15 fixed ones; this draws
    3 from MS-LIQE's own pyramid instead (docs/msliqe.md)."""
    images, size = image[None], config.crop
    views = [_resize(images, (size, size), config.antialias)] if config.include_whole else []
    for scale, draw in zip(config.scales, draws, strict=True):
        level = pyramid_level(images, scale, size, config.antialias)
        rows, columns = _grid(level, config)
        n = min(int(draw * rows * columns), rows * columns - 1)
        views.append(_crop_at(level, n, columns, config))
    return torch.cat(views)


class MSLIQE(torch.nn.Module):
    """CLIP + five quality prompts; ``forward(images) -> q`` (B,) for images in [0, 1]."""

    def __init__(self, clip: torch.nn.Module, config: MSLIQEConfig):
        super().__init__()
        self.clip = clip
        self.config = config
        context = clip.context_length
        self.register_buffer("tokens", open_clip.tokenize(list(config.prompts), context), False)
        self.register_buffer("mean", torch.tensor(config.mean).view(1, 3, 1, 1), False)
        self.register_buffer("std", torch.tensor(config.std).view(1, 3, 1, 1), False)
        self.register_buffer("levels", torch.arange(1.0, len(config.prompts) + 1), False)
        self._text_cache: torch.Tensor | None = None

    @classmethod
    def from_config(
        cls, config: MSLIQEConfig | None = None, checkpoint: str | os.PathLike | dict | None = None
    ) -> MSLIQE:
        """Random-initialised CLIP of ``config.clip`` (offline), then ``checkpoint`` if given.

        ``checkpoint``: a file (or dict) holding the CLIP model's state dict, loaded strictly.
        """
        config = config or MSLIQEConfig()
        if isinstance(config.clip, str):
            cfg = open_clip.get_model_config(config.clip)
            if cfg is None:
                raise InputError(f"open_clip has no model config named {config.clip!r}")
        else:
            cfg = dict(config.clip)
        if "hf_model_name" in cfg.get("text_cfg", {}) or "timm_model_name" in cfg["vision_cfg"]:
            raise InputError("MS-LIQE builds open_clip's own CLIP towers (no HF/timm towers)")
        model = cls(open_clip.CLIP(**cfg), config)
        if checkpoint is not None:
            model.load_checkpoint(checkpoint)
        return model

    def load_checkpoint(self, checkpoint: str | os.PathLike | dict) -> None:
        """Load a CLIP state dict strictly: missing, unexpected or reshaped keys are errors."""
        where = "checkpoint" if isinstance(checkpoint, dict) else str(checkpoint)
        state = checkpoint
        if not isinstance(state, dict):
            state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        if isinstance(state.get("state_dict"), dict):  # a training checkpoint
            state = state["state_dict"]
        own = self.clip.state_dict()
        problems = [f"missing {k}" for k in own if k not in state]
        problems += [f"unexpected {k}" for k in state if k not in own]
        problems += [
            f"size mismatch for {k}: {tuple(state[k].shape)} vs {tuple(v.shape)}"
            for k, v in own.items()
            if k in state and tuple(state[k].shape) != tuple(v.shape)
        ]
        if problems:
            more = f"; and {len(problems) - 5} more" if len(problems) > 5 else ""
            raise WeightKeyError(f"MS-LIQE weights in {where}: {'; '.join(problems[:5])}{more}")
        self.clip.load_state_dict(state, strict=True)
        self._text_cache = None

    def train(self, mode: bool = True) -> MSLIQE:
        self._text_cache = None
        return super().train(mode)

    def text_features(self) -> torch.Tensor:
        """G (V x L), unit rows. Cached while the text tower is frozen and in eval mode."""
        frozen = not self.training and not any(
            p.requires_grad for p in self.clip.transformer.parameters()
        )
        cache = self._text_cache
        ref = self.clip.logit_scale
        if frozen and cache is not None and (cache.device, cache.dtype) == (ref.device, ref.dtype):
            return cache
        features = F.normalize(self.clip.encode_text(self.tokens), dim=-1)
        if frozen:
            self._text_cache = features.detach()
        return features

    def views(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> (B, U, 3, crop, crop), unnormalised (see the module doc)."""
        return test_views(images, self.config)

    def logits(self, images: torch.Tensor, views: torch.Tensor | None = None) -> torch.Tensor:
        """Eq. 23: exp(logit_scale) * cosine, averaged over the U views -> (B, V); the views
        are ``views(images)`` unless given (training draws its own: ``training_views``)."""
        dtype = self.clip.logit_scale.dtype
        views = self.views(images.to(dtype)) if views is None else views.to(dtype)
        batch, count = views.shape[:2]
        flat = (views.flatten(0, 1) - self.mean.to(dtype)) / self.std.to(dtype)
        image = F.normalize(self.clip.encode_image(flat), dim=-1)
        cosine = image @ self.text_features().T
        return (self.clip.logit_scale.exp() * cosine).view(batch, count, -1).mean(dim=1)

    def probabilities(self, images: torch.Tensor, views=None, temperature=None) -> torch.Tensor:
        """Eq. 24: p(v | x) = softmax(logit / tau) -> (B, V); tau is the config's (the value
        training learned) unless given (a tensor while it is being learned)."""
        tau = self.config.temperature if temperature is None else temperature
        return torch.softmax(self.logits(images, views) / tau, dim=-1)

    def forward(self, images: torch.Tensor, views=None, temperature=None) -> torch.Tensor:
        """Eq. 22: q = sum_v v p(v | x) -> (B,), in [1, V]."""
        p = self.probabilities(images, views, temperature)
        return p @ self.levels.to(p.dtype)


#: sha256 of the checkpoints the shipped Eq. 21 constants were fitted for. The authors fitted
#: theirs on LIVE for their own MS-LIQE, which they have not published: none is known, so the
#: shipped constants are provisional for every checkpoint (a trained one gets its own).
AUTHORS_CHECKPOINTS: tuple[str, ...] = ()


def default_checkpoint(cache=None) -> Path:
    """Where ``MSLIQEPrior`` looks for trained weights: <cache>/ms-liqe/ms_liqe.pt."""
    return cache_dir(cache) / "ms-liqe" / "ms_liqe.pt"


def checkpoint_sha256(path=None, cache=None) -> str:
    """The sha256 of an MS-LIQE checkpoint (default: the installed one), which ties Eq. 21
    constants fitted on its scores to it (``dlmap calibrate --checkpoint``)."""
    path = Path(path) if path is not None else default_checkpoint(cache)
    try:
        return sha256_file(path)
    except OSError as error:
        raise InputError(
            f"--checkpoint {path}: {error.strerror} (the MS-LIQE checkpoint that produced the "
            "scores: its sha256 ties the constants to it)"
        ) from error


@register_prior("ms-liqe")
class MSLIQEPrior(Prior):
    """MS-LIQE as a prior. Weights: ``checkpoint``, else ``default_checkpoint()``.

    Nothing is downloaded: without a checkpoint file ``WeightsMissingError`` is raised, unless
    ``allow_random=True`` (random weights, for tests and demos).
    """

    info = PRIOR_SPECS["ms-liqe"].info()

    def __init__(
        self,
        checkpoint: str | os.PathLike | None = None,
        config: MSLIQEConfig | None = None,
        allow_random: bool = False,
        cache=None,
    ):
        super().__init__()
        path = (
            Path(checkpoint).expanduser() if checkpoint is not None else default_checkpoint(cache)
        )
        if not path.is_file():
            if not allow_random or checkpoint is not None:
                raise WeightsMissingError(
                    f"MS-LIQE weights not found: {path} (train them with `dlmap train-msliqe "
                    "--install`; or pass checkpoint=PATH, or allow_random=True for random weights)"
                )
            path = None
        state = torch.load(path, map_location="cpu", weights_only=True) if path else None
        if config is None and isinstance(state, dict) and isinstance(state.get("config"), dict):
            config = config_from_dict(state["config"])  # a checkpoint of `dlmap train-msliqe`
        self.model = MSLIQE.from_config(config, state)
        digest = sha256_file(path) if path else ""
        self.info = replace(
            self.info,
            params=sum(p.numel() for p in self.model.parameters()),
            checkpoint_sha256=digest,
        )
        if digest and digest in AUTHORS_CHECKPOINTS:
            self.info = replace(
                self.info, calibration_fitted=True, calibration_source=MSLIQE_AUTHORS_CONSTANTS
            )

    @staticmethod
    def weights_status(cache=None) -> str:
        path = default_checkpoint(cache)
        return "present" if path.is_file() else f"MISSING: {path} (dlmap train-msliqe --install)"

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)
