"""Rule invert_chunk: EDICT-invert every image of one chunk once (Alg. 1 line 2); every
prior's enhancement job of that chunk starts from this file."""

from pathlib import Path

from _job import benchmark, job

from dlmap.settings import RunSettings
from dlmap.workflow import jobs

smk = job(globals())
paths = sorted(Path(smk.input.images).glob("*.png"))
params = smk.params
settings = RunSettings.from_job_params(params.backbone, {}, params.edict, params.size, smk.memory)
with benchmark(smk):  # cached between workflows: no `benchmark:` directive allowed
    jobs.invert_chunk(
        paths, settings, params.seed, Path(smk.output[0]), batch_size=params.batch_size
    )
print(f"inverted {len(paths)} images with {settings.backbone.name} -> {smk.output[0]}")
