"""The full ``dlmap`` parser and the ``enhance`` and ``demo`` commands (``dlmap.cli.main`` runs
them; it builds only the light commands' parsers when one of those is asked for)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

import dlmap
from dlmap import images
from dlmap.cli.compare import add_compare_parsers, report_command, simulate_command
from dlmap.cli.data import add_data_parser, data_command
from dlmap.cli.experiment import add_experiment_parser, experiment_command
from dlmap.cli.main import Parser
from dlmap.cli.models import (
    NIQE_MODEL_HELP,
    calibrate_command,
    prior_from_args,
    priors_command,
    score_command,
    weights_command,
)
from dlmap.cli.rank import add_rank_parser, rank_command
from dlmap.cli.select import add_select_parser, select_command
from dlmap.cli.train import (
    add_train_parsers,
    evaluate_command,
    train_command,
    train_vae_command,
)
from dlmap.diffusion import backbones, edict
from dlmap.enhance import records, solver
from dlmap.errors import UsageError
from dlmap.priors import calibration
from dlmap.weights import cache as weights
from dlmap.weights import downloads

DTYPES = {"float32": torch.float32, "float64": torch.float64}
# training the tiny VAE (dlmap.diffusion.tiny_vae), measured
TINY_VAE_MINUTES = "about eight minutes"
AUTOCAST = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}
WEAK_PRIOR_SHARE = 0.01  # below this share of the gradient in every iteration, warn


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _add_enhance_options(parser: argparse.ArgumentParser) -> None:
    defaults_s, defaults_e = solver.SolverConfig(), edict.EdictConfig()
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--prior", default="colorfulness", help="prior name (dlmap priors list)")
    parser.add_argument(
        "--prior-file", type=Path, help="YAML file registering your priors (name: module:factory)"
    )
    parser.add_argument("--niqe-model", default=None, help=NIQE_MODEL_HELP)
    parser.add_argument("--backbone", default="sd2-seesr", choices=backbones.BACKBONES)
    parser.add_argument("--mode", default=defaults_s.mode, choices=solver.MODES)
    parser.add_argument("--steps", type=int, default=defaults_e.steps, help="EDICT steps T")
    parser.add_argument("--iters", type=int, default=defaults_s.iters, help="MaxIter")
    parser.add_argument(
        "--lambda", dest="lam", type=float, default=defaults_s.lam, help="lambda of Eq. 17"
    )
    parser.add_argument(
        "--score-scale",
        default=defaults_s.score_scale,
        choices=sorted(calibration.SCORE_SCALES),
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
    parser.add_argument("--order", default=defaults_e.order, choices=edict.ORDERS)
    parser.add_argument("--steps-offset", type=int, default=defaults_e.steps_offset)
    parser.add_argument("--gradient", default=defaults_s.gradient, choices=edict.GRADIENTS)
    parser.add_argument(
        "--encode",
        default="sample",
        choices=backbones.ENCODE_MODES,
        help="VAE posterior: seeded sample (the authors') or mean",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=512, help="square side after preprocessing")
    parser.add_argument("--batch-size", type=_positive_int, default=1)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32", choices=sorted(DTYPES))
    parser.add_argument("--autocast", default="none", choices=sorted(AUTOCAST))
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
    parser.add_argument("--cache", default=None, help=f"weights folder (${weights.CACHE_ENV})")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument(
        "--plot", action="store_true", help="also write NAME.history.png (loss, score, fidelity)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="dlmap",
        description="NR-IQA models as image priors: MAP estimation in diffusion latents",
    )
    parser.add_argument("--version", action="version", version=dlmap.__version__)
    commands = parser.add_subparsers(dest="command", required=True)

    enhance = commands.add_parser("enhance", help="enhance images by MAP in diffusion latents")
    enhance.add_argument("inputs", nargs="+", type=Path, metavar="INPUT")
    _add_enhance_options(enhance)

    demo = commands.add_parser("demo", help="enhance bundled photographs on the tiny backbone")
    demo.add_argument("--out", type=Path, default=Path("results/demo"))
    demo.add_argument("--iters", type=int, default=10)
    demo.add_argument(
        "--vae",
        type=Path,
        default=None,
        help="a trained tiny VAE to use (default: train one into OUT/vae, or reuse it there)",
    )
    demo.add_argument("--cache", default=None, help=f"weights folder (${weights.CACHE_ENV})")
    demo.add_argument("--quiet", action="store_true")

    calibrate = commands.add_parser(
        "calibrate", help="fit a prior's Eq. 21 constants to opinion scores"
    )
    calibrate.add_argument("--prior", required=True, help="prior name (dlmap priors list)")
    calibrate.add_argument(
        "--scores", required=True, type=Path, help="CSV with columns score (raw) and mos"
    )
    calibrate.add_argument("--out", required=True, type=Path, help="JSON report of the fit")
    calibrate.add_argument(
        "--mos-range",
        nargs=2,
        type=float,
        metavar=("LOW", "HIGH"),
        help="normalise MOS from this range to [0, 1] (default: MOS is already in [0, 1])",
    )
    calibrate.add_argument("--cache", default=None, help="where the registry finds constants")

    score = commands.add_parser(
        "score", help="a prior's raw and calibrated scores of image files (one row each)"
    )
    score.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    score.add_argument("--prior", required=True, help="prior name (dlmap priors list)")
    score.add_argument(
        "--prior-file", type=Path, help="YAML file registering your priors (name: module:factory)"
    )
    score.add_argument("--niqe-model", default=None, help=NIQE_MODEL_HELP)
    score.add_argument("--out", type=Path, default=None, help="also write the rows as CSV")
    score.add_argument(
        "--size", type=int, default=None, help="resize and crop to SIZE first (default: as is)"
    )
    score.add_argument(
        "--score-scale",
        default=calibration.DEFAULT_SCALE,
        choices=sorted(calibration.SCORE_SCALES),
        help="xi1 of Eq. 21: authors (0-100) or printed (0-1)",
    )
    score.add_argument("--device", default="cpu")
    score.add_argument("--cache", default=None, help=f"weights folder (${weights.CACHE_ENV})")

    priors_cmd = commands.add_parser("priors", help="the registered priors")
    priors_sub = priors_cmd.add_subparsers(dest="priors_command", required=True)
    listing = priors_sub.add_parser("list", help="name, parameters, training set, weights")
    listing.add_argument("--cache", default=None)
    table = priors_sub.add_parser("table", help="Table I's first three columns, from metadata")
    table.add_argument("--out", type=Path, default=None, help="also write them as CSV")

    weights_cmd = commands.add_parser("weights", help="fetch or check model weights")
    weights_sub = weights_cmd.add_subparsers(dest="weights_command", required=True)
    fetch = weights_sub.add_parser(
        "fetch", help="download weights into the cache, or print the manual steps"
    )
    fetch.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help=f"one of {', '.join(sorted([*weights.SOURCES, *downloads.FILE_SETS]))}; default: "
        "everything the paper needs (backbone, priors, comparison metrics)",
    )
    fetch.add_argument("--cache", default=None)
    check = weights_sub.add_parser(
        "check", help="report which weights are present and verify their sha256"
    )
    check.add_argument("--cache", default=None)
    add_data_parser(commands)
    add_train_parsers(commands)
    add_select_parser(commands)
    add_rank_parser(commands)
    add_compare_parsers(commands)
    add_experiment_parser(commands)
    return parser


def _configs(args):
    try:
        solver_config = solver.SolverConfig(
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
        edict_config = edict.EdictConfig(
            steps=args.steps, mix=args.mix, steps_offset=args.steps_offset, order=args.order
        )
        images.check_size(args.size)
    except ValueError as error:
        raise UsageError(str(error)) from error
    if args.size % 8:
        raise UsageError(f"--size must be a multiple of 8 (the VAE's factor), got {args.size}")
    if args.downsampling > args.size:
        raise UsageError(f"--downsampling {args.downsampling} exceeds --size {args.size}")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device {args.device}: CUDA is not available on this machine")
    if args.out.exists() and not args.out.is_dir():
        raise UsageError(f"--out {args.out}: exists and is not a folder")
    if args.vae is not None:
        from dlmap.diffusion.tiny_vae import TrainedVaeError, read_record

        if not args.backbone.startswith("tiny"):
            raise UsageError(f"--vae replaces the tiny backbones' random VAE; --backbone "
                             f"{args.backbone} loads SD2's VAE")  # fmt: skip
        try:
            read_record(args.vae)
        except TrainedVaeError as error:
            raise UsageError(f"--vae {error}") from error
    return solver_config, edict_config


def enhance(args) -> int:
    solver_config, edict_config = _configs(args)
    stems: dict[str, Path] = {}
    for path in args.inputs:
        if path.stem in stems and stems[path.stem] != path:
            raise UsageError(f"{path}: same output name as {stems[path.stem]} (rename one)")
        stems[path.stem] = path
    prior = prior_from_args(args)
    dtype = DTYPES[args.dtype]
    backbone = None
    if args.mode.startswith("latent"):
        backbone = backbones.load_backbone(
            args.backbone,
            sd2=args.sd2,
            controlnet=args.controlnet,
            seesr=args.seesr,
            dape=args.dape,
            ram=args.ram,
            cache=args.cache,
            dtype=dtype,
            device=args.device,
            encode_mode=args.encode,
            autocast_dtype=AUTOCAST[args.autocast],
            vae=args.vae,
        )
    prior = prior.to(device=args.device, dtype=dtype)

    failed = 0
    weak: list[tuple[str, float]] = []  # inputs where the prior barely acted
    loaded = []
    for path in dict.fromkeys(args.inputs):
        try:
            loaded.append((path, images.load_image(path, size=args.size)))
        except images.ImageError as error:
            print(f"dlmap: error: {error}", file=sys.stderr)
            failed = 2
    args.out.mkdir(parents=True, exist_ok=True)
    starts = range(0, len(loaded), args.batch_size)
    for start in tqdm(starts, desc="batches", unit="batch", disable=args.quiet or len(starts) < 2):
        chunk = loaded[start : start + args.batch_size]
        batch = torch.stack([image for _, image in chunk]).to(device=args.device, dtype=dtype)
        began = time.perf_counter()
        try:
            result = solver.map_solve(
                backbone,
                prior,
                batch,
                solver_config,
                edict_config,
                quiet=args.quiet,
                description=", ".join(path.name for path, _ in chunk),
            )
        except solver.NonFiniteError as error:
            names = ", ".join(str(path) for path, _ in chunk)
            print(f"dlmap: error: {names}: {error}; nothing written", file=sys.stderr)
            failed = max(failed, 1)
            continue
        seconds = (time.perf_counter() - began) / len(chunk)
        for index, (path, _) in enumerate(chunk):
            record = _write_outputs(args, path, index, result, prior, backbone, seconds)
            shares = [step["prior_share"] for step in record["history"]]
            if shares and max(shares) < WEAK_PRIOR_SHARE:
                weak.append((path.name, max(shares)))
    if weak:
        names = ", ".join(f"{name} ({share:.2%})" for name, share in weak)
        print(f"dlmap: warning: the prior's share of the image-space gradient stayed under "
              f"{WEAK_PRIOR_SHARE:.0%} in every iteration for {names}: it barely acted; "
              f"raise --lambda (now {args.lam:g}, {args.score_scale} scale)",
              file=sys.stderr)  # fmt: skip
    return failed


def _write_outputs(args, path, index, result, prior, backbone, seconds) -> dict:
    settings = {
        "size": args.size,
        "dtype": args.dtype,
        "autocast": args.autocast,
        "encode": args.encode,
        "device": args.device,
    }
    return records.write_enhanced(
        args.out, path, index, result, prior, backbone, seconds, settings, plot=args.plot
    )


def demo(args) -> int:
    """Enhance two photographs bundled with scikit-image on the tiny backbone: random UNet
    and ControlNet, with the VAE trained on the spot (``dlmap.diffusion.tiny_vae``,
    ``TINY_VAE_MINUTES`` on
    2 CPU cores, once: it is kept in the weights cache, and reused from OUT/vae when it is
    already there)."""
    from skimage import data

    from dlmap.diffusion import tiny_vae

    vae = args.vae
    if vae is None:
        vae = args.out / "vae"
        try:
            record = tiny_vae.read_record(vae)
            print(f"dlmap demo: reusing the trained tiny VAE in {vae}")
        except tiny_vae.TrainedVaeError:
            key = tiny_vae.training_key()
            print(f"dlmap demo: the tiny VAE {key} (from the weights cache, or trained there "
                  f"first: {TINY_VAE_MINUTES} on 2 CPU cores) -> {vae}")  # fmt: skip
            cached, record = tiny_vae.cached_vae(cache=args.cache, quiet=args.quiet)
            tiny_vae.copy_vae(cached, vae)
    else:
        try:
            record = tiny_vae.read_record(vae)
        except tiny_vae.TrainedVaeError as error:
            raise UsageError(f"--vae {error}") from error
    mean = record["mean"]
    print(f"dlmap demo: the tiny VAE reconstructs held-out photographs at "
          f"{mean['vae_mean_psnr']:.2f} dB PSNR (bicubic {record['factor']}x down and up: "
          f"{mean['bicubic_psnr']:.2f} dB)")  # fmt: skip
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
    print("dlmap demo: tiny backbone, random UNet and ControlNet with the trained VAE "
          "(reduced settings, not the paper's models)")  # fmt: skip
    return enhance(build_parser().parse_args(argv))


HANDLERS = {
    "enhance": enhance,
    "demo": demo,
    "priors": priors_command,
    "calibrate": calibrate_command,
    "score": score_command,
    "weights": weights_command,
    "data": data_command,
    "train-msliqe": train_command,
    "train-vae": train_vae_command,
    "evaluate": evaluate_command,
    "select": select_command,
    "rank": rank_command,
    "simulate": simulate_command,
    "report": report_command,
    "experiment": experiment_command,
}
