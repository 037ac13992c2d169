# dlmap: the paper as one DAG (see README "The workflow").
#   snakemake --profile profiles/local --configfile presets/demo.yaml   (demo, CPU, minutes)
#   snakemake --profile slurm                                           (the paper, config.yaml)
# A --configfile replaces config.yaml (presets are complete files); several are merged in order,
# key by key, so overrides go after a complete one: --configfile config.yaml mine.yaml. Every
# config is validated against workflow/schemas/config.schema.yaml before any job runs.
from pathlib import Path

import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version

from dlmap.workflow.config_checks import validate_config

min_version("9.0")


if not workflow.overwrite_configfiles:

    configfile: "config.yaml"


if isinstance(config.get("edict"), dict) and "encode" in config["edict"]:
    raise WorkflowError(
        "config: edict.encode has moved: encode is a backbone setting; write it at the top "
        "level, beside backbone (encode: sample or mean)"
    )
# The schema, its first error in one line naming the key (snakemake's validate() would print
# the whole schema and config after it); under --verbose, jsonschema's whole error follows.
SCHEMA = Path(workflow.basedir, "workflow/schemas/config.schema.yaml")
try:
    validate_config(config, yaml.safe_load(SCHEMA.read_text()))
except ValueError as error:
    verbose = getattr(workflow.output_settings, "verbose", False)
    detail = f"\n\n{error.__cause__}" if verbose and error.__cause__ else ""
    raise WorkflowError(f"{error}{detail}") from None


# Software: every rule's `conda:` is envs/jobs.yaml (--sdm conda); this image holds the same
# pins (--sdm apptainer; build it with `apptainer build dlmap.sif envs/dlmap.def`).
container: config.get("container", "dlmap.sif")


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/targets.smk"


wildcard_constraints:
    chunk=r"\d{3}",
    prior=r"[^/]+",
    comparison=r"[A-Za-z0-9_-]+",


include: "workflow/rules/data.smk"
include: "workflow/rules/images.smk"
include: "workflow/rules/msliqe.smk"
include: "workflow/rules/enhance.smk"
include: "workflow/rules/compare.smk"
include: "workflow/rules/figures.smk"


rule all:
    default_target: True
    input:
        all_targets(),


# The paper's run in five phases, in this order (README "The paper on a SLURM cluster"): each
# is a target, e.g. `snakemake --profile slurm prepare`. Two steps between them are done by
# people: running the external enhancers on OUT/external-inputs (after `external_inputs`, a
# rule of enhance.smk), and the human 2AFC study (after `study`). dlmap.workflow.plan names
# the phases and the steps done by hand; `dlmap doctor` reads it too.


rule prepare:  # weights, data, MS-LIQE, Eq. 21 constants, SRCC on SPAQ, the test images
    input:
        prepare_targets(),


rule enhance:  # every prior's MAP, the ablations, the external outputs, post-enhancement
    input:
        enhance_targets(),


rule study:  # pair selection and the 2AFC studies; SERVING.txt says how to serve them
    input:
        study_targets(),


rule results:  # rankings, Table I, every figure (the default target)
    input:
        all_targets(),


# A step done by hand still missing (dlmap.workflow.phases.hand_steps): say so before any job
# runs (dry runs too), one line per phase that waits, and after a run, step by step, so that
# the default target never stops without saying why.
if workflow.is_main_process and phases.hand_steps(config, IDS, OUT):
    print(phases.summarise_hand_steps(phases.hand_steps(config, IDS, OUT)), file=sys.stderr)


onsuccess:
    if phases.hand_steps(config, IDS, OUT):
        print(phases.describe_hand_steps(phases.hand_steps(config, IDS, OUT)), file=sys.stderr)


onerror:
    print(phases.STOPPED, file=sys.stderr)
    if phases.hand_steps(config, IDS, OUT):
        print(phases.describe_hand_steps(phases.hand_steps(config, IDS, OUT)), file=sys.stderr)


# The paper's experiments as named targets, e.g. `snakemake --profile slurm ablations`.
rule models:  # Fig. 5, Table I, Fig. 6
    input:
        f"{OUT}/report/ranking-models.png",
        f"{OUT}/report/table1.csv",
        f"{OUT}/report/fig6-pairs-models.png",
        f"{OUT}/experiment/models.sqlite",


rule ablations:  # Figs. 1, 2, 7, 8
    input:
        [f"{OUT}/report/{name}.png" for name in ABLATION_FIGURES],


rule msliqe:  # Sec. V-B, Fig. 9 (and MS-LIQE's training curve)
    input:
        f"{OUT}/report/ranking-msliqe.png",
        f"{OUT}/report/fig9-pairs-msliqe.png",
        f"{OUT}/report/votes-msliqe.png",


rule enhancers:  # Sec. V-C, Figs. 10, 11
    input:
        f"{OUT}/report/ranking-enhancers.png",
        f"{OUT}/report/fig11-pairs-enhancers.png",


rule post_enhancement:  # Sec. V-D, Fig. 12
    input:
        f"{OUT}/report/fig12-post-enhancement.png",
