"""How good the demo's tiny VAE is: PSNR on held-out photographs against the bicubic
round trip that a VAE with the same downsampling factor must beat (``training.json``'s
``held_out`` rows, written by ``dlmap.diffusion.tiny_vae``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dlmap.diffusion.tiny_vae_store import factor_of

HELD_OUT = ("astronaut", "coffee", "chelsea", "rocket", "motorcycle", "hubble_deep_field")
"""Held-out photographs for ``evaluate``: the demo's test photographs (``dlmap.data.demo_set``)."""


def psnr(image: torch.Tensor, reference: torch.Tensor) -> float:
    """Peak signal-to-noise ratio in dB of ``image`` (clipped to [0, 1]) against ``reference``."""
    mse = F.mse_loss(image.clamp(0, 1).double(), reference.double())
    return float(10 * torch.log10(1 / mse))


def bicubic_round_trip(image: torch.Tensor, factor: int) -> torch.Tensor:
    """Bicubic (antialiased) downsampling by ``factor``, then bicubic upsampling back: the
    baseline a VAE with that factor must beat."""
    small = F.interpolate(
        image, scale_factor=1 / factor, mode="bicubic", antialias=True, align_corners=False
    )
    return F.interpolate(small, size=image.shape[-2:], mode="bicubic", align_corners=False)


@torch.no_grad()
def evaluate(vae, names=HELD_OUT, size: int = 224, seed: int = 0) -> list[dict]:
    """PSNR (dB) per held-out photograph at ``size`` px: the VAE's reconstruction from its
    posterior mean and from a seeded posterior sample, and the bicubic baseline."""
    from dlmap.data import demo_set

    factor = factor_of(vae.config)
    rows = []
    for name in names:
        image = torch.from_numpy(demo_set.pristine(name, size)).permute(2, 0, 1)[None].float()
        posterior = vae.encode(image * 2 - 1).latent_dist
        generator = torch.Generator().manual_seed(seed)
        sample = posterior.mean + posterior.std * torch.randn(
            posterior.mean.shape, generator=generator
        )
        rows.append(
            {
                "image": name,
                "source": demo_set.source_name(name),
                "vae_mean_psnr": psnr((vae.decode(posterior.mean).sample + 1) / 2, image),
                "vae_sample_psnr": psnr((vae.decode(sample).sample + 1) / 2, image),
                "bicubic_psnr": psnr(bicubic_round_trip(image, factor), image),
            }
        )
    return rows
