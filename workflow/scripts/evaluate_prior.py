"""Rule evaluate_prior: SRCC, KRCC and PLCC of one prior on the evaluation set (Table I's
fourth column: SPAQ in the paper), as `dlmap evaluate` writes them."""

from _job import job

from dlmap.data import manifests as datasets
from dlmap.files import write_rows
from dlmap.priors import evaluation
from dlmap.workflow import jobs

smk = job(globals())
entries = datasets.read_manifest_resolved(smk.input.manifest)
if smk.params.split != "all":
    entries = [e for e in entries if e.split == smk.params.split]
prior = jobs.build_prior(
    smk.params.prior,
    smk.params.cache,
    getattr(smk.input, "checkpoint", None),
    device=smk.params.device,
    options=smk.params.prior_options,
)
rows = evaluation.evaluate(prior, entries, smk.params.size, quiet=True)
for row in rows:
    row["split"] = smk.params.split
write_rows(rows, smk.output[0])
print(f"{smk.params.prior}: " + ", ".join(f"{r['dataset']} SRCC {r['srcc']:.4f}" for r in rows))
