"""Round-trip errors of EDICT's exact inversion: h(d(x)) = x and d(h(z)) = z (Eqs. 8-15).

On the tiny SeeSR backbone (image-attention ControlNet), for float64 and float32 latents and
both step orders, prints the relative errors ||h(d(x)) - x|| / ||x|| for the VAE latent of a
photograph bundled with scikit-image, and ||d(h(z)) - z|| / ||z|| for a random noise pair.
Three more rows keep float32 latents but run the networks in bf16 (autocast, and autocast
with bf16 weights) or under fp16 autocast: EDICT's arithmetic stays invertible, but a bf16
network rounds its input to 8 mantissa bits (fp16: 11), so the tiny differences of a round
trip can cross a rounding step and grow.
A last row runs float32 networks whose matmuls, convolutions and attention read TF32 inputs
(10 mantissa bits; emulated on the CPU by ``dlmap.testing.tf32``), what ``tf32: true`` does on
an NVIDIA GPU.

    python bench/edict_roundtrip.py             # T = 20, 64x64 image (8x8 latent)
    python bench/edict_roundtrip.py --steps 50
    python bench/edict_roundtrip.py --bijection leapfrog-int

``--bijection`` takes every exact inversion (edict, bdia, belm, leapfrog, leapfrog-int) and prints
the same table (the order column is EDICT's alone). For leapfrog-int the errors compare the
grid's integers (dlmap.inversion.leapfrog): a round trip that gives them back exactly prints
0.00e+00; h(d(x)) is compared with x quantised onto the grid, the one rounding at its entry.
"""

from __future__ import annotations

import argparse
import contextlib

import numpy as np
import torch
from _common import setup_torch
from skimage import data

from dlmap.diffusion.build import load_backbone
from dlmap.images import center_crop_resize
from dlmap.inversion import bijections, edict
from dlmap.inversion.config import BIJECTIONS, ORDERS, EdictOptions, InversionConfig
from dlmap.inversion.leapfrog import IntegerChain
from dlmap.inversion.registry import make_bijection
from dlmap.settings import BackboneSettings
from dlmap.testing.tf32 import emulated_tf32


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def two_step_trips(args, backbone, latent, noise, cond) -> tuple[float, float]:
    """(h(d(x)) vs x, d(h(z)) vs z) for a one-call bijection; for leapfrog-int, on the grid's
    integers (0 exactly when they come back equal)."""
    bijection = make_bijection(InversionConfig(steps=args.steps, bijection=args.bijection))
    eps, schedule = backbone.eps, bijection.schedule
    with torch.no_grad():
        if args.bijection != "leapfrog-int":
            pair = bijection.invert_latent(eps, latent, cond)
            (last,) = bijection.denoise(eps, *pair, cond)
            out = bijections.denoise(eps, noise[0], noise[1], schedule, cond)
            again = bijections.invert(eps, *out, schedule, cond)
            back = max(relative_error(a, b) for a, b in zip(again, noise, strict=True))
            return relative_error(last, latent), back
        T = schedule.steps
        pair = bijection.invert_latent(eps, latent, cond)
        _, last = bijection.grid_states(eps, *pair, cond)
        forward = grid_error(last, bijection.to_grid(latent, T))
        chain = IntegerChain(schedule, bijection.grid, latent.dtype)
        start = (bijection.to_grid(noise[0], 0), bijection.to_grid(noise[1], 1))
        pair = start
        for j in range(len(chain)):
            pair = chain.step(eps, pair, j, cond)
        for j in reversed(range(len(chain))):
            pair = chain.inverse_step(eps, pair, j, cond)
        return forward, max(grid_error(a, b) for a, b in zip(pair, start, strict=True))


def grid_error(a: torch.Tensor, b: torch.Tensor) -> float:
    """0.0 when the integers are equal, else their relative error."""
    return 0.0 if torch.equal(a, b) else relative_error(a, b)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20, help="EDICT steps T")
    parser.add_argument("--size", type=int, default=64, help="image side in pixels")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--bijection", default="edict", choices=BIJECTIONS)
    args = parser.parse_args(argv)
    setup_torch(args.threads)

    pixels = center_crop_resize(data.astronaut().astype(np.float32) / 255, args.size)
    print(
        f"{args.bijection} round trips, tiny backbone + SeeSR ControlNet, T = {args.steps}, "
        f"image {args.size}px"
    )
    print(f"{'networks':14} {'order':12} {'h(d(x)) vs x':>14} {'d(h(z)) vs z':>14}")
    precisions = {  # BackboneSettings' dtype, autocast and weights_dtype
        "float64": ("float64", "none", "same"),
        "float32": ("float32", "none", "same"),
        "bf16-autocast": ("float32", "bf16", "same"),
        "bf16-weights": ("float32", "bf16", "bf16"),
        "fp16-autocast": ("float32", "fp16", "same"),
        "tf32-emulated": ("float32", "none", "same"),
    }
    for name, (dtype_name, autocast, weights) in precisions.items():
        arithmetic = emulated_tf32 if name == "tf32-emulated" else contextlib.nullcontext
        settings = BackboneSettings(
            name="tiny-seesr",
            device="cpu",
            dtype=dtype_name,
            autocast=autocast,
            weights_dtype=weights,
        )
        backbone = load_backbone(settings)
        dtype = getattr(torch, dtype_name)
        image = torch.from_numpy(pixels).permute(2, 0, 1)[None].to(dtype)
        latent, cond = backbone.encode(image, seeds=[0]), backbone.condition(image)
        noise = torch.randn(2, *latent.shape, generator=torch.Generator().manual_seed(0))
        noise = noise.to(dtype)
        if args.bijection != "edict":
            with arithmetic():
                forward, backward = two_step_trips(args, backbone, latent, noise, cond)
            print(f"{name:14} {'-':12} {forward:14.2e} {backward:14.2e}")
            continue
        for order in ORDERS:
            schedule = edict.make_schedule(
                InversionConfig(steps=args.steps, edict=EdictOptions(order=order))
            )
            with arithmetic():
                x_T, y_T = edict.invert(backbone.eps, latent, latent, schedule, cond)
                x0, y0 = edict.denoise(backbone.eps, x_T, y_T, schedule, cond)
            forward = max(relative_error(x0, latent), relative_error(y0, latent))
            with arithmetic():
                x0, y0 = edict.denoise(backbone.eps, noise[0], noise[1], schedule, cond)
                x_T, y_T = edict.invert(backbone.eps, x0, y0, schedule, cond)
            backward = max(relative_error(x_T, noise[0]), relative_error(y_T, noise[1]))
            print(f"{name:14} {order:12} {forward:14.2e} {backward:14.2e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
