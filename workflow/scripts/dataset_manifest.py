"""Rule dataset_manifest: one manifest CSV for a group of data sets (train, evaluate,
calibration, testpool); the demo's synthetic set is re-listed with absolute paths."""

from dataclasses import replace
from pathlib import Path

from _job import job

from dlmap.data import manifests as datasets

smk = job(globals())
out = smk.output[0]
if smk.params.names == ["synthetic"]:
    entries = [
        replace(e, image=str(Path(e.image).resolve()))
        for e in datasets.read_manifest_resolved(smk.input[0])
    ]
    settings = {"source": smk.input[0], "image_paths": "absolute", **smk.params.stamp}
    datasets.write_manifest(entries, out, settings)
else:
    entries = datasets.build_manifest(smk.params.names, out, root=smk.params.root)
print(f"{len(entries)} entries of {', '.join(smk.params.names)} -> {out}")
