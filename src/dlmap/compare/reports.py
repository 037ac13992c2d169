"""Tables of the model comparison: a ranking as CSV/Markdown, and Table I's rank columns.

Table I (paper): model, training set, parameters (from the registry's metadata,
``priors.table_one_columns``), then "SRCC rank (SRCC)" from SRCC on SPAQ (``dlmap evaluate``),
"MAP rank" from the JOD ranking of the enhanced images (``dlmap rank``), and
"Delta rank" = SRCC rank - MAP rank (negative: the model does worse as a prior than its
SRCC suggests; the paper's CLIPIQA+: 2 - 6 = -4). Rank 1 is the best.
"""

from __future__ import annotations

import csv
from pathlib import Path

from dlmap.errors import InputError


def read_table(path, columns: set[str]) -> list[dict]:
    """The rows of a CSV file that must have ``columns`` (``InputError`` naming the file)."""
    try:
        with open(path, newline="") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as error:
        raise InputError(f"{path}: {error.strerror or error}") from error
    except (UnicodeDecodeError, csv.Error) as error:
        raise InputError(f"{path}: not a readable CSV file ({error})") from error
    if not rows or not columns <= set(rows[0]):
        raise InputError(f"{path}: needs a header with columns {', '.join(sorted(columns))}")
    return rows


def write_ranking_report(
    scores_path: Path,
    out: str,
    title: str = "",
    srcc_paths: list[Path] = (),
    dataset: str = "spaq",
    reduced: bool = False,
) -> list[str]:
    """The ranking of ``dlmap rank``'s SCORES.csv as OUT.png/.pdf (a plot) and OUT.md, and
    with ``dlmap evaluate`` CSVs (``srcc_paths``) Table I as OUT.table1.csv/.md; returns the
    paths written. ``reduced`` stamps every output as made with reduced settings."""
    from dlmap.compare.rank_files import is_simulated
    from dlmap.figures import plots
    from dlmap.files import write_bytes_atomic, write_text_atomic

    rows = read_table(scores_path, {"condition", "jod", "ci_low", "ci_high", "group"})
    srcc = [row for path in srcc_paths for row in read_table(path, {"prior", "dataset", "srcc"})]
    simulated = is_simulated(scores_path)
    banner = f"**{plots.REDUCED_STAMP}.**\n\n" if reduced else ""
    table = table_one(rows, srcc, dataset) if srcc else None
    figure = plots.plot_ranking(rows, title, simulated, reduced=reduced)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(f"{out}.pdf")
    write_bytes_atomic(f"{out}.png", plots.figure_png_bytes(figure))
    write_text_atomic(banner + ranking_markdown(rows, simulated), f"{out}.md")
    written = [f"{out}.png", f"{out}.pdf", f"{out}.md"]
    if table is not None:
        write_csv(table, f"{out}.table1.csv")
        markdown = banner + table_one_markdown(table, dataset, simulated)
        write_text_atomic(markdown, f"{out}.table1.md")
        written += [f"{out}.table1.csv", f"{out}.table1.md"]
    return written


def read_rows(path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def ranking_markdown(rows: list[dict], simulated: bool = False) -> str:
    """The ranking (best first) as a Markdown table."""
    lines = []
    if simulated:
        lines += ["*Simulated observers: not a human study.*", ""]
    lines += ["| rank | condition | JOD | 95% CI | group |", "|---|---|---|---|---|"]
    ordered = sorted(rows, key=lambda row: -float(row["jod"]))
    for rank, row in enumerate(ordered, start=1):
        interval = (
            f"[{float(row['ci_low']):.2f}, {float(row['ci_high']):.2f}]"
            if row.get("ci_low") not in (None, "")
            else "-"
        )
        jod = float(row["jod"])
        lines.append(f"| {rank} | {row['condition']} | {jod:.2f} | {interval} | {row['group']} |")
    return "\n".join(lines) + "\n"


def ranks(values: dict[str, float]) -> dict[str, int]:
    """1 for the largest value; ties share the better rank."""
    ordered = sorted(values.values(), reverse=True)
    return {name: ordered.index(value) + 1 for name, value in values.items()}


def table_one(scores: list[dict], srcc: list[dict], dataset: str = "spaq") -> list[dict]:
    """Table I's rows for the priors that are both ranked and evaluated on ``dataset``.

    ``scores``: ``dlmap rank`` rows (condition = prior name); ``srcc``: ``dlmap evaluate``
    rows (prior, dataset, srcc, ...). Rows follow the paper's order, then other priors.
    """
    from dlmap.priors import registry as priors

    jod = {row["condition"]: float(row["jod"]) for row in scores}
    correlation = {row["prior"]: float(row["srcc"]) for row in srcc if row["dataset"] == dataset}
    # the model as evaluated (e.g. which NIQE pristine model), where the rows name it
    evaluated = {row["prior"]: row["model"] for row in srcc if row.get("model")}
    both = [name for name in jod if name in correlation]
    if not both:
        raise InputError(
            f"no prior is both in the ranking ({', '.join(jod)}) and evaluated on {dataset!r}"
        )
    srcc_rank = ranks({name: correlation[name] for name in both})
    map_rank = ranks({name: jod[name] for name in both})
    order = [n for n in priors.PAPER_PRIORS if n in both] + sorted(
        n for n in both if n not in priors.PAPER_PRIORS
    )
    rows = []
    for columns in priors.table_one_columns(order):
        name = columns["prior"]
        rows.append(
            {
                "model": evaluated.get(name, columns["model"]),
                "training_set": columns["training_set"],
                "params_millions": columns["params_millions"],
                "srcc_rank": srcc_rank[name],
                "srcc": f"{correlation[name]:.3f}",
                "map_rank": map_rank[name],
                "delta_rank": srcc_rank[name] - map_rank[name],
            }
        )
    return rows


def table_one_markdown(rows: list[dict], dataset: str = "spaq", simulated: bool = False) -> str:
    lines = ["*MAP ranks from simulated observers: not a human study.*", ""] if simulated else []
    lines += [
        f"| NR-IQA model | Training set | # of params (M) | SRCC rank ({dataset}) | MAP rank "
        "| Delta rank |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['model']} | {row['training_set']} | {row['params_millions']} | "
            f"{row['srcc_rank']} ({row['srcc']}) | {row['map_rank']} | "
            f"{_signed(row['delta_rank'])} |"
        )
    return "\n".join(lines) + "\n"


def write_csv(rows: list[dict], path) -> None:
    from dlmap.files import write_rows

    write_rows(rows, path)


def _signed(value: int) -> str:
    return f"{value:+d}" if value else "0"
