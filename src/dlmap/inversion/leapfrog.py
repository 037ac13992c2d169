"""The leapfrog: the two-step bijection with A_k = 1 in DDIM's variables, and its integer twin,
whose round trip is exact to the bit in any precision of the network.

With A_k = 1 the recurrence of ``dlmap.inversion.bijections`` is a pure leapfrog in
x̄ = z / sqrt(ᾱ):

    x̄_{k+1} = x̄_{k-1} - C_k eps(s_k, t_k),    C_k = h_k + H_k = σ̄_{k-1} - σ̄_{k+1},

whose coefficient on x̄_{k-1} is exactly 1 (BDIA's gamma = 1 written in x̄ rather than in z).
``leapfrog`` runs it in floating point, like BDIA and O-BELM; its inverse amplifies nothing
(the product of 1 / A_k is 1), but its parasitic mode (the root -1) is not damped either.

``leapfrog-int`` keeps the states on a grid, as integers G_k = x̄_k / Δ (held in float64
tensors, where integers below 2^53 add exactly), and rounds each step's increment:

    G_{k+1} = G_{k-1} - round(C_k eps(r_k Δ G_k, t_k) / Δ)
    G_{k-1} = G_{k+1} + round(C_k eps(r_k Δ G_k, t_k) / Δ)     (the inverse)

Both directions evaluate the network on the identical input r_k Δ G_k, so they get the
identical output in any precision (float32, bf16, fp16), and integer addition undoes integer
subtraction: the round trip is exact to the bit, with one network call per step. This is the
rounding trick of integer discrete flows (Hoogeboom et al., NeurIPS 2019) on the diffusion ODE.
It needs a network that returns the same output for the same input and batch: every network
call of the chain runs under ``deterministic_networks`` (cuDNN's benchmark off, deterministic
algorithms on; on CUDA also set CUBLAS_WORKSPACE_CONFIG=:4096:8 before the process starts).

At the ends: a clean latent enters as G_T = round(s_T / (r_T Δ)), quantised once (the chain is
exact from there; the image that comes back is that quantised latent), and the first
inversion step is DDIM's, rounded onto the grid. The noise-side pair leaves as floats
s = r Δ G, which map back to the same integers while |G| < 1 / (2 eps) of their dtype (2^22 in
float32); a state beyond that is refused with an error, never rounded silently.

Gradients take rounding's derivative as 1 (straight-through): the backward pass is the float
leapfrog's at the grid's states. ``recompute`` and ``reversible`` both spend one network call
per step; ``reversible`` rebuilds each state by the integer inverse, so without drift.
"""

from __future__ import annotations

import contextlib

import torch

from dlmap.errors import InputError
from dlmap.inversion import reversible
from dlmap.inversion.bijections import TwoStep, TwoStepSchedule, ddim_inversion_step
from dlmap.inversion.config import InversionConfig
from dlmap.inversion.reversible import EpsFn


class Leapfrog(TwoStep):
    """The float leapfrog (A_k = 1 in x̄), configured by ``config.leapfrog``."""

    name = "leapfrog"

    @staticmethod
    def options(config: InversionConfig) -> dict:
        return {"ends": config.leapfrog.ends}


def _straight_through_round(x: torch.Tensor) -> torch.Tensor:
    """round(x) forward, the identity's derivative backward."""
    return x + (torch.round(x) - x).detach()


class IntegerChain:
    """The integer leapfrog as a chain of ``dlmap.inversion.reversible``: its pairs are
    (G_{k-1}, G_k) in grid units (float64 tensors holding integers), the network's inputs
    r_k Δ G_k in ``dtype``; step j is the recurrence's step k = j + 1."""

    def __init__(self, schedule: TwoStepSchedule, grid: float, dtype: torch.dtype):
        self.schedule, self.grid, self.dtype = schedule, grid, dtype

    def __len__(self) -> int:
        return self.schedule.steps - 1

    def increment(self, eps: EpsFn, current: torch.Tensor, k: int, cond=None) -> torch.Tensor:
        """round(C_k eps(r_k Δ G_k) / Δ): the integers step k subtracts (straight-through)."""
        s = self.schedule
        latent = (current * (s.sqrt_alpha[k] * self.grid)).to(self.dtype)
        with deterministic_networks():  # the same input must give the same output
            noise = eps(latent, s.timesteps[k], cond)
        return _straight_through_round(noise.to(torch.float64) * (s.C[k] / self.grid))

    def step(self, eps: EpsFn, pair, j: int, cond=None):
        before, current = pair
        return current, before - self.increment(eps, current, j + 1, cond)

    def inverse_step(self, eps: EpsFn, pair, j: int, cond=None):
        current, after = pair
        return after + self.increment(eps, current, j + 1, cond), current

    def step_vjp(self, eps: EpsFn, pair, grad, j: int, cond=None):
        return reversible.step_vjp_by_autograd(self, eps, pair, grad, j, cond)

    def reverse_vjp(self, eps: EpsFn, pair, grad, j: int, cond=None):
        current, after = pair
        g_current, g_after = grad
        c = current.detach().requires_grad_(True)
        with torch.enable_grad():
            increment = self.increment(eps, c, j + 1, cond)
        (vjp,) = torch.autograd.grad(increment, c, g_after)
        before = after + increment.detach()
        return (before.detach(), current.detach()), (g_after, g_current - vjp)


class LeapfrogInt(TwoStep):
    """The integer leapfrog, exact to the bit (module docstring); ``config.leapfrog`` gives
    its end and grid. Its sides are float latents, as every bijection's are."""

    name = "leapfrog"  # the schedule's coefficients: the float leapfrog's

    @staticmethod
    def options(config: InversionConfig) -> dict:
        return {"ends": config.leapfrog.ends}

    def __init__(self, config: InversionConfig):
        super().__init__(config)
        self.grid = config.leapfrog.grid

    def to_grid(self, latent: torch.Tensor, k: int) -> torch.Tensor:
        """G_k = round(s_k / (r_k Δ)) (float64), refusing states the float cannot carry back."""
        units = latent.detach().to(torch.float64) / (self.schedule.sqrt_alpha[k] * self.grid)
        limit = 0.5 / torch.finfo(latent.dtype).eps  # |G| below this: the float keeps G exact
        largest = units.abs().max().item() if units.numel() else 0.0
        if not largest < limit:
            raise InputError(
                f"leapfrog-int: a state of {largest:.3g} grid units ({self.grid:g} each) "
                f"exceeds what {latent.dtype} carries exactly ({limit:.3g}); use a coarser "
                "grid or float64 latents"
            )
        return _straight_through_round(
            latent.to(torch.float64) / (self.schedule.sqrt_alpha[k] * self.grid)
        )

    def from_grid(self, units: torch.Tensor, k: int, dtype: torch.dtype) -> torch.Tensor:
        """s_k = r_k Δ G_k in ``dtype``."""
        return (units * (self.schedule.sqrt_alpha[k] * self.grid)).to(dtype)

    def invert_latent(self, eps: EpsFn, latent, cond=None):
        """A clean latent -> (s_0, s_1): quantised onto the grid, the first inversion step
        (DDIM's) rounded onto it, then the integer chain backwards."""
        T, dtype = self.schedule.steps, latent.dtype
        chain = IntegerChain(self.schedule, self.grid, dtype)
        with torch.no_grad():
            last = self.to_grid(latent, T)
            clean = self.from_grid(last, T, dtype)
            pair = (self.to_grid(ddim_inversion_step(eps, clean, self.schedule, cond), T - 1), last)
            for j in reversed(range(len(chain))):
                pair = chain.inverse_step(eps, pair, j, cond)
        return self.from_grid(pair[0], 0, dtype), self.from_grid(pair[1], 1, dtype)

    def denoise(self, eps: EpsFn, first, second, cond=None, gradient="recompute"):
        """(s_0, s_1) -> (s_T,), the integer chain forwards (straight-through gradients)."""
        dtype, T = first.dtype, self.schedule.steps
        chain = IntegerChain(self.schedule, self.grid, dtype)
        pair = (self.to_grid(first, 0), self.to_grid(second, 1))
        _, last = reversible.run(chain, eps, pair, cond, gradient)
        return (self.from_grid(last, T, dtype),)

    def grid_states(self, eps: EpsFn, first, second, cond=None):
        """The image-side integers (G_{T-1}, G_T) that ``denoise`` reaches: what a round trip
        must give back exactly."""
        chain = IntegerChain(self.schedule, self.grid, first.dtype)
        with torch.no_grad():
            pair = (self.to_grid(first, 0), self.to_grid(second, 1))
            for j in range(len(chain)):
                pair = chain.step(eps, pair, j, cond)
        return pair


@contextlib.contextmanager
def deterministic_networks():
    """Same input, same output: cuDNN's benchmark off and deterministic algorithms on (CUDA
    also needs CUBLAS_WORKSPACE_CONFIG=:4096:8 in the environment), as ``leapfrog-int``'s
    exactness needs on a GPU; the previous settings come back afterwards."""
    benchmark = torch.backends.cudnn.benchmark
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = benchmark
        torch.use_deterministic_algorithms(deterministic)
