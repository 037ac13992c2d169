"""Every setting of an enhancement: Alg. 1's (``SolverConfig``), the backbone's
(``BackboneSettings``), Eq. 21's score scales, and one run's whole set (``RunSettings``, with
the inversion's ``dlmap.inversion.config.InversionConfig``).

Each is a frozen dataclass that validates itself; its defaults and allowed values (the tuples
below) are the only copy. The command line takes its defaults and choices from here, and the
workflow refuses to start when its JSON schema drifts from them
(``dlmap.workflow.config_checks.schema_disagreements``). This module imports neither torch
nor diffusers, so that building the command line stays fast.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dlmap.diffusion.specs import BACKBONE_SPECS, WEIGHT_FOLDER_FIELDS
from dlmap.errors import InputError, check_choice
from dlmap.inversion.config import InversionConfig

MODES = ("latent-map", "latent-direct", "pixel-map", "pixel-direct")  # dlmap.enhance.solver
GRADIENTS = ("recompute", "reversible", "autograd")  # how gradients pass through h
BACKBONES = tuple(BACKBONE_SPECS)  # one BackboneSpec each (dlmap.diffusion.specs)
ENCODES = ("sample", "mean")  # the VAE posterior: a seeded sample (the authors') or its mean
DTYPES = ("float32", "float64")
AUTOCASTS = ("none", "bf16", "fp16")
#: the memory switches that change no result: jobs read them from the config, not their
#: params, so that switching them on for a smaller GPU reruns nothing
RESULT_NEUTRAL_SWITCHES = ("checkpoint_blocks", "vae_slicing")
WEIGHTS_DTYPES = ("same", "bf16")  # the frozen networks' parameters: as dtype, or bfloat16
DEFAULT_DOWNSAMPLING = 4  # s of Eq. 20 (dlmap.enhance.fidelity says why)
D1_METRICS = ("lpips", "dists", "ms-ssim")  # Eq. 18's D1 (dlmap.compare.distances)
D2_EMBEDDINGS = ("clip", "handcrafted")  # Eq. 18's D2 embeddings
RANK_RESAMPLES = 500  # bootstrap resamples of subjects for Eq. 19's intervals (pwcmp's example)

#: Stable Diffusion 2's noise schedule (scheduler/scheduler_config.json of SD2-base).
XI1, XI2 = 1.0, 0.0  # maximum and minimum of the calibrated score as printed (Sec. IV)
STOP_FRACTION = 0.9  # the authors' MAP script stops once the calibrated score reaches 90/100


@dataclass(frozen=True)
class ScoreScale:
    """A named choice of Eq. 21's maximum xi1 (xi2 = 0): calibrated scores lie in (0, xi1)."""

    name: str
    xi1: float
    description: str

    @property
    def label(self) -> str:
        """How scores on this scale are labelled next to their values: "0-100"."""
        return f"0-{self.xi1:g}"

    @property
    def default_stop(self) -> float:
        """The early-stopping threshold of the authors' MAP script (90 of 100), on this scale."""
        return STOP_FRACTION * self.xi1

    def as_dict(self) -> dict:
        return {"name": self.name, "xi1": self.xi1, "range": [XI2, self.xi1]}


SCORE_SCALES = {
    "authors": ScoreScale("authors", 100.0, "the authors' public code: 0-100 (xi1 = 100)"),
    "printed": ScoreScale("printed", 1.0, "Eq. 21 as printed: 0-1 (xi1 = 1)"),
}
DEFAULT_SCALE = "authors"


def score_scale(name: str) -> ScoreScale:
    """The ``ScoreScale`` named ``name``; ValueError naming the known ones otherwise."""
    if name not in SCORE_SCALES:
        raise InputError(f"score scale must be one of {', '.join(SCORE_SCALES)}, got {name!r}")
    return SCORE_SCALES[name]


@dataclass(frozen=True)
class SolverConfig:
    """Alg. 1's settings; defaults are the paper's (Sec. IV-A) and the authors' code's."""

    mode: str = "latent-map"
    iters: int = 40  # MaxIter
    lam: float = 0.01  # lambda
    lr: float = 2.0  # alpha
    momentum: float = 0.9  # rho
    grad_clip: float | None = 1e-3  # element-wise clip of the latent gradient; None: off
    downsampling: int = DEFAULT_DOWNSAMPLING  # s of Eq. 20
    pixel_lr: float = 0.01  # Adam step size of the pixel modes
    gradient: str = "recompute"  # how gradients pass through h (see dlmap.inversion.edict)
    seed: int = 0  # seeds the VAE posterior sample of each image
    score_scale: str = DEFAULT_SCALE  # xi1 of Eq. 21: "authors" (0-100) or "printed" (0-1)
    early_stop: bool = True  # latent-map, fitted constants only: stop at stop_score
    stop_score: float | None = None  # on the score scale; None: 90% of xi1 (authors': 90)

    def __post_init__(self):
        check_choice("mode", self.mode, MODES)
        if not isinstance(self.iters, int) or self.iters < 0:
            raise InputError(f"iters must be a non-negative integer, got {self.iters!r}")
        if not self.lam >= 0:
            raise InputError(f"lambda must be >= 0, got {self.lam!r}")
        if not self.lr > 0 or not self.pixel_lr > 0:
            raise InputError("learning rates must be > 0")
        if not 0 <= self.momentum < 1:
            raise InputError(f"momentum rho must lie in [0, 1), got {self.momentum!r}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise InputError(f"grad_clip must be > 0 or None (off), got {self.grad_clip!r}")
        check_choice("gradient", self.gradient, GRADIENTS)
        if not isinstance(self.downsampling, int) or self.downsampling < 1:
            raise InputError(
                f"downsampling s must be a positive integer, got {self.downsampling!r}"
            )
        if not 0 <= self.seed < 2**63:
            raise InputError(f"seed must lie in [0, 2**63), got {self.seed!r}")
        scale = score_scale(self.score_scale)
        if self.stop_score is not None and not 0 < self.stop_score <= scale.xi1:
            raise InputError(
                f"stop_score must lie in (0, {scale.xi1:g}] on the {scale.name} scale "
                f"({scale.label}), got {self.stop_score!r}"
            )

    @property
    def xi1(self) -> float:
        """The maximum of the calibrated score (Eq. 21) on the configured scale."""
        return score_scale(self.score_scale).xi1

    @property
    def stop_threshold(self) -> float:
        """The calibrated score at which latent-map problems stop (where it applies)."""
        if self.stop_score is not None:
            return self.stop_score
        return score_scale(self.score_scale).default_stop


@dataclass(frozen=True)
class BackboneSettings:
    """Which backbone, on what device and in which precision, and how images are encoded
    (``dlmap.diffusion.build.load_backbone`` builds it)."""

    name: str = "sd2-seesr"
    device: str = "cuda"
    dtype: str = "float32"
    autocast: str = "none"
    tf32: bool = False  # CUDA: TensorFloat-32 float32 matmuls and convolutions (docs/enhance.md)
    encode: str = "sample"
    cache: str | None = None
    vae: str | None = None  # tiny backbones: the trained VAE's folder (dlmap.diffusion.tiny_vae)
    sd2: str | None = None  # weights folders or hub ids; None: the cache's (dlmap.weights)
    controlnet: str | None = None
    seesr: str | None = None
    dape: str | None = None
    ram: str | None = None
    # Switches for smaller GPUs (docs/enhance.md, "GPU memory"): bf16 weights halve the
    # networks' memory (results within a stated tolerance); the other two change no result.
    weights_dtype: str = "same"  # "bf16": the frozen networks in bfloat16 (needs autocast bf16)
    checkpoint_blocks: bool = False  # recompute UNet/ControlNet blocks in each step's backward
    vae_slicing: bool = False  # encode and decode a batch one image at a time

    def __post_init__(self):
        check_choice("backbone", self.name, BACKBONES)
        check_choice("dtype", self.dtype, DTYPES)
        check_choice("autocast", self.autocast, AUTOCASTS)
        check_choice("encode", self.encode, ENCODES)
        check_choice("weights_dtype", self.weights_dtype, WEIGHTS_DTYPES)
        if self.weights_dtype == "bf16" and self.autocast != "bf16":
            raise InputError(
                f"weights_dtype bf16 needs autocast bf16 (got autocast {self.autocast}): the "
                "networks then compute in bf16 while latents and EDICT stay in " + self.dtype
            )
        for name in ("checkpoint_blocks", "vae_slicing", "tf32"):
            if not isinstance(getattr(self, name), bool):
                raise InputError(f"{name} must be true or false, got {getattr(self, name)!r}")

    def job_params(self) -> dict:
        """What the workflow passes its GPU jobs as params: the settings that decide results
        (the memory switches, which do not, are read from the config so that switching them
        reruns nothing; the weights come from the cache)."""
        keys = ("name", "device", "dtype", "autocast", "tf32", "encode", "cache", "vae")
        return {**{key: getattr(self, key) for key in keys}, "weights_dtype": self.weights_dtype}

    def weight_folders(self) -> dict[str, str | None]:
        """The folders given for the weight sets (``dlmap.weights.catalogue`` names them);
        None: the cache's."""
        return {name: getattr(self, field) for name, field in WEIGHT_FOLDER_FIELDS.items()}


@dataclass(frozen=True)
class RunSettings:
    """One enhancement run's settings, passed whole: the backbone, Alg. 1's solver, the
    inversion (EDICT or a one-call bijection) and the image size. The command line builds one
    from its options, the workflow's jobs and config checks from the config (``from_config``),
    and every image's record says how it was made (``to_record``)."""

    backbone: BackboneSettings = field(default_factory=BackboneSettings)
    solver: SolverConfig = field(default_factory=SolverConfig)
    inversion: InversionConfig = field(default_factory=InversionConfig)
    size: int = 512

    @classmethod
    def from_config(
        cls, config: dict, prior: str | None = None, backbone: str | None = None, vae=None
    ) -> RunSettings:
        """The settings of one prior's run under the workflow's ``config`` (its solver: the
        shared ``solver`` block, then the prior's ``prior_settings``), on ``backbone`` (default:
        the config's) with the trained tiny VAE ``vae``. A value its class refuses raises
        ``InputError`` in one line naming the config's key."""

        def build(where: str, cls, values: dict):
            try:
                return cls(**values)
            except InputError as error:
                raise InputError(f"config: {where}{error}") from None

        keys = ("device", "dtype", "autocast", "tf32", "encode", "cache")
        shared = {key: config[key] for key in keys if key in config}
        name = backbone or config["backbone"]
        network = build(
            "", BackboneSettings, {"name": name, **shared, "vae": vae, **config["memory"]}
        )
        solver = build("solver: ", SolverConfig, config["solver"])
        if prior is not None and prior in config["prior_settings"]:
            where = f"prior_settings.{config_key(prior)} (over solver): "
            solver = build(
                where, SolverConfig, {**config["solver"], **config["prior_settings"][prior]}
            )
        edict = {key: value for key, value in config["edict"].items() if value is not None}
        inversion = build("edict: ", InversionConfig.from_flat, edict)
        return cls(network, solver, inversion, config["size"])

    @classmethod
    def from_job_params(
        cls, backbone: dict, solver: dict, edict: dict, size: int, memory: dict | None = None
    ) -> RunSettings:
        """A GPU job's settings from its params (the config's blocks as the workflow's rules
        pass them: ``BackboneSettings.job_params()``, the solver's and the inversion's flat
        settings) and ``memory``, the switches that change no result, read from the config.
        The job scripts call it, and the config checks call it for every job before any
        runs, so that a job never refuses what the checks let through."""
        return cls(
            backbone=BackboneSettings(**backbone, **(memory or {})),
            solver=SolverConfig(**solver),
            inversion=InversionConfig.from_flat(
                **{key: value for key, value in edict.items() if value is not None}
            ),
            size=size,
        )

    def to_record(self) -> dict:
        """What every image's record says of the run beyond the solver's and the inversion's
        settings: size, dtype, autocast, bf16 weights, encoding and device."""
        backbone = self.backbone
        return {
            "size": self.size,
            "dtype": backbone.dtype,
            "autocast": backbone.autocast,
            "weights_dtype": backbone.weights_dtype,
            "encode": backbone.encode,
            "device": backbone.device,
        }


def config_key(part) -> str:
    """A key of a config path as messages show it: as is, or quoted if it would break the
    line (or is empty)."""
    text = str(part)
    return text if text.isprintable() and text.strip() == text and text else repr(text)
