"""Enhancing image files (Alg. 1 over batches): the one path of ``dlmap enhance`` and of the
workflow's jobs (``dlmap.workflow.jobs``), given the frozen networks that
``dlmap.diffusion.build.load_backbone`` builds. ``enhance_files`` solves images in batches
and writes one record per image; ``load_inversion`` reads the stored inversions a
latent-mode solve starts from."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from dlmap import images, progress
from dlmap.diffusion import backbones
from dlmap.enhance import records, solver
from dlmap.errors import InputError, MissingInputError, output_error
from dlmap.files import MANIFEST, sha256_file, write_manifest
from dlmap.settings import RunSettings


def load_inversion(path, sources: list[Path]) -> tuple[torch.Tensor, torch.Tensor]:
    """The stored noise pairs of ``sources`` (matched by id, checked by hash) from one
    inversion file or a list of them (chunks). A file that cannot be read (truncated,
    overwritten) is removed, so that the workflow's next run makes it again, and the error
    says so in one line naming it."""
    paths = [Path(p) for p in path] if isinstance(path, (list, tuple)) else [Path(path)]
    where = {}
    for file in paths:
        state = _read_inversion(file)
        for index, name in enumerate(state["ids"]):
            where[name] = (file, state, index)
    x_rows, y_rows = [], []
    for source in sources:
        stem = Path(source).stem
        if stem not in where:
            names = ", ".join(str(p) for p in paths)
            raise InputError(f"{names}: holds no inversion of {stem} ({len(where)} images)")
        file, state, index = where[stem]
        if state["input_sha256"][index] != sha256_file(source):
            raise InputError(f"{file}: the inversion of {stem} was made from another image")
        x_rows.append(state["x_T"][index])
        y_rows.append(state["y_T"][index])
    return torch.stack(x_rows), torch.stack(y_rows)


#: what an inversion file (``dlmap.workflow.jobs.invert_chunk``) holds, that this reads
STORED_FIELDS = ("ids", "input_sha256", "x_T", "y_T")


def _read_inversion(file: Path) -> dict:
    if not file.is_file():
        raise MissingInputError(f"{file}: no such inversion file")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or not all(key in state for key in STORED_FIELDS):
            raise ValueError(f"not a dlmap inversion (needs {', '.join(STORED_FIELDS)})")
    except Exception as error:  # noqa: BLE001 - whatever torch says of a damaged file
        reason = " ".join(str(error).split())[:200] or type(error).__name__
        file.unlink(missing_ok=True)
        raise InputError(
            f"{file}: a damaged inversion ({reason}); removed it: run the workflow again and "
            "it makes the inversion anew"
        ) from None
    return state


@dataclass
class EnhanceRun:
    """What ``enhance_files`` did: a record per image written, the inputs it could not use
    (path, message), and the batches whose solve diverged (their paths, message)."""

    records: list[dict] = field(default_factory=list)
    bad_inputs: list[tuple[Path, str]] = field(default_factory=list)
    diverged: list[tuple[list[Path], str]] = field(default_factory=list)


def enhance_files(
    paths: list[Path],
    out: Path,
    prior,
    backbone,
    settings: RunSettings,
    batch_size: int = 1,
    inversion: Path | None = None,
    quiet: bool = True,
    plot: bool = False,
    extra: dict | None = None,
    strict: bool = False,
) -> EnhanceRun:
    """The one enhancement path of ``dlmap enhance`` and the workflow: image files in
    batches through Alg. 1 (``solver.map_solve``), NAME.x.png, NAME.y.png and NAME.json per
    image into ``out`` (``records.write_enhanced``), and after each batch, their rows into
    ``out/summary.csv`` (``records.write_summary``) and their digests into ``out``'s
    SHA256SUMS (``files.write_manifest``).

    ``settings``: the run's solver, inversion, size and backbone settings (recorded with every
    image, ``RunSettings.to_record``); ``backbone``: the networks they describe, loaded (None
    for the pixel modes). Latent modes start from the stored ``inversion``
    (``dlmap.workflow.jobs.invert_chunk``'s file) when given. An image that cannot be read,
    or a batch whose solve diverges, is reported in the result and skipped (``strict``:
    raised) while the others go on.
    """
    config, job = settings.solver, settings.to_record()
    device, dtype = job["device"], backbones.TORCH_DTYPES[job["dtype"]]
    prior = prior.to(device=device, dtype=dtype)
    run, loaded = EnhanceRun(), []
    for path in dict.fromkeys(Path(p) for p in paths):
        try:
            loaded.append((path, images.load_image(path, size=job["size"])))
        except images.ImageError as error:
            if strict:
                raise
            run.bad_inputs.append((path, str(error)))
    out.mkdir(parents=True, exist_ok=True)
    starts = range(0, len(loaded), batch_size)
    for start in progress.bar(starts, quiet or len(starts) < 2, desc="batches", unit="batch"):
        chunk = loaded[start : start + batch_size]
        part = [path for path, _ in chunk]
        batch = torch.stack([image for _, image in chunk]).to(device=device, dtype=dtype)
        pair = None
        if inversion is not None and backbone is not None:
            pair = tuple(t.to(device) for t in load_inversion(inversion, part))
        began = time.perf_counter()
        try:
            result = solver.map_solve(
                backbone,
                prior,
                batch,
                config,
                settings.inversion,
                seeds=[config.seed] * len(part),
                quiet=quiet,
                description=", ".join(p.name for p in part),
                inversion=pair,
            )
        except solver.NonFiniteError as error:
            if strict:
                raise
            run.diverged.append((part, str(error)))
            continue
        seconds = (time.perf_counter() - began) / len(part)
        recorded = {**job, "inversion": str(inversion) if pair is not None else None}
        for index, path in enumerate(part):
            run.records.append(
                records.write_enhanced(
                    out,
                    path,
                    index,
                    result,
                    prior,
                    backbone,
                    seconds,
                    recorded,
                    plot=plot,
                    extra=extra,
                )
            )
        batch_records = run.records[-len(part) :]
        summary = records.write_summary(out, batch_records)  # one row per image
        written = [name for record in batch_records for name in record["outputs"].values()]
        try:  # the folder's SHA256SUMS, which the workflow and check-results verify
            write_manifest(out, [*written, summary.name])
        except OSError as error:
            raise output_error(out / MANIFEST, error) from None
    return run
