"""The full ``dlmap`` parser and the ``enhance`` and ``demo`` commands (``dlmap.cli.main`` runs
them; it builds only the light commands' parsers when one of those is asked for)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dlmap import settings
from dlmap.cli.main import add_command
from dlmap.cli.models import NIQE_MODEL_HELP, prior_from_args, prior_options
from dlmap.diffusion.tiny_vae_store import TrainedVaeError, copy_vae, verify_vae
from dlmap.errors import UsageError
from dlmap.files import check_output_folder
from dlmap.inversion import config as inversion_config
from dlmap.weights.cache import CACHE_ENV

TINY_VAE_MINUTES = "about eight minutes"  # training the tiny VAE (dlmap.diffusion.tiny_vae)
WEAK_PRIOR_SHARE = 0.01  # below this share of the gradient in every iteration, warn


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _add_enhance_options(parser: argparse.ArgumentParser) -> None:
    defaults_s, defaults_e = settings.SolverConfig(), inversion_config.InversionConfig()
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--prior", default="colorfulness", help="prior name (dlmap priors list)")
    parser.add_argument(
        "--prior-file", type=Path, help="YAML file registering your priors (name: module:factory)"
    )
    parser.add_argument("--niqe-model", default=None, help=NIQE_MODEL_HELP)
    parser.add_argument("--backbone", default="sd2-seesr", choices=settings.BACKBONES)
    parser.add_argument("--mode", default=defaults_s.mode, choices=settings.MODES)
    parser.add_argument("--steps", type=int, default=defaults_e.steps, help="EDICT steps T")
    parser.add_argument("--iters", type=int, default=defaults_s.iters, help="MaxIter")
    parser.add_argument(
        "--lambda", dest="lam", type=float, default=defaults_s.lam, help="lambda of Eq. 17"
    )
    parser.add_argument(
        "--score-scale",
        default=defaults_s.score_scale,
        choices=sorted(settings.SCORE_SCALES),
        help="xi1 of Eq. 21: authors (0-100, the authors' code) or printed (0-1); it fixes "
        "what --lambda means",
    )
    parser.add_argument(
        "--stop-at",
        type=float,
        default=None,
        metavar="SCORE",
        help="latent-map: stop a problem once the calibrated score of x reaches SCORE (default "
        "90%% of the scale: 90 or 0.9); only for priors with fitted Eq. 21 constants",
    )
    parser.add_argument("--no-early-stop", action="store_true", help="run every iteration")
    parser.add_argument("--lr", type=float, default=defaults_s.lr, help="alpha of Alg. 1")
    parser.add_argument("--momentum", type=float, default=defaults_s.momentum, help="rho")
    parser.add_argument("--grad-clip", type=float, default=defaults_s.grad_clip)
    parser.add_argument("--no-clip", action="store_true", help="switch the gradient clip off")
    parser.add_argument(
        "--downsampling", type=int, default=defaults_s.downsampling, help="s of Eq. 20"
    )
    parser.add_argument("--mix", type=float, default=None, help="EDICT p (default 0.93^(50/T))")
    parser.add_argument("--order", default=defaults_e.edict.order, choices=inversion_config.ORDERS)
    parser.add_argument("--steps-offset", type=int, default=defaults_e.steps_offset)
    parser.add_argument(
        "--bijection",
        default=defaults_e.bijection,
        choices=inversion_config.BIJECTIONS,
        help="the exact noise <-> latent map: edict (the paper's, 2 network calls per step), "
        "bdia or belm (1 call per step; one output image, x)",
    )
    parser.add_argument(
        "--gamma", type=float, default=defaults_e.bdia.gamma, help="BDIA's gamma, in (0, 1]"
    )
    parser.add_argument(
        "--ends",
        default=defaults_e.bdia.ends,
        choices=inversion_config.ENDS,
        help="bdia/belm: where the chain ends: the scheduler's final alpha (dlmap's default) or "
        "alpha = 1 with eps(clean, t = 1) in inversion (BELM's code); docs/diffusion.md",
    )
    parser.add_argument("--gradient", default=defaults_s.gradient, choices=settings.GRADIENTS)
    parser.add_argument(
        "--encode",
        default="sample",
        choices=settings.ENCODES,
        help="VAE posterior: seeded sample (the authors') or mean",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=512, help="square side after preprocessing")
    parser.add_argument("--batch-size", type=_positive_int, default=1)
    parser.add_argument(
        "--device", default=None, help="cpu, cuda or cuda:N (default: cuda if available, else cpu)"
    )
    parser.add_argument("--dtype", default="float32", choices=settings.DTYPES)
    parser.add_argument("--autocast", default="none", choices=settings.AUTOCASTS)
    parser.add_argument(
        "--tf32",
        action="store_true",
        help="CUDA: TensorFloat-32 float32 matmuls and convolutions (faster; the round trip "
        "loses exactness, docs/enhance.md)",
    )
    memory = parser.add_argument_group(
        "GPU memory", 'switches for smaller GPUs (docs/enhance.md, "GPU memory")'
    )
    memory.add_argument(
        "--weights-dtype",
        default="same",
        choices=settings.WEIGHTS_DTYPES,
        help="bf16: the frozen networks in bfloat16, half their memory (needs --autocast bf16)",
    )
    memory.add_argument(
        "--checkpoint-blocks",
        action="store_true",
        help="recompute the UNet's and ControlNet's blocks in each step's backward pass",
    )
    memory.add_argument(
        "--vae-slicing", action="store_true", help="encode and decode one image at a time"
    )
    parser.add_argument("--sd2", default=None, help="SD2-base folder or cached hub id")
    parser.add_argument("--controlnet", default=None, help="ControlNet folder (sd2-controlnet)")
    parser.add_argument("--seesr", default=None, help="SeeSR folder (controlnet/, unet/)")
    parser.add_argument("--dape", default=None, help="folder of DAPE.pth")
    parser.add_argument("--ram", default=None, help="folder of ram_swin_large_14m.pth")
    parser.add_argument(
        "--vae",
        default=None,
        type=Path,
        help="tiny backbones: a VAE trained by `dlmap train-vae` instead of the random one",
    )
    parser.add_argument("--cache", default=None, help=f"weights folder (${CACHE_ENV})")
    parser.add_argument(
        "--plot", action="store_true", help="also write NAME.history.png (loss, score, fidelity)"
    )


def add_parsers(commands) -> None:
    """The ``enhance`` and ``demo`` commands' parsers."""
    enhance = add_command(commands, "enhance")
    enhance.add_argument(
        "inputs",
        nargs="+",
        type=Path,
        metavar="INPUT",
        help="image files, folders (their images) or quoted patterns such as 'shots/*.jpg'",
    )
    _add_enhance_options(enhance)

    demo = add_command(commands, "demo")
    demo.add_argument("--out", type=Path, default=Path("results/demo"))
    demo.add_argument("--iters", type=int, default=10)
    demo.add_argument(
        "--vae",
        type=Path,
        default=None,
        help="a trained tiny VAE to use (default: train one into OUT/vae, or reuse it there)",
    )
    demo.add_argument("--cache", default=None, help=f"weights folder (${CACHE_ENV})")


def _configs(args) -> settings.RunSettings:
    """The run's settings from the options; a bad value raises the settings' ``InputError``
    (exit code 2). ``--out`` is checked first: a file in the way or a link loop
    fails here, before the weights are checked and the models load."""
    import torch

    from dlmap import images

    check_output_folder(args.out, "--out")
    if args.device is None:
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    solver_config = settings.SolverConfig(
        mode=args.mode,
        iters=args.iters,
        lam=args.lam,
        lr=args.lr,
        momentum=args.momentum,
        grad_clip=None if args.no_clip else args.grad_clip,
        downsampling=args.downsampling,
        gradient=args.gradient,
        seed=args.seed,
        score_scale=args.score_scale,
        early_stop=not args.no_early_stop,
        stop_score=args.stop_at,
    )
    edict_config = inversion_config.InversionConfig.from_flat(
        steps=args.steps,
        mix=args.mix,
        steps_offset=args.steps_offset,
        order=args.order,
        bijection=args.bijection,
        gamma=args.gamma,
        ends=args.ends,
    )
    if args.vae is not None and not args.backbone.startswith("tiny"):
        raise UsageError(
            f"--vae replaces the tiny backbones' random VAE; --backbone "
            f"{args.backbone} loads SD2's VAE"
        )
    backbone = settings.BackboneSettings(
        name=args.backbone,
        device=args.device,
        dtype=args.dtype,
        autocast=args.autocast,
        tf32=args.tf32,
        encode=args.encode,
        cache=args.cache,
        vae=args.vae,
        sd2=args.sd2,
        controlnet=args.controlnet,
        seesr=args.seesr,
        dape=args.dape,
        ram=args.ram,
        weights_dtype=args.weights_dtype,
        checkpoint_blocks=args.checkpoint_blocks,
        vae_slicing=args.vae_slicing,
    )
    images.check_size(args.size)
    if args.size % 8:
        raise UsageError(f"--size must be a multiple of 8 (the VAE's factor), got {args.size}")
    if args.downsampling > args.size:
        raise UsageError(f"--downsampling {args.downsampling} exceeds --size {args.size}")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device {args.device}: CUDA is not available on this machine")
    if args.vae is not None:
        from dlmap.diffusion.tiny_vae_store import TrainedVaeError, verify_vae

        try:
            verify_vae(args.vae)
        except TrainedVaeError as error:
            raise UsageError(f"--vae {error}") from error
    return settings.RunSettings(backbone, solver_config, edict_config, args.size)


def _require_weights(args, backbone_settings) -> None:
    """Every weight set the command needs, the backbone's (``None``: pixel modes need none)
    and the prior's, checked before any work: one ``WeightsMissingError`` lists them all."""
    from dlmap.priors import registry as priors
    from dlmap.weights import catalogue

    try:
        prior_sets = priors.weight_sets(args.prior, **prior_options(args))
    except priors.UnknownPriorError:  # registered by --prior-file, or reported next
        prior_sets = ()
    if backbone_settings is None:
        catalogue.require_sets(prior_sets, cache=args.cache)
        return
    needed = [*catalogue.backbone_sets(backbone_settings.name), *prior_sets]
    catalogue.require_sets(needed, backbone_settings.weight_folders(), args.cache)


def enhance(args) -> int:
    """``dlmap enhance``: ``pipeline.enhance_files`` on the inputs; bad inputs and diverged
    solves are reported (exit 2 and 1) while the other inputs are still processed."""
    from dlmap import images
    from dlmap.diffusion import build
    from dlmap.enhance import pipeline

    run_settings = _configs(args)
    args.inputs = images.expand_paths(args.inputs)  # folders and patterns: their images
    stems: dict[str, Path] = {}
    for path in args.inputs:
        if path.stem in stems and stems[path.stem] != path:
            raise UsageError(f"{path}: same output name as {stems[path.stem]} (rename one)")
        stems[path.stem] = path
    latent = run_settings.solver.mode.startswith("latent")
    _require_weights(args, run_settings.backbone if latent else None)
    prior = prior_from_args(args)
    if not prior.info.calibration_fitted and "provisional" in prior.info.calibration_source:
        info = prior.info  # (hand-set scales such as colourfulness' are not provisional)
        hint = (
            ""
            if "dlmap calibrate" in info.calibration_source
            else ("; fit them with `dlmap calibrate` (the workflow: calibrate_prior on LIVE)")
        )
        print(
            f"dlmap: note: {info.name} has no Eq. 21 constants fitted to opinion scores; "
            f"using provisional xi3 = {info.xi3:g}, xi4 = {info.xi4:g} "
            f"({info.calibration_source}){hint}",
            file=sys.stderr,
        )
    backbone = build.load_backbone(run_settings.backbone) if latent else None
    run = pipeline.enhance_files(
        args.inputs,
        args.out,
        prior,
        backbone,
        run_settings,
        batch_size=args.batch_size,
        quiet=args.quiet,
        plot=args.plot,
    )
    for _, message in run.bad_inputs:
        print(f"dlmap: error: {message}", file=sys.stderr)
    for part, message in run.diverged:
        names = ", ".join(str(path) for path in part)
        print(f"dlmap: error: {names}: {message}; nothing written", file=sys.stderr)
    weak = []  # inputs where the prior barely acted
    for record in run.records:
        shares = [step["prior_share"] for step in record["history"]]
        if shares and max(shares) < WEAK_PRIOR_SHARE:
            weak.append((Path(record["input"]).name, max(shares)))
    if weak:
        names = ", ".join(f"{name} ({share:.2%})" for name, share in weak)
        print(
            f"dlmap: warning: the prior's share of the image-space gradient stayed under "
            f"{WEAK_PRIOR_SHARE:.0%} in every iteration for {names}: it barely acted; "
            f"raise --lambda (now {args.lam:g}, {args.score_scale} scale)",
            file=sys.stderr,
        )
    return 2 if run.bad_inputs else 1 if run.diverged else 0


def demo(args) -> int:
    """Enhance two photographs bundled with scikit-image on the tiny backbone: random UNet
    and ControlNet, with the trained tiny VAE (``dlmap.diffusion.tiny_vae``: the one that ships
    with dlmap, copied to the weights cache, and reused from OUT/vae when it is already
    there)."""
    import torch
    from skimage import data

    from dlmap import images
    from dlmap.diffusion import tiny_vae

    check_output_folder(args.out, "--out")  # before the VAE trains (minutes)
    vae = args.vae
    if vae is None:
        vae = args.out / "vae"
        try:
            record = verify_vae(vae)
            print(f"dlmap demo: reusing the trained tiny VAE in {vae}")
        except TrainedVaeError:
            key = tiny_vae.training_key()
            print(
                f"dlmap demo: the tiny VAE {key} (from the weights cache, or the one that ships "
                f"with dlmap; a recipe none ships for is trained: {TINY_VAE_MINUTES} on 2 CPU "
                f"cores) -> {vae}"
            )
            cached, record = tiny_vae.cached_vae(cache=args.cache, quiet=args.quiet)
            copy_vae(cached, vae)
    else:
        try:
            record = verify_vae(vae)
        except TrainedVaeError as error:
            raise UsageError(f"--vae {error}") from error
    mean = record["mean"]
    print(
        f"dlmap demo: the tiny VAE reconstructs held-out photographs at "
        f"{mean['vae_mean_psnr']:.2f} dB PSNR (bicubic {record['factor']}x down and up: "
        f"{mean['bicubic_psnr']:.2f} dB)"
    )
    inputs = args.out / "inputs"
    inputs.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in ("astronaut", "coffee"):
        path = inputs / f"{name}.png"
        pixels = torch.from_numpy(getattr(data, name)()).permute(2, 0, 1).float() / 255
        images.save_png_atomic(pixels, path)
        paths.append(path)
    argv = [
        "enhance",
        *map(str, paths),
        "--out",
        str(args.out),
        "--backbone",
        "tiny-seesr",
        "--vae",
        str(vae),
        "--size",
        "128",
        "--iters",
        str(args.iters),
        "--plot",
        "--batch-size",
        "2",
        "--device",
        "cpu",
    ]
    if args.quiet:
        argv.append("--quiet")
    print(
        "dlmap demo: tiny backbone, random UNet and ControlNet with the trained VAE "
        "(reduced settings, not the paper's models)"
    )
    from dlmap.cli.main import build_parser

    return enhance(build_parser("enhance")[0].parse_args(argv))


HANDLERS = {"enhance": enhance, "demo": demo}
