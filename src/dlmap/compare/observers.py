"""Simulated observers for the 2AFC experiment: for tests and the offline demo, never results.

A simulated subject shown enhancers i and j on image x prefers i when
u_i(x) + e_i > u_j(x) + e_j, with independent e ~ N(0, sigma^2) per condition (Thurstone
Case V). With sigma = 1.0484 the difference has standard deviation 1.4826, so a utility gap of
1 gives 75% preference: utilities are in JOD, the unit of ``dlmap.compare.ranking``.

Utilities come from a score table (one utility per enhancer, or per enhancer and image), or
from fidelity to a pristine reference: the demo degrades photographs it has the originals of,
so u_k(x) = ``jod_per_unit`` * similarity(r_k(x), reference(x)), with a full-reference metric
that needs no weights (``"ms-ssim"``, via pyiqa, or ``"psnr"``).

Every output says it is a simulation: the counts' header cell reads ``simulated``, files are
named ``sim-subject-NN.csv``, and ``simulation.json`` records the settings.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from dlmap.errors import InputError

SIGMA = 1.0484  # per condition: sigma * sqrt(2) = 1.4826, so 1 JOD = 75% preference
LABEL = "simulated"
MS_SSIM_MIN_SIDE = 176


def simulate_counts(
    trials: list[tuple[str, str, str]],
    utility,
    conditions: list[str],
    subjects: int,
    sigma: float = SIGMA,
    seed: int = 0,
) -> np.ndarray:
    """(subjects, N, N) counts: C[s, i, j] = times subject s preferred i over j.

    ``trials``: (enhancer_i, enhancer_j, image) shown once to every subject; ``utility(name,
    image)`` gives u in JOD. Each subject answers every trial once, with fresh noise.
    """
    if subjects < 1 or sigma <= 0:
        raise InputError(f"need subjects >= 1 and sigma > 0, got {subjects}, {sigma}")
    index = {name: k for k, name in enumerate(conditions)}
    unknown = sorted({name for i, j, _ in trials for name in (i, j)} - set(index))
    if unknown:
        raise InputError(f"trials name conditions not in the list: {', '.join(unknown)}")
    rng = np.random.default_rng(seed)
    gaps = np.array([utility(i, image) - utility(j, image) for i, j, image in trials])
    first = np.array([index[i] for i, _, _ in trials])
    second = np.array([index[j] for _, j, _ in trials])
    counts = np.zeros((subjects, len(conditions), len(conditions)), dtype=np.int64)
    for subject in range(subjects):
        noise = rng.normal(0.0, sigma, size=(len(trials), 2))
        prefers_first = gaps + noise[:, 0] - noise[:, 1] > 0
        np.add.at(counts[subject], (first[prefers_first], second[prefers_first]), 1)
        np.add.at(counts[subject], (second[~prefers_first], first[~prefers_first]), 1)
    return counts


def table_utility(table: dict):
    """u from a table: {enhancer: u} or {(enhancer, image): u}."""

    def utility(name: str, image: str) -> float:
        if (name, image) in table:
            return float(table[(name, image)])
        if name in table:
            return float(table[name])
        raise InputError(f"no utility for enhancer {name!r} on image {image!r}")

    return utility


def fidelity_utility(
    enhanced: dict[str, Path], references: Path, metric: str = "ms-ssim", jod_per_unit=10.0
):
    """u_k(x) = jod_per_unit * similarity of enhancer k's output of x to x's reference.

    ``enhanced``: enhancer -> folder of its outputs; ``references``: folder of the pristine
    images under the same file names. Similarities are computed once and cached.
    """

    def output_file(name: str, image: str) -> Path:
        return Path(enhanced[name]) / image

    def reference_file(image: str) -> Path:
        return Path(references) / image

    return file_fidelity_utility(output_file, reference_file, metric, jod_per_unit)


def file_fidelity_utility(output_file, reference_file, metric="ms-ssim", jod_per_unit=10.0):
    """``fidelity_utility`` with the files given by functions: ``output_file(enhancer,
    image)`` and ``reference_file(image)`` return paths (the workflow's pairs file lists
    each output's file)."""
    from dlmap.images import load_image

    similarity = _similarity(metric)
    cache: dict[tuple[str, str], float] = {}

    def utility(name: str, image: str) -> float:
        if (name, image) not in cache:
            output = load_image(output_file(name, image), None)
            reference = load_image(reference_file(image), None)
            if output.shape != reference.shape:
                raise InputError(f"{image}: {name}'s output and the reference differ in size")
            cache[(name, image)] = jod_per_unit * similarity(output, reference)
        return cache[(name, image)]

    return utility


def _similarity(metric: str):
    import torch

    if metric == "psnr":

        def psnr(a, b):  # in units of 10 dB, so that jod_per_unit means JOD per 10 dB
            mse = float(torch.mean((a - b) ** 2))
            return 10.0 * np.log10(1.0 / max(mse, 1e-10)) / 10.0

        return psnr
    if metric == "ms-ssim":
        import pyiqa

        ms_ssim = pyiqa.create_metric("ms_ssim", device="cpu", as_loss=False)

        def similarity(a, b):
            if min(a.shape[-2:]) < MS_SSIM_MIN_SIDE:  # 5 scales of an 11-tap window
                raise InputError(
                    f"ms-ssim needs images of at least {MS_SSIM_MIN_SIDE} px, got "
                    f"{tuple(a.shape[-2:])}; use the psnr metric for small images"
                )
            with torch.no_grad():
                return float(ms_ssim(a[None], b[None]))

        return similarity
    raise InputError(f"unknown fidelity metric {metric!r}; known: ms-ssim, psnr")


def write_counts(counts: np.ndarray, conditions: list[str], path: Path) -> None:
    """One count matrix in ``dlmap rank``'s format, its header cell saying ``simulated``."""
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow([LABEL, *conditions])
        for name, row in zip(conditions, counts, strict=True):
            writer.writerow([name, *map(int, row)])


def write_study(counts: np.ndarray, conditions: list[str], out: Path, settings: dict) -> Path:
    """``out/sim-subject-NN.csv`` per subject, ``out/sim-total.csv`` and
    ``out/simulation.json``; returns the folder of per-subject files (``--per-subject``)."""
    out = Path(out)
    subjects = out / "sim-subjects"
    subjects.mkdir(parents=True, exist_ok=True)
    for number, matrix in enumerate(counts, start=1):
        write_counts(matrix, conditions, subjects / f"sim-subject-{number:02d}.csv")
    write_counts(counts.sum(axis=0), conditions, out / "sim-total.csv")
    record = {"simulated": True, "conditions": conditions, **settings}
    (out / "simulation.json").write_text(json.dumps(record, indent=2) + "\n")
    return subjects
