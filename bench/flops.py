"""FLOPs of one MAP iteration and one inversion of the paper's backbone, and the seconds they
imply on common GPUs at an assumed efficiency: the basis of config.yaml's ``gpu_costs``.

Counted by torch's FlopCounterMode on SD2-base's UNet and VAE, SeeSR's ControlNet and RAM's
Swin-L built on the meta device (no weights, nothing allocated); ``dlmap.enhance.flops``
composes the per-call counts (its docstring gives the formula).

    python bench/flops.py [--size 512] [--steps 20] [--efficiency 0.8]
"""

from __future__ import annotations

import argparse


def main() -> None:
    from dlmap.enhance import flops

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument(
        "--efficiency",
        type=float,
        default=0.8,
        help="assumed share of the peak (float32 on CUDA cores)",
    )
    parser.add_argument(
        "--tensor-efficiency",
        type=float,
        default=0.3,
        help="assumed share of the peak on tensor cores (tf32, bf16)",
    )
    args = parser.parse_args()
    counts = flops.paper_network_flops(args.size)
    tera = 1e12
    print(
        f"per network call at {args.size}x{args.size}, batch 1 (TFLOP): "
        f"UNet + ControlNet forward {counts.eps_forward / tera:.3f}, its backward "
        f"{counts.eps_backward / tera:.3f}; VAE decode {counts.decode_forward / tera:.3f}, "
        f"its backward {counts.decode_backward / tera:.3f}; encode "
        f"{counts.encode / tera:.3f}"
    )
    print(f"{'bijection':<10}{'iteration TFLOP':>16}{'inversion TFLOP':>16}")
    for bijection in ("edict", "bdia", "belm", "leapfrog", "leapfrog-int"):
        print(
            f"{bijection:<10}{counts.iteration(args.steps, bijection) / tera:>16.1f}"
            f"{counts.inversion(args.steps, bijection) / tera:>16.1f}"
        )
    print(
        f"\nEDICT, T = {args.steps}: seconds per image at the assumed efficiency "
        f"({args.efficiency} float32, {args.tensor_efficiency} tensor cores)"
    )
    print(f"{'gpu':<12}{'precision':<10}{'peak TFLOP/s':>13}{'iteration s':>13}{'inversion s':>13}")
    for (gpu, precision), peak in flops.PEAK_TFLOPS.items():
        share = args.efficiency if precision == "float32" else args.tensor_efficiency
        iteration = flops.estimated_seconds(counts.iteration(args.steps), gpu, precision, share)
        inversion = flops.estimated_seconds(counts.inversion(args.steps), gpu, precision, share)
        print(f"{gpu:<12}{precision:<10}{peak:>13.1f}{iteration:>13.2f}{inversion:>13.2f}")


if __name__ == "__main__":
    main()
