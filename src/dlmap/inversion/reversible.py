"""Running and differentiating a chain of exactly invertible steps on a pair of latents.

EDICT (``dlmap.inversion.edict``: (x_t, y_t) -> (x_{t-1}, y_{t-1}), Eqs. 8-11) and the two-step
bijections (``dlmap.inversion.bijections``: (s_{k-1}, s_k) -> (s_k, s_{k+1})) are both chains
of steps on a pair, each step with an exact inverse. Their schedules implement ``Steps``, and
``run`` maps a pair through the chain. Backpropagating through T steps of UNet + ControlNet
with plain autograd would keep T steps of activations; ``gradient`` picks how gradients pass:

* ``"recompute"`` stores the chain's input pairs (tiny) and, in the backward pass, recomputes
  one step at a time with its graph (``Steps.step_vjp``; the DOODL approach);
* ``"reversible"`` stores nothing but the output and rebuilds each step's input with the exact
  inverse, reusing that reconstruction's network evaluations for the vector-Jacobian product
  (``Steps.reverse_vjp``), so one step's graph is alive at a time and memory is flat in T;
* ``"autograd"`` is plain autograd through every step (memory grows with T; for comparison).

Network weights should be frozen: gradients reach only the pair, never the conditioning.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import torch

from dlmap.errors import InputError
from dlmap.settings import GRADIENTS

EpsFn = Callable[[torch.Tensor, int, Any], torch.Tensor]
"""A noise-prediction network eps(latent, t, condition) -> noise of the latent's shape."""
Pair = tuple[torch.Tensor, torch.Tensor]


class Steps(Protocol):
    """A chain of exactly invertible steps on a pair of latents (a bijection's schedule)."""

    def __len__(self) -> int:
        """The number of steps."""

    def step(self, eps: EpsFn, pair: Pair, k: int, cond=None) -> Pair:
        """Step k: its input pair -> its output pair."""

    def step_vjp(self, eps: EpsFn, pair: Pair, grad: Pair, k: int, cond=None) -> Pair:
        """The gradient with respect to step k's input ``pair`` of ``grad`` at its output."""

    def reverse_vjp(self, eps: EpsFn, pair: Pair, grad: Pair, k: int, cond=None):
        """From step k's output ``pair`` and the gradient there: (its input pair, the gradient
        there), with one set of network evaluations."""


def step_vjp_by_autograd(steps: Steps, eps: EpsFn, pair: Pair, grad: Pair, k: int, cond=None):
    """``Steps.step_vjp`` by recomputing step k with its graph."""
    inputs = tuple(z.detach().requires_grad_(True) for z in pair)
    with torch.enable_grad():
        outputs = steps.step(eps, inputs, k, cond)
    return torch.autograd.grad(outputs, inputs, grad)


def run(steps: Steps, eps: EpsFn, pair: Pair, cond=None, gradient: str = "recompute") -> Pair:
    """``pair`` through every step of ``steps``; differentiable with respect to the pair when
    grad mode is on and a member requires grad, the gradient passing as ``gradient`` says."""
    if gradient not in GRADIENTS:
        raise InputError(f"gradient must be one of {GRADIENTS}, got {gradient!r}")
    needs_grad = torch.is_grad_enabled() and any(z.requires_grad for z in pair)
    if needs_grad and gradient != "autograd":
        return _Chain.apply(steps, eps, cond, gradient, *pair)
    with torch.set_grad_enabled(needs_grad):
        for k in range(len(steps)):
            pair = steps.step(eps, pair, k, cond)
        return tuple(pair)


class _Chain(torch.autograd.Function):
    """``run`` with activation memory independent of the number of steps."""

    @staticmethod
    def forward(ctx, steps, eps, cond, gradient, *pair):
        pair = tuple(z.detach() for z in pair)
        inputs = []
        for k in range(len(steps)):
            if gradient == "recompute":
                inputs.append(pair)
            pair = tuple(steps.step(eps, pair, k, cond))
        ctx.steps, ctx.eps, ctx.cond, ctx.gradient, ctx.inputs = steps, eps, cond, gradient, inputs
        ctx.save_for_backward(*pair)
        return pair

    @staticmethod
    def backward(ctx, *grads):
        pair = ctx.saved_tensors
        grads = tuple(
            torch.zeros_like(z) if g is None else g for z, g in zip(pair, grads, strict=True)
        )
        for k in reversed(range(len(ctx.steps))):
            if ctx.gradient == "recompute":
                grads = ctx.steps.step_vjp(ctx.eps, ctx.inputs[k], grads, k, ctx.cond)
            else:
                pair, grads = ctx.steps.reverse_vjp(ctx.eps, pair, grads, k, ctx.cond)
        ctx.inputs = None
        return (None, None, None, None, *grads)
