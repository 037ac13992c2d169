"""Rule check_external: another enhancer's outputs (Sec. V-C), one image per test id at the
workflow's size, copied into the results so the study serves and hashes them."""

import shutil
from pathlib import Path

from _job import job, seal_outputs

from dlmap import images

smk = job(globals())
source, out = Path(smk.params.source), Path(smk.output[0])
HAND_STEP = (
    f"the `enhance` phase waits for a step done by hand: run {smk.wildcards.enhancer} on the "
    f"test images in {smk.input.selection} (the `external_inputs` phase wrote them) and put its "
    f"outputs there as {smk.params.ids[0]}.png ... {smk.params.ids[-1]}.png "
    f"({smk.params.size}x{smk.params.size}; docs/external.md), or drop it from `external` and "
    "`comparisons`"
)
if not source.is_dir():
    raise SystemExit(
        f"external enhancer {smk.wildcards.enhancer}: {source} is not a folder; " + HAND_STEP
    )
found = {p.stem: p for p in source.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg")}
missing = [i for i in smk.params.ids if i not in found]
if missing:
    raise SystemExit(
        f"{source}: no output for {len(missing)} test images ({', '.join(missing[:5])}); "
        + HAND_STEP
    )
out.mkdir(parents=True, exist_ok=True)
for image_id in smk.params.ids:
    pixels = images.read_image(found[image_id])
    if pixels.shape[:2] != (smk.params.size, smk.params.size):
        raise SystemExit(
            f"{found[image_id]}: {pixels.shape[1]}x{pixels.shape[0]}, expected "
            f"{smk.params.size}x{smk.params.size} like the test images"
        )
    if found[image_id].suffix.lower() == ".png":
        shutil.copyfile(found[image_id], out / f"{image_id}.png")
    else:
        images.save_png_atomic(
            images.load_image(found[image_id], size=None), out / f"{image_id}.png"
        )
seal_outputs(smk)
print(f"{smk.wildcards.enhancer}: {len(smk.params.ids)} images from {source} -> {out}")
