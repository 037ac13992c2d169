"""Every setting of an enhancement in one place: Alg. 1's (``SolverConfig``), EDICT's
(``EdictConfig``), the backbone's (``BackboneSettings``) and Eq. 21's score scales.

Each is a frozen dataclass that validates itself; its defaults and allowed values (the tuples
below) are the only copy. The command line takes its defaults and choices from here, and
``tests/test_settings.py`` fails when the workflow's JSON schema drifts from it. This module
imports neither torch nor diffusers, so that building the command line stays fast.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dlmap.diffusion.specs import BACKBONE_SPECS, WEIGHT_FOLDER_FIELDS
from dlmap.errors import InputError

MODES = ("latent-map", "latent-direct", "pixel-map", "pixel-direct")  # dlmap.enhance.solver
BIJECTIONS = ("edict", "bdia", "belm")  # exact latent <-> noise maps (dlmap.inversion)
ENDS = ("final-alpha", "alpha-one")  # where BDIA's and O-BELM's chain ends (bijections.py)
ORDERS = ("alternating", "fixed")  # EDICT's step order (dlmap.inversion.edict)
GRADIENTS = ("recompute", "reversible", "autograd")  # how gradients pass through h
BACKBONES = tuple(BACKBONE_SPECS)  # one BackboneSpec each (dlmap.diffusion.specs)
ENCODES = ("sample", "mean")  # the VAE posterior: a seeded sample (the authors') or its mean
DTYPES = ("float32", "float64")
AUTOCASTS = ("none", "bf16", "fp16")
WEIGHTS_DTYPES = ("same", "bf16")  # the frozen networks' parameters: as dtype, or bfloat16
DEFAULT_DOWNSAMPLING = 4  # s of Eq. 20 (dlmap.enhance.fidelity says why)
D1_METRICS = ("lpips", "dists", "ms-ssim")  # Eq. 18's D1 (dlmap.compare.distances)
D2_EMBEDDINGS = ("clip", "handcrafted")  # Eq. 18's D2 embeddings
RANK_RESAMPLES = 500  # bootstrap resamples of subjects for Eq. 19's intervals (pwcmp's example)

#: Stable Diffusion 2's noise schedule (scheduler/scheduler_config.json of SD2-base).
SD2_SCHEDULER = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "set_alpha_to_one": False,
    "clip_sample": False,
    "prediction_type": "epsilon",
}

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


def _choice(what: str, value, allowed: tuple) -> None:
    if value not in allowed:
        raise InputError(f"{what} must be one of {', '.join(allowed)}, got {value!r}")


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
        _choice("mode", self.mode, MODES)
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
        _choice("gradient", self.gradient, GRADIENTS)
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
class EdictConfig:
    """EDICT settings. Paper defaults: T = 20, p = 0.93^(50/T) (Sec. IV-A, following EDICT).

    steps_offset: 0 as in the authors' code (950..0 at T = 20); SD2's shipped config: 1.
    """

    steps: int = 20
    mix: float | None = None
    steps_offset: int = 0
    order: str = "alternating"
    scheduler: dict = field(default_factory=lambda: dict(SD2_SCHEDULER))
    bijection: str = "edict"  # or "bdia", "belm": one network call per step (bijections.py)
    gamma: float = 0.92  # BDIA's gamma (its inverse divides the latent by gamma per step)
    ends: str = "final-alpha"  # BDIA/O-BELM: where the chain ends (dlmap.inversion.bijections)

    def __post_init__(self):
        if not isinstance(self.steps, int) or self.steps < 1:
            raise InputError(f"EDICT steps must be a positive integer, got {self.steps!r}")
        n_train = self.scheduler.get("num_train_timesteps", 1000)
        if self.steps > n_train:
            raise InputError(f"EDICT steps {self.steps} exceed the {n_train} training timesteps")
        if self.mix is not None and not 0.0 < self.mix <= 1.0:
            raise InputError(f"EDICT mixing p must lie in (0, 1], got {self.mix!r}")
        if self.order not in ORDERS:
            raise InputError(f"EDICT order must be one of {ORDERS}, got {self.order!r}")
        stride = n_train // self.steps
        if not 0 <= self.steps_offset < stride:
            raise InputError(
                f"steps_offset must lie in [0, {stride}) for {self.steps} steps "
                f"(timesteps would leave 0..{n_train - 1}), got {self.steps_offset!r}"
            )
        if self.bijection not in BIJECTIONS:
            raise InputError(f"bijection must be one of {BIJECTIONS}, got {self.bijection!r}")
        if not isinstance(self.gamma, (int, float)) or not 0.0 < self.gamma <= 1.0:
            raise InputError(f"BDIA's gamma must lie in (0, 1], got {self.gamma!r}")
        if self.ends not in ENDS:
            raise InputError(f"ends must be one of {ENDS}, got {self.ends!r}")
        if self.bijection != "edict" and self.steps < 3:
            # the one rule for it: two DDIM intervals of non-zero length for the two-step
            # recurrence, whichever way the chain ends (dlmap.inversion.bijections)
            raise InputError(f"{self.bijection} needs at least 3 steps, got {self.steps!r}")

    @property
    def mixing(self) -> float:
        """p of Eqs. 10-11; 0.93^(50/T) unless set (EDICT's choice, paper Sec. IV-A)."""
        return self.mix if self.mix is not None else 0.93 ** (50 / self.steps)


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
        _choice("backbone", self.name, BACKBONES)
        _choice("dtype", self.dtype, DTYPES)
        _choice("autocast", self.autocast, AUTOCASTS)
        _choice("encode", self.encode, ENCODES)
        _choice("weights_dtype", self.weights_dtype, WEIGHTS_DTYPES)
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
    inversion: EdictConfig = field(default_factory=EdictConfig)
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
        inversion = build("edict: ", EdictConfig, edict)
        return cls(network, solver, inversion, config["size"])

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
