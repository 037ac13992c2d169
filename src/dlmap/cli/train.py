"""The ``dlmap train-msliqe`` and ``dlmap evaluate`` commands (paper Sec. V and Table I), and
``dlmap train-vae`` (the tiny backbone's VAE, trained on the spot for the demo)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from dlmap.cli.main import add_command
from dlmap.cli.models import NIQE_MODEL_HELP, prior_options
from dlmap.diffusion.tiny_vae_store import VaeTraining, copy_vae
from dlmap.errors import UsageError
from dlmap.files import check_output_file, check_output_folder


def add_train_parsers(commands) -> None:
    """Add ``train-msliqe`` and ``evaluate`` to an argparse subparsers object."""
    train = add_command(commands, "train-msliqe")
    train.add_argument("--manifest", required=True, type=Path, help="dlmap data manifest CSV")
    train.add_argument("--out", required=True, type=Path, help="folder for checkpoints, metrics")
    train.add_argument("--epochs", type=int, default=80)
    train.add_argument("--batch-size", type=int, default=48)
    train.add_argument("--lr", type=float, default=5e-6, help="5e-6: fine-tuning OpenAI's CLIP")
    train.add_argument("--weight-decay", type=float, default=1e-3)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--image-size", type=int, default=512, help="square side of each image")
    train.add_argument(
        "--init", default="openai", help="openai (OpenAI CLIP weights), random, or a state dict"
    )
    train.add_argument(
        "--clip",
        default="ViT-B-32-quickgelu",
        help="open_clip config name, 'tiny' (a toy CLIP for tests and demos) or a JSON file",
    )
    train.add_argument(
        "--pairing",
        default="per-dataset",
        choices=["per-dataset", "partner"],
        help="per-dataset: LIQE's sub-batch from every set, all pairs within it (default); "
        "partner: each image once with a random partner from its set",
    )
    train.add_argument("--no-flip", action="store_true", help="no random horizontal flips")
    train.add_argument(
        "--train-logit-scale", action="store_true", help="train CLIP's logit scale (LIQE: frozen)"
    )
    train.add_argument(
        "--proportions",
        default="liqe",
        choices=["liqe", "equal"],
        help="per-set sub-batches: LIQE's 4/4/4/4/16/16 of 48 (default) or equal shares",
    )
    train.add_argument(
        "--fixed-views",
        action="store_true",
        help="train on the fixed test-time views (default: random crops of the pyramid)",
    )
    train.add_argument(
        "--temperature", type=float, default=2.0, help="Eq. 24's tau at the start (learned)"
    )
    train.add_argument(
        "--fixed-temperature", action="store_true", help="keep tau fixed (default: learned)"
    )
    train.add_argument(
        "--lr-schedule",
        default="liqe",
        choices=["liqe", "single"],
        help="liqe: CosineAnnealingLR(T_max = --cosine-period) per epoch, as LIQE (default); "
        "single: one cosine over all steps",
    )
    train.add_argument("--cosine-period", type=int, default=5, help="LIQE's T_max, in epochs")
    train.add_argument("--scales", type=float, nargs="+", default=[1.0, 0.75])
    train.add_argument("--crops-per-scale", type=int, default=7)
    train.add_argument("--crop", type=int, default=224, help="view size (CLIP's input)")
    train.add_argument("--stride", type=int, default=32)
    train.add_argument("--no-whole", action="store_true", help="no whole-image view")
    train.add_argument("--workers", type=int, default=0, help="data-loading processes")
    train.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    train.add_argument(
        "--resume-if-compatible",
        action="store_true",
        help="continue from OUT/last.pt when it exists with the same settings, else start anew "
        "(the workflow's rule: a run with changed options never resumes a stale state)",
    )
    train.add_argument("--stop-after", type=int, default=None, help="end after N epochs")
    train.add_argument(
        "--resume-from",
        type=Path,
        default=None,
        metavar="STATE",
        help="continue from another run's last.pt (the previous job of a chain)",
    )
    train.add_argument(
        "--until-epoch", type=int, default=None, metavar="E", help="end after epoch E"
    )
    train.add_argument(
        "--install", action="store_true", help="copy the result to where `ms-liqe` loads it"
    )
    train.add_argument("--cache", default=None, help="weights folder ($DLMAP_CACHE)")

    evaluate = add_command(commands, "evaluate")
    evaluate.add_argument("--prior", required=True, help="a registered prior (dlmap priors list)")
    evaluate.add_argument("--niqe-model", default=None, help=NIQE_MODEL_HELP)
    evaluate.add_argument(
        "--manifest",
        required=True,
        type=Path,
        help="CSV with columns image and mos; optional: dataset, split, mos_std, reference, "
        "mos_original, scale_original (dlmap data manifest writes them all)",
    )
    evaluate.add_argument("--out", required=True, type=Path, help="CSV, one row per data set")
    evaluate.add_argument(
        "--split",
        default=None,
        help="train, val, test or all (default: test, or all when the manifest has no splits)",
    )
    evaluate.add_argument(
        "--size", type=int, default=None, help="shorter side to SIZE, centre crop (default: as is)"
    )
    evaluate.add_argument("--checkpoint", default=None, help="weights for ms-liqe")
    evaluate.add_argument("--cache", default=None)

    from dlmap.diffusion.tiny_vae_store import VaeTraining

    defaults = VaeTraining()
    vae = add_command(commands, "train-vae")
    vae.add_argument("--out", required=True, type=Path, help="folder of the trained VAE")
    vae.add_argument("--steps", type=int, default=defaults.steps)
    vae.add_argument("--batch-size", type=int, default=defaults.batch_size)
    vae.add_argument("--crop", type=int, default=defaults.crop, help="training crop side")
    vae.add_argument("--lr", type=float, default=defaults.lr)
    vae.add_argument("--kl-weight", type=float, default=defaults.kl_weight)
    vae.add_argument("--seed", type=int, default=defaults.seed)
    vae.add_argument("--cache", default=None, help="weights folder ($DLMAP_CACHE)")
    vae.add_argument(
        "--no-cache",
        action="store_true",
        help="train anew, neither reusing nor storing <cache>/tiny-vae/KEY",
    )


def _clip_config(args):
    from dlmap.msliqe import model as msliqe

    if args.clip == "tiny":  # 8 x 8 patches per view, whatever the view size
        vision = dict(msliqe.TINY_CLIP["vision_cfg"], image_size=args.crop)
        return dict(msliqe.TINY_CLIP, vision_cfg=dict(vision, patch_size=max(1, args.crop // 8)))
    if args.clip.endswith(".json"):
        try:
            return json.loads(Path(args.clip).read_text())
        except (OSError, ValueError) as error:
            raise UsageError(f"--clip {args.clip}: {error}") from error
    return args.clip


def train_command(args) -> int:
    from dlmap.msliqe import model as msliqe
    from dlmap.msliqe import train as msliqe_train

    check_output_folder(args.out, "--out")
    if not args.manifest.is_file():
        raise UsageError(f"--manifest {args.manifest}: no such file")
    if args.resume and not (args.out / msliqe_train.LAST).is_file():
        raise UsageError(f"--resume: no {msliqe_train.LAST} in {args.out}")
    if args.resume_from is not None and not args.resume_from.is_file():
        raise UsageError(f"--resume-from {args.resume_from}: no such file")
    if args.until_epoch is not None and args.until_epoch < 1:
        raise UsageError(f"--until-epoch: must be >= 1, got {args.until_epoch}")
    model = msliqe.MSLIQEConfig(
        clip=_clip_config(args),
        scales=tuple(args.scales),
        crops_per_scale=args.crops_per_scale,
        include_whole=not args.no_whole,
        stride=args.stride,
        crop=args.crop,
        temperature=args.temperature,
    )
    config = msliqe_train.TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        seed=args.seed,
        image_size=args.image_size,
        init=args.init,
        workers=args.workers,
        model=model,
        pairing=args.pairing,
        flip=not args.no_flip,
        freeze_logit_scale=not args.train_logit_scale,
        proportions=args.proportions,
        random_crops=not args.fixed_views,
        learn_temperature=not args.fixed_temperature,
        lr_schedule=args.lr_schedule,
        cosine_period=args.cosine_period,
    )
    resume = args.resume
    if args.resume_if_compatible:
        resume = msliqe_train.can_resume(args.out, config)
        if not resume and (args.out / msliqe_train.LAST).is_file():
            print(f"{args.out / msliqe_train.LAST}: other settings; training anew")
    history = msliqe_train.train(
        config,
        args.manifest,
        args.out,
        resume,
        args.stop_after,
        args.cache,
        args.quiet,
        resume_from=args.resume_from,
        until=args.until_epoch,
    )
    final = args.out / msliqe_train.FINAL
    if not final.is_file():
        print(
            f"stopped after epoch {history[-1]['epoch']}; continue with --resume (or "
            f"--resume-from {args.out / msliqe_train.LAST})"
        )
        return 0
    print(f"trained MS-LIQE: {final}; metrics per epoch: {args.out / 'metrics.csv'}")
    if args.install:
        target = msliqe.default_checkpoint(args.cache)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(final, target)
        print(f"installed as the `ms-liqe` prior's weights: {target}")
    return 0


def evaluate_command(args) -> int:
    """``dlmap evaluate``: the prior's SRCC, KRCC and PLCC per data set of the manifest's split
    (``--split``; a manifest without splits is evaluated whole), and its per-image scores."""
    from dlmap.data import manifests as datasets
    from dlmap.files import write_rows
    from dlmap.priors import evaluation
    from dlmap.priors import registry as priors

    check_output_file(args.out, "--out")
    try:
        entries = datasets.read_manifest_resolved(args.manifest)
    except (OSError, datasets.DatasetError) as error:
        raise UsageError(f"--manifest {args.manifest}: {error}") from error
    if args.split is None:
        args.split = "test" if any(entry.split for entry in entries) else "all"
    if args.split != "all":
        entries = [entry for entry in entries if entry.split == args.split]
    if not entries:
        raise UsageError(f"--manifest {args.manifest}: no images in split {args.split!r}")
    takes_checkpoint = priors.takes_argument(args.prior, "checkpoint")  # unknown: exit 2
    kwargs = prior_options(args)
    if args.checkpoint is not None:
        if not takes_checkpoint:
            raise UsageError(f"--checkpoint: prior {args.prior!r} takes no checkpoint")
        kwargs["checkpoint"] = args.checkpoint
    prior = priors.create_prior(args.prior, cache=args.cache, **kwargs)  # errors: own codes
    per_image: list[dict] = []
    rows = evaluation.evaluate(prior, entries, args.size, args.quiet, per_image)
    for row in rows:
        row["split"] = args.split
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_rows(rows, args.out)
    scores_path = evaluation.per_image_path(args.out)
    write_rows(per_image, scores_path)
    print(f"per-image scores: {scores_path}")
    for row in rows:
        print(
            f"{row['prior']} on {row['dataset']} ({row['count']} images, {args.split}): "
            f"SRCC {row['srcc']:.4f}, KRCC {row['krcc']:.4f}, PLCC {row['plcc']:.4f}"
        )
    return 0


def train_vae_command(args) -> int:
    from dlmap.diffusion import tiny_vae

    check_output_folder(args.out, "--out")  # before minutes of training
    try:
        config = VaeTraining(
            steps=args.steps,
            batch_size=args.batch_size,
            crop=args.crop,
            lr=args.lr,
            kl_weight=args.kl_weight,
            seed=args.seed,
        )
    except ValueError as error:
        raise UsageError(str(error)) from error
    if args.no_cache:
        record = tiny_vae.write_trained_vae(args.out, config, quiet=args.quiet)
        where = "trained anew"
    else:
        folder, record = tiny_vae.cached_vae(config, args.cache, quiet=args.quiet)
        copy_vae(folder, args.out)
        where = (
            f"cached in {folder}"
            if record.get("key") == folder.name
            else f"shipped with dlmap for this recipe, copied to {folder}"
        )
    print(
        f"tiny VAE ({record['factor']}x, REDUCED; trained in {record['training_seconds']} s, "
        f"{where}) -> {args.out}"
    )
    print("held-out PSNR (dB)   VAE mean  VAE sample  bicubic")
    for row in record["held_out"]:
        print(
            f"  {row['image']:<18} {row['vae_mean_psnr']:8.2f} {row['vae_sample_psnr']:11.2f} "
            f"{row['bicubic_psnr']:8.2f}"
        )
    mean = record["mean"]
    print(
        f"  {'mean':<18} {mean['vae_mean_psnr']:8.2f} {mean['vae_sample_psnr']:11.2f} "
        f"{mean['bicubic_psnr']:8.2f}"
    )
    return 0


def add_parsers(commands) -> None:
    add_train_parsers(commands)


HANDLERS = {
    "train-msliqe": train_command,
    "evaluate": evaluate_command,
    "train-vae": train_vae_command,
}
