"""The ``dlmap select`` command: the image pairs of the 2AFC experiment (Eq. 18).

Exit codes: 0 success; 1 missing weights (``WeightsMissingError`` propagates to the main
command line, which prints its one line); 2 (via ``UsageError``) a bad argument or input.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from dlmap import settings
from dlmap.cli.main import add_command
from dlmap.errors import InputError, UsageError
from dlmap.files import check_output_file
from dlmap.weights import cache as weights


def add_select_parser(commands) -> argparse.ArgumentParser:
    """Add ``select`` to an argparse subparsers object; returns its parser."""
    select = add_command(commands, "select")
    select.add_argument(
        "--enhanced",
        type=Path,
        help="folder with one subfolder per enhancer, each holding NAME.png for every image",
    )
    select.add_argument(
        "--enhancer",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="an enhancer and its folder of NAME.png images (repeatable; external enhancers)",
    )
    select.add_argument(
        "--originals",
        type=Path,
        help="folder of the input images, matched by file stem; D2 embeds these "
        "(default: the first enhancer's outputs)",
    )
    select.add_argument("--k", type=int, default=20, help="images per pair of enhancers (K)")
    select.add_argument("--gamma", type=float, default=0.1, help="weight of D2 (gamma)")
    select.add_argument("--d1", default="lpips", choices=settings.D1_METRICS)
    select.add_argument("--d2", default="clip", choices=settings.D2_EMBEDDINGS)
    select.add_argument("--cache", default=None, help=f"weights folder (${weights.CACHE_ENV})")
    select.add_argument(
        "--size", type=int, default=None, help="resize every image to N x N first (bicubic)"
    )
    select.add_argument(
        "--device", default=None, help="cpu, cuda or cuda:N (default: cuda if available, else cpu)"
    )
    select.add_argument(
        "--out", required=True, type=Path, help="CSV of the pairs; settings go to OUT.json"
    )
    return select


def _enhancers(args) -> dict[str, Path]:
    """Enhancer name -> folder: ``--enhanced``'s subfolders, then each ``--enhancer``."""
    from dlmap.compare import selection

    found: dict[str, Path] = {}
    if args.enhanced is not None:
        try:
            found.update(selection.enhancer_folders(args.enhanced))
        except selection.SelectionInputError as error:
            raise UsageError(f"--enhanced {error}") from error
    for entry in args.enhancer:
        name, equals, folder = entry.partition("=")
        if not equals or not name.strip() or not folder.strip():
            raise UsageError(f"--enhancer {entry!r}: expected NAME=DIR")
        if name in found:
            raise UsageError(f"--enhancer {entry!r}: enhancer {name!r} is named twice")
        found[name] = Path(folder)
    if not found:
        raise UsageError("give the enhanced images with --enhanced DIR or --enhancer NAME=DIR")
    return found


def _check_settings(args) -> None:
    import torch

    from dlmap import images

    if args.k < 1:
        raise UsageError(f"--k must be at least 1, got {args.k}")
    if not (math.isfinite(args.gamma) and args.gamma >= 0):
        raise UsageError(f"--gamma must be a finite number >= 0, got {args.gamma}")
    if args.size is not None:
        try:
            images.check_size(args.size)
        except InputError as error:
            raise UsageError(f"--size: {error}") from error
    if args.out.is_dir():
        raise UsageError(f"--out {args.out}: is a folder; give the CSV file to write")
    check_output_file(args.out, "--out")
    if args.device is None:
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device {args.device}: CUDA is not available on this machine")


def select_command(args) -> int:
    """Check the inputs, build D1 and D2 (missing weights raise), compute the distance
    tables once, select K images per pair of enhancers, write the CSV and its sidecar."""
    from dlmap.compare import distances, selection

    _check_settings(args)
    candidates = selection.find_candidates(_enhancers(args), args.originals)
    if args.k > len(candidates.names):
        raise UsageError(
            f"--k {args.k} exceeds the {len(candidates.names)} images the enhancers share"
        )
    d1 = distances.create_d1(args.d1, cache=args.cache, device=args.device)
    d2 = distances.create_d2(args.d2, cache=args.cache, device=args.device)
    try:
        tables = selection.distance_tables(
            candidates, d1, d2, size=args.size, progress=not args.quiet
        )
    except distances.DistanceInputError as error:  # e.g. too small for MS-SSIM
        raise UsageError(f"--d1 {args.d1} / --d2 {args.d2}: {error}") from error
    rows = selection.select_pairs(tables, k=args.k, gamma=args.gamma)
    settings = selection.selection_settings(tables, args.k, args.gamma, rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sidecar = selection.write_pairs(rows, settings, args.out)
    print(
        f"selected {args.k} images for each of {len(candidates.pairs)} pairs of "
        f"{len(candidates.enhancers)} enhancers ({len(rows)} rows; D1 {args.d1}, D2 {args.d2}) "
        f"-> {args.out}; settings in {sidecar}"
    )
    return 0


def add_parsers(commands) -> None:
    add_select_parser(commands)


HANDLERS = {"select": select_command}
