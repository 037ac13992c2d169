"""Peak memory and time of one VAE decode + backward, with and without decoder checkpointing.

SD2's VAE architecture with random weights (same FLOPs as the real one), batch 1, on the CPU
(RSS) or CUDA; each setting in a fresh process. The solver decodes the EDICT pair with grad
once per MAP iteration, so this is the part of an iteration's memory that does not depend on T.

    python bench/vae_decode_memory.py              # 256x256 on CPU (about half a minute)
    python bench/vae_decode_memory.py --size 512 --device cuda
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

import torch
from _common import PeakMemory, setup_torch, synchronize
from diffusers import AutoencoderKL

from dlmap.diffusion.backbones import Backbone
from dlmap.testing.released import SD2_VAE


def child(checkpoint: bool, size: int, device: str) -> None:
    setup_torch(2)
    vae = AutoencoderKL(**SD2_VAE)
    unet = torch.nn.Linear(1, 1)  # unused: only the decoder is measured
    backbone = Backbone("vae-only", unet, vae, torch.zeros(1, 1, 1), checkpoint_decoder=checkpoint)
    backbone.to(device)
    latent = torch.randn(1, 4, size // 8, size // 8, device=device, requires_grad=True)
    began = time.perf_counter()
    with PeakMemory(device) as peak:
        (grad,) = torch.autograd.grad(backbone.decode(latent).square().sum(), latent)
        synchronize(device)
    seconds = time.perf_counter() - began
    print(f"{peak.bytes / 2**20:.0f} {seconds:.2f} {grad.norm().item():.9e}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--child", choices=("on", "off"))
    args = parser.parse_args(argv)
    if args.child:
        child(args.child == "on", args.size, args.device)
        return 0
    print(f"SD2-sized VAE decode + backward, {args.size}x{args.size}, batch 1, {args.device}")
    results = {}
    for setting in ("off", "on"):
        command = [sys.executable, __file__, "--child", setting, "--size", str(args.size)]
        output = subprocess.run(
            [*command, "--device", args.device], capture_output=True, text=True, check=True
        ).stdout.split()
        results[setting] = [float(x) for x in output]
        mib, seconds, norm = results[setting]
        print(
            f"checkpointing {setting:3}: peak {mib:7.0f} MiB  {seconds:6.2f} s  |grad| {norm:.9e}"
        )
    off, on = results["off"], results["on"]
    print(f"checkpointed / plain: memory {on[0] / off[0]:.2f}, time {on[1] / off[1]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
