"""Rule human_counts: the exported human study of one comparison, refused when the pairs
or any image changed since the study was built; its counts are copied for the ranking."""

import shutil
from pathlib import Path

from _job import job, seal_outputs

from dlmap.experiment import export, study

smk = job(globals())
source = Path(smk.params.export)
try:
    summary = export.verify_export(source, Path(smk.input.pairs), Path(smk.params.images))
except study.StudyError as error:
    raise SystemExit(
        f"{error}\n(the `results` phase waits for the human study, a step done by hand: serve "
        f"it with `dlmap experiment serve --db {smk.input.study}`, then `dlmap experiment "
        f"export --db {smk.input.study} --out {source}`, or set observers.exports in the "
        "config; OUT/experiment/SERVING.txt lists every study)"
    ) from None
shutil.copyfile(source / "counts.csv", smk.output.counts)
shutil.copytree(source / "subjects", smk.output.subjects)
seal_outputs(smk)
print(f"{len(summary['subjects'])} subjects, {summary['counted_answers']} answers from {source}")
