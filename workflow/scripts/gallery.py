"""Rule gallery: the report's page of enhanced images (dlmap.figures.gallery), the first test
images with every prior's output and scores."""

from pathlib import Path

from _job import job

from dlmap.figures.gallery import GalleryItem, read_enhancement, write_gallery

smk = job(globals())
inputs = {p.stem: p for folder in smk.input.inputs for p in Path(folder).glob("*.png")}
folders = {}  # (prior, image id) -> its chunk folder
for folder in map(Path, smk.input.enhanced):
    for record in folder.glob("*.json"):
        folders[folder.parent.name, record.stem] = folder
items = [
    GalleryItem(
        image_id,
        inputs[image_id],
        [read_enhancement(folders[prior, image_id], image_id) for prior in smk.params.priors],
    )
    for image_id in smk.params.ids
]
reduced = smk.params.stamp["reduced"]
title = f"dlmap: enhanced images ({smk.params.stamp['out']})"
write_gallery(items, Path(smk.output[0]), title, reduced=reduced)
