"""Forward + backward time and peak memory of every prior at 512x512, one line each, with its
licence: what a prior costs before a user queues it.

Every prior is built with random weights (``dlmap.testing.random_priors``: the real architectures,
full-size CLIPs, nothing downloaded; the same cost as the real weights; MS-LIQE random too;
the ``pyiqa:NAME`` priors through ``dlmap.testing.offline_pyiqa``, every differentiable NR
metric of pyiqa that builds offline) in a temporary cache, then scores a 512x512 photograph
bundled with scikit-image, through the prior's own input protocol (pyiqa's crops and
resizing: TReS, HyperIQA and MANIQA score many crops and cost accordingly), and
back-propagates to the image. Time: median of ``--repeats`` calls after that first one.
Memory: peak resident memory of the first forward + backward above the memory in use
before it (CPU; each prior in a fresh process, so that memory another call freed and the
allocator kept does not hide it) or CUDA's max_memory_allocated. Parameters are counted on
the built model (CLIP included where pyiqa keeps it outside the module tree).

    python bench/priors.py                   # every prior, 512x512, this CPU
    python bench/priors.py --quick           # 224x224, one repeat (the test)
    python bench/priors.py --priors niqe musiq pyiqa:topiq_nr
    python bench/priors.py --registered      # the registered priors only (no pyiqa:NAME)
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time

import torch
from _common import MIB, PeakMemory, load_warning, median_time, setup_torch

from dlmap.images import center_crop_resize
from dlmap.priors import registry as priors


def photograph(size: int) -> torch.Tensor:
    import numpy as np
    from skimage import data

    pixels = center_crop_resize(data.coffee().astype(np.float32) / 255, size)
    return torch.from_numpy(pixels).permute(2, 0, 1)[None]


def every_prior(registered_only: bool = False) -> list[str]:
    """The registered priors, then ``pyiqa:NAME`` for every other differentiable metric."""
    from dlmap.priors import specs, zoo

    names = priors.available_priors()
    if registered_only:
        return names
    extra = [m for m in zoo.usable_metrics() if m not in specs.PAPER_METRICS]
    return names + [f"pyiqa:{metric}" for metric in extra]


def build(name: str, cache, small_clip: bool):
    from dlmap.msliqe import model as msliqe
    from dlmap.testing.offline_pyiqa import offline_random_weights
    from dlmap.testing.random_priors import random_weights

    if name.startswith("pyiqa:") and priors.prior_info(name).name == name:  # not a paper one
        with offline_random_weights(seed=0):
            return priors.create_prior(name, cache=cache)
    if name == "ms-liqe":
        config = msliqe.MSLIQEConfig(clip=msliqe.TINY_CLIP) if small_clip else None
        return priors.create_prior(name, allow_random=True, config=config, cache=cache)
    with random_weights(small_clip=small_clip):
        return priors.create_prior(name, cache=cache)


def parameter_count(prior) -> int:
    """Parameters of the prior, plus a CLIP that pyiqa keeps in a list (CLIPIQA+)."""
    count = sum(p.numel() for p in prior.parameters())
    net = getattr(getattr(prior, "metric", None), "net", None)
    held = getattr(net, "clip_model", None)
    if isinstance(held, list):
        count += sum(p.numel() for model in held for p in model.parameters())
    return count


def measure(name: str, size: int, repeats: int, args) -> str:
    """One row: build ``name`` with random weights, then time and measure forward + backward."""
    image = photograph(size).to(args.device)
    with tempfile.TemporaryDirectory() as cache:
        prior = build(name, cache, small_clip=args.quick).to(args.device)

        def step():
            pixels = image.clone().requires_grad_(True)
            (grad,) = torch.autograd.grad(prior(pixels).sum(), pixels)
            return grad

        with PeakMemory(args.device) as peak:  # the first call: nothing cached yet
            step()
        seconds = median_time(step, repeats, args.device)
    params = parameter_count(prior)
    licence = prior.info.licence.split(";")[0] or "-"
    return f"{name:<26}{params / 1e6:>9.1f}M{seconds:>10.3f}{peak.bytes / MIB:>10.0f}  {licence}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--priors", nargs="+", default=None, help="default: every prior")
    parser.add_argument(
        "--registered", action="store_true", help="only the registered priors (no pyiqa:NAME)"
    )
    parser.add_argument("--size", type=int, default=None, help="image side (default 512)")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls (default 3)")
    parser.add_argument("--quick", action="store_true", help="224x224, 1 repeat, small CLIPs")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    size = args.size or (224 if args.quick else 512)
    repeats = args.repeats or (1 if args.quick else 3)
    every = every_prior(args.registered)
    names = args.priors or every
    unknown = [name for name in names if name not in every and name not in every_prior()]
    if unknown:
        parser.error(f"unknown priors {unknown}; known: {every_prior()}")
    setup_torch(args.threads)
    if args.child:
        for name in names:
            print(measure(name, size, repeats, args))
        return 0
    warning = load_warning(args.threads, args.device)
    print(
        f"priors: forward + backward at {size}x{size}, batch 1, random weights, "
        f"device {args.device}, {args.threads} threads, median of {repeats}"
        + (f"; {warning}" if warning else "")
    )
    header = f"{'prior':<26}{'params':>10}{'seconds':>10}{'peak MiB':>10}  licence (code)"
    print(header)
    print("-" * len(header))
    start = time.perf_counter()
    for name in names:
        command = [sys.executable, __file__, "--child", "--priors", name, "--size", str(size)]
        command += ["--repeats", str(repeats), "--threads", str(args.threads)]
        command += ["--device", args.device] + (["--quick"] if args.quick else [])
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            print(f"{name:<26} failed: {done.stderr.strip().splitlines()[-1]}")
            continue
        print(done.stdout.strip().splitlines()[-1], flush=True)
    print(f"(total wall time {time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
