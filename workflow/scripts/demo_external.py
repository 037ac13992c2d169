"""Rule demo_external: the demo's "other enhancers" (Sec. V-C): classical scikit-image
enhancers applied to every test image."""

from pathlib import Path

from _job import job, seal_outputs

from dlmap.data import demo_set

smk = job(globals())
out = Path(smk.output[0])
for folder in smk.input:
    demo_set.enhance_folder(smk.wildcards.enhancer, Path(folder), out)
seal_outputs(smk)
print(f"{smk.wildcards.enhancer}: {len(list(out.glob('*.png')))} images -> {out}")
