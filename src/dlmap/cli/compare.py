"""``dlmap simulate`` (simulated observers) and ``dlmap report`` (ranking figure and tables)."""

from __future__ import annotations

from pathlib import Path

from dlmap.cli.main import add_command
from dlmap.errors import UsageError
from dlmap.files import check_output_folder


def add_compare_parsers(commands) -> None:
    simulate = add_command(commands, "simulate")
    simulate.add_argument("--pairs", required=True, type=Path, help="dlmap select's PAIRS.csv")
    simulate.add_argument("--out", required=True, type=Path, help="folder for the counts")
    simulate.add_argument(
        "--utilities", type=Path, help="CSV: enhancer,utility[,image] (utilities in JOD)"
    )
    simulate.add_argument("--enhanced", type=Path, help="folder of one subfolder per enhancer")
    simulate.add_argument("--references", type=Path, help="pristine images, same file names")
    simulate.add_argument("--metric", default="ms-ssim", help="ms-ssim or psnr (no weights)")
    simulate.add_argument("--jod-per-unit", type=float, default=10.0)
    simulate.add_argument("--subjects", type=int, default=25)
    simulate.add_argument("--sigma", type=float, default=1.0484)
    simulate.add_argument("--seed", type=int, default=0)

    report = add_command(commands, "report")
    report.add_argument("scores", type=Path, help="dlmap rank's SCORES.csv")
    report.add_argument("--out", required=True, type=Path, help="prefix: PREFIX.png/.pdf/.md")
    report.add_argument("--srcc", type=Path, nargs="*", default=[], help="dlmap evaluate CSVs")
    report.add_argument("--dataset", default="spaq", help="SRCC of Table I: this data set")
    report.add_argument("--title", default="")
    report.add_argument(
        "--reduced", action="store_true", help="stamp every output as made with reduced settings"
    )


def simulate_command(args) -> int:
    from dlmap.compare import observers
    from dlmap.compare.reports import read_table as _read

    check_output_folder(args.out, "--out")  # before the fidelity of every image is measured
    pairs = _read(args.pairs, {"enhancer_i", "enhancer_j", "image"})
    trials = [(row["enhancer_i"], row["enhancer_j"], row["image"]) for row in pairs]
    conditions = sorted({name for i, j, _ in trials for name in (i, j)})
    if (args.utilities is None) == (args.enhanced is None):
        raise UsageError("give either --utilities or --enhanced with --references")
    if args.utilities is not None:
        table = {}
        for row in _read(args.utilities, {"enhancer", "utility"}):
            key = (row["enhancer"], row["image"]) if row.get("image") else row["enhancer"]
            table[key] = _number(row["utility"], args.utilities)
        per_enhancer = not any(isinstance(key, tuple) for key in table)
        missing = [name for name in conditions if name not in table] if per_enhancer else []
        if missing:
            raise UsageError(f"--utilities {args.utilities}: no utility for {', '.join(missing)}")
        utility = observers.table_utility(table)
        source = {"utilities": str(args.utilities)}
    else:
        if args.references is None:
            raise UsageError("--enhanced needs --references (the pristine images)")
        enhanced = {name: args.enhanced / name for name in conditions}
        utility = observers.fidelity_utility(
            enhanced, args.references, args.metric, args.jod_per_unit
        )
        source = {
            "fidelity": args.metric,
            "jod_per_unit": args.jod_per_unit,
            "references": str(args.references),
        }
    counts = observers.simulate_counts(
        trials, utility, conditions, args.subjects, args.sigma, args.seed
    )
    settings = {
        "pairs": str(args.pairs),
        "subjects": args.subjects,
        "sigma": args.sigma,
        "seed": args.seed,
        **source,
    }
    folder = observers.write_study(counts, conditions, args.out, settings)
    print(
        f"SIMULATED {args.subjects} observers x {len(trials)} trials: {args.out / 'sim-total.csv'}"
        f" (per subject: {folder})"
    )
    return 0


def report_command(args) -> int:
    from dlmap.compare import reports

    written = reports.write_ranking_report(
        args.scores, args.out, args.title, args.srcc, args.dataset, args.reduced
    )
    print("wrote " + ", ".join(written))
    return 0


def _number(text: str, path: Path) -> float:
    try:
        return float(text)
    except ValueError as error:  # float() of a cell of the user's file
        raise UsageError(f"{path}: {text!r} is not a number") from error


def add_parsers(commands) -> None:
    add_compare_parsers(commands)


HANDLERS = {"simulate": simulate_command, "report": report_command}
