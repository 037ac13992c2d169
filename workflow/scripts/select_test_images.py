"""Rule select_test_images: the paper's test set (Sec. IV-A), drawn from the pooled
manifest by the configured rules; exclusions are recorded with their reasons."""

from collections import defaultdict

from _job import job

from dlmap.data import manifests as datasets
from dlmap.data import testset

smk = job(globals())
pool = defaultdict(list)
for entry in datasets.read_manifest_resolved(smk.input[0]):
    pool[entry.dataset].append(entry)
values = smk.params.rules
rules = testset.SelectionRules(
    count=values["count"],
    seed=values["seed"],
    exclude=list(values["exclude"]),
    min_mos=values["min_mos"],
)
selected, excluded = testset.select_test_images(dict(pool), rules)
testset.write_selection(selected, excluded, rules, smk.output[0])
print(f"{len(selected)} test images ({len(excluded)} excluded) -> {smk.output[0]}")
