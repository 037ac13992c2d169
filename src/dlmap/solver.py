"""Diffusion-latent MAP estimation (paper Alg. 1, Eq. 17) and the paper's three ablations.

Modes (``SolverConfig.mode``):

* ``"latent-map"``   Eq. 17: minimise D0(h(z), x_init) - lambda q(h(z)) over the noise pair z.
* ``"latent-direct"`` lambda -> infinity (Fig. 8): maximise q(h(z)) alone.
* ``"pixel-map"``    Eq. 2 (Figs. 1c, 2): minimise MSE(x, x_init) - lambda q(x) over pixels.
* ``"pixel-direct"`` Eq. 1 (Fig. 1b): maximise q(x) over pixels.

Latent modes follow the authors' code: the loss is averaged over the pair (x, y) (Alg. 1 lines
5-7), the gradient is clipped element-wise (default +-1e-3), then m = rho m + g and
z = z - alpha m (Alg. 1 lines 10-11 with alpha = 2, rho = 0.9). q is the calibrated score of
Eq. 21 in (0, 1); images are in [0, 1]; D0 is Eq. 20 on those images. These units fix what
lambda = 0.01 means.

The paper names no optimiser for the pixel modes (alpha = 2 and the clip are latent-space
settings). We use Adam (lr 0.01, i.e. about 2.5 grey levels per step at first) on the pixels,
projected onto [0, 1] after each step: a scale-free, element-wise optimiser that is the usual
choice for adversarial-style pixel optimisation of IQA models.

Every problem of a batch is independent: losses are summed (not averaged) over problems, the
networks and priors score each sample on its own, and the optimisers act element-wise.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from tqdm.auto import tqdm

from dlmap import edict, fidelity
from dlmap.calibration import calibrate
from dlmap.priors import Prior

MODES = ("latent-map", "latent-direct", "pixel-map", "pixel-direct")


class NonFiniteError(FloatingPointError):
    """A loss, gradient or latent became NaN or infinite during a solve."""


@dataclass(frozen=True)
class SolverConfig:
    """Alg. 1's settings; defaults are the paper's (Sec. IV-A) and the authors' code's."""

    mode: str = "latent-map"
    iters: int = 40  # MaxIter
    lam: float = 0.01  # lambda
    lr: float = 2.0  # alpha
    momentum: float = 0.9  # rho
    grad_clip: float | None = 1e-3  # element-wise clip of the latent gradient; None: off
    downsampling: int = fidelity.DEFAULT_DOWNSAMPLING  # s of Eq. 20
    pixel_lr: float = 0.01  # Adam step size of the pixel modes
    gradient: str = "recompute"  # how gradients pass through h (see dlmap.edict)
    seed: int = 0  # seeds the VAE posterior sample of each image

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if not isinstance(self.iters, int) or self.iters < 0:
            raise ValueError(f"iters must be a non-negative integer, got {self.iters!r}")
        if not self.lam >= 0:
            raise ValueError(f"lambda must be >= 0, got {self.lam!r}")
        if not self.lr > 0 or not self.pixel_lr > 0:
            raise ValueError("learning rates must be > 0")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum rho must lie in [0, 1), got {self.momentum!r}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"grad_clip must be > 0 or None (off), got {self.grad_clip!r}")
        if self.gradient not in edict.GRADIENTS:
            raise ValueError(f"gradient must be one of {edict.GRADIENTS}, got {self.gradient!r}")
        if not isinstance(self.downsampling, int) or self.downsampling < 1:
            raise ValueError(
                f"downsampling s must be a positive integer, got {self.downsampling!r}"
            )
        if not 0 <= self.seed < 2**63:
            raise ValueError(f"seed must lie in [0, 2**63), got {self.seed!r}")


@dataclass
class SolveResult:
    """x*, y* in [0, 1] (y is None in pixel modes), the noise pair, and the trajectory.

    history[i] holds, per problem, the loss, calibrated score, raw score and fidelity of
    iteration i, evaluated before its update (averaged over x and y in latent modes);
    ``final`` holds the same for the returned images.
    """

    x: torch.Tensor
    y: torch.Tensor | None
    history: list[dict] = field(default_factory=list)
    final: dict = field(default_factory=dict)
    noise: tuple[torch.Tensor, torch.Tensor] | None = None
    config: dict = field(default_factory=dict)


def _score(priors: list[Prior], images: torch.Tensor):
    """Raw and calibrated scores, each image scored by its own prior."""
    raw = torch.empty(images.shape[0], dtype=images.dtype, device=images.device)
    calibrated = torch.empty_like(raw)
    groups: dict[int, list[int]] = {}
    for index, prior in enumerate(priors):
        groups.setdefault(id(prior), []).append(index)
    for indices in groups.values():
        prior = priors[indices[0]]
        scores = prior(images[indices]).to(images.dtype)
        if scores.shape != (len(indices),):
            raise ValueError(
                f"prior {prior.name!r} returned shape {tuple(scores.shape)} for "
                f"{len(indices)} images; a prior must return one score per image"
            )
        index = (torch.tensor(indices, device=images.device),)
        info = prior.info
        raw = raw.index_put(index, scores)
        calibrated = calibrated.index_put(
            index, calibrate(scores, info.xi3, info.xi4, info.higher_is_better)
        )
    return raw, calibrated


def objective(images, x_init, priors, config: SolverConfig):
    """Per-problem energy E(x | x_init) and its parts, each of shape (B,).

    latent-map: Eq. 20 - lambda q (Eq. 17); pixel-map: MSE - lambda q (Eq. 2);
    direct modes: -q (Eqs. 1 and 17 with lambda -> infinity).
    """
    raw, score = _score(priors, images)
    if config.mode == "latent-map":
        fid = fidelity.downsampled_l2(images, x_init, config.downsampling)
    elif config.mode == "pixel-map":
        fid = fidelity.mse(images, x_init)
    else:
        fid = fidelity.downsampled_l2(images, x_init, config.downsampling).detach()
    loss = -score if config.mode.endswith("direct") else fid - config.lam * score
    return loss, score, raw, fid


def _check_finite(iteration: int, what: str, *tensors):
    for tensor in tensors:
        bad = ~torch.isfinite(tensor.flatten(1) if tensor.dim() > 1 else tensor)
        if bad.any():
            rows = bad.reshape(bad.shape[0], -1).any(dim=1).nonzero().flatten().tolist()
            raise NonFiniteError(f"iteration {iteration}: non-finite {what} in problem(s) {rows}")


def _record(loss, score, raw, fid) -> dict:
    return {
        "loss": loss.tolist(),
        "score": score.tolist(),
        "raw_score": raw.tolist(),
        "fidelity": fid.tolist(),
    }


def _pair_mean(values: torch.Tensor, batch: int) -> torch.Tensor:
    return (values[:batch] + values[batch:]) / 2


def map_solve(
    backbone,
    priors: Prior | list[Prior],
    images: torch.Tensor,
    config: SolverConfig = SolverConfig(),
    edict_config: edict.EdictConfig = edict.EdictConfig(),
    seeds: list[int] | None = None,
    quiet: bool = False,
    description: str = "MAP",
    inversion: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> SolveResult:
    """Enhance a batch of images (B, 3, H, W) in [0, 1], one prior per image (Alg. 1).

    ``backbone`` is a ``dlmap.backbones.Backbone`` (unused in pixel modes). ``seeds`` seeds
    each image's VAE posterior sample (default: ``config.seed`` for all). ``inversion``: the
    noise pair (x_T, y_T) of Alg. 1 line 2 from ``invert_images`` for these images, backbone,
    seeds and EDICT settings, so one inversion serves every prior (computed here if None).
    Raises ``NonFiniteError`` naming the iteration if a loss, gradient or latent stops being
    finite.
    """
    batch = images.shape[0]
    priors = list(priors) if isinstance(priors, (list, tuple)) else [priors] * batch
    if len(priors) != batch:
        raise ValueError(f"got {len(priors)} priors for {batch} images")
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (B, 3, H, W), got {tuple(images.shape)}")
    if not torch.isfinite(images).all() or images.min() < 0 or images.max() > 1:
        raise ValueError("images must be finite RGB values in [0, 1]")
    if config.mode.startswith("latent"):
        factor = backbone.downsampling
        if images.shape[-1] % factor or images.shape[-2] % factor:
            raise ValueError(
                f"image size {images.shape[-2]}x{images.shape[-1]} must be a multiple of the "
                f"VAE's factor {factor} in latent modes"
            )
    x_init = images.detach()
    settings = {"solver": asdict(config), "edict": asdict(edict_config)}
    if config.mode.startswith("pixel"):
        result = _pixel_solve(priors, x_init, config, quiet, description)
    else:
        seeds = seeds if seeds is not None else [config.seed] * batch
        cond = backbone.condition(x_init)  # image embeddings: once per image per solve
        if inversion is None:
            inversion = invert_images(backbone, x_init, edict_config, seeds, cond)
        elif inversion[0].shape != inversion[1].shape or inversion[0].shape[0] != batch:
            raise ValueError(f"inversion holds {inversion[0].shape[0]} pairs for {batch} images")
        result = _latent_solve(
            backbone, priors, x_init, cond, config, edict_config, inversion, quiet, description
        )
    result.config = settings
    return result


def invert_images(
    backbone, images: torch.Tensor, edict_config=edict.EdictConfig(), seeds=None, cond=None
):
    """Alg. 1 line 2: encode each image (seeded posterior sample or mean) and invert it with
    EDICT (Eqs. 12-15) to its noise pair (x_T, y_T), each (B, C, h, w). Independent of the
    prior and of lambda, so the workflow inverts each image once and reuses it. (No autograd
    graph is built: the images and the frozen networks do not require gradients. Running it
    under ``torch.no_grad`` would let torch pick other float32 kernels than a solve does.)"""
    seeds = seeds if seeds is not None else [0] * images.shape[0]
    schedule = edict.make_schedule(edict_config)
    cond = cond if cond is not None else backbone.condition(images)
    latent = backbone.encode(images, seeds)
    return edict.invert(backbone.eps, latent, latent, schedule, cond)


def _latent_solve(
    backbone, priors, x_init, cond, config, edict_config, inversion, quiet, description
):
    batch = x_init.shape[0]
    schedule = edict.make_schedule(edict_config)
    # One memory layout whether the pair was just computed or loaded from a file (torch picks
    # float32 kernels by layout, so a stored inversion reproduces a fresh solve exactly).
    x_T, y_T = (t.to(device=x_init.device).contiguous() for t in inversion)
    momentum = torch.zeros_like(torch.cat([x_T, y_T]))
    pair_priors = priors + priors
    pair_init = torch.cat([x_init, x_init])
    history = []
    bar = tqdm(range(config.iters), desc=description, disable=quiet, leave=False)
    for iteration in bar:
        noise = torch.cat([x_T, y_T]).requires_grad_(True)
        z_x, z_y = edict.denoise(  # Alg. 1 line 4
            backbone.eps, noise[:batch], noise[batch:], schedule, cond, config.gradient
        )
        pair = backbone.decode(torch.cat([z_x, z_y]))
        loss, score, raw, fid = objective(pair, pair_init, pair_priors, config)  # lines 5-6
        loss = _pair_mean(loss, batch)  # line 7
        _check_finite(iteration, "loss", loss)
        (grad,) = torch.autograd.grad(loss.sum(), noise)  # lines 8-9
        _check_finite(iteration, "gradient", grad[:batch], grad[batch:])
        if config.grad_clip is not None:
            grad = grad.clamp(-config.grad_clip, config.grad_clip)
        momentum = config.momentum * momentum + grad  # line 10
        updated = noise.detach() - config.lr * momentum  # line 11
        _check_finite(iteration, "latent", updated[:batch], updated[batch:])
        x_T, y_T = updated[:batch], updated[batch:]
        record = _record(
            loss, _pair_mean(score, batch), _pair_mean(raw, batch), _pair_mean(fid, batch)
        )
        history.append({"iteration": iteration, **record})
        bar.set_postfix(
            loss=f"{loss.mean():.4g}",
            score=f"{_pair_mean(score, batch).mean():.4f}",
            fidelity=f"{_pair_mean(fid, batch).mean():.4g}",
        )
    with torch.no_grad():  # Alg. 1 line 13
        z_x, z_y = edict.denoise(backbone.eps, x_T, y_T, schedule, cond)
        pair = backbone.decode(torch.cat([z_x, z_y]))
        loss, score, raw, fid = objective(pair, pair_init, pair_priors, config)
    _check_finite(config.iters, "output", pair[:batch], pair[batch:])
    final = {
        "loss": _pair_mean(loss, batch).tolist(),
        "x": _record(loss[:batch], score[:batch], raw[:batch], fid[:batch]),
        "y": _record(loss[batch:], score[batch:], raw[batch:], fid[batch:]),
    }
    images = pair.clamp(0, 1)
    return SolveResult(images[:batch], images[batch:], history, final, (x_T, y_T))


def _pixel_solve(priors, x_init, config, quiet, description):
    pixels = x_init.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([pixels], lr=config.pixel_lr)
    history = []
    bar = tqdm(range(config.iters), desc=description, disable=quiet, leave=False)
    for iteration in bar:
        loss, score, raw, fid = objective(pixels, x_init, priors, config)
        _check_finite(iteration, "loss", loss)
        optimizer.zero_grad()
        loss.sum().backward()
        _check_finite(iteration, "gradient", pixels.grad)
        optimizer.step()
        with torch.no_grad():
            pixels.clamp_(0, 1)
        _check_finite(iteration, "image", pixels.detach())
        history.append({"iteration": iteration, **_record(loss, score, raw, fid)})
        bar.set_postfix(loss=f"{loss.mean():.4g}", score=f"{score.mean():.4f}")
    with torch.no_grad():
        loss, score, raw, fid = objective(pixels, x_init, priors, config)
    final = {"loss": loss.tolist(), "x": _record(loss, score, raw, fid)}
    return SolveResult(pixels.detach(), None, history, final, None)
