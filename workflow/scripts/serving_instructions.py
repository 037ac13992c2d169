"""Rule serving_instructions: the commands that serve each 2AFC study to people and export
their answers where the `results` phase reads them (docs/experiment.md)."""

from pathlib import Path

from _job import job

smk = job(globals())
lines = [
    "The 2AFC studies of this run, one per comparison. For each: serve it, send each subject",
    "the private link the experimenter's page makes, and when they are done export the",
    "answers to the folder shown (the `results` phase reads it there). Then run the",
    "`results` phase: snakemake --profile slurm results",
    "",
]
for study, (comparison, export) in zip(smk.input.studies, smk.params.exports.items(), strict=True):
    lines += [
        f"{comparison}:",
        f"  dlmap experiment serve --db {study} --host 0.0.0.0 --port 8000 --public-url URL",
        f"  dlmap experiment export --db {study} --out {export}",
        "",
    ]
Path(smk.output[0]).write_text("\n".join(lines))
print("\n".join(lines))
