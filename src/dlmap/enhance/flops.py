"""What one MAP iteration and one inversion cost in floating-point operations, and the seconds
that implies on a GPU at a stated efficiency: the basis of config.yaml's ``gpu_costs`` until a
GPU run (``bench/gpu_iteration.py``) replaces them with measured ones.

Counts come from torch's ``FlopCounterMode`` (multiply-adds count 2) over one call of each
network, on the meta device for the paper's full-size networks (nothing is allocated), and
are composed per step (Alg. 1):

    iteration = calls * (eps forward + eps forward again + eps backward)
                + outputs * (decode forward + decode backward)
    inversion = encode + image embedding + (calls + 1 for BDIA and O-BELM) * eps forward

``calls`` is the network calls of one pass through h: 2T for EDICT, T - 2 for BDIA and O-BELM
on SD2's schedule; ``outputs`` the images decoded (EDICT's x and y: 2; BDIA/O-BELM: 1). The
second forward is the ``recompute`` gradient's; the backward computes input gradients only
(the networks are frozen). SeeSR's image embedding runs once per image, in the inversion; the
prior's cost is small beside these and left out.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

#: dense peak TFLOP/s by (GPU, precision), from NVIDIA's data sheets (A100 SXM 80 GB, H100 SXM)
PEAK_TFLOPS = {
    ("A100 80GB", "float32"): 19.5,
    ("A100 80GB", "tf32"): 156.0,
    ("A100 80GB", "bf16"): 312.0,
    ("H100 80GB", "float32"): 67.0,
    ("H100 80GB", "tf32"): 494.7,
    ("H100 80GB", "bf16"): 989.4,
}


@dataclass(frozen=True)
class NetworkFlops:
    """FLOPs of one call of each network at one image size, batch 1."""

    eps_forward: float  # UNet + ControlNet, one step
    eps_backward: float  # its vector-Jacobian product in the latent
    decode_forward: float
    decode_backward: float
    encode: float
    condition: float = 0.0  # SeeSR's image embedding (RAM's Swin-L), once per image

    def iteration(self, steps: int = 20, bijection: str = "edict") -> float:
        """One MAP iteration of one image (``recompute`` gradient)."""
        calls, outputs = network_calls(steps, bijection)
        per_call = 2 * self.eps_forward + self.eps_backward
        return calls * per_call + outputs * (self.decode_forward + self.decode_backward)

    def inversion(self, steps: int = 20, bijection: str = "edict") -> float:
        """One inversion of one image (Alg. 1 line 2), the VAE's encoder included (BDIA and
        O-BELM: one call more, the DDIM step that forms the image-side pair)."""
        calls = _bijection(steps, bijection).inversion_calls
        return self.encode + self.condition + calls * self.eps_forward


def _bijection(steps: int, bijection: str):
    from dlmap.inversion.config import InversionConfig
    from dlmap.inversion.registry import make_bijection

    return make_bijection(InversionConfig(steps=steps, bijection=bijection))


def network_calls(steps: int, bijection: str = "edict") -> tuple[int, int]:
    """(network calls of one pass through h, images decoded per problem) of the bijection
    named, on SD2's schedule."""
    made = _bijection(steps, bijection)
    return made.calls, made.outputs


def count(function, *args) -> float:
    """The FLOPs ``function(*args)`` performs, by torch's formulas (``flop_registry``: matrix
    products, convolutions and attention, forward and backward). torch's ``FlopCounterMode``
    also tracks modules with hooks that refuse ``autograd.grad`` inside a solver, so the
    formulas are applied by a dispatch mode of our own."""
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils.flop_counter import flop_registry

    class Counter(TorchDispatchMode):
        total = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            out = func(*args, **kwargs)
            formula = flop_registry.get(func._overloadpacket)
            if formula is not None:
                Counter.total += formula(*args, **kwargs, out_val=out)
            return out

    with Counter():
        function(*args)
    return float(Counter.total)


def network_flops(backbone, size: int = 512) -> NetworkFlops:
    """Count each network of ``backbone`` (a ``dlmap.diffusion.backbones.Backbone``, on any
    device, meta included) once at ``size`` x ``size``, batch 1."""
    device, dtype = backbone.device, torch.float32
    images = torch.rand(1, 3, size, size, device=device, dtype=dtype)
    with torch.no_grad():
        condition = count(lambda: backbone.condition(images))
        cond = backbone.condition(images)
    factor = 2 ** (len(backbone.vae.config.block_out_channels) - 1)  # SD2's VAE: 8
    latent = torch.randn(1, 4, size // factor, size // factor, device=device, dtype=dtype)
    latent.requires_grad_(True)
    with torch.enable_grad():
        eps_forward = count(lambda: backbone.eps(latent, 500, cond))
        noise = backbone.eps(latent, 500, cond)
        eps_backward = count(lambda: torch.autograd.grad(noise, latent, torch.ones_like(noise)))
        decode_forward = count(lambda: backbone.decode(latent))
        image = backbone.decode(latent)
        decode_backward = count(lambda: torch.autograd.grad(image, latent, torch.ones_like(image)))
    with torch.no_grad():
        encode = count(lambda: backbone.vae.encode(images))
    return NetworkFlops(
        eps_forward, eps_backward, decode_forward, decode_backward, encode, condition
    )


def paper_network_flops(size: int = 512) -> NetworkFlops:
    """``network_flops`` of the paper's backbone (SD2-base's UNet and VAE, SeeSR's ControlNet,
    RAM's Swin-L embedder) built on the meta device from dlmap's configs: no weights needed."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    from dlmap.diffusion.backbones import Backbone
    from dlmap.diffusion.dape import DAPE_SWIN_L, ImageEmbedder
    from dlmap.diffusion.seesr import SeeSRControlNetModel
    from dlmap.testing.released import SD2_UNET, SD2_VAE

    with torch.device("meta"):
        unet = UNet2DConditionModel(**SD2_UNET)
        backbone = Backbone(
            unet=unet,
            vae=AutoencoderKL(**SD2_VAE),
            prompt_embedding=torch.zeros(1, 77, SD2_UNET["cross_attention_dim"]),
            controlnet=SeeSRControlNetModel.from_unet(unet),
            image_embedder=ImageEmbedder(DAPE_SWIN_L),
            name="sd2-seesr (meta)",
        )
    backbone.requires_grad_(False)
    backbone._autocast = contextlib.nullcontext  # autocast has no meta device; float32 here
    return network_flops(backbone, size)


def estimated_seconds(flops: float, gpu: str, precision: str, efficiency: float) -> float:
    """Seconds for ``flops`` on ``gpu`` at ``precision``, at ``efficiency`` of its peak."""
    return flops / (PEAK_TFLOPS[gpu, precision] * 1e12 * efficiency)
