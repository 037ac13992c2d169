"""TensorFloat-32 emulated on any device, to measure what TF32 costs EDICT's round trip where
no NVIDIA GPU is at hand (``bench/edict_roundtrip.py``).

TF32 matmuls and convolutions read float32 inputs with 10 mantissa bits instead of 23 and
accumulate in float32. ``emulated_tf32()`` rounds the float32 inputs of every matrix product,
linear layer, convolution and attention call to 10 mantissa bits (round to nearest, ties to
even) and leaves the arithmetic itself in float32: the input rounding, which is what makes
TF32 inexact, without the GPU's own summation order.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

DROPPED_BITS = 23 - 10  # float32's mantissa over TF32's


def round_to_tf32(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` (float32) with its mantissa rounded to TF32's 10 bits, ties to even."""
    if tensor.dtype != torch.float32:
        return tensor
    bits = tensor.contiguous().view(torch.int32)
    lowest_kept = (bits >> DROPPED_BITS) & 1
    bias = (1 << (DROPPED_BITS - 1)) - 1 + lowest_kept
    rounded = (bits + bias) & ~((1 << DROPPED_BITS) - 1)
    finite = torch.isfinite(tensor)
    return torch.where(finite, rounded.view(torch.float32), tensor)


ROUNDED = {
    F.linear: 2,
    F.conv2d: 2,
    F.conv1d: 2,
    torch.matmul: 2,
    torch.Tensor.matmul: 2,
    torch.Tensor.__matmul__: 2,
    torch.bmm: 2,
    torch.baddbmm: 3,
    F.scaled_dot_product_attention: 3,
}  # function -> how many leading tensor arguments are its multiplied inputs


class _TF32(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        count = ROUNDED.get(func)
        if count:
            args = tuple(
                round_to_tf32(a) if i < count and isinstance(a, torch.Tensor) else a
                for i, a in enumerate(args)
            )
        return func(*args, **kwargs)


@contextlib.contextmanager
def emulated_tf32():
    """Within the block, float32 matmuls, convolutions and attention read TF32 inputs."""
    with _TF32():
        yield
