"""EDICT: exact diffusion inversion via coupled transformations (paper Sec. III-A, Eqs. 6-15).

Two coupled latents (x, y) are denoised together. One step of the denoising map h is

    x'_t    = a_t x_t + b_t eps(y_t; t)              (Eq. 8)
    y'_t    = a_t y_t + b_t eps(x'_t; t)             (Eq. 9)
    x_{t-1} = p x'_t + (1 - p) y'_t                  (Eq. 10)
    y_{t-1} = p y'_t + (1 - p) x_{t-1}               (Eq. 11)

and its exact algebraic inverse, the noising map d, is Eqs. 12-15 applied in reverse order.
a_t and b_t are DDIM's coefficients (Eq. 4) computed from a diffusers ``DDIMScheduler``.

EDICT's reference code and the authors' MAP code exchange the roles of x and y in Eqs. 8-9 on
every other step (``order="alternating"``, the default: odd steps update y first), while the
mixing of Eqs. 10-11 always updates x first; the paper's equations show the ``"fixed"`` order.

Gradients of h (``denoise(..., gradient=...)``) never keep the activations of all T steps:

* ``"recompute"`` stores the T input pairs of the steps (tiny) and recomputes one step at a
  time in the backward pass (the DOODL approach);
* ``"reversible"`` stores nothing but the output and reconstructs each step's input with the
  exact inverse, reusing the two network evaluations of that reconstruction for the
  vector-Jacobian products, so only one network graph is alive at a time;
* ``"autograd"`` is plain autograd through all steps (memory grows with T; for comparison).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from diffusers import DDIMScheduler

from dlmap.errors import InputError
from dlmap.settings import GRADIENTS, EdictConfig

EpsFn = Callable[[torch.Tensor, int, Any], torch.Tensor]
"""A noise-prediction network eps(latent, t, condition) -> noise of the latent's shape."""


@dataclass(frozen=True)
class EdictSchedule:
    """Per-step constants of h, in the order h applies them (noise -> image).

    timesteps[k], a[k], b[k] are t, a_t, b_t of Eq. 4 for step k; swapped[k] says whether step k
    updates y first (alternating order).
    """

    timesteps: tuple[int, ...]
    a: tuple[float, ...]
    b: tuple[float, ...]
    mix: float
    swapped: tuple[bool, ...]

    def __len__(self) -> int:
        return len(self.timesteps)


def make_schedule(config: EdictConfig = EdictConfig()) -> EdictSchedule:
    """DDIM coefficients a_t, b_t (Eq. 4) from a diffusers ``DDIMScheduler``, in float64."""
    scheduler = DDIMScheduler(**{**config.scheduler, "steps_offset": config.steps_offset})
    scheduler.set_timesteps(config.steps)
    alphas = scheduler.alphas_cumprod.double()
    final = float(scheduler.final_alpha_cumprod)
    stride = scheduler.config.num_train_timesteps // config.steps
    timesteps, a, b = [], [], []
    for t in scheduler.timesteps.tolist():
        alpha_t = float(alphas[t])
        alpha_prev = float(alphas[t - stride]) if t - stride >= 0 else final
        timesteps.append(int(t))
        a.append(math.sqrt(alpha_prev / alpha_t))
        b.append(math.sqrt(1 - alpha_prev) - math.sqrt(alpha_prev * (1 - alpha_t) / alpha_t))
    swapped = tuple(config.order == "alternating" and k % 2 == 1 for k in range(len(timesteps)))
    return EdictSchedule(tuple(timesteps), tuple(a), tuple(b), config.mixing, swapped)


# --- one step of h and of d ----------------------------------------------------------------


def denoise_step(eps: EpsFn, x, y, k: int, schedule: EdictSchedule, cond=None):
    """Step k of h: (x_t, y_t) -> (x_{t-1}, y_{t-1}), Eqs. 8-11.

    On a swapped step (alternating order) Eqs. 8-9 update y first, as EDICT's reference code
    does; the mixing of Eqs. 10-11 always updates x first.
    """
    t, a, b, p = schedule.timesteps[k], schedule.a[k], schedule.b[k], schedule.mix
    if schedule.swapped[k]:
        y_mid = a * y + b * eps(x, t, cond)  # Eq. 8, roles exchanged
        x_mid = a * x + b * eps(y_mid, t, cond)  # Eq. 9, roles exchanged
    else:
        x_mid = a * x + b * eps(y, t, cond)  # Eq. 8
        y_mid = a * y + b * eps(x_mid, t, cond)  # Eq. 9
    x_new = p * x_mid + (1 - p) * y_mid  # Eq. 10
    y_new = p * y_mid + (1 - p) * x_new  # Eq. 11
    return x_new, y_new


def _unmix(x_new, y_new, p):
    """Eqs. 12-13: undo the mixing."""
    y_mid = (y_new - (1 - p) * x_new) / p  # Eq. 12
    x_mid = (x_new - (1 - p) * y_mid) / p  # Eq. 13
    return x_mid, y_mid


def invert_step(eps: EpsFn, x, y, k: int, schedule: EdictSchedule, cond=None):
    """Inverse of step k of h: (x_{t-1}, y_{t-1}) -> (x_t, y_t), Eqs. 12-15."""
    t, a, b, p = schedule.timesteps[k], schedule.a[k], schedule.b[k], schedule.mix
    x_mid, y_mid = _unmix(x, y, p)
    if schedule.swapped[k]:
        x_prev = (x_mid - b * eps(y_mid, t, cond)) / a  # Eq. 14, roles exchanged
        y_prev = (y_mid - b * eps(x_prev, t, cond)) / a  # Eq. 15, roles exchanged
    else:
        y_prev = (y_mid - b * eps(x_mid, t, cond)) / a  # Eq. 14
        x_prev = (x_mid - b * eps(y_prev, t, cond)) / a  # Eq. 15
    return x_prev, y_prev


# --- the maps h and d ----------------------------------------------------------------------


@torch.no_grad()
def invert(eps: EpsFn, x0, y0, schedule: EdictSchedule, cond=None):
    """d: the image-latent pair (x_0, y_0) -> the noise pair (x_T, y_T) (Eqs. 12-15)."""
    x, y = x0, y0
    for k in reversed(range(len(schedule))):
        x, y = invert_step(eps, x, y, k, schedule, cond)
    return x, y


def denoise(eps: EpsFn, x_T, y_T, schedule: EdictSchedule, cond=None, gradient="recompute"):
    """h: the noise pair (x_T, y_T) -> the image-latent pair (x_0, y_0) (Eqs. 8-11).

    Differentiable with respect to (x_T, y_T) when grad mode is on and either requires grad;
    ``gradient`` picks how (see the module docstring). Network weights should be frozen:
    gradients reach only the noise pair, never ``cond``.
    """
    if gradient not in GRADIENTS:
        raise InputError(f"gradient must be one of {GRADIENTS}, got {gradient!r}")
    needs_grad = torch.is_grad_enabled() and (x_T.requires_grad or y_T.requires_grad)
    if needs_grad and gradient == "autograd":
        x, y = x_T, y_T
        for k in range(len(schedule)):
            x, y = denoise_step(eps, x, y, k, schedule, cond)
        return x, y
    if needs_grad:
        return _Denoise.apply(x_T, y_T, eps, schedule, cond, gradient)
    with torch.no_grad():
        x, y = x_T, y_T
        for k in range(len(schedule)):
            x, y = denoise_step(eps, x, y, k, schedule, cond)
        return x, y


class _Denoise(torch.autograd.Function):
    """h with activation memory independent of T (recompute or reversible backward)."""

    @staticmethod
    def forward(ctx, x_T, y_T, eps, schedule, cond, gradient):
        x, y = x_T.detach(), y_T.detach()
        inputs = []
        for k in range(len(schedule)):
            if gradient == "recompute":
                inputs.append((x, y))
            x, y = denoise_step(eps, x, y, k, schedule, cond)
        ctx.eps, ctx.schedule, ctx.cond, ctx.gradient = eps, schedule, cond, gradient
        ctx.inputs = inputs
        ctx.save_for_backward(x, y)
        return x, y

    @staticmethod
    def backward(ctx, grad_x, grad_y):
        eps, schedule, cond = ctx.eps, ctx.schedule, ctx.cond
        grad_x = torch.zeros_like(ctx.saved_tensors[0]) if grad_x is None else grad_x
        grad_y = torch.zeros_like(ctx.saved_tensors[1]) if grad_y is None else grad_y
        if ctx.gradient == "recompute":
            for k in reversed(range(len(schedule))):
                x, y = (z.detach().requires_grad_(True) for z in ctx.inputs[k])
                with torch.enable_grad():
                    x_out, y_out = denoise_step(eps, x, y, k, schedule, cond)
                grad_x, grad_y = torch.autograd.grad((x_out, y_out), (x, y), (grad_x, grad_y))
            ctx.inputs = None
        else:
            x, y = ctx.saved_tensors
            for k in reversed(range(len(schedule))):
                x, y, grad_x, grad_y = _reversible_step_backward(
                    eps, x, y, grad_x, grad_y, k, schedule, cond
                )
        return grad_x, grad_y, None, None, None, None


def _reversible_step_backward(eps, x, y, grad_x, grad_y, k, schedule, cond):
    """Reconstruct step k's input by Eqs. 12-15 and pull the gradient back through step k.

    Write the step as mixing after coupling, where u is the latent updated first (x, or y on a
    swapped step): u' = a u + b eps(v), v' = a v + b eps(u'). The two network evaluations of
    the reconstruction, eps(u') and eps(v), are exactly the two of the forward step, so their
    vector-Jacobian products give the step's gradient:
    mixing: G_xn = g_xn + (1-p) g_yn, g_y' = p g_yn + (1-p) G_xn, g_x' = p G_xn;
    coupling: G_u' = g_u' + b J_eps(u')^T g_v', g_v = a g_v' + b J_eps(v)^T G_u', g_u = a G_u'.
    """
    t, a, b, p = schedule.timesteps[k], schedule.a[k], schedule.b[k], schedule.mix
    x_mid, y_mid = _unmix(x, y, p)
    grad_x_new = grad_x + (1 - p) * grad_y
    grad_y_mid = p * grad_y + (1 - p) * grad_x_new
    grad_x_mid = p * grad_x_new
    swapped = schedule.swapped[k]
    u_mid, v_mid = (y_mid, x_mid) if swapped else (x_mid, y_mid)
    g_u_mid, g_v_mid = (grad_y_mid, grad_x_mid) if swapped else (grad_x_mid, grad_y_mid)

    u_mid = u_mid.detach().requires_grad_(True)
    with torch.enable_grad():
        eps_u = eps(u_mid, t, cond)
    (vjp_u,) = torch.autograd.grad(eps_u, u_mid, g_v_mid)
    v = ((v_mid - b * eps_u.detach()) / a).detach().requires_grad_(True)  # Eq. 14
    g_u_mid = g_u_mid + b * vjp_u

    with torch.enable_grad():
        eps_v = eps(v, t, cond)
    (vjp_v,) = torch.autograd.grad(eps_v, v, g_u_mid)
    u = (u_mid.detach() - b * eps_v.detach()) / a  # Eq. 15
    g_v = a * g_v_mid + b * vjp_v
    g_u = a * g_u_mid
    v = v.detach()
    if swapped:
        return v, u, g_v, g_u
    return u, v, g_u, g_v
