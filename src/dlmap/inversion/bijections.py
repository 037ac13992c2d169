"""Exact inversion with one network call per step: BDIA and O-BELM as two-step bijections.

Both are linear two-step recurrences of DDIM's probability-flow ODE. In DDIM's own variables,
x̄ = z / sqrt(ᾱ) and σ̄ = sqrt((1 - ᾱ) / ᾱ), the ODE reads dx̄/dσ̄ = eps(z, t) and one DDIM
step is Euler's: x̄_next = x̄ + (σ̄_next - σ̄) eps. With states s_0, s_1, ..., s_T at the
schedule's times (s_0 the noisiest, s_T the clean latent at the final ᾱ), step k (k = 1..T-1)
makes s_{k+1} from the two before it with one network evaluation, eps(s_k, t_k):

    x̄_{k+1} = A_k x̄_{k-1} + (1 - A_k) x̄_k - C_k eps(s_k, t_k),    C_k = h_k + A_k H_k,

where h_k = σ̄_k - σ̄_{k+1} is the step taken and H_k = σ̄_{k-1} - σ̄_k the one before (both
positive). C_k = h_k + A_k H_k makes every member consistent (exact when eps is constant).
Its exact inverse uses the same evaluation, since s_k is known on both sides:

    x̄_{k-1} = (x̄_{k+1} - (1 - A_k) x̄_k + C_k eps(s_k, t_k)) / A_k.

* **BDIA** (Zhang, Lewis, Kleijn, ECCV 2024): its published update, written on the raw latent,
  is s_{k+1} = gamma s_{k-1} - gamma D_{k->k-1}(s_k) + D_{k->k+1}(s_k), with D_{k->j} the DDIM
  step from state k to state j. In x̄ that is A_k = gamma sqrt(ᾱ_{k-1} / ᾱ_{k+1}). gamma = 0 is
  DDIM (not invertible), gamma = 1 the symmetric rule. The inverse divides the raw latent by
  gamma at every step: gamma^-(T-1) over the chain.
* **O-BELM** (Wang et al., NeurIPS 2024): A_k = h_k^2 / H_k^2, the coefficients that make the
  local error third order (exact for eps linear in σ̄). Its inverse multiplies by H_k^2 / h_k^2
  at step k (H_k = h_{k-1}), which over the whole chain telescopes to (h_0 / h_{T-1})^2.

Here T counts the chain's intervals. On SD2's schedule with ``final-alpha`` that is one fewer
than the configured DDIM steps (the zero-length last interval is dropped, see below), so a
20-step configuration runs T = 19 intervals and 18 network calls per pass.

The bijection's state is the pair of consecutive states the recurrence needs: (s_0, s_1) on the
noise side and (s_{T-1}, s_T) on the image side; the clean latent is s_T. ``denoise`` maps the
first to the second with T - 1 network calls (EDICT: 2T), ``invert`` the second to the first.
The first step has no predecessor, so it is formed outside the bijection: in inversion of a
clean latent s_T, s_{T-1} is one DDIM inversion step from it (``ddim_inversion_step``); any
pair (s_0, s_1) is a valid starting state of generation. Once formed, a pair maps back and
forth exactly (up to round-off, which the inverse amplifies as above).

Where the chain ends (``ENDS``, docs/diffusion.md argues the default):

* ``final-alpha``: at the scheduler's final ᾱ (SD2: ᾱ at t = 0, as EDICT and BDIA's own sampler
  end), dropping a last interval of zero length; the first inversion step evaluates eps at
  its target timestep t_{T-1}, as diffusers' DDIM inversion does.
* ``alpha-one``: at ᾱ = 1, as BELM's official code ends both its samplers; the first inversion
  step evaluates eps(s_T, t = 1) at the clean end, as that code does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from dlmap.inversion import reversible
from dlmap.inversion.config import InversionConfig
from dlmap.inversion.edict import schedule_alphas
from dlmap.inversion.reversible import EpsFn

#: the timestep at which BELM's official code evaluates eps on the clean latent (ᾱ = 1)
CLEAN_END_TIMESTEP = 1


@dataclass(frozen=True)
class TwoStepSchedule:
    """Per-state constants: timesteps[k] and sqrt_alpha[k], sigma[k] (= σ̄) of state s_k
    (k = 0..T, the last where ``ends`` says, see ``make_two_step_schedule``), and A[k], C[k] of
    step k (k = 1..T-1; index 0 unused). ``name`` and ``gamma`` say how A was chosen;
    ``inversion_timestep`` is where the first inversion step evaluates eps on s_T."""

    name: str
    timesteps: tuple[int, ...]
    sqrt_alpha: tuple[float, ...]
    sigma: tuple[float, ...]
    A: tuple[float, ...]
    C: tuple[float, ...]
    gamma: float | None = None
    ends: str = "final-alpha"
    inversion_timestep: int = 0

    @property
    def steps(self) -> int:
        """T: the number of DDIM intervals (states s_0..s_T)."""
        return len(self.sqrt_alpha) - 1

    # the chain dlmap.inversion.reversible runs: its step j is the recurrence's step k = j + 1
    def __len__(self) -> int:
        return self.steps - 1

    def step(self, eps: EpsFn, pair, j: int, cond=None):
        before, current = pair
        return current, step(eps, before, current, j + 1, self, cond)

    def step_vjp(self, eps: EpsFn, pair, grad, j: int, cond=None):
        return _step_vjp(eps, pair[1], grad, j + 1, self, cond)[1]

    def reverse_vjp(self, eps: EpsFn, pair, grad, j: int, cond=None):
        current, after = pair
        noise, grads = _step_vjp(eps, current, grad, j + 1, self, cond)
        r, k = self.sqrt_alpha, j + 1
        a, c = self.A[k], self.C[k]
        bar = (after / r[k + 1] - (1 - a) * current / r[k] + c * noise) / a
        before = r[k - 1] * bar
        return (before.detach(), current.detach()), grads

    def inverse_amplification(self) -> float:
        """The product of 1 / A_k over the chain: how much an inversion grows the recurrence's
        parasitic mode (the root -1 / A_k) against the smooth solution (the root 1), so how
        much it can grow round-off. For BDIA: gamma^-(T-1) times r_T r_{T-1} / (r_0 r_1)."""
        return math.prod(1.0 / a for a in self.A[1:])


def bdia_coefficient(k: int, sqrt_alpha, sigma, gamma: float) -> float:
    """BDIA's A_k = gamma sqrt(ᾱ_{k-1} / ᾱ_{k+1}): its published update in x̄."""
    return gamma * sqrt_alpha[k - 1] / sqrt_alpha[k + 1]


def belm_coefficient(k: int, sqrt_alpha, sigma, gamma: float) -> float:
    """O-BELM's A_k = h_k^2 / H_k^2: a third-order local error."""
    return ((sigma[k] - sigma[k + 1]) / (sigma[k - 1] - sigma[k])) ** 2


def leapfrog_coefficient(k: int, sqrt_alpha, sigma, gamma: float) -> float:
    """The leapfrog's A_k = 1 in x̄ (``dlmap.inversion.leapfrog``)."""
    return 1.0


COEFFICIENTS = {
    "bdia": bdia_coefficient,
    "belm": belm_coefficient,
    "leapfrog": leapfrog_coefficient,
}


def make_two_step_schedule(
    name: str,
    steps: int,
    scheduler: dict,
    gamma: float = 1.0,
    steps_offset: int = 0,
    ends: str = "final-alpha",
) -> TwoStepSchedule:
    """BDIA or O-BELM (``COEFFICIENTS[name]``) on the DDIM schedule of ``scheduler`` (a
    ``DDIMScheduler`` config; dlmap's SD2 one elsewhere), ending where ``ends`` says (module
    docstring). The settings are ``InversionConfig``'s, which validates them (the minimum
    steps included); ``gamma`` is BDIA's alone."""
    coefficient = COEFFICIENTS[name]
    timesteps, alpha_bar = schedule_alphas(steps, scheduler, steps_offset)
    if ends == "alpha-one":
        alpha_bar[-1] = 1.0  # BELM's code: the last interval steps to ᾱ = 1 (σ̄ = 0)
    elif math.isclose(alpha_bar[-1], alpha_bar[-2], rel_tol=1e-12):
        # SD2 (set_alpha_to_one = False) with timesteps ending at t = 0: the last DDIM
        # interval, t = 0 -> final ᾱ = ᾱ_0, has zero length (DDIM's step is the identity).
        # A two-step rule would still move across it (BDIA) or stop being invertible (O-BELM's
        # A = 0): the chain ends at t = 0 instead, whose state is the clean latent.
        alpha_bar = alpha_bar[:-1]
    steps = len(alpha_bar) - 1
    if steps < 2:  # InversionConfig's rule (at least 3 steps) keeps every user's schedule above
        raise ValueError(f"{name}: a two-step chain needs 2 intervals, this schedule has {steps}")
    sqrt_alpha = [math.sqrt(a) for a in alpha_bar]
    sigma = [math.sqrt((1 - a) / a) for a in alpha_bar]
    A, C = [math.nan], [math.nan]
    for k in range(1, steps):
        h, H = sigma[k] - sigma[k + 1], sigma[k - 1] - sigma[k]
        a = coefficient(k, sqrt_alpha, sigma, gamma)
        A.append(a)
        C.append(h + a * H)
    inversion_timestep = CLEAN_END_TIMESTEP if ends == "alpha-one" else timesteps[steps - 1]
    return TwoStepSchedule(
        name=name,
        timesteps=tuple(timesteps),
        sqrt_alpha=tuple(sqrt_alpha),
        sigma=tuple(sigma),
        A=tuple(A),
        C=tuple(C),
        gamma=gamma if name == "bdia" else None,
        ends=ends,
        inversion_timestep=inversion_timestep,
    )


# --- one step and its inverse ----------------------------------------------------------------


def step(eps, before, current, k: int, schedule: TwoStepSchedule, cond=None):
    """Step k: (s_{k-1}, s_k) -> s_{k+1} with one evaluation eps(s_k, t_k)."""
    r = schedule.sqrt_alpha
    noise = eps(current, schedule.timesteps[k], cond)
    a, c = schedule.A[k], schedule.C[k]
    bar = a * before / r[k - 1] + (1 - a) * current / r[k] - c * noise
    return r[k + 1] * bar


def inverse_step(eps, current, after, k: int, schedule: TwoStepSchedule, cond=None):
    """The inverse of step k: (s_k, s_{k+1}) -> s_{k-1}, with the same evaluation."""
    r = schedule.sqrt_alpha
    noise = eps(current, schedule.timesteps[k], cond)
    a, c = schedule.A[k], schedule.C[k]
    bar = (after / r[k + 1] - (1 - a) * current / r[k] + c * noise) / a
    return r[k - 1] * bar


def ddim_inversion_step(eps, clean, schedule: TwoStepSchedule, cond=None):
    """s_{T-1} from a clean latent s_T by one DDIM inversion step, eps(s_T, t) at the
    schedule's ``inversion_timestep``: how inversion forms the image side's first member."""
    r, s, T = schedule.sqrt_alpha, schedule.sigma, schedule.steps
    noise = eps(clean, schedule.inversion_timestep, cond)
    return r[T - 1] * (clean / r[T] + (s[T - 1] - s[T]) * noise)


# --- the maps ----------------------------------------------------------------------------------


@torch.no_grad()
def invert(eps, before_last, last, schedule: TwoStepSchedule, cond=None):
    """The image-side pair (s_{T-1}, s_T) -> the noise-side pair (s_0, s_1)."""
    current, after = before_last, last
    for k in reversed(range(1, schedule.steps)):
        current, after = inverse_step(eps, current, after, k, schedule, cond), current
    return current, after


def denoise(eps, first, second, schedule: TwoStepSchedule, cond=None, gradient="recompute"):
    """The noise-side pair (s_0, s_1) -> the image-side pair (s_{T-1}, s_T), T - 1 network
    calls. Differentiable in the pair when grad mode is on (``dlmap.inversion.reversible``:
    ``reversible`` rebuilds each step's input with the exact inverse, so its round-off grows
    as the inverse amplifies)."""
    return reversible.run(schedule, eps, (first, second), cond, gradient)


def _step_vjp(eps, current, grad, k: int, schedule: TwoStepSchedule, cond=None):
    """Step k, (b, c) -> (c, n) with n = r_{k+1} (A b / r_{k-1} + (1 - A) c / r_k - C eps(c)),
    pulled back: the gradient ``grad`` = (g_c, g_n) at its output -> (eps(c), the gradient at
    (b, c)). One evaluation eps(c) with its graph serves the vector-Jacobian product and, in
    the reversible mode, the reconstruction of b by the inverse (no second call)."""
    r, a, cc = schedule.sqrt_alpha, schedule.A[k], schedule.C[k]
    g_prev, g_next = grad
    c = current.detach().requires_grad_(True)
    with torch.enable_grad():
        noise = eps(c, schedule.timesteps[k], cond)
    (vjp,) = torch.autograd.grad(noise, c, g_next)
    g_b = (r[k + 1] * a / r[k - 1]) * g_next
    g_c = (r[k + 1] * (1 - a) / r[k]) * g_next - (r[k + 1] * cc) * vjp
    return noise.detach(), (g_b, g_c + g_prev)


# --- the bijections the solver uses, one class per method ----------------------------------


class TwoStep:
    """A two-step bijection as the solver's bijection: its noise side is the pair (s_0, s_1);
    its image side's clean latent s_T is decoded (s_{T-1} is not an image)."""

    name = ""
    outputs = 1

    def __init__(self, config: InversionConfig):
        self.config = config
        self.schedule = make_two_step_schedule(
            self.name,
            config.steps,
            config.scheduler,
            steps_offset=config.steps_offset,
            **self.options(config),
        )

    @staticmethod
    def options(config: InversionConfig) -> dict:
        """The method's own settings from its sub-config: ``make_two_step_schedule``'s
        keyword arguments."""
        raise NotImplementedError

    @property
    def calls(self) -> int:
        """Network calls of one pass through h: one per step of the chain."""
        return len(self.schedule)

    @property
    def inversion_calls(self) -> int:
        """Network calls of one inversion: the DDIM step that forms the image-side pair, then
        one pass."""
        return 1 + self.calls

    def invert_latent(self, eps: EpsFn, latent, cond=None):
        """A clean latent -> (s_0, s_1), from (one DDIM inversion step, latent)."""
        with torch.no_grad():
            before = ddim_inversion_step(eps, latent, self.schedule, cond)
        return invert(eps, before, latent, self.schedule, cond)

    def denoise(self, eps: EpsFn, first, second, cond=None, gradient="recompute"):
        """(s_0, s_1) -> the clean latent to decode, (s_T,)."""
        return denoise(eps, first, second, self.schedule, cond, gradient)[1:]


class Bdia(TwoStep):
    """BDIA (Zhang, Lewis, Kleijn, ECCV 2024), configured by ``config.bdia``."""

    name = "bdia"

    @staticmethod
    def options(config: InversionConfig) -> dict:
        return {"gamma": config.bdia.gamma, "ends": config.bdia.ends}


class Belm(TwoStep):
    """O-BELM (Wang et al., NeurIPS 2024), configured by ``config.belm``."""

    name = "belm"

    @staticmethod
    def options(config: InversionConfig) -> dict:
        return {"ends": config.belm.ends}
