"""The ``dlmap doctor`` command: can this machine or cluster account run a configuration?"""

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


HANDLERS = {"doctor": doctor_command}
