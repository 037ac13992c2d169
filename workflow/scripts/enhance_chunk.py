"""Rules enhance_chunk, enhance_ablation and post_enhance: one prior, a set of images,
solved in batches with the models loaded once (Alg. 1); latent modes start from the
stored inversions when the rule has them."""

import logging
from pathlib import Path

from _job import job, seal_outputs

from dlmap.settings import RunSettings
from dlmap.workflow import jobs

smk = job(globals())
folders = smk.input.base if hasattr(smk.input, "base") else smk.input.images
folders = [folders] if isinstance(folders, str) else folders
found = {p.stem: p for folder in folders for p in sorted(Path(folder).glob("*.png"))}
ids = getattr(smk.params, "ids", None) or sorted(found)
missing = [i for i in ids if i not in found]
if missing:
    raise SystemExit(f"{', '.join(folders)}: no image for {', '.join(missing)}")
paths = [found[i] for i in ids]
prior = jobs.build_prior(
    smk.params.prior,
    cache=smk.params.backbone["cache"],
    checkpoint=getattr(smk.input, "checkpoint", None),
    calibration=getattr(smk.input, "calibration", None),
    options=smk.params.prior_options,
)
inversion = getattr(smk.input, "inversion", None) or None
params = smk.params
settings = RunSettings.from_job_params(
    params.backbone, params.solver, params.edict, params.size, smk.memory
)
records = jobs.enhance_chunk(
    paths,
    Path(smk.output[0]),
    prior,
    settings,
    inversion=inversion,
    batch_size=params.batch_size,
    extra={
        "workflow": params.stamp,
        **({"reduced": True} if params.stamp["reduced"] else {}),
    },
)
for record in records:
    final, stop = record["final"]["x"], record["early_stop"] or {}
    shares = [step["prior_share"] for step in record["history"]] or [float("nan")]
    logging.info(
        "%s: calibrated score %.4f (%s scale), fidelity %.4g, "
        "prior's gradient share %.1f%%-%.1f%%, early stop: %s",
        record["input"],
        final["score"],
        record["score_scale"]["name"],
        final["fidelity"],
        100 * min(shares),
        100 * max(shares),
        stop.get("iteration") if stop.get("applied") else stop.get("reason"),
    )
seal_outputs(smk)
print(f"{smk.params.prior}: {len(records)} images -> {smk.output[0]}")
