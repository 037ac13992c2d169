"""Peak memory of ONE gradient of EDICT's denoising map h versus the number of steps T.

For each method (``gradient="recompute"`` -- ours, ``"reversible"`` -- ours, the exact-inverse
variant, and ``"autograd"`` -- plain autograd through all T steps) and each T, a fresh Python
process (this script re-invoked with ``--child METHOD T``) builds the tiny SeeSR backbone (its
image-attention ControlNet), draws a noise pair (x_T, y_T) requiring grad and measures

    x0, y0 = denoise(eps, x_T, y_T, schedule, cond, gradient=METHOD)
    ((x0 * w).sum() + (y0 * w2).sum()).backward()

as its peak memory minus the memory in use just before the call (CPU: resident set size, the
kernel's high-water mark VmHWM reset through /proc/self/clear_refs; CUDA: max_memory_allocated).
A small warm-up gradient at a tiny latent first initialises the libraries (oneDNN, allocator),
so that one-off library memory is not counted.

Plain autograd keeps every step's activations, so its figure must grow about linearly in T;
if autograd's peak(T_max)/peak(T_min) is below half of T_max/T_min (4 for T = 5..40) the
activations are drowned by allocator noise and the benchmark measures nothing -- widen the
latent (``--latent``). Ours should stay flat: the target is peak(T=40)/peak(T=5) <= 1.25.

    python bench/edict_memory.py                 # T = 5 10 20 40, latent 32x32, CPU
    python bench/edict_memory.py --device cuda   # the same on a GPU
    python bench/edict_memory.py --quick         # T = 3 5, latent 8x8 (the test)
    python bench/edict_memory.py --bijection bdia   # BDIA's or O-BELM's h (belm) instead

The last line is ``ours peak(T=40)/peak(T=5) = X.XX (target <= 1.25)`` (recompute).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import subprocess
import sys
import time

import torch
from _common import MIB, PeakMemory, load_warning, ratio_line, setup_torch

METHODS = ("recompute", "reversible", "autograd")
OURS = ("recompute", "reversible")
DEFAULT_STEPS = (5, 10, 20, 40)
QUICK_STEPS = (3, 5)  # BDIA and O-BELM need 3 steps at least
DEFAULT_LATENT = 32
QUICK_LATENT = 8
TARGET = 1.25
RESULT_TAG = "RESULT "


def measure(
    method: str, steps: int, latent: int, device: str, threads: int, bijection: str = "edict"
) -> dict:
    """One gradient of h in this process; returns its peak memory above the baseline."""
    from dlmap.diffusion.tiny import tiny_backbone
    from dlmap.inversion.config import InversionConfig
    from dlmap.inversion.registry import make_bijection

    def make_schedule(config):
        return make_bijection(InversionConfig(steps=config.steps, bijection=bijection))

    setup_torch(threads)
    backbone = tiny_backbone("seesr", seed=0, dtype=torch.float32).to(device)

    def gradient_of_h(side: int, schedule):
        generator = torch.Generator().manual_seed(1)
        images = torch.rand(1, 3, 8 * side, 8 * side, generator=generator).to(device)
        cond = backbone.condition(images)
        shape = (1, 4, side, side)
        x_T = torch.randn(shape, generator=generator).to(device).requires_grad_(True)
        y_T = torch.randn(shape, generator=generator).to(device).requires_grad_(True)
        w = torch.randn(shape, generator=generator).to(device)
        w2 = torch.randn(shape, generator=generator).to(device)

        def call():
            outputs = schedule.denoise(backbone.eps, x_T, y_T, cond, gradient=method)
            weights = (w, w2)[: len(outputs)]  # EDICT's pair, or x alone
            loss = sum((out * wt).sum() for out, wt in zip(outputs, weights, strict=True))
            loss.backward()

        return call, (x_T, y_T)

    warm_up, _ = gradient_of_h(4, make_schedule(InversionConfig(steps=3)))
    warm_up()
    del warm_up

    call, (x_T, y_T) = gradient_of_h(latent, make_schedule(InversionConfig(steps=steps)))
    start = time.perf_counter()
    with PeakMemory(device) as peak:
        call()
    seconds = time.perf_counter() - start
    finite = all(bool(torch.isfinite(z.grad).all()) for z in (x_T, y_T) if z.grad is not None)
    return {
        "method": method,
        "steps": steps,
        "peak_bytes": peak.bytes,
        "baseline_bytes": peak.baseline,
        "seconds": seconds,
        "finite": finite,
        "memory": peak.kind,
    }


def run_child(method: str, steps: int, args) -> dict:
    command = [
        sys.executable,
        os.path.abspath(__file__),
        "--child",
        method,
        str(steps),
        "--latent",
        str(args.latent),
        "--device",
        args.device,
        "--threads",
        str(args.threads),
        "--bijection",
        args.bijection,
    ]
    done = subprocess.run(command, capture_output=True, text=True)
    for line in done.stdout.splitlines():
        if line.startswith(RESULT_TAG):
            return json.loads(line[len(RESULT_TAG) :])
    sys.stderr.write(done.stdout + done.stderr)
    raise SystemExit(f"child {method} T={steps} failed with exit code {done.returncode}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, nargs="+", help="values of T (default 5 10 20 40)")
    parser.add_argument("--latent", type=int, help=f"latent side (default {DEFAULT_LATENT})")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--device", default="cpu", help="cpu (RSS) or cuda (allocator peak)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument(
        "--jobs", type=int, default=1, help="child processes at a time (each measures only itself)"
    )
    parser.add_argument("--quick", action="store_true", help="T = 3 5 on an 8x8 latent")
    parser.add_argument(
        "--bijection", default="edict", choices=("edict", "bdia", "belm"), help="the map h"
    )
    parser.add_argument("--child", nargs=2, metavar=("METHOD", "T"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.latent = args.latent or (QUICK_LATENT if args.quick else DEFAULT_LATENT)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("edict_memory: --device cuda needs CUDA, which torch does not see", file=sys.stderr)
        return 2

    if args.child:
        method, steps = args.child[0], int(args.child[1])
        result = measure(method, steps, args.latent, args.device, args.threads, args.bijection)
        print(RESULT_TAG + json.dumps(result), flush=True)
        return 0

    steps = sorted(args.steps or (QUICK_STEPS if args.quick else DEFAULT_STEPS))
    if len(steps) < 2:
        parser.error("give at least two values of T")
    t_min, t_max = steps[0], steps[-1]
    methods = [m for m in METHODS if m in args.methods]
    side = args.latent
    print(
        f"{args.bijection}: peak memory of one gradient of h (denoise with grad + backward), "
        f"tiny backbone + SeeSR ControlNet, float32, batch 1, latent 4x{side}x{side} "
        f"(image {8 * side}x{8 * side}), "
        f"device {args.device}, {args.threads} threads; each cell a fresh process, "
        "peak minus the baseline just before the call"
    )
    warning = load_warning(args.threads, args.device)
    if warning:
        print(warning)
    results: dict[str, dict[int, dict]] = {}
    wall = time.perf_counter()
    cells = [(method, t) for method in methods for t in steps]
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(args.jobs, 1)) as pool:
        done = pool.map(lambda cell: run_child(*cell, args), cells)
        for (method, t), result in zip(cells, done, strict=True):
            results.setdefault(method, {})[t] = result
    memory_kind = next(iter(next(iter(results.values())).values()))["memory"]
    print(f"memory counted: {memory_kind}, MiB")

    header = f"{'method':<12}" + "".join(f"{'T=' + str(t):>10}" for t in steps)
    header += f"{f'T{t_max}/T{t_min}':>12}{'s(T=' + str(t_max) + ')':>10}"
    print(header)
    print("-" * len(header))
    ratios = {}
    for method in methods:
        row = results[method]
        peaks = [row[t]["peak_bytes"] / MIB for t in steps]
        ratios[method] = row[t_max]["peak_bytes"] / max(row[t_min]["peak_bytes"], 1)
        line = f"{method:<12}" + "".join(f"{p:>10.1f}" for p in peaks)
        line += f"{ratios[method]:>12.2f}{row[t_max]['seconds']:>10.1f}"
        print(line)
        if not all(row[t]["finite"] for t in steps):
            print(f"WARNING: {method} produced a non-finite gradient")
    baseline = max(r["baseline_bytes"] for row in results.values() for r in row.values())
    print(
        f"(process memory before the call, not counted: up to {baseline / MIB:.0f} MiB; "
        f"total wall time {time.perf_counter() - wall:.0f} s)"
    )

    label = f"peak(T={t_max})/peak(T={t_min})"
    if "autograd" in ratios:
        need = 0.5 * t_max / t_min
        print(ratio_line(f"autograd {label}", ratios["autograd"], f"needs >= {need:.2f}"))
        if ratios["autograd"] < need:
            print(
                f"WARNING: autograd's ratio {ratios['autograd']:.2f} < {need:.2f}: "
                "the benchmark is not measuring anything (widen --latent)"
            )
        for method in OURS:
            if method in ratios:
                saving = results["autograd"][t_max]["peak_bytes"] / max(
                    results[method][t_max]["peak_bytes"], 1
                )
                print(f"autograd / {method} peak at T={t_max} = {saving:.2f}")
    if "reversible" in ratios:
        print(ratio_line(f"ours (reversible) {label}", ratios["reversible"], f"target <= {TARGET}"))
    if "recompute" in ratios:
        print(ratio_line(f"ours {label}", ratios["recompute"], f"target <= {TARGET}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
