"""The training-free priors: classic image statistics that need no weights, so that the library
works before anything is downloaded. Their metadata and Eq. 21 constants are their specs'
(``dlmap.priors.specs``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dlmap.priors.base import Prior, register_prior
from dlmap.priors.specs import PRIOR_SPECS


@register_prior("colorfulness")
class Colorfulness(Prior):
    """Hasler & Suesstrunk's colourfulness M = sigma_rgyb + 0.3 mu_rgyb on 0-255 RGB.

    Their scale: 15 slightly, 33 moderately, 45 averagely, 59 quite, 82 highly colourful.
    Calibration (not fitted to MOS): centred on "moderately colourful", 15 units per e-fold.
    """

    info = PRIOR_SPECS["colorfulness"].info()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        rgb = images * 255.0
        red, green, blue = rgb[:, 0], rgb[:, 1], rgb[:, 2]
        rg = (red - green).flatten(1)
        yb = (0.5 * (red + green) - blue).flatten(1)
        spread = torch.sqrt(rg.var(dim=1) + yb.var(dim=1) + 1e-12)
        offset = torch.sqrt(rg.mean(dim=1) ** 2 + yb.mean(dim=1) ** 2 + 1e-12)
        return spread + 0.3 * offset


@register_prior("sharpness")
class Sharpness(Prior):
    """log variance of the Laplacian of luminance (0-255), a classic focus measure.

    Rises with detail and with noise alike: an image statistic, not a quality model.
    Calibration (not fitted to MOS): centred at log-variance 5.5, one unit per e-fold.
    """

    info = PRIOR_SPECS["sharpness"].info()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        weights = torch.tensor([0.299, 0.587, 0.114], dtype=images.dtype, device=images.device)
        luma = (images * 255.0 * weights.view(1, 3, 1, 1)).sum(dim=1, keepdim=True)
        kernel = torch.tensor(
            [[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]],
            dtype=images.dtype,
            device=images.device,
        ).view(1, 1, 3, 3)
        laplacian = F.conv2d(luma, kernel).flatten(1)
        return torch.log(laplacian.var(dim=1) + 1e-6)
