"""``dlmap weights``: fetch the weight sets of the catalogue (``dlmap.weights.catalogue``) from
each set's sources in order, or check which are present and verify their sha256."""

from __future__ import annotations

from dlmap import settings
from dlmap.cli.main import add_command
from dlmap.errors import UsageError
from dlmap.weights import cache as weights


def _asked_weights(args) -> list[str]:
    """The sets named, plus those of ``--backbone``; neither: everything the paper needs."""
    from dlmap.weights import catalogue

    unknown = [name for name in args.names if not catalogue.has(name)]
    if unknown:
        raise UsageError(
            f"weights {args.weights_command}: unknown {', '.join(unknown)}; "
            f"known: {', '.join(catalogue.names())}"
        )
    asked = list(args.names)
    if args.backbone is not None:
        asked += [n for n in catalogue.backbone_sets(args.backbone) if n not in asked]
    return asked if asked or args.backbone is not None else catalogue.paper_sets()


def weights_command(args) -> int:
    """``fetch``: try every asked set's sources in order, going on past failures, and end with
    one table (exit 1 while anything asked for is missing; under ``--quiet``, the table only
    then). ``check``: presence and full sha256 verification of every set (exit 1 if one that
    is needed is missing, or any file changed); needed: the sets named or ``--backbone``'s,
    else everything the paper needs."""
    from dlmap.weights import catalogue, sources

    asked = _asked_weights(args)
    if args.weights_command == "fetch":
        sources.timeout()  # a bad $DLMAP_DOWNLOAD_TIMEOUT fails before any download
        mirrors = sources.mirrors(args.mirror)
        results = catalogue.fetch_sets(asked, args.cache, mirrors, progress=not args.quiet)
        ok = all(result.ok for result in results)
        if not (ok and args.quiet):  # --quiet: the table only when something needs doing
            print_fetch_table(results)
        return int(not ok)
    rows = catalogue.check_all(asked, args.cache)
    tiny = (args.backbone or "").startswith("tiny")
    if tiny or (not args.names and args.backbone is None):  # the trained VAEs as well
        rows += trained_vae_rows(args.cache)
    for name, state, message in rows:
        print(f"{name}: {message}" if state == "present" else f"{name}: {state}: {message}")
    return int(any(state in ("MISSING", "CHANGED") for _, state, _ in rows))


def trained_vae_rows(cache=None) -> list[tuple[str, str, str]]:
    """A ``weights check`` row for each tiny VAE trained into the cache: its files against
    the sha256 its ``training.json`` recorded (``dlmap train-vae`` trains a damaged one
    again)."""
    from dlmap.diffusion.tiny_vae_store import TrainedVaeError, verify_vae

    rows = []
    for folder in sorted((weights.cache_dir(cache) / "tiny-vae").glob("[!.]*")):
        name = f"tiny-vae/{folder.name}"
        try:
            verify_vae(folder, todo="`dlmap train-vae` with the same settings trains it again")
        except TrainedVaeError as error:
            rows.append((name, "CHANGED", str(error)))
        else:
            rows.append((name, "present", f"trained tiny VAE in {folder} (sha256 verified)"))
    return rows


def print_fetch_table(results) -> None:
    """The table ``dlmap weights fetch`` ends with: set | state | source used | what to do,
    and one line under a set for each source that failed."""
    width = max([len("set"), *(len(result.name) for result in results)]) + 2
    used = max([len("source used"), *(len(result.source) for result in results)]) + 2
    header = f"{'set':<{width}}{'state':<20}{'source used':<{used}}what to do"
    print(header)
    print("-" * len(header))
    for result in results:
        print(f"{result.name:<{width}}{result.state:<20}{result.source:<{used}}{result.todo}")
        for attempt in result.attempts:
            print(f"{'':<{width}}  failed: {attempt.source}: {attempt.error}")
    ready = sum(result.ok for result in results)
    manual = sum(result.state == "manual step needed" for result in results)
    failed = len(results) - ready - manual
    print(f"{ready} of {len(results)} sets ready; {manual} need a manual step; {failed} failed")


def add_parsers(commands) -> None:
    """The ``weights`` command's parser."""
    weights_cmd = add_command(commands, "weights")
    weights_sub = weights_cmd.add_subparsers(dest="weights_command", required=True)
    fetch = weights_sub.add_parser(
        "fetch",
        help="download weights into the cache from each set's sources in order, then print "
        "one table: present, fetched, manual step needed or failed",
    )
    fetch.add_argument(
        "--mirror",
        action="append",
        default=[],
        metavar="URL_OR_FOLDER",
        help="a copy of a dlmap cache (http(s) URL or folder) to try before the public sources "
        "(repeatable; also $DLMAP_WEIGHTS_MIRRORS); $HF_ENDPOINT replaces huggingface.co",
    )
    check = weights_sub.add_parser(
        "check", help="report which weights are present and verify their sha256"
    )
    for sub, verb in ((fetch, "fetch"), (check, "require")):
        sub.add_argument(
            "names",
            nargs="*",
            metavar="NAME",
            help="a set of `dlmap weights check`'s list (e.g. sd2-base, liqe-mix, lpips); default: "
            "everything the paper needs (backbone, priors, comparison metrics)",
        )
        sub.add_argument(
            "--backbone",
            choices=settings.BACKBONES,
            default=None,
            help=f"also {verb} the sets this backbone loads",
        )
        sub.add_argument("--cache", default=None, help=f"weights folder (${weights.CACHE_ENV})")


HANDLERS = {"weights": weights_command}
