"""RoI max pooling in plain torch: a stand-in for torchvision's compiled ``roi_pool``.

pyiqa's PaQ-2-PiQ pools its ResNet-18 features over the whole image with
``torchvision.ops.RoIPool((2, 2), 1/32)``, a compiled operator. A torchvision wheel built
without its C++ operators (or for another torch) imports fine and then fails on the first
call; ``PyiqaPrior`` then swaps in ``RoIPool`` below. It reproduces torchvision's kernel
exactly (``torchvision/csrc/ops/cpu/roi_pool_kernel.cpp``): box corners are scaled and rounded
half away from zero, the box spans at least one cell, bin h of P covers rows
[floor(h * height / P), ceil((h + 1) * height / P)) from the box start, clipped to the map,
each bin is the maximum over its cells (0 if empty), and the gradient flows to the arg max
(split evenly between exact ties, where torchvision picks one).
"""

from __future__ import annotations

import math

import torch

from dlmap.errors import InputError


def _round(value: torch.Tensor) -> int:
    """C's round(): half away from zero (torch.round rounds half to even)."""
    value = float(value)
    return int(math.floor(abs(value) + 0.5)) * (1 if value >= 0 else -1)


def _as_rois(boxes) -> torch.Tensor:
    """A (K, 5) tensor (batch index, x1, y1, x2, y2) or a list of (K_i, 4) boxes per image."""
    if isinstance(boxes, torch.Tensor):
        if boxes.ndim != 2 or boxes.shape[1] != 5:
            raise InputError(f"rois must be (K, 5), got {tuple(boxes.shape)}")
        return boxes
    rows = [
        torch.cat([torch.full_like(b[:, :1], index), b], dim=1) for index, b in enumerate(boxes)
    ]
    return torch.cat(rows, dim=0)


def roi_pool(features, boxes, output_size, spatial_scale: float = 1.0) -> torch.Tensor:
    """(N, C, H, W) features, boxes -> (K, C, P_h, P_w), as ``torchvision.ops.roi_pool``."""
    pooled_h, pooled_w = (output_size, output_size) if isinstance(output_size, int) else output_size
    height, width = features.shape[-2:]
    out = []
    for roi in _as_rois(boxes):
        index = int(roi[0])
        x1, y1, x2, y2 = (_round(value * spatial_scale) for value in roi[1:])
        roi_h, roi_w = max(y2 - y1 + 1, 1), max(x2 - x1 + 1, 1)
        bins = []
        for ph in range(pooled_h):
            top = min(max(math.floor(ph * roi_h / pooled_h) + y1, 0), height)
            bottom = min(max(math.ceil((ph + 1) * roi_h / pooled_h) + y1, 0), height)
            for pw in range(pooled_w):
                left = min(max(math.floor(pw * roi_w / pooled_w) + x1, 0), width)
                right = min(max(math.ceil((pw + 1) * roi_w / pooled_w) + x1, 0), width)
                if bottom <= top or right <= left:
                    bins.append(features.new_zeros(features.shape[1]))
                else:
                    cell = features[index, :, top:bottom, left:right]
                    bins.append(cell.flatten(1).amax(dim=1))
        out.append(torch.stack(bins, dim=1).view(-1, pooled_h, pooled_w))
    return torch.stack(out) if out else features.new_zeros(0, features.shape[1], pooled_h, pooled_w)


class RoIPool(torch.nn.Module):
    """Drop-in for ``torchvision.ops.RoIPool`` in plain torch (see the module doc)."""

    def __init__(self, output_size, spatial_scale: float):
        super().__init__()
        self.output_size, self.spatial_scale = output_size, spatial_scale

    def forward(self, features, boxes):
        return roi_pool(features, boxes, self.output_size, self.spatial_scale)


def compiled_roi_pool_works() -> bool:
    """Whether torchvision's compiled ``roi_pool`` runs on CPU in this installation."""
    try:
        from torchvision.ops import roi_pool as compiled

        compiled(torch.zeros(1, 1, 2, 2), [torch.tensor([[0.0, 0.0, 1.0, 1.0]])], (1, 1))
    except (ImportError, RuntimeError, NotImplementedError):
        return False
    return True
