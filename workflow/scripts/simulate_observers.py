"""Rule simulate_observers: simulated 2AFC observers (Thurstone Case V) whose utility is
each output's fidelity to the pristine reference; every file says "simulated"."""

import csv
from pathlib import Path

from _job import job, seal_outputs

from dlmap.compare import observers

smk = job(globals())
with open(smk.input.pairs, newline="") as handle:
    rows = list(csv.DictReader(handle))
files = {}
for row in rows:
    files[(row["enhancer_i"], row["image"])] = Path(row["file_i"])
    files[(row["enhancer_j"], row["image"])] = Path(row["file_j"])
references = {
    p.stem: p for folder in smk.input.references for p in Path(folder, "references").glob("*.png")
}
if not references:
    raise SystemExit("no pristine references: simulated observers need the demo's bundled set")
utility = observers.file_fidelity_utility(
    lambda name, image: files[(name, image)], lambda image: references[image], smk.params.metric
)
trials = [(row["enhancer_i"], row["enhancer_j"], row["image"]) for row in rows]
conditions = sorted({name for i, j, _ in trials for name in (i, j)})
counts = observers.simulate_counts(
    trials, utility, conditions, smk.params.subjects, seed=smk.params.seed
)
out = Path(smk.output.counts).parent
settings = {
    "pairs": smk.input.pairs,
    "subjects": smk.params.subjects,
    "seed": smk.params.seed,
    "fidelity": smk.params.metric,
    "workflow": smk.params.stamp,
}
observers.write_study(counts, conditions, out, settings)
seal_outputs(smk)
print(f"SIMULATED {smk.params.subjects} observers x {len(trials)} trials -> {out}")
