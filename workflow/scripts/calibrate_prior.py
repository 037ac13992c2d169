"""Rule calibrate_prior: fit Eq. 21's xi3 and |xi4| of one prior to MOS of the calibration
set (every image of its manifest), as `dlmap calibrate` does, and store the fit."""

import json
from dataclasses import asdict

from _job import job

from dlmap.data import manifests as datasets
from dlmap.files import write_text_atomic
from dlmap.priors import calibration, evaluation
from dlmap.workflow import jobs

smk = job(globals())
entries = datasets.read_manifest_resolved(smk.input.manifest)
prior = jobs.build_prior(
    smk.params.prior,
    smk.params.cache,
    getattr(smk.input, "checkpoint", None),
    device=smk.params.device,
    options=smk.params.prior_options,
)
scores = evaluation.score_images(prior, [e.image for e in entries], smk.params.size, quiet=True)
fit = calibration.fit_logistic(
    scores,
    [e.mos for e in entries],
    prior.info.higher_is_better,
    source=smk.input.manifest,
    checkpoint_sha256=prior.info.checkpoint_sha256,  # MS-LIQE: the checkpoint trained here
)
write_text_atomic(json.dumps(asdict(fit), indent=2) + "\n", smk.output[0])
print(
    f"{smk.params.prior}: xi3 {fit.xi3:.4g}, |xi4| {fit.xi4:.4g}, "
    f"SRCC {fit.srcc:.3f} (n={fit.count})"
)
