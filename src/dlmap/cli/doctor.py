"""The checking commands: ``dlmap doctor`` (can this machine or cluster account run a
configuration?) and ``dlmap check-results`` (are a run's results whole?)."""

from __future__ import annotations

from pathlib import Path

from dlmap.cli.main import add_command


def doctor_command(args) -> int:
    """Print every check of ``dlmap.workflow.doctor``, section by section, then one verdict;
    exit 0 only when the run can start (no BLOCKING row)."""
    from dlmap.workflow import doctor

    rows = doctor.diagnose(args.configfile, args.cache, args.data_root, args.out)
    section = None
    for row in rows:
        if row.section != section:
            section = row.section
            print(f"\n{section}")
        print(f"  [{row.state}] {row.item}: {row.detail}")
        if row.todo and row.state != doctor.OK:
            print(f"      -> {row.todo}")
    blocking = [row for row in rows if row.state == doctor.BLOCKING and row.section != "phases"]
    missing = [row for row in rows if row.state == doctor.MISSING]
    if blocking:
        print(
            f"\ncannot start: {len(blocking)} blocking problem(s) above"
            + (f", and {len(missing)} set(s) still to fetch" if missing else "")
        )
        return 1
    extra = f" (the first jobs fetch {len(missing)} missing set(s))" if missing else ""
    print(
        f"\nthe run can start{extra}: snakemake --profile slurm prepare (or --profile "
        "profiles/local on one machine; README)"
    )
    return 0


def check_results_command(args) -> int:
    """Verify every file under the folder (``dlmap.workflow.results_check``), list what is
    damaged and the outputs to make again; exit 1 when any is damaged, unless ``--remove``
    removed them (then the next workflow run rebuilds them)."""
    import time

    from dlmap import progress
    from dlmap.errors import InputError
    from dlmap.workflow import results_check

    root = args.folder
    if not root.is_dir():
        raise InputError(f"{root}: no such folder")
    started = time.perf_counter()
    with progress.bar(quiet=args.quiet, unit="B", unit_scale=True, desc="checking") as bar:
        found = results_check.check_results(root, progress=bar)
    seconds = time.perf_counter() - started
    print(
        f"checked {found.files} files ({found.bytes / 1e6:.1f} MB) under {root} in "
        f"{seconds:.1f} s: {found.by_digest} by digest, {found.by_format} by format, "
        f"{found.unchecked} unchecked"
    )
    if found.leftovers:
        print(f"leftovers of killed writers ({len(found.leftovers)}):")
        print("".join(f"  {path}\n" for path in found.leftovers), end="")
    remake = found.remake()
    if not remake:
        if args.remove and found.leftovers:
            results_check.remove(found.leftovers)
            print(f"removed the {len(found.leftovers)} leftovers")
        print("no damaged file")
        return 0
    print(f"damaged: {len(found.damaged)} files; to make again: {len(remake)}")
    for output in remake:
        print(f"  {output}")
        for item in (d for d in found.damaged if d.remake == output):
            print(f"    {item.file}: {item.reason}")
    if not args.remove:
        print(
            f"remove them (dlmap check-results {root} --remove), then run the workflow again: "
            "it makes them, and everything made from them, anew"
        )
        return 1
    results_check.remove([*remake, *found.leftovers])
    print(
        f"removed the {len(remake)} outputs above"
        + (f" and {len(found.leftovers)} leftovers" if found.leftovers else "")
        + ": run the workflow again and it makes them, and everything made from them, anew"
    )
    return 0


def add_parsers(commands) -> None:
    doctor = add_command(commands, "doctor")
    doctor.add_argument(
        "--configfile",
        type=Path,
        default=Path("config.yaml"),
        help="the workflow configuration to check (default: ./config.yaml)",
    )
    doctor.add_argument("--cache", default=None, help="weights folder (default: the config's)")
    doctor.add_argument("--data-root", default=None, help="data sets (default: the config's)")
    doctor.add_argument("--out", default=None, help="output folder (default: the config's)")

    check = add_command(commands, "check-results")
    check.add_argument("folder", type=Path, help="a results folder (the workflow's out)")
    check.add_argument(
        "--remove",
        action="store_true",
        help="remove the damaged outputs and the leftovers, so that the next workflow run "
        "makes them anew (not while a run is writing there)",
    )


HANDLERS = {"doctor": doctor_command, "check-results": check_results_command}
