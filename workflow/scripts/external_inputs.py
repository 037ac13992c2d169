"""Rule external_inputs: the selected test images in one folder, as the external enhancers
(Sec. V-C) take them, with a manifest and the steps to follow (docs/external.md)."""

import csv
import json
import shutil
from pathlib import Path

from _job import job, seal_outputs

smk = job(globals())
out = Path(smk.output.folder)
out.mkdir(parents=True, exist_ok=True)
rows = []
for folder in map(Path, smk.input):
    provenance = folder / "provenance.json"
    sources = json.loads(provenance.read_text()).get("images", []) if provenance.is_file() else []
    by_id = {str(row.get("id")): row for row in sources if isinstance(row, dict)}
    for image in sorted(folder.glob("*.png")):
        shutil.copyfile(image, out / image.name)
        source = by_id.get(image.stem, {})
        rows.append(
            {
                "id": image.stem,
                "file": image.name,
                "dataset": source.get("dataset", ""),
                "source_image": source.get("image", source.get("source", "")),
                "size": smk.params.size,
            }
        )
with open(out / "manifest.csv", "w", newline="") as handle:
    writer = csv.DictWriter(handle, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
lines = [
    f"The {len(rows)} test images ({smk.params.size}x{smk.params.size} PNG, named by id) that",
    "every external enhancer of the comparison runs on. For each enhancer below, run it on",
    "this folder at the same size and write one output per id, named ID.png, into its folder;",
    "then run the `enhance` phase (docs/external.md says how to run each of the paper's six).",
    "",
]
lines += [f"  {name:<14} -> {folder}" for name, folder in smk.params.external.items()]
(out / "README.txt").write_text("\n".join(lines) + "\n")
seal_outputs(smk)
print(f"{len(rows)} inputs for {len(smk.params.external)} external enhancers -> {out}")
