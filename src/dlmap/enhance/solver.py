"""Diffusion-latent MAP estimation (paper Alg. 1, Eq. 17) and the paper's three ablations.

Modes (``SolverConfig.mode``):

* ``"latent-map"``   Eq. 17: minimise D0(h(z), x_init) - lambda q(h(z)) over the noise pair z.
* ``"latent-direct"`` lambda -> infinity (Fig. 8): maximise q(h(z)) alone.
* ``"pixel-map"``    Eq. 2 (Figs. 1c, 2): minimise MSE(x, x_init) - lambda q(x) over pixels.
* ``"pixel-direct"`` Eq. 1 (Fig. 1b): maximise q(x) over pixels.

Latent modes follow the authors' code: decoded images are clamped to [0, 1] before the prior
and the fidelity term see them, the loss is averaged over the pair (x, y) (Alg. 1 lines 5-7),
the gradient is clipped element-wise (default +-1e-3), then m = rho m + g and z = z - alpha m
(Alg. 1 lines 10-11 with alpha = 2, rho = 0.9). q is the calibrated score of Eq. 21 on the
configured ``ScoreScale`` (default: the authors' 0-100, xi1 = 100; ``"printed"``: 0-1); images
are in [0, 1]; D0 is Eq. 20 on those images. These units fix what lambda = 0.01 means.

The balance of the two terms is measured, not assumed: every iteration records the norms of
the image-space gradients of the fidelity term and of lambda q (one backward through the prior
and the fidelity term, whose result is then carried back through h, so it costs nothing
extra), and the prior's share ||lambda grad q|| / (||grad D0|| + ||lambda grad q||).

Early stopping as in the authors' MAP script (latent-map mode only): a problem stops once the
calibrated score of x reaches ``stop_score`` (default 90 on the 0-100 scale, 0.9 on the
printed one), where the prior's Eq. 21 constants are fitted (``PriorInfo.calibration_fitted``);
on provisional constants the threshold would be arbitrary, so it never applies there. In a
batch a stopped problem's noise pair freezes while the others go on; ``iters`` stays the cap.

``final`` describes the images as written: clamped to [0, 1] and rounded to 8 bits, as the PNG
stores them (``dlmap.images.quantise``).

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

from dlmap import progress
from dlmap.enhance import fidelity
from dlmap.errors import DlmapError, InputError
from dlmap.images import quantise
from dlmap.inversion import registry
from dlmap.inversion.config import InversionConfig
from dlmap.priors.base import Prior
from dlmap.priors.calibration import calibrate
from dlmap.settings import SolverConfig


class NonFiniteError(DlmapError, FloatingPointError):
    """A loss, gradient or latent became NaN or infinite during a solve."""


@dataclass
class SolveResult:
    """x*, y* in [0, 1] (y is None in pixel modes), the noise pair, and the trajectory.

    history[i] holds, per problem, the loss, calibrated score, raw score and fidelity of
    iteration i, evaluated before its update (averaged over x and y in latent modes), the
    image-space gradient norms of the fidelity term and of lambda q, the prior's share, and
    whether the problem was still being solved (``active``: False once it stopped early);
    ``final`` holds the loss and scores of the returned images as written (8-bit).
    ``early_stop`` holds, per problem, whether early stopping applied and when it fired.
    """

    x: torch.Tensor
    y: torch.Tensor | None
    history: list[dict] = field(default_factory=list)
    final: dict = field(default_factory=dict)
    noise: tuple[torch.Tensor, torch.Tensor] | None = None
    config: dict = field(default_factory=dict)
    early_stop: dict = field(default_factory=dict)


def _score(priors: list[Prior], images: torch.Tensor, xi1: float):
    """Raw and calibrated scores (maximum ``xi1``), each image scored by its own prior."""
    raw = torch.empty(images.shape[0], dtype=images.dtype, device=images.device)
    calibrated = torch.empty_like(raw)
    groups: dict[int, list[int]] = {}
    for index, prior in enumerate(priors):
        groups.setdefault(id(prior), []).append(index)
    for indices in groups.values():
        prior = priors[indices[0]]
        scores = prior(images[indices]).to(images.dtype)
        if scores.shape != (len(indices),):
            raise InputError(
                f"prior {prior.name!r} returned shape {tuple(scores.shape)} for "
                f"{len(indices)} images; a prior must return one score per image"
            )
        index = (torch.tensor(indices, device=images.device),)
        info = prior.info
        raw = raw.index_put(index, scores)
        calibrated = calibrated.index_put(
            index, calibrate(scores, info.xi3, info.xi4, info.higher_is_better, xi1)
        )
    return raw, calibrated


def term_weights(config: SolverConfig) -> tuple[float, float]:
    """(weight of D0, weight of q) in the energy: (1, lambda) for the MAP modes (Eqs. 2 and
    17), (0, 1) for the direct modes (Eqs. 1 and 17 with lambda -> infinity)."""
    return (0.0, 1.0) if config.mode.endswith("direct") else (1.0, config.lam)


def objective(images, x_init, priors, config: SolverConfig):
    """Per-problem energy E(x | x_init) and its parts, each of shape (B,).

    latent-map: Eq. 20 - lambda q (Eq. 17); pixel-map: MSE - lambda q (Eq. 2);
    direct modes: -q (Eqs. 1 and 17 with lambda -> infinity). Latent modes score images as
    given (the solver clamps decoded images to [0, 1] first).
    """
    raw, score = _score(priors, images, config.xi1)
    if config.mode == "pixel-map":
        fid = fidelity.mse(images, x_init)
    else:
        fid = fidelity.downsampled_l2(images, x_init, config.downsampling)
    fid_weight, prior_weight = term_weights(config)
    if not fid_weight:  # direct modes: D0 is reported, never differentiated (0 at x = x_init)
        fid = fid.detach()
    loss = fid_weight * fid - prior_weight * score
    return loss, score, raw, fid


def term_gradients(images, x_init, priors, config: SolverConfig):
    """The energy's parts on ``images`` (detached) and its gradient with respect to them.

    Returns (loss, score, raw, fid, grad, grad_fidelity, grad_prior): grad is the gradient of
    the summed per-image losses; grad_fidelity and grad_prior are the per-image L2 norms of the
    gradients of the weighted terms (D0, and lambda q; q alone in the direct modes), from one
    backward through the prior and the fidelity term only.
    """
    image = images.detach().requires_grad_(True)
    loss, score, raw, fid = objective(image, x_init, priors, config)
    fid_weight, prior_weight = term_weights(config)
    if fid_weight:
        (fid_grad,) = torch.autograd.grad(fid.sum(), image, retain_graph=True)
        fid_grad = fid_weight * fid_grad
    else:
        fid_grad = torch.zeros_like(image)
    (prior_grad,) = torch.autograd.grad(prior_weight * score.sum(), image)
    norms = [torch.linalg.vector_norm(g.flatten(1), dim=1) for g in (fid_grad, prior_grad)]
    detached = [value.detach() for value in (loss, score, raw, fid)]
    return (*detached, fid_grad - prior_grad, *norms)


def prior_share(grad_fidelity: torch.Tensor, grad_prior: torch.Tensor) -> torch.Tensor:
    """||lambda grad q|| / (||grad D0|| + ||lambda grad q||) per problem (0 when both are 0)."""
    total = grad_fidelity + grad_prior
    return torch.where(total > 0, grad_prior / total.clamp_min(1e-30), torch.zeros_like(total))


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


def _gradient_record(grad_fidelity, grad_prior, active) -> dict:
    return {
        "grad_fidelity": grad_fidelity.tolist(),
        "grad_prior": grad_prior.tolist(),
        "prior_share": prior_share(grad_fidelity, grad_prior).tolist(),
        "active": active.tolist(),
    }


def _early_stop_plan(priors, config: SolverConfig) -> dict:
    """Per problem: whether early stopping applies, and why not where it does not."""
    reasons = []
    for prior in priors:
        if config.mode != "latent-map":
            reasons.append(f"not in {config.mode} mode (ablations run every iteration)")
        elif not config.early_stop:
            reasons.append("switched off")
        elif not prior.info.calibration_fitted:
            reasons.append("the prior's Eq. 21 constants are provisional, not fitted to MOS")
        else:
            reasons.append("")
    return {
        "threshold": config.stop_threshold,
        "applied": [not reason for reason in reasons],
        "reason": [reason or "applies" for reason in reasons],
        "iteration": [None] * len(priors),
    }


def _mean_over(n: int, values: torch.Tensor, batch: int) -> torch.Tensor:
    """The mean over the n decoded outputs of each problem (EDICT's x and y: Alg. 1 line 7)."""
    return values.view(n, batch, *values.shape[1:]).mean(dim=0)


def map_solve(
    backbone,
    priors: Prior | list[Prior],
    images: torch.Tensor,
    config: SolverConfig = SolverConfig(),
    edict_config: InversionConfig = InversionConfig(),
    seeds: list[int] | None = None,
    quiet: bool = False,
    description: str = "MAP",
    inversion: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> SolveResult:
    """Enhance a batch of images (B, 3, H, W) in [0, 1], one prior per image (Alg. 1).

    ``backbone`` is a ``dlmap.diffusion.backbones.Backbone`` (unused in pixel modes). ``seeds``
    seeds
    each image's VAE posterior sample (default: ``config.seed`` for all). ``inversion``: the
    noise pair (x_T, y_T) of Alg. 1 line 2 from ``invert_images`` for these images, backbone,
    seeds and EDICT settings, so one inversion serves every prior (computed here if None).
    Raises ``NonFiniteError`` naming the iteration if a loss, gradient or latent stops being
    finite.
    """
    batch = images.shape[0]
    priors = list(priors) if isinstance(priors, (list, tuple)) else [priors] * batch
    if len(priors) != batch:
        raise InputError(f"got {len(priors)} priors for {batch} images")
    if images.dim() != 4 or images.shape[1] != 3:
        raise InputError(f"images must be (B, 3, H, W), got {tuple(images.shape)}")
    if not torch.isfinite(images).all() or images.min() < 0 or images.max() > 1:
        raise InputError("images must be finite RGB values in [0, 1]")
    if config.mode.startswith("latent"):
        factor = backbone.downsampling
        if images.shape[-1] % factor or images.shape[-2] % factor:
            raise InputError(
                f"image size {images.shape[-2]}x{images.shape[-1]} must be a multiple of the "
                f"VAE's factor {factor} in latent modes"
            )
    x_init = images.detach()
    settings = {"solver": asdict(config), "edict": edict_config.to_record()}
    if config.mode.startswith("pixel"):
        result = _pixel_solve(priors, x_init, config, quiet, description)
    else:
        seeds = seeds if seeds is not None else [config.seed] * batch
        cond = backbone.condition(x_init)  # image embeddings: once per image per solve
        if inversion is None:
            inversion = invert_images(backbone, x_init, edict_config, seeds, cond)
        elif inversion[0].shape != inversion[1].shape or inversion[0].shape[0] != batch:
            raise InputError(f"inversion holds {inversion[0].shape[0]} pairs for {batch} images")
        result = _latent_solve(
            backbone, priors, x_init, cond, config, edict_config, inversion, quiet, description
        )
    result.config = settings
    return result


def invert_images(
    backbone, images: torch.Tensor, edict_config=InversionConfig(), seeds=None, cond=None
):
    """Alg. 1 line 2: encode each image (seeded posterior sample or mean) and invert it with
    EDICT (Eqs. 12-15) to its noise pair (x_T, y_T), each (B, C, h, w), or with the bijection
    ``edict_config.bijection`` names to its pair (s_0, s_1) (``dlmap.inversion.bijections``).
    Independent of the prior and of lambda, so the workflow inverts each image once and
    reuses it. (No autograd graph is built: the images and the frozen networks do not require
    gradients. Running it under ``torch.no_grad`` would let torch pick other float32 kernels
    than a solve does.)"""
    seeds = seeds if seeds is not None else [0] * images.shape[0]
    bijection = registry.make_bijection(edict_config)
    cond = cond if cond is not None else backbone.condition(images)
    latent = backbone.encode(images, seeds)
    return bijection.invert_latent(backbone.eps, latent, cond)


def _latent_solve(
    backbone, priors, x_init, cond, config, edict_config, inversion, quiet, description
):
    batch = x_init.shape[0]
    bijection = registry.make_bijection(edict_config)
    n = bijection.outputs  # EDICT's pair (x, y), or x alone (BDIA, O-BELM): Alg. 1's mean
    # The noise side's pair (EDICT's x_T, y_T; BDIA's and O-BELM's s_0, s_1), in one memory
    # layout whether it was just computed or loaded from a file (torch picks float32 kernels
    # by layout, so a stored inversion reproduces a fresh solve exactly).
    first, second = (t.to(device=x_init.device).contiguous() for t in inversion)
    momentum = torch.zeros_like(torch.cat([first, second]))
    pair_priors = priors * n
    pair_init = torch.cat([x_init] * n)
    stops = _early_stop_plan(priors, config)
    applies = torch.tensor(stops["applied"], device=x_init.device)
    active = torch.ones(batch, dtype=torch.bool, device=x_init.device)
    history = []
    bar = progress.bar(range(config.iters), quiet, desc=description, leave=False)
    for iteration in bar:
        noise = torch.cat([first, second]).requires_grad_(True)
        latents = bijection.denoise(  # Alg. 1 line 4
            backbone.eps, noise[:batch], noise[batch:], cond, config.gradient
        )
        pair = backbone.decode(torch.cat(latents)).clamp(0, 1)
        loss, score, raw, fid, image_grad, grad_fid, grad_prior = term_gradients(
            pair, pair_init, pair_priors, config
        )  # lines 5-6, and the gradient of their sum with respect to the decoded pair
        loss = _mean_over(n, loss, batch)  # line 7
        _check_finite(iteration, "loss", loss)
        reached = applies & active & (score[:batch] >= config.stop_threshold)
        for index in reached.nonzero().flatten().tolist():
            stops["iteration"][index] = iteration
        record = _record(
            loss, _mean_over(n, score, batch), _mean_over(n, raw, batch), _mean_over(n, fid, batch)
        )
        gradients = _gradient_record(
            _mean_over(n, grad_fid, batch), _mean_over(n, grad_prior, batch), active.clone()
        )
        history.append({"iteration": iteration, **record, **gradients})
        active = active & ~reached
        if not active.any():
            break
        (grad,) = torch.autograd.grad(pair, noise, image_grad / n)  # lines 8-9
        _check_finite(iteration, "gradient", grad[:batch], grad[batch:])
        if config.grad_clip is not None:
            grad = grad.clamp(-config.grad_clip, config.grad_clip)
        momentum = config.momentum * momentum + grad  # line 10
        moving = torch.cat([active, active]).view(-1, *[1] * (noise.dim() - 1))
        updated = torch.where(moving, noise.detach() - config.lr * momentum, noise.detach())
        _check_finite(iteration, "latent", updated[:batch], updated[batch:])  # line 11
        first, second = updated[:batch], updated[batch:]
        bar.set_postfix(
            loss=f"{loss.mean():.4g}",
            score=f"{_mean_over(n, score, batch).mean():.4g}",
            fidelity=f"{_mean_over(n, fid, batch).mean():.4g}",
            share=f"{_mean_over(n, prior_share(grad_fid, grad_prior), batch).mean():.2%}",
        )
    with torch.no_grad():  # Alg. 1 line 13
        latents = bijection.denoise(backbone.eps, first, second, cond)
        pair = backbone.decode(torch.cat(latents))
    _check_finite(config.iters, "output", *pair.split(batch))
    images = quantise(pair.clamp(0, 1))  # exactly what the PNGs store
    with torch.no_grad():
        loss, score, raw, fid = objective(images, pair_init, pair_priors, config)
    final = {
        "loss": _mean_over(n, loss, batch).tolist(),
        "x": _record(loss[:batch], score[:batch], raw[:batch], fid[:batch]),
    }
    if n == 2:
        final["y"] = _record(loss[batch:], score[batch:], raw[batch:], fid[batch:])
    y = images[batch:] if n == 2 else None
    return SolveResult(images[:batch], y, history, final, (first, second), early_stop=stops)


def _pixel_solve(priors, x_init, config, quiet, description):
    pixels = x_init.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([pixels], lr=config.pixel_lr)
    active = torch.ones(x_init.shape[0], dtype=torch.bool)
    history = []
    bar = progress.bar(range(config.iters), quiet, desc=description, leave=False)
    for iteration in bar:
        loss, score, raw, fid, grad, grad_fid, grad_prior = term_gradients(
            pixels, x_init, priors, config
        )
        _check_finite(iteration, "loss", loss)
        _check_finite(iteration, "gradient", grad)
        optimizer.zero_grad()
        pixels.grad = grad
        optimizer.step()
        with torch.no_grad():
            pixels.clamp_(0, 1)
        _check_finite(iteration, "image", pixels.detach())
        history.append(
            {
                "iteration": iteration,
                **_record(loss, score, raw, fid),
                **_gradient_record(grad_fid, grad_prior, active),
            }
        )
        bar.set_postfix(loss=f"{loss.mean():.4g}", score=f"{score.mean():.4g}")
    images = quantise(pixels.detach())  # exactly what the PNG stores
    with torch.no_grad():
        loss, score, raw, fid = objective(images, x_init, priors, config)
    final = {"loss": loss.tolist(), "x": _record(loss, score, raw, fid)}
    stops = _early_stop_plan(priors, config)
    return SolveResult(images, None, history, final, None, early_stop=stops)
