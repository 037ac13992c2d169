"""The ``dlmap data`` command: ``fetch``, ``check``, ``manifest`` (IQA data sets), ``synthetic``.

Exit codes: 0 success; 1 a set is missing, malformed or needs manual steps; 2 (via
``UsageError``) a bad argument, such as an unknown set name.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from dlmap.cli.main import add_command
from dlmap.data import manifests as datasets
from dlmap.data import sources
from dlmap.errors import UsageError
from dlmap.files import check_output_file, check_output_folder

_ROOT_HELP = f"data root (default: ${sources.DATA_ENV}, else ~/.cache/dlmap/data)"


def add_data_parser(commands) -> argparse.ArgumentParser:
    """Add ``data`` and its subcommands to an argparse subparsers object; returns its parser."""
    known = ", ".join(sources.SETS)
    data = add_command(commands, "data")
    sub = data.add_subparsers(dest="data_command", required=True)

    fetch = sub.add_parser(
        "fetch", help="download the sets that have a public URL, print the steps for the rest"
    )
    fetch.add_argument("names", nargs="+", metavar="NAME", help=f"one or more of {known}")
    fetch.add_argument("--root", default=None, help=_ROOT_HELP)

    check = sub.add_parser("check", help="verify each set's placement, one line per set")
    check.add_argument("names", nargs="*", metavar="NAME", help=f"default: all of {known}")
    check.add_argument("--root", default=None, help=_ROOT_HELP)

    manifest = sub.add_parser("manifest", help="write one manifest CSV with seeded splits")
    manifest.add_argument("names", nargs="+", metavar="NAME", help=f"one or more of {known}")
    manifest.add_argument("--out", required=True, type=Path, help="manifest CSV to write")
    manifest.add_argument("--root", default=None, help=_ROOT_HELP)
    manifest.add_argument("--seed", type=int, default=0)
    manifest.add_argument("--val-fraction", type=float, default=0.1)
    manifest.add_argument("--test-fraction", type=float, default=0.2)
    manifest.add_argument(
        "--spaq-short-side",
        type=int,
        default=512,
        help="resize SPAQ's shorter side to this, as its protocol does (0: the originals)",
    )
    synthetic = sub.add_parser(
        "synthetic",
        help="write an offline synthetic IQA set from scikit-image photographs (for tests)",
    )
    synthetic.add_argument("--out", required=True, type=Path, help="folder for images, manifest")
    synthetic.add_argument("--size", type=int, default=64, help="side of each image")
    synthetic.add_argument("--tiles", type=int, default=4, help="tiles per photograph side")
    synthetic.add_argument("--seed", type=int, default=0)
    return data


def _names(names: list[str]) -> list[str]:
    try:
        return [sources.spec(name).name for name in dict.fromkeys(names)]
    except sources.UnknownDatasetError as error:
        raise UsageError(str(error)) from error


def data_command(args) -> int:
    """Run ``dlmap data fetch|check|manifest|synthetic``; returns the exit code."""
    handlers = {"fetch": _fetch, "check": _check, "manifest": _manifest, "synthetic": _synthetic}
    return handlers[args.data_command](args)


def _fetch(args) -> int:
    status = 0
    for name in _names(args.names):
        try:
            sources.fetch(name, args.root)
            print(f"{name}: ready: {datasets.check(name, args.root)}")
        except sources.DatasetMissingError as error:
            label = "MISSING" if sources.spec(name).downloads else "MANUAL STEP"
            print(f"{name}: {label}: {error}")
            status = 1
        except sources.DatasetError as error:
            print(f"{name}: FAILED: {error}")
            status = 1
    return status


def _check(args) -> int:
    status = 0
    for name in _names(args.names) if args.names else list(sources.SETS):
        try:
            print(f"{name}: OK: {datasets.check(name, args.root)}")
        except sources.DatasetMissingError as error:
            print(f"{name}: MISSING: {error}")
            status = 1
        except sources.DatasetError as error:
            print(f"{name}: MALFORMED: {error}")
            status = 1
    return status


def _manifest(args) -> int:
    names = _names(args.names)
    check_output_file(args.out, "--out")  # before the sets load (and SPAQ is resized)
    val, test = args.val_fraction, args.test_fraction
    if val < 0 or test < 0 or val + test >= 1:
        raise UsageError(
            f"--val-fraction {val:g} and --test-fraction {test:g} must be >= 0 and sum below 1"
        )
    if args.spaq_short_side < 0:
        raise UsageError(f"--spaq-short-side must be >= 0, got {args.spaq_short_side}")
    try:
        entries = datasets.build_manifest(
            names, args.out, args.root, args.seed, val, test, args.spaq_short_side
        )
    except sources.DatasetError as error:
        print(f"dlmap: error: {error}", file=sys.stderr)
        return 1
    counts = Counter(entry.split for entry in entries)
    splits = ", ".join(f"{split} {counts[split]}" for split in datasets.SPLITS)
    print(f"wrote {len(entries)} entries ({splits}) to {args.out}; settings in {args.out}.json")
    return 0


def _synthetic(args) -> int:
    from dlmap.data import synthetic_iqa

    if args.size < 16 or args.tiles < 1:
        raise UsageError(f"--size must be >= 16 and --tiles >= 1, got {args.size}, {args.tiles}")
    check_output_folder(args.out, "--out")
    manifest = synthetic_iqa.make_synthetic_set(args.out, args.size, args.tiles, seed=args.seed)
    counts = Counter(entry.split for entry in datasets.read_manifest(manifest))
    splits = ", ".join(f"{split} {counts[split]}" for split in datasets.SPLITS)
    print(f"wrote a synthetic IQA set ({splits}; MOS = 1 - level / 6) to {manifest}")
    return 0


def add_parsers(commands) -> None:
    add_data_parser(commands)


HANDLERS = {"data": data_command}
