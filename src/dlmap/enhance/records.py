"""What an enhancement writes per input: NAME.x.png, NAME.y.png (the EDICT pair x*, y* of
Alg. 1 line 13), NAME.json (trajectory, final scores, configuration, provenance) and,
optionally, NAME.history.png; and per folder, summary.csv (one row per image). Shared by
``dlmap enhance`` and the workflow's chunk jobs."""

from __future__ import annotations

import csv
import json
import platform
from dataclasses import asdict
from pathlib import Path

import torch

import dlmap
from dlmap import images
from dlmap.errors import output_error
from dlmap.files import (
    sha256_file,
    write_bytes_atomic,
    write_rows,
    write_text_atomic,
)
from dlmap.settings import DEFAULT_SCALE, score_scale


def output_paths(out: Path, stem: str) -> dict[str, Path]:
    """The files written for the input named ``stem`` in folder ``out``."""
    suffixes = {"x": ".x.png", "y": ".y.png", "plot": ".history.png", "json": ".json"}
    return {key: Path(out) / f"{stem}{suffix}" for key, suffix in suffixes.items()}


def select_problem(value, index: int):
    """One problem's entries of a batched record (lists are indexed, the rest kept)."""
    if isinstance(value, dict):
        return {key: select_problem(item, index) for key, item in value.items()}
    return value[index] if isinstance(value, list) else value


def write_enhanced(
    out: Path,
    source: Path,
    index: int,
    result,
    prior,
    backbone,
    seconds: float,
    settings: dict,
    plot: bool = False,
    extra: dict | None = None,
) -> dict:
    """Write problem ``index`` of a ``SolveResult`` for input ``source`` into ``out``
    (each file atomically, the JSON last, so a complete JSON means complete outputs); returns
    the record. If a file cannot be written (a full disk), the image's files written so far
    are removed and ``OutputError`` names the path: an image is written whole or not at all.
    ``settings`` joins the solver's configuration; ``extra`` adds top-level keys."""
    outputs = output_paths(out, Path(source).stem)
    written = []

    def write(key: str, writer) -> None:
        try:
            writer(outputs[key])
        except OSError as error:
            for path in written:
                path.unlink(missing_ok=True)
            raise output_error(outputs[key], error) from None
        written.append(outputs[key])

    write("x", lambda path: images.save_png_atomic(result.x[index], path))
    if result.y is not None:
        write("y", lambda path: images.save_png_atomic(result.y[index], path))
    names = {
        key: path.name
        for key, path in outputs.items()
        if (key != "y" or result.y is not None) and (key != "plot" or plot)
    }
    record = build_record(
        result,
        index,
        prior,
        backbone,
        seconds,
        settings,
        str(source),
        sha256_file(source),
        names,
        extra,
    )
    reduced = record["reduced"]
    if plot:
        from dlmap.figures import plots as figures

        title = f"{Path(source).name}: {prior.info.display_name}"
        figure = figures.plot_history(record, title=title, reduced=reduced)
        write("plot", lambda path: write_bytes_atomic(path, figures.figure_png_bytes(figure)))
    write("json", lambda path: write_text_atomic(json.dumps(record, indent=2) + "\n", path))
    return record


SUMMARY = "summary.csv"
SUMMARY_COLUMNS = (
    "input",
    "output",
    "prior",
    "lam",
    "initial_score",
    "initial_raw_score",
    "final_score",
    "final_raw_score",
    "final_fidelity",
    "iterations",
    "early_stop",
    "seconds",
)


def summary_row(record: dict) -> dict:
    """One image's line of ``summary.csv`` from its record: the input and x*'s file, the
    calibrated (Eq. 21, on the record's score scale) and raw scores before the first update and
    of x* as written, x*'s fidelity D0, the iterations it was solved for, the iteration early
    stopping fired at (empty: it did not), and the solve's seconds per image."""
    history, final = record["history"], record["final"]["x"]
    stop = record.get("early_stop") or {}
    return {
        "input": record["input"],
        "output": record["outputs"]["x"],
        "prior": record["prior"]["name"],
        "lam": record["config"]["solver"]["lam"],
        "initial_score": history[0]["score"] if history else "",
        "initial_raw_score": history[0]["raw_score"] if history else "",
        "final_score": final["score"],
        "final_raw_score": final["raw_score"],
        "final_fidelity": final["fidelity"],
        "iterations": sum(1 for step in history if step.get("active", True)),
        "early_stop": stop.get("iteration") if stop.get("applied") else "",
        "seconds": round(record["seconds"], 3),
    }


def write_summary(out: Path, records: list[dict]) -> Path:
    """Add the records' rows to ``out/summary.csv`` (atomically): a row of an earlier run for
    another x* stays, one for the same x* is replaced; rows are sorted by output. Raises
    ``OutputError`` naming the file when it cannot be written."""
    path = Path(out) / SUMMARY
    rows = {}
    try:  # an unreadable summary is written anew (the records JSON hold the same numbers)
        with open(path, newline="", encoding="utf-8") as handle:
            rows = {row["output"]: row for row in csv.DictReader(handle) if row.get("output")}
    except (OSError, UnicodeDecodeError, csv.Error):
        rows = {}
    rows.update({row["output"]: row for row in map(summary_row, records)})
    try:
        ordered = [rows[name] for name in sorted(rows)]
        write_rows(ordered, path, SUMMARY_COLUMNS, restval="", extrasaction="ignore")
    except OSError as error:
        raise output_error(path, error) from None
    return path


def build_record(
    result,
    index: int,
    prior,
    backbone,
    seconds: float,
    settings: dict,
    source: str | None,
    input_sha256: str,
    outputs: dict | None = None,
    extra: dict | None = None,
) -> dict:
    """The record of problem ``index`` of a ``SolveResult`` (what NAME.json holds): the input
    (``source``: its path, None for an image in memory) and its sha256, the files written
    (``outputs``), backbone and weights, prior, configuration (``settings`` joins the solver's),
    score scale, trajectory, final scores, early stop, seconds and versions; ``extra`` adds
    top-level keys."""
    reduced = bool(backbone is not None and backbone.reduced)
    history = [select_problem(step, index) for step in result.history]
    scale = score_scale(result.config.get("solver", {}).get("score_scale", DEFAULT_SCALE))
    return {
        "input": source,
        "input_sha256": input_sha256,
        "outputs": outputs or {},
        "reduced": reduced,
        **(
            {"random_weights": backbone.random_weights}
            if getattr(backbone, "random_weights", None)
            else {}
        ),
        "backbone": backbone.name if backbone is not None else None,
        "weights": backbone.provenance if backbone is not None else {},
        "prior": asdict(prior.info),
        "config": {**result.config, **settings},
        "score_scale": scale.as_dict(),  # every calibrated "score" below is on this scale
        "history": [step for step in history if step.get("active", True)],
        "final": select_problem(result.final, index),
        "early_stop": select_problem(result.early_stop, index) if result.early_stop else None,
        "seconds": seconds,
        "versions": {
            "dlmap": dlmap.__version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
        **(extra or {}),
    }
