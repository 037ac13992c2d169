"""``dlmap rank``'s analysis and files: JOD scores (Eq. 19), bootstrap intervals, group
letters, p-values and the observer report from counts files, as pwcmp computes them
(``ranking``, ``significance``).

Files, all written after every input has been checked (``write_rank_files``):

* SCORES.csv - ``condition,jod,ci_low,ci_high,group``, best first. The intervals and group
  letters need the bootstrap over subjects: without per-subject counts (or with 0 resamples)
  those cells are left empty.
* SCORES.pvalues.csv - the one-sided p of every pair (pw_significance_matrix; two conditions
  differ when p < 0.025), rows and columns in SCORES.csv's order; empty without bootstrap.
* SCORES.outliers.csv - with per-subject counts: pw_outlier_analysis per subject (reported
  only; nobody is excluded).
* SCORES.json - where the numbers came from: input files and their sha256, resamples, seed,
  method, warnings.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dlmap import settings
from dlmap.compare import ranking, significance
from dlmap.compare.counts import CountsError, is_simulated_counts, read_counts, read_per_subject
from dlmap.errors import InputError
from dlmap.files import sha256_file, write_text_atomic

DEFAULT_RESAMPLES = settings.RANK_RESAMPLES


@dataclass
class RankResult:
    """One ranking: per condition (in ``names``' order) its JOD, interval and group letters;
    ``order`` best first; NaN / "" where the bootstrap did not run."""

    names: list[str]
    jod: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    groups: list[str]
    p_values: np.ndarray
    order: list[int]
    resamples: int
    seed: int
    counts_path: Path
    subject_files: list[Path] = field(default_factory=list)
    outliers: significance.OutlierReport | None = None
    notes: list[str] = field(default_factory=list)
    simulated: bool = False

    @property
    def bootstrapped(self) -> bool:
        return self.resamples > 0


def rank_counts(
    counts_path: Path,
    per_subject: Path | None = None,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> RankResult:
    """Scale the counts of ``counts_path`` (Eq. 19); with a ``per_subject`` folder, also
    bootstrap over subjects (``resamples``, ``seed``) and screen the observers."""
    if resamples < 0 or resamples == 1:
        raise InputError(f"--bootstrap must be 0 (no intervals) or at least 2, got {resamples}")
    names, counts = read_counts(counts_path)
    stack, files = None, []
    if per_subject is not None:
        stack, files = read_per_subject(per_subject, names, counts, counts_path)
        if len(stack) < 2:
            raise CountsError(
                f"--per-subject {per_subject}: holds 1 subject; the bootstrap and the "
                "observer screening need 2 or more"
            )
    fit = ranking.scale(counts)
    size = len(names)
    result = RankResult(
        names=names,
        jod=fit.jod,
        ci_low=np.full(size, np.nan),
        ci_high=np.full(size, np.nan),
        groups=[""] * size,
        p_values=np.full((size, size), np.nan),
        order=[int(i) for i in np.argsort(-fit.jod, kind="stable")],
        resamples=0,
        seed=seed,
        counts_path=counts_path,
        subject_files=files,
        notes=list(fit.notes),
        simulated=is_simulated_counts(counts_path),
    )
    if stack is not None and resamples:
        boot = significance.bootstrap_scale(stack, resamples, seed, start=fit.jod)
        result.resamples = resamples
        result.ci_low, result.ci_high = boot.ci_low, boot.ci_high
        result.p_values = significance.significance_matrix(fit.jod, boot.covariance)
        result.groups = significance.compact_letters(
            fit.jod, significance.significant(result.p_values)
        )
        for count, what in (
            (boot.disconnected, "a disconnected comparison graph (linked as pwcmp does)"),
            (boot.bounded, "no finite maximum (the bounded result)"),
            (boot.unconverged, "an optimiser that did not converge"),
        ):
            if count:
                result.notes.append(f"{count} of {resamples} bootstrap resamples had {what}")
    else:
        result.notes.append(
            "no bootstrap (needs --per-subject and --bootstrap >= 2): ci_low, ci_high, group "
            "and the p-values are left empty"
        )
    if stack is not None:
        result.outliers = significance.outlier_analysis(stack)
    return result


def output_paths(out: Path) -> dict[str, Path]:
    """SCORES.csv and the files written beside it."""
    base = out.with_suffix("") if out.suffix.lower() == ".csv" else out
    return {
        "scores": out,
        "pvalues": base.with_name(base.name + ".pvalues.csv"),
        "outliers": base.with_name(base.name + ".outliers.csv"),
        "record": base.with_name(base.name + ".json"),
    }


def write_rank_files(result: RankResult, out: Path) -> list[Path]:
    """Write SCORES.csv at ``out`` and its sidecars (module docstring); returns their paths.
    Refuses (``InputError``) to overwrite an input file."""
    paths = output_paths(out)
    inputs = {path.resolve() for path in (result.counts_path, *result.subject_files)}
    if any(path.resolve() in inputs for path in paths.values()):
        raise InputError(f"--out {out}: would overwrite an input file")
    names, order = result.names, result.order
    scores = [["condition", "jod", "ci_low", "ci_high", "group"]]
    scores += [
        [
            names[i],
            _fmt(result.jod[i]),
            _fmt(result.ci_low[i]),
            _fmt(result.ci_high[i]),
            result.groups[i],
        ]
        for i in order
    ]
    matrix = [["condition", *(names[i] for i in order)]]
    matrix += [[names[i], *(_fmt_p(result.p_values[i, j]) for j in order)] for i in order]
    record = {
        "command": "dlmap rank",
        "method": "Thurstone Case V ML (Eq. 19), pwcmp pw_scale: prior 'gaussian', mean0; "
        "sigma 1.4826 per difference (1 JOD = 75%)",
        "counts": {"path": str(result.counts_path), "sha256": sha256_file(result.counts_path)},
        "per_subject": [{"path": str(p), "sha256": sha256_file(p)} for p in result.subject_files],
        "bootstrap": {"resamples": result.resamples, "seed": result.seed},
        "alpha": significance.ALPHA,
        "conditions": names,
        "simulated": result.simulated,
        "warnings": result.notes,
    }
    written = [paths["scores"], paths["pvalues"], paths["record"]]
    _write(paths["scores"], _csv(scores))
    _write(paths["pvalues"], _csv(matrix))
    if result.outliers is not None:
        outliers = result.outliers
        report = [["subject", "log10_likelihood", "distance", "flagged"]]
        report += [
            [path.stem, _fmt(like), _fmt(dist) if math.isfinite(dist) else "inf", str(flag)]
            for path, like, dist, flag in zip(
                result.subject_files,
                outliers.log10_likelihood,
                outliers.distance,
                outliers.flagged,
                strict=True,
            )
        ]
        _write(paths["outliers"], _csv(report))
        record["outlier_threshold"] = significance.OUTLIER_DISTANCE
        written.insert(2, paths["outliers"])
    _write(paths["record"], json.dumps(record, indent=2) + "\n")
    return written


def flagged_subjects(result: RankResult) -> list[str]:
    """The subjects the observer screening flags (reported; nobody is excluded)."""
    if result.outliers is None:
        return []
    flags = result.outliers.flagged
    return [path.stem for path, flag in zip(result.subject_files, flags, strict=True) if flag]


def is_simulated(scores_path) -> bool:
    """Whether ``dlmap rank`` marked these scores as coming from simulated observers."""
    sidecar = output_paths(Path(scores_path))["record"]
    return sidecar.is_file() and bool(json.loads(sidecar.read_text()).get("simulated"))


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(text, path)


def _csv(rows: list[list]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue()


def _fmt(value: float) -> str:
    return "" if not math.isfinite(value) else f"{value:.6f}"


def _fmt_p(value: float) -> str:
    return "" if not math.isfinite(value) else f"{value:.6g}"
