"""The ``dlmap`` commands about models: ``weights``, ``priors``, ``calibrate`` and ``score``."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from dlmap import settings
from dlmap.cli.main import add_command
from dlmap.errors import InputError, UsageError
from dlmap.files import check_output_file, write_rows, write_text_atomic
from dlmap.settings import score_scale
from dlmap.weights import cache as weights


def calibrate_command(args) -> int:
    """Fit xi3 and |xi4| (Eq. 21) to (raw score, MOS) pairs; store them for the registry."""
    from dlmap.priors import calibration
    from dlmap.priors import registry as priors

    info = priors.prior_info(args.prior)  # an unknown name: UnknownPriorError, exit 2
    if info is None:
        raise UsageError(f"prior {args.prior!r} publishes no metadata (PriorInfo) to calibrate")
    higher = info.higher_is_better
    try:
        raw, mos = calibration.read_score_table(args.scores)
    except InputError as error:
        raise UsageError(f"--scores {args.scores}: {error}") from error
    if args.mos_range:
        low, high = args.mos_range
        if high <= low:
            raise UsageError(f"--mos-range: HIGH must exceed LOW, got {low:g} {high:g}")
        mos = [(value - low) / (high - low) for value in mos]
    digest = ""  # the weights the scores came from: only MS-LIQE's are trained by the user
    if args.prior == "ms-liqe":
        from dlmap.msliqe.model import checkpoint_sha256

        digest = checkpoint_sha256(args.checkpoint, args.cache)
    elif args.checkpoint is not None:
        raise UsageError(f"--checkpoint applies to ms-liqe, not to {args.prior}")
    try:
        fit = calibration.fit_logistic(
            raw, mos, higher, source=str(args.scores), checkpoint_sha256=digest
        )
    except InputError as error:
        raise UsageError(f"--scores {args.scores}: {error}") from error
    write_text_atomic(json.dumps(asdict(fit), indent=2) + "\n", args.out)
    stored = calibration.save_constants(args.prior, fit, args.cache)
    print(
        f"{args.prior}: n = {fit.count}, xi3 = {fit.xi3:.6g}, |xi4| = {fit.xi4:.6g}; "
        f"SRCC {fit.srcc:.4f}; PLCC {fit.plcc_raw:.4f} raw -> {fit.plcc_calibrated:.4f} "
        f"calibrated; stored in {stored}"
    )
    return 0


NIQE_MODEL_HELP = (
    "NIQE's pristine model: auto (LIVE's if fetched, else the fitted fallback), live, fitted, "
    "or a .mat file (labelled custom)"
)


def prior_options(args) -> dict:
    """Keyword arguments for ``create_prior`` from prior-specific options (``--niqe-model``)."""
    model = getattr(args, "niqe_model", None)
    if model is None:
        return {}
    if args.prior != "niqe":
        raise UsageError(f"--niqe-model: only for --prior niqe, not {args.prior!r}")
    return {"model": model}


def prior_from_args(args):
    """The prior ``--prior`` names, after registering ``--prior-file``'s. Their own errors
    carry the exit code: a bad file or option and an unknown prior 2, missing weights 1 (as for
    the backbone's)."""
    from dlmap.priors import registry as priors

    if args.prior_file is not None:
        priors.register_from_file(args.prior_file)
    return priors.create_prior(args.prior, cache=args.cache, **prior_options(args))


def score_command(args) -> int:
    """``dlmap score``: one row per image with the prior's raw score and its calibrated score
    (Eq. 21 on the chosen scale), scored one at a time at the image's own size unless
    ``--size`` is given, as the enhancer's records score what it writes."""
    import sys

    import torch

    from dlmap import images
    from dlmap.priors import calibration

    if args.out is not None:
        check_output_file(args.out, "--out")
    scale = score_scale(args.score_scale)
    if args.size is not None:
        try:
            images.check_size(args.size)
        except InputError as error:
            raise UsageError(f"--size: {error}") from error
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device {args.device}: CUDA is not available on this machine")
    paths = images.expand_paths(args.images)  # folders and patterns: their images
    prior = prior_from_args(args).to(device=args.device)
    info, rows, failed = prior.info, [], 0
    for path in paths:
        try:
            image = images.load_image(path, size=args.size)[None].to(args.device)
        except images.ImageError as error:
            print(f"dlmap: error: {error}", file=sys.stderr)
            failed = 2
            continue
        with torch.no_grad():
            raw = prior(image).reshape(-1)
            if raw.shape != (1,) or not torch.isfinite(raw).all():
                print(
                    f"dlmap: error: {path}: prior {info.name!r} gave no finite score",
                    file=sys.stderr,
                )
                failed = max(failed, 1)
                continue
            calibrated = calibration.calibrate(
                raw, info.xi3, info.xi4, info.higher_is_better, scale.xi1
            )
        rows.append(
            {
                "image": str(path),
                "width": image.shape[-1],
                "height": image.shape[-2],
                "prior": info.name,
                "prior_model": info.display_name,
                "raw_score": float(raw[0]),
                "calibrated_score": float(calibrated[0]),
                "score_scale": scale.name,
                "scale_max": scale.xi1,
                "calibration_fitted": info.calibration_fitted,
                "calibration_source": info.calibration_source,
            }
        )
    for row in rows:
        print(
            f"{row['image']}: {info.name} raw {row['raw_score']:.6g}, calibrated "
            f"{row['calibrated_score']:.6g} ({scale.label})"
        )
    if args.out is not None and rows:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_rows(rows, args.out)
    if not info.calibration_fitted:
        print(
            f"note: {info.name}'s Eq. 21 constants are not fitted to MOS "
            f"({info.calibration_source})",
            file=sys.stderr,
        )
    return failed


def priors_command(args) -> int:
    """``priors list``: one row per registered prior, from its metadata (nothing is built);
    ``priors table``: Table I's first three columns, printed and optionally saved as CSV;
    ``priors constants``: each prior's Eq. 21 constants and whose they are, as Markdown (the
    table docs/priors.md shows)."""
    from dlmap.priors import registry as priors

    if args.priors_command == "table":
        return _table_one(args)
    if args.priors_command == "constants":
        from dlmap.priors.calibration import constants_table

        print("\n".join(constants_table()))
        return 0
    if args.all:
        return _pyiqa_table()
    from dlmap.settings import DEFAULT_SCALE, SCORE_SCALES

    scale = SCORE_SCALES[DEFAULT_SCALE]
    others = ", ".join(f"{s.name}: {s.label}" for s in SCORE_SCALES.values() if s is not scale)
    print(
        f"calibrated scores q (Eq. 21) lie on the {scale.name} scale, {scale.label} "
        f"(--score-scale; {others}); calibration: fitted to MOS, or provisional"
    )
    header = f"{'name':<13}{'model':<28}{'params':>9}  {'training set':<44}{'q':<7}weights"
    print(header)
    print("-" * len(header))
    for name in priors.available_priors():
        info = priors.prior_info(name)
        if info is None:
            print(f"{name:<13}{'(no metadata)':<28}{'-':>9}  {'-':<44}{'-':<7}-")
            continue
        params = info.params
        count = "-" if params is None else f"{params / 1e6:.1f}M" if params >= 50_000 else params
        status = priors.weights_status(name, args.cache)
        if "provisional" in info.calibration_source:
            status += " (provisional calibration)"
        training = info.training_set
        training = training if len(training) <= 42 else training[:39] + "..."
        print(
            f"{name:<13}{info.display_name[:27]:<28}{count:>9}  {training:<44}"
            f"{scale.label:<7}{status}"
        )
    from dlmap.priors import zoo

    usable = zoo.usable_metrics()
    print(
        f"and pyiqa:NAME for {len(usable)} of pyiqa's no-reference metrics (the paper's "
        "included, under their names above): dlmap priors list --all"
    )
    return 0


def _pyiqa_table() -> int:
    """``priors list --all``: every NR metric of the pinned pyiqa and whether it can be a
    prior (dlmap.priors.pyiqa_nr), from the table and pyiqa's own metadata (nothing built)."""
    from dlmap.priors import pyiqa_nr, specs

    numbers = ", ".join(f"{count} {kind}" for kind, count in pyiqa_nr.counts().items())
    print(
        f"pyiqa {pyiqa_nr.PYIQA_VERSION}'s {len(pyiqa_nr.table())} NR metrics: {numbers} "
        "(as measured offline on random weights); use one as --prior with the name shown"
    )
    header = (
        f"{'metric':<22}{'class':<21}{'prior':<26}{'params':>8} {'better':<7}"
        f"{'range':<11}{'min':>4} why / note"
    )
    print(header)
    print("-" * len(header))
    for name, row in sorted(pyiqa_nr.table().items()):
        meta = pyiqa_nr.pyiqa_metadata(name)
        better = "lower" if meta["lower_better"] else "higher"
        note = row.reason + (" (aesthetic)" if row.aesthetic else "")
        paper = specs.PAPER_METRICS.get(name)
        prior = paper or (f"pyiqa:{name}" if row.usable else "-")
        if paper and not row.usable:
            note += f"; served by the paper's prior {paper} (dlmap's own tests)"
        elif not row.usable:
            note += f"; alternative: pyiqa:{row.alternative}"
        params = "-" if row.params is None else f"{row.params / 1e6:.1f}M"
        side = row.min_side or "-"
        print(
            f"{name:<22}{row.kind:<21}{prior:<26}{params:>8} {better:<7}"
            f"{meta['score_range'][:10]:<11}{side:>4} {note}"
        )
    print(f"licence: pyiqa's code is {pyiqa_nr.table()['topiq_nr'].licence}")
    return 0


def _table_one(args) -> int:

    from dlmap.priors import registry as priors

    rows = priors.table_one_columns()
    width = max(len(row["model"]) for row in rows)
    print(f"{'NR-IQA model':<{width}}  {'Training set':<12}  # of params (M)")
    for row in rows:
        print(f"{row['model']:<{width}}  {row['training_set']:<12}  {row['params_millions']:>15}")
    for combined in sorted({r["training_sets"] for r in rows if r["training_set"] == "Multiple"}):
        print(f'"Multiple": {combined}')
    if args.out:
        write_rows(rows, args.out)
    return 0


def add_parsers(commands) -> None:
    """The ``calibrate``, ``score`` and ``priors`` commands' parsers."""
    calibrate = add_command(commands, "calibrate")
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
    calibrate.add_argument(
        "--checkpoint",
        type=Path,
        default=None,
        help="ms-liqe: the checkpoint that produced the scores (default: the installed one); "
        "its sha256 is recorded and the constants apply to it alone",
    )

    score = add_command(commands, "score")
    score.add_argument(
        "images",
        nargs="+",
        type=Path,
        metavar="IMAGE",
        help="image files, folders (their images) or quoted patterns such as 'shots/*.jpg'",
    )
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
        default=settings.DEFAULT_SCALE,
        choices=sorted(settings.SCORE_SCALES),
        help="xi1 of Eq. 21: authors (0-100) or printed (0-1)",
    )
    score.add_argument("--device", default="cpu")
    score.add_argument("--cache", default=None, help=f"weights folder (${weights.CACHE_ENV})")

    priors_cmd = add_command(commands, "priors")
    priors_sub = priors_cmd.add_subparsers(dest="priors_command", required=True)
    listing = priors_sub.add_parser("list", help="name, parameters, training set, weights")
    listing.add_argument("--cache", default=None)
    listing.add_argument(
        "--all",
        action="store_true",
        help="every NR metric of the pinned pyiqa, classified: differentiable, not "
        "differentiable, not a prior, not checked offline (and why)",
    )
    table = priors_sub.add_parser("table", help="Table I's first three columns, from metadata")
    table.add_argument("--out", type=Path, default=None, help="also write them as CSV")
    priors_sub.add_parser(
        "constants",
        help="each prior's Eq. 21 constants, the checkpoint they were fitted for, and their "
        "source (Markdown)",
    )


HANDLERS = {
    "calibrate": calibrate_command,
    "score": score_command,
    "priors": priors_command,
}
