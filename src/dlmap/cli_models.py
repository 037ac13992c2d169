"""The ``dlmap`` commands about models: ``weights``, ``priors`` and ``calibrate``."""

from __future__ import annotations

import json
from dataclasses import asdict

from dlmap import images, priors, weights


class UsageError(ValueError):
    """A bad argument or input: reported in one line, exit code 2."""


def calibrate_command(args) -> int:
    """Fit xi3 and |xi4| (Eq. 21) to (raw score, MOS) pairs; store them for the registry."""
    import csv

    from dlmap import calibration

    try:
        info = priors.prior_info(args.prior)
    except priors.UnknownPriorError as error:
        raise UsageError(str(error)) from error
    if info is None:
        raise UsageError(f"prior {args.prior!r} publishes no metadata (PriorInfo) to calibrate")
    higher = info.higher_is_better
    try:
        with open(args.scores, newline="") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as error:
        raise UsageError(f"--scores {args.scores}: {error.strerror}") from error
    if not rows or not {"score", "mos"} <= set(rows[0]):
        raise UsageError(f"--scores {args.scores}: needs a header with columns score and mos")
    try:
        raw = [float(row["score"]) for row in rows]
        mos = [float(row["mos"]) for row in rows]
    except (TypeError, ValueError) as error:
        raise UsageError(f"--scores {args.scores}: a score or MOS is not a number") from error
    if args.mos_range:
        low, high = args.mos_range
        if high <= low:
            raise UsageError(f"--mos-range: HIGH must exceed LOW, got {low:g} {high:g}")
        mos = [(value - low) / (high - low) for value in mos]
    try:
        fit = calibration.fit_logistic(raw, mos, higher, source=str(args.scores))
    except (ValueError, RuntimeError) as error:  # RuntimeError: curve_fit did not converge
        raise UsageError(f"--scores {args.scores}: {error}") from error
    images.write_text_atomic(json.dumps(asdict(fit), indent=2) + "\n", args.out)
    stored = calibration.save_constants(args.prior, fit, args.cache)
    print(
        f"{args.prior}: n = {fit.count}, xi3 = {fit.xi3:.6g}, |xi4| = {fit.xi4:.6g}; "
        f"SRCC {fit.srcc:.4f}; PLCC {fit.plcc_raw:.4f} raw -> {fit.plcc_calibrated:.4f} "
        f"calibrated; stored in {stored}"
    )
    return 0


def priors_command(args) -> int:
    """``priors list``: one row per registered prior; a prior whose weights are missing is
    listed from its metadata, with what to fetch."""
    from dlmap import zoo

    header = f"{'name':<13}{'model':<28}{'params':>9}  {'training set':<44}weights"
    print(header)
    print("-" * len(header))
    for name in priors.available_priors():
        try:
            prior = priors.create_prior(name, cache=args.cache)
            info, params = prior.info, sum(p.numel() for p in prior.parameters())
            count = f"{params / 1e6:.1f}M" if params else "0"
            status = "present" if params else "none needed"
            if name == "niqe":
                status = "LIVE's model" if prior.official else "dlmap-fitted (offline)"
        except weights.WeightsMissingError as error:
            info = priors.prior_info(name)
            count = "-"
            status = f"MISSING: dlmap weights fetch {name}"
            if name not in zoo.PYIQA_MODELS:
                status = f"MISSING: {error}"
        provisional = (
            " (provisional calibration)" if "provisional" in info.calibration_source else ""
        )
        training = (
            info.training_set if len(info.training_set) <= 42 else info.training_set[:39] + "..."
        )
        print(
            f"{name:<13}{info.display_name[:27]:<28}{count:>9}  {training:<44}{status}{provisional}"
        )
    return 0


def weights_command(args) -> int:
    """``fetch``: download what can be downloaded, print the manual steps for the rest (exit
    1 while anything asked for is missing). ``check``: presence and full sha256 verification
    of every source (exit 1 if one the paper's backbone needs is missing, or any changed)."""
    status = 0
    if args.weights_command == "fetch":
        from dlmap import zoo

        known = sorted([*weights.SOURCES, *zoo.PYIQA_MODELS])
        unknown = [name for name in args.names if name not in known]
        if unknown:
            raise UsageError(
                f"weights fetch: unknown {', '.join(unknown)}; known: {', '.join(known)}"
            )
        for name in args.names or weights.PAPER_WEIGHTS:
            try:
                if name in zoo.PYIQA_MODELS:
                    zoo.fetch(name, args.cache)
                    print(f"{name}: ready in {weights.cache_dir(args.cache) / 'torch'}")
                else:
                    print(f"{name}: ready in {weights.fetch(name, args.cache)}")
            except weights.WeightsMissingError as error:
                print(f"{name}: MANUAL STEP: {error}")
                status = 1
        return status
    for name in sorted(weights.SOURCES):
        try:
            folder = weights.locate(name, cache=args.cache)
            present, _ = weights.present_files(folder, weights.SOURCES[name].files)
            weights.verify_files(present, args.cache, full=True)
            print(f"{name}: present in {folder} (sha256 verified)")
        except weights.WeightsMissingError as error:
            optional = name not in weights.PAPER_WEIGHTS
            print(f"{name}: MISSING{' (optional)' if optional else ''}: {error}")
            status = status if optional else 1
        except weights.ChecksumError as error:
            print(f"{name}: CHANGED: {error}")
            status = 1
    return status
