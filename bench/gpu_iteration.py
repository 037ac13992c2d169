"""Seconds per MAP iteration and peak GPU memory at SD2-base size, with random weights.

Builds, with RANDOM weights (nothing is downloaded):

* the paper's backbone (``--backbone seesr``, default): diffusers ``UNet2DConditionModel``
  with SD2-base's config, SeeSR's image-attention ControlNet copied from it
  (``dlmap.diffusion.seesr.SeeSRControlNetModel.from_unet``, image embeddings 512 wide),
  RAM's Swin-L
  image embedder (``dlmap.diffusion.dape.ImageEmbedder``, 384x384, run once per image),
  ``AutoencoderKL`` with SD2's VAE config and a random prompt embedding (1, 77, 1024),
  wrapped in ``dlmap.diffusion.backbones.Backbone``; ``--backbone controlnet`` uses diffusers' stock
  ``ControlNetModel.from_unet`` instead (no embedder);
* a CLIP ViT-B/32-sized prior: the visual tower of open_clip's
  ``create_model("ViT-B-32-quickgelu", pretrained=None)`` on the image resized to 224 and
  normalised with CLIP's mean/std, then a fixed random linear head (one score per image),
  as a ``dlmap.priors.base.CallablePrior`` (higher is better, xi3 = 0, xi4 = 1). The prior runs
  in
  float32 in every configuration; autocast applies to the backbone.

then runs ``map_solve`` (latent-map, recompute gradient by default) at 512x512, T = 20, with
``SolverConfig(iters=3)`` at batch 1, 4 and 8, in four configurations (latents stay
float32): float32; float32 with the UNet's and ControlNet's blocks checkpointed and VAE
slicing ("float32-lean"); bf16 autocast; bf16 autocast with the frozen networks stored in
bf16; and the 24 GB setting (bf16 weights, the UNet's and ControlNet's blocks checkpointed,
VAE slicing). The peak memory column is the process's peak (CUDA: max allocated; CPU:
resident), weights included. The time of one iteration is measured inside the real solver:
the prior, called once per iteration, records when it is called, and the median time between
consecutive iterations' calls is one iteration. Before each configuration a one-step solve
(T = 1, 1 iteration; the same peak memory with the recompute gradient) warms the kernels up,
and a configuration that runs out of memory is reported as OOM.

    python bench/gpu_iteration.py            # needs CUDA
    python bench/gpu_iteration.py --tiny     # tiny backbone + tiny prior, 64x64, CPU, < 1 min
    # presets/fast.yaml's run: bf16 networks and the integer leapfrog, projected for that preset
    CUBLAS_WORKSPACE_CONFIG=:4096:8 python bench/gpu_iteration.py --bijection leapfrog-int \
        --precisions bf16-weights --config presets/fast.yaml

``--device cpu`` runs the full-size networks on the CPU (slow; only with small ``--size``
and ``--steps``, to check the script).
"""

from __future__ import annotations

import argparse
import gc
import logging
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from _common import MIB, PeakMemory, TimedPrior, load_warning, setup_torch, synchronize

from dlmap.diffusion.backbones import Backbone
from dlmap.diffusion.build import set_tf32
from dlmap.diffusion.tiny import tiny_backbone
from dlmap.enhance import flops, solver
from dlmap.inversion.config import BIJECTIONS, InversionConfig
from dlmap.priors.base import CallablePrior
from dlmap.priors.specs import PriorInfo
from dlmap.settings import GRADIENTS, SolverConfig
from dlmap.testing.released import SD2_UNET, SD2_VAE

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
PRIOR_INFO = PriorInfo(
    name="random-clip",
    display_name="Random CLIP ViT-B/32 score (benchmark only)",
    higher_is_better=True,
    xi3=0.0,
    xi4=1.0,
    score_range=(-10.0, 10.0),
    calibration_source="none: random weights",
)
BF16 = torch.bfloat16
PRECISIONS = {  # what each configuration switches on (docs/enhance.md, "GPU memory")
    "float32": {},
    "tf32": {"tf32": True},
    "float32-lean": {"checkpoint_blocks": True, "vae_slicing": True},
    "bf16-autocast": {"autocast": BF16},
    "bf16-weights": {"autocast": BF16, "weights": BF16},
    "24gb": {"autocast": BF16, "weights": BF16, "checkpoint_blocks": True, "vae_slicing": True},
}


class ClipScore(torch.nn.Module):
    """A CLIP-style image tower + a fixed random linear head: images in [0, 1] -> (B,)."""

    def __init__(self, visual: torch.nn.Module, input_size: int, features: int, seed: int = 0):
        super().__init__()
        self.visual, self.input_size = visual, input_size
        generator = torch.Generator().manual_seed(seed)
        self.head = torch.nn.Linear(features, 1)
        with torch.no_grad():
            self.head.weight.copy_(torch.randn(1, features, generator=generator) / features**0.5)
            self.head.bias.zero_()
        self.register_buffer("mean", torch.tensor(CLIP_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(CLIP_STD).view(1, 3, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        size = (self.input_size, self.input_size)
        x = F.interpolate(images, size=size, mode="bicubic", align_corners=False, antialias=True)
        x = (x - self.mean) / self.std
        return self.head(self.visual(x)).squeeze(1)


class TinyConvTower(torch.nn.Module):
    """Stand-in image tower when open_clip is not installed (tiny mode only)."""

    def __init__(self, features: int = 16):
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3, stride=2, padding=1),
            torch.nn.GELU(),
            torch.nn.Conv2d(8, features, 3, stride=2, padding=1),
            torch.nn.AdaptiveAvgPool2d(1),
            torch.nn.Flatten(),
        )

    def forward(self, x):
        return self.net(x)


def clip_prior(tiny: bool, seed: int = 0) -> tuple[CallablePrior, str]:
    """The prior and a description of its tower."""
    torch.manual_seed(seed)
    try:
        import open_clip
        from open_clip.transformer import QuickGELU, VisionTransformer
    except ImportError:
        if not tiny:
            raise
        tower, size, features, what = TinyConvTower(16), 32, 16, "tiny conv net"
    else:
        if tiny:
            tower = VisionTransformer(
                image_size=32,
                patch_size=8,
                width=32,
                layers=2,
                heads=2,
                mlp_ratio=2.0,
                output_dim=16,
                act_layer=QuickGELU,
            )
            size, features, what = 32, 16, "tiny open_clip ViT (32px, width 32, 2 layers)"
        else:
            logging.getLogger().setLevel(logging.ERROR)  # "No pretrained weights loaded"
            model = open_clip.create_model("ViT-B-32-quickgelu", pretrained=None)
            tower, size, features = model.visual, 224, model.visual.output_dim
            what = "open_clip ViT-B-32-quickgelu visual tower (random), 224px"
    prior = CallablePrior(ClipScore(tower, size, features, seed), PRIOR_INFO)
    prior.requires_grad_(False)
    return prior.eval(), what


def sd2_networks(device: torch.device, kind: str = "seesr", seed: int = 0) -> dict:
    """SD2-base-sized UNet, ControlNet (+ Swin-L embedder), VAE and prompt, random weights."""
    from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel

    from dlmap.diffusion.dape import DAPE_SWIN_L, ImageEmbedder
    from dlmap.diffusion.seesr import SeeSRControlNetModel

    torch.manual_seed(seed)
    with torch.device(device):  # initialise on the device: fast, no 5 GB CPU round trip
        unet = UNet2DConditionModel(**SD2_UNET)
        embedder = None
        if kind == "seesr":
            controlnet = SeeSRControlNetModel.from_unet(unet)
            embedder = ImageEmbedder(DAPE_SWIN_L)
        else:
            controlnet = ControlNetModel.from_unet(unet)
        vae = AutoencoderKL(**SD2_VAE)
        prompt = torch.randn(1, 77, SD2_UNET["cross_attention_dim"])
    return dict(
        name=f"sd2-{kind}-random",
        unet=unet,
        vae=vae,
        prompt_embedding=prompt,
        controlnet=controlnet,
        image_embedder=embedder,
    )


def tiny_networks(device: torch.device, kind: str = "seesr", seed: int = 0) -> dict:
    tiny = tiny_backbone(kind, seed=seed, dtype=torch.float32).to(device)
    return dict(
        name=tiny.name,
        unet=tiny.unet,
        vae=tiny.vae,
        prompt_embedding=tiny.prompt_embedding,
        controlnet=tiny.controlnet,
        image_embedder=tiny.image_embedder,
    )


def configure(networks: dict, precision: str, tiny: bool) -> Backbone:
    """The backbone of one configuration of ``PRECISIONS``. The networks are shared by every
    configuration, so each switch is set explicitly (bf16 weights cast back to float32 are
    rounded: random weights, so only the times and the memory matter here)."""
    spec = PRECISIONS[precision]
    set_tf32(spec.get("tf32", False))  # explicit both ways: cuDNN's default is on
    for net in (networks["unet"], networks["controlnet"]):
        if net is not None:
            net.disable_gradient_checkpointing()
    networks["vae"].disable_slicing()
    backbone = Backbone(**networks, autocast_dtype=spec.get("autocast"), reduced=tiny)
    backbone.save_memory(spec.get("checkpoint_blocks", False), spec.get("vae_slicing", False))
    return backbone.to(dtype=spec.get("weights", torch.float32))


def run_config(backbone, prior, batch, args, device) -> dict:
    """Seconds per iteration and peak memory of one configuration, or {"failed": "OOM"}."""
    generator = torch.Generator().manual_seed(batch)
    images = torch.rand(batch, 3, args.size, args.size, generator=generator).to(device)
    config = SolverConfig(iters=args.iters, gradient=args.gradient)
    failed = None
    try:
        warm = SolverConfig(iters=1, gradient=args.gradient)
        warm_steps = InversionConfig(
            steps=1 if args.bijection == "edict" else 3, bijection=args.bijection
        )
        solver.map_solve(backbone, prior, images, warm, warm_steps, quiet=True)
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        prior.calls.clear()
        with PeakMemory(device) as peak_memory:  # the weights are counted (absolute peak)
            began = time.perf_counter()
            seeds = list(range(batch))
            inversion_config = InversionConfig(steps=args.steps, bijection=args.bijection)
            solver.invert_images(backbone, images, inversion_config, seeds)
            synchronize(device)
            inversion = time.perf_counter() - began
            start = time.perf_counter()
            solver.map_solve(backbone, prior, images, config, inversion_config, quiet=True)
            synchronize(device)
            total = time.perf_counter() - start
    except torch.cuda.OutOfMemoryError:
        failed = "OOM"
    except solver.NonFiniteError as error:  # random weights: report, do not stop the table
        failed = "non-finite"
        print(f"({error})")
    if failed:  # out of the except block, so that the traceback's tensors can be freed
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
        return {"failed": failed}
    calls = prior.calls[: args.iters]  # the last call scores the final images
    intervals = [b - a for a, b in zip(calls, calls[1:], strict=False)]
    peak = peak_memory.peak  # absolute: the weights are counted
    return {
        "failed": None,
        "iteration": statistics.median(intervals),
        "total": total,
        "peak": peak,
        "inversion": inversion,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true", help="tiny networks, 64x64, T=4, CPU")
    parser.add_argument("--device", help="default cuda (cpu with --tiny)")
    parser.add_argument("--size", type=int, help="image side (default 512; 64 with --tiny)")
    parser.add_argument("--steps", type=int, help="EDICT steps T (default 20; 4 with --tiny)")
    parser.add_argument("--iters", type=int, default=3, help="MAP iterations (>= 2)")
    parser.add_argument("--batches", type=int, nargs="+", help="default 1 4 8 (1 2 with --tiny)")
    parser.add_argument(
        "--precisions", nargs="+", choices=list(PRECISIONS), default=list(PRECISIONS)
    )
    parser.add_argument("--gradient", default="recompute", choices=GRADIENTS)
    parser.add_argument("--bijection", default="edict", choices=BIJECTIONS)
    parser.add_argument(
        "--config",
        default="config.yaml",
        help="the workflow config whose GPU-hours the measured costs project (e.g. "
        "presets/fast.yaml with --bijection leapfrog-int --precisions bf16-weights)",
    )
    parser.add_argument("--backbone", default="seesr", choices=("seesr", "controlnet"))
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args(argv)
    device = torch.device(args.device or ("cpu" if args.tiny else "cuda"))
    if device.type == "cuda" and not torch.cuda.is_available():
        print(
            "gpu_iteration: CUDA is not available; use --tiny for the CPU version", file=sys.stderr
        )
        return 2
    if args.iters < 2:
        parser.error("--iters must be >= 2 (one iteration is the time between two)")
    args.size = args.size or (64 if args.tiny else 512)
    args.steps = args.steps or (4 if args.tiny else 20)
    batches = args.batches or ([1, 2] if args.tiny else [1, 4, 8])

    setup_torch(args.threads)
    start = time.perf_counter()
    networks = (tiny_networks if args.tiny else sd2_networks)(device, args.backbone)
    prior, prior_what = clip_prior(args.tiny)
    prior = TimedPrior(prior, device).to(device)
    millions = {
        what: sum(p.numel() for p in net.parameters()) / 1e6
        for what, net in (
            ("unet", networks["unet"]),
            ("controlnet", networks["controlnet"]),
            ("image embedder", networks["image_embedder"] or torch.nn.Identity()),
            ("vae", networks["vae"]),
            ("prior", prior),
        )
    }
    print(
        f"MAP iteration at {args.size}x{args.size}, T = {args.steps}, {args.iters} iterations "
        f"per configuration, gradient {args.gradient}, backbone {networks['name']} (random "
        "weights; "
        + ", ".join(f"{k} {v:.1f}M" for k, v in millions.items())
        + f"), prior: {prior_what}, device {device}"
        + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")
        + f"; built in {time.perf_counter() - start:.1f} s"
    )
    if device.type == "cuda":
        print(
            f"float32 matmul TF32 {torch.backends.cuda.matmul.allow_tf32}, "
            f"cuDNN TF32 {torch.backends.cudnn.allow_tf32}; weights on the GPU: "
            f"{torch.cuda.memory_allocated(device) / MIB:.0f} MiB (counted in the peaks)"
        )
    else:
        warning = load_warning(args.threads, device)
        if warning:
            print(warning)

    counts = flops.network_flops(configure(networks, "float32", args.tiny), args.size)
    per_image = counts.iteration(args.steps)
    print(
        f"one MAP iteration of one image: {per_image / 1e12:.3g} TFLOP (dlmap.enhance.flops; "
        "TFLOP/s below is that over the measured time: compare with the GPU's peak)"
    )
    header = (
        f"{'precision':<15}{'batch':>6}{'s/iter':>10}{'s/iter/image':>14}"
        f"{'TFLOP/s':>9}{'peak MiB':>14}{'total s':>9}"
    )
    print(header)
    print("-" * len(header))
    measured = {}
    for precision in args.precisions:
        backbone = configure(networks, precision, args.tiny)
        for batch in batches:
            row = run_config(backbone, prior, batch, args, device)
            measured[precision, batch] = row
            if row["failed"]:
                what = row["failed"]
                print(f"{precision:<15}{batch:>6}{what:>10}{what:>14}{'-':>9}{what:>14}{'-':>9}")
                continue
            peak = f"{row['peak'] / MIB:.0f}"
            achieved = per_image * batch / row["iteration"] / 1e12
            print(
                f"{precision:<15}{batch:>6}{row['iteration']:>10.3f}"
                f"{row['iteration'] / batch:>14.3f}{achieved:>9.3g}{peak:>14}{row['total']:>9.1f}",
                flush=True,
            )
    print(f"(total wall time {time.perf_counter() - start:.0f} s)")
    print_budget(measured, device, networks, args.config)
    return 0


def print_budget(measured: dict, device, networks, config_name: str = "config.yaml") -> None:
    """The measured costs (``GpuCosts``'s fields), and the paper's GPU-hours
    projected with them (``dlmap.workflow.budget``), for the fastest configuration."""
    import dataclasses
    from pathlib import Path

    import yaml

    from dlmap.workflow import budget, plan

    done = {key: row for key, row in measured.items() if not row["failed"]}
    if not done:
        print("no configuration finished: nothing to project")
        return
    (precision, batch), row = min(done.items(), key=lambda item: item[1]["iteration"] / item[0][1])
    width = 2 if "weights" in PRECISIONS[precision] else 4  # bytes per parameter
    weights = sum(
        p.numel() * width
        for net in networks.values()
        if isinstance(net, torch.nn.Module)
        for p in net.parameters()
    )
    config = yaml.safe_load((Path(__file__).resolve().parents[1] / config_name).read_text())
    spec = PRECISIONS[precision]
    arithmetic = "bf16" if "autocast" in spec else "tf32" if spec.get("tf32") else "float32"
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else str(device)
    costs = dataclasses.replace(  # the measured fields replace config.yaml's estimates
        budget.GpuCosts(**config["gpu_costs"]),
        gpu=name,
        precision=arithmetic,
        basis="measured",
        iteration_seconds=row["iteration"] / batch,
        inversion_seconds=row["inversion"] / batch,
        weights_gib=weights / 2**30,
        activation_gib=max((row["peak"] - weights) / 2**30 / batch, 0.01),
    )
    fields = dataclasses.asdict(costs)
    print(
        f"\nmeasured costs for {config_name}'s gpu_costs (fastest: {precision}, batch {batch}, "
        f"{device}; load, scoring, training and host memory kept from config.yaml):"
    )
    values = (f"{k}: {v:.3g}" if isinstance(v, float) else f"{k}: {v!r}" for k, v in fields.items())
    print("gpu_costs: {" + ", ".join(values) + "}")
    hours = plan.project_gpu_hours(config, costs)
    print(f"projected GPU-hours of the paper's configuration ({config_name}):")
    for stage, value in hours.items():
        print(f"  {stage}: {value:.1f}")
    print(f"  total: {sum(hours.values()):.1f}")


if __name__ == "__main__":
    sys.exit(main())
