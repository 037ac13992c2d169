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

Gradients of h (``denoise(..., gradient=...)``) never keep the activations of all T steps
(``dlmap.inversion.reversible``): ``"recompute"`` recomputes one step at a time, and
``"reversible"`` reconstructs each step's input with Eqs. 12-15, reusing the two network
evaluations of that reconstruction for the vector-Jacobian products.

``Edict`` is the bijection the solver uses (``dlmap.inversion.bijections.make_bijection``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from diffusers import DDIMScheduler

from dlmap.inversion import reversible
from dlmap.inversion.config import InversionConfig
from dlmap.inversion.reversible import EpsFn


def schedule_alphas(steps: int, scheduler: dict, steps_offset: int = 0):
    """The DDIM schedule every bijection runs on: a diffusers ``DDIMScheduler``'s ``steps``
    timesteps t_0 > ... > t_{T-1} and the ᾱ of the states they lead to, ᾱ(t_0), ...,
    ᾱ(t_{T-1}) and the scheduler's final ᾱ (float64)."""
    config = DDIMScheduler(**{**scheduler, "steps_offset": steps_offset})
    config.set_timesteps(steps)
    alphas = config.alphas_cumprod.double()
    timesteps = [int(t) for t in config.timesteps.tolist()]
    alpha_bar = [float(alphas[t]) for t in timesteps] + [float(config.final_alpha_cumprod)]
    return timesteps, alpha_bar


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

    # the chain of steps that dlmap.inversion.reversible runs and differentiates
    def step(self, eps: EpsFn, pair, k: int, cond=None):
        return denoise_step(eps, *pair, k, self, cond)

    def step_vjp(self, eps: EpsFn, pair, grad, k: int, cond=None):
        return reversible.step_vjp_by_autograd(self, eps, pair, grad, k, cond)

    def reverse_vjp(self, eps: EpsFn, pair, grad, k: int, cond=None):
        x, y, grad_x, grad_y = _reversible_step_backward(eps, *pair, *grad, k, self, cond)
        return (x, y), (grad_x, grad_y)


def make_schedule(config: InversionConfig = InversionConfig()) -> EdictSchedule:
    """DDIM coefficients a_t, b_t (Eq. 4) of each step t_k -> t_{k+1} (the last to the final ᾱ)
    on ``schedule_alphas``, in float64."""
    timesteps, alpha_bar = schedule_alphas(config.steps, config.scheduler, config.steps_offset)
    a, b = [], []
    for alpha_t, alpha_prev in zip(alpha_bar[:-1], alpha_bar[1:], strict=True):
        a.append(math.sqrt(alpha_prev / alpha_t))
        b.append(math.sqrt(1 - alpha_prev) - math.sqrt(alpha_prev * (1 - alpha_t) / alpha_t))
    swapped = tuple(
        config.edict.order == "alternating" and k % 2 == 1 for k in range(len(timesteps))
    )
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
    return reversible.run(schedule, eps, (x_T, y_T), cond, gradient)


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


class Edict:
    """EDICT as the solver's bijection: its noise side is the pair (x_T, y_T), and both
    members of its image side, (x_0, y_0), are decoded (Alg. 1 averages over them)."""

    name = "edict"
    outputs = 2

    def __init__(self, config: InversionConfig):
        self.config = config
        self.schedule = make_schedule(config)

    @property
    def calls(self) -> int:
        """Network calls of one pass through h: two per step (Eqs. 8-9)."""
        return 2 * len(self.schedule.timesteps)

    @property
    def inversion_calls(self) -> int:
        """Network calls of one inversion (Eqs. 12-15): one pass."""
        return self.calls

    def invert_latent(self, eps: EpsFn, latent, cond=None):
        """A clean latent -> the noise pair (x_T, y_T), from (latent, latent)."""
        return invert(eps, latent, latent, self.schedule, cond)

    def denoise(self, eps: EpsFn, first, second, cond=None, gradient="recompute"):
        """The noise pair -> the clean latents to decode, (x_0, y_0)."""
        return denoise(eps, first, second, self.schedule, cond, gradient)
