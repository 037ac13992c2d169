"""``dlmap simulate`` (simulated observers) and ``dlmap report`` (ranking figure and tables)."""

from __future__ import annotations

import csv
from pathlib import Path

from dlmap.cli.main import add_command
from dlmap.errors import UsageError


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
        source = {"fidelity": args.metric, "jod_per_unit": args.jod_per_unit,
                  "references": str(args.references)}  # fmt: skip
    try:
        counts = observers.simulate_counts(
            trials, utility, conditions, args.subjects, args.sigma, args.seed
        )
    except (KeyError, ValueError, FileNotFoundError) as error:
        raise UsageError(f"simulate: {error}") from error
    settings = {"pairs": str(args.pairs), "subjects": args.subjects, "sigma": args.sigma,
                "seed": args.seed, **source}  # fmt: skip
    folder = observers.write_study(counts, conditions, args.out, settings)
    print(
        f"SIMULATED {args.subjects} observers x {len(trials)} trials: {args.out / 'sim-total.csv'}"
        f" (per subject: {folder})"
    )
    return 0


def report_command(args) -> int:
    from dlmap.compare import reports
    from dlmap.figures import plots as figures
    from dlmap.images import write_bytes_atomic, write_text_atomic

    rows = _read(args.scores, {"condition", "jod", "ci_low", "ci_high", "group"})
    simulated = reports.is_simulated(args.scores)
    banner = f"**{figures.REDUCED_STAMP}.**\n\n" if args.reduced else ""
    figure = figures.plot_ranking(rows, args.title, simulated, reduced=args.reduced)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(f"{args.out}.pdf")
    write_bytes_atomic(f"{args.out}.png", figures.figure_png_bytes(figure))
    write_text_atomic(banner + reports.ranking_markdown(rows, simulated), f"{args.out}.md")
    written = [f"{args.out}.png", f"{args.out}.pdf", f"{args.out}.md"]
    if args.srcc:
        srcc = [row for path in args.srcc for row in _read(path, {"prior", "dataset", "srcc"})]
        try:
            table = reports.table_one(rows, srcc, args.dataset)
        except ValueError as error:
            raise UsageError(str(error)) from error
        reports.write_csv(table, f"{args.out}.table1.csv")
        markdown = banner + reports.table_one_markdown(table, args.dataset, simulated)
        write_text_atomic(markdown, f"{args.out}.table1.md")
        written += [f"{args.out}.table1.csv", f"{args.out}.table1.md"]
    print("wrote " + ", ".join(written))
    return 0


def _read(path: Path, columns: set[str]) -> list[dict]:
    try:
        with open(path, newline="") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as error:
        raise UsageError(f"{path}: {error.strerror}") from error
    if not rows or not columns <= set(rows[0]):
        raise UsageError(f"{path}: needs a header with columns {', '.join(sorted(columns))}")
    return rows


def _number(text: str, path: Path) -> float:
    try:
        return float(text)
    except ValueError as error:
        raise UsageError(f"{path}: {text!r} is not a number") from error


def add_parsers(commands) -> None:
    add_compare_parsers(commands)


HANDLERS = {"simulate": simulate_command, "report": report_command}
