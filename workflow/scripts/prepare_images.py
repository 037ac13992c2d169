"""Rule prepare_images: one chunk of test images at the workflow's size (bicubic, centre
crop; Sec. IV-A), from the selection, or for the demo from bundled photographs degraded by
a realistic chain, with their pristine references in references/."""

import csv
import json
from pathlib import Path

from _job import job, seal_outputs

smk = job(globals())
out = Path(smk.output[0])
ids = smk.params.ids
if smk.params.source == "bundled":
    from dlmap.data import demo_set

    photographs = smk.params.photographs
    if len(photographs) < max(int(i) for i in ids) + 1:
        raise SystemExit(
            f"images.count asks for {max(int(i) for i in ids) + 1} images, but only "
            f"{len(photographs)} photographs are listed in images.photographs"
        )
    rows = demo_set.make_demo_set(
        [photographs[int(i)] for i in ids],
        smk.params.size,
        smk.params.seed,
        ids,
        out / "references",
        out,
    )
    record = {"source": "bundled scikit-image photographs", "images": rows, **smk.params.stamp}
    (out / "provenance.json").write_text(json.dumps(record, indent=2) + "\n")
else:
    from dlmap.data import testset

    with open(smk.input[0], newline="") as handle:
        selected = {row["id"]: row for row in csv.DictReader(handle)}
    out.mkdir(parents=True, exist_ok=True)
    for image_id in ids:
        testset.preprocess(selected[image_id]["image"], out / f"{image_id}.png", smk.params.size)
    rows = [selected[i] for i in ids]
    (out / "provenance.json").write_text(json.dumps({"images": rows}, indent=2) + "\n")
seal_outputs(smk)
print(f"{len(ids)} test images -> {out}")
