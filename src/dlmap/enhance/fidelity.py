"""Fidelity terms D0: Eq. 20 for the diffusion-latent solver, MSE for pixel-space MAP (Eq. 2).

Images are (B, 3, H, W) RGB in [0, 1]; every function returns one value per image (B,), so
problems solved in one batch never mix.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: Default downsampling factor s of Eq. 20. The paper gives no value. We use 4: at the paper's
#: 512x512 it compares 128x128 images, which pins colour, tone and the layout of every
#: structure a few pixels wide at that scale (what Fig. 8 shows drifting without a fidelity
#: term), while the bicubic low-pass leaves free the top three quarters of the frequency band
#: where noise, blur and texture live, i.e. exactly what an enhancer should change. s = 8
#: would equal the VAE's latent grid and leave colour shifts inside each 8x8 cell unpenalised;
#: s = 1 reduces Eq. 20 to plain L2 and fights every added detail.
from dlmap.errors import InputError
from dlmap.settings import DEFAULT_DOWNSAMPLING  # noqa: E402, F401


def downsample(images: torch.Tensor, factor: int) -> torch.Tensor:
    """Bicubic downsampling by an integer factor (antialiased, like Pillow's and MATLAB's)."""
    if not isinstance(factor, int) or factor < 1:
        raise InputError(f"downsampling factor s must be a positive integer, got {factor!r}")
    if factor == 1:
        return images
    height, width = images.shape[-2:]
    if height < factor or width < factor:
        raise InputError(f"images of {height}x{width} cannot be downsampled by {factor}")
    size = (height // factor, width // factor)
    return F.interpolate(images, size=size, mode="bicubic", antialias=True, align_corners=False)


def downsampled_l2(images: torch.Tensor, reference: torch.Tensor, factor: int = 4):
    """Eq. 20: D0(x, x_init) = || x_(down s) - x_init_(down s) ||_2, one value per image."""
    diff = downsample(images, factor) - downsample(reference, factor)
    return torch.linalg.vector_norm(diff.flatten(1), dim=1)


def mse(images: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Mean squared error per image: the fidelity of pixel-space MAP (Eq. 2, Figs. 1-2)."""
    return ((images - reference) ** 2).flatten(1).mean(dim=1)
