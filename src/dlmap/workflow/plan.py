"""What the workflow makes from a configuration, written once for the rules
(``workflow/rules/common.smk``), the GPU-hour projection (``dlmap.workflow.budget``) and
``dlmap doctor``. Light to import (no torch): Snakemake reads it while building the DAG.

- ``ablation_variants``: the ablation runs of Figs. 1, 2, 7, 8 and the bijection grid.
- ``segment_name``: the folders of MS-LIQE's chain of training jobs (how many, and how
  long each, is ``dlmap.workflow.budget.train_segments``'s answer).
- the phases and the steps done by hand between them live in ``dlmap.workflow.phases``.
"""

from __future__ import annotations

from dlmap.errors import InputError

SLURM_DEFAULTS = {
    "max_runtime_minutes": 720,  # a common GPU partition's walltime (12 h)
    "gpu_threads": 8,  # CPU cores per GPU job: data-loading workers and torch's threads
    "fetch_on_login_node": True,  # downloads run where Snakemake runs (compute nodes: offline)
}


def slurm_settings(config: dict) -> dict:
    """The config's ``slurm`` block over the defaults (the block and each key are optional)."""
    return {**SLURM_DEFAULTS, **(config.get("slurm") or {})}


# --- ablations (Figs. 1, 2, 7, 8) ---------------------------------------------------------------


def ablation_variants(config: dict) -> dict[str, dict]:
    """Every ablation run, name -> the solver settings that differ (and a backbone or a
    bijection): Fig. 1 (b)-(d), Fig. 2's lambda sweep, Fig. 7's vanilla SD2, Fig. 8's direct
    maximisation, and EDICT against each one-call bijection of ``ablations.bijections``."""
    ablations = config["ablations"]
    chosen = ablations.get("pixel_lam")
    pixel_lambda = {} if chosen is None else {"lam": chosen}  # Fig. 1(c)
    variants = {
        "pixel-direct": {"mode": "pixel-direct"},
        "pixel-map": {"mode": "pixel-map", **pixel_lambda},
        "latent-map": {"mode": "latent-map"},
        "latent-direct": {"mode": "latent-direct"},
        "vanilla": {"mode": "latent-map", "backbone": ablations["vanilla_backbone"]},
    }
    for lam in ablations["lambdas"]:
        variants[f"pixel-map-lambda{lam:g}"] = {"mode": "pixel-map", "lam": lam}
    for name in ablations.get("bijections") or []:  # latent-map is EDICT's column
        variants[f"bijection-{name}"] = {"mode": "latent-map", "bijection": name}
    return variants


def edict_values(config: dict) -> dict:
    """The inversion settings every job is given: the config's ``edict`` section."""
    return dict(config["edict"])


def prior_solver(config: dict, prior: str) -> dict:
    """The solver settings of one prior's jobs: the shared ones, then its own overrides."""
    return {**config["solver"], **config["prior_settings"].get(prior, {})}


def ablation_solver(config: dict, variant: str) -> dict:
    """The solver settings of an ablation run: the ablation prior's, with the run's changes."""
    changes = ablation_variants(config)[variant]
    solver = prior_solver(config, config["ablations"]["prior"])
    return {**solver, **{k: v for k, v in changes.items() if k not in ("backbone", "bijection")}}


def ablation_edict(config: dict, variant: str) -> dict:
    """The inversion settings of an ablation run: the config's, with its bijection if any."""
    changes = ablation_variants(config)[variant]
    bijection = {"bijection": changes["bijection"]} if "bijection" in changes else {}
    return {**edict_values(config), **bijection}


def latent_variants(config: dict) -> list[str]:
    """The ablation runs in diffusion latents: each inverts and solves on the backbone (the
    pixel-space ones cost next to nothing)."""
    return [n for n, v in ablation_variants(config).items() if v["mode"].startswith("latent")]


# --- what a run needs in place -----------------------------------------------------------------


def backbones(config: dict) -> list[str]:
    """The backbones a run loads: the config's and the vanilla ablation's."""
    return list(dict.fromkeys([config["backbone"], config["ablations"]["vanilla_backbone"]]))


def weight_sets(config: dict) -> list[str]:
    """Every weight set of files a run needs (the backbones' folders apart): each prior's
    (NIQE's LIVE model unless ``niqe_model: fitted``), the comparison metrics' D1 and D2,
    and CLIP for MS-LIQE's initialisation."""
    from dlmap.weights import catalogue

    needed = set()
    for prior in [*config["priors"], config["ablations"]["prior"]]:
        if prior == "niqe" and config["niqe_model"] == "fitted":
            continue
        if catalogue.has(prior):
            needed.add(prior)
    selection = config["selection"]
    needed |= {selection["d1"]} & {"lpips", "dists"}
    needed |= {"clip-vit-b-32"} if selection["d2"] == "clip" else set()
    msliqe = config["msliqe"]
    if msliqe["train"] and "--init" not in " ".join(msliqe["options"]):
        needed.add("clip-vit-b-32")
    return sorted(needed)


def folder_sets(config: dict) -> list[str]:
    """The weight folders the run's backbones load (``dlmap.weights.catalogue``)."""
    from dlmap.weights import catalogue

    return list(dict.fromkeys(s for b in backbones(config) for s in catalogue.backbone_sets(b)))


def datasets(config: dict) -> list[str]:
    """The IQA data sets a run reads (the demo's synthetic set, made on the spot, apart)."""
    names = []
    if config["msliqe"]["train"]:
        names += config["msliqe"]["datasets"]
    names += config["msliqe"]["evaluate_on"]
    if config["calibration"]["priors"]:
        names += config["calibration"]["datasets"]
    if config["images"]["source"] == "datasets":
        names += config["images"]["datasets"]
    return [name for name in dict.fromkeys(names) if name != "synthetic"]


PNG_BYTES_PER_PIXEL = 2.0  # an RGB photograph as PNG (about 500 kB at 512 x 512)
MSLIQE_STATE_BYTES = 1.9e9  # CLIP ViT-B/32 with AdamW's two moments, float32 (last.pt)


def output_bytes(config: dict) -> dict[str, float]:
    """A run's outputs on disk, roughly, by kind: every enhanced image (EDICT writes the pair
    x, y), the inversions (two float32 latents per step and image), the copies the studies
    serve, and MS-LIQE's chain (two states of the chain alive at once)."""
    count, side = config["images"]["count"], config["size"]
    image = PNG_BYTES_PER_PIXEL * side * side
    latent = 4 * (side // 8) ** 2 * 4  # 4 channels, float32
    steps = config["edict"]["steps"]
    externals = len(config.get("external") or {})
    ablation = len(ablation_variants(config)) * config["ablations"]["images"]
    post = len(config["post_enhancement"]["bases"]) * config["post_enhancement"]["images"]
    sizes = {
        "test images and their external copies": image * count * (2 + externals),
        "enhanced images (x and y per prior)": image * count * 2 * len(config["priors"]),
        "inversions": 2 * latent * (steps + 1) * count * len(backbones(config)),
        "ablations and post-enhancement": image * 2 * (ablation + post),
    }
    options = config["msliqe"]["options"]
    if config["msliqe"]["train"]:  # a toy CLIP (`--clip tiny`, the demo's) weighs next to nothing
        toy = any(a == "--clip" and b == "tiny" for a, b in zip(options, options[1:], strict=False))
        sizes["MS-LIQE's training states"] = 2 * (1e7 if toy else MSLIQE_STATE_BYTES)
    return sizes


# --- what the GPU jobs ask for -------------------------------------------------------------------


def dataset_images(names) -> int:
    """Images in the named IQA data sets (their documented counts; the synthetic set's)."""
    from dlmap.data.sources import SETS

    total = 0
    for name in names:
        if name == "synthetic":
            from dlmap.data import synthetic_iqa  # numpy and scipy: only when asked

            total += synthetic_iqa.entry_count()
        else:
            total += SETS[name].count
    return total


def solver_iters(config: dict, prior: str) -> int:
    """MaxIter of one prior: the shared solver settings, then its own."""
    return {**config["solver"], **config["prior_settings"].get(prior, {})}["iters"]


def first_requests(config: dict) -> dict[str, int]:
    """Each GPU rule's largest first-attempt runtime request in minutes, by the formula of
    ``dlmap.workflow.budget`` (MS-LIQE's training excepted: it runs as a chain of jobs)."""
    from dlmap.workflow import budget, chunks

    costs = budget.GpuCosts(**config["gpu_costs"])
    count = config["images"]["count"]
    chunk = max(len(c) for c in chunks.chunks(count, config["chunk_size"]))
    ablation = config["ablations"]
    post = config["post_enhancement"]
    requests = {
        "invert_chunk": budget.invert_job_minutes(chunk, costs),
        "enhance_chunk": max(
            budget.enhance_job_minutes(chunk, solver_iters(config, p), costs)
            for p in config["priors"]
        ),
        "enhance_ablation": budget.enhance_job_minutes(
            min(ablation["images"], count), solver_iters(config, ablation["prior"]), costs
        ),
        "evaluate_prior": budget.score_job_minutes(
            dataset_images(config["msliqe"]["evaluate_on"]), costs
        ),
        "select_pairs": max(
            budget.pairs_job_minutes(count, len(spec["enhancers"]), costs)
            for spec in config["comparisons"].values()
        ),
    }
    if post["bases"]:
        requests["post_enhance"] = budget.enhance_job_minutes(
            min(post["images"], count), solver_iters(config, post["prior"]), costs
        )
    if config["calibration"]["priors"]:
        requests["calibrate_prior"] = budget.score_job_minutes(
            dataset_images(config["calibration"]["datasets"]), costs
        )
    return requests


def check_walltime(config: dict) -> None:
    """Every GPU job's first request within ``slurm.max_runtime_minutes``; else one
    ``InputError`` naming the rule, its request and what to change."""
    limit = slurm_settings(config)["max_runtime_minutes"]
    advice = {
        "invert_chunk": "lower chunk_size",
        "enhance_chunk": "lower chunk_size",
        "enhance_ablation": "lower ablations.images",
        "post_enhance": "lower post_enhancement.images",
    }
    for rule, minutes in first_requests(config).items():
        if minutes > limit:
            raise InputError(
                f"slurm.max_runtime_minutes: a {rule} job asks for {minutes} minutes by "
                f"gpu_costs, more than the {limit} allowed; "
                f"{advice.get(rule, 'raise the walltime')}, or measure gpu_costs on your GPU "
                "(bench/gpu_iteration.py)"
            )


def project_gpu_hours(config: dict, costs) -> dict[str, float]:
    """GPU-hours of the enhancement stages of a workflow ``config`` (config.yaml's keys):
    every prior on every test image, the latent ablation runs the workflow makes
    (``latent_variants``, the function the rules read: Figs. 7-8 and the bijection grid, each at
    EDICT's cost, an upper bound for the one-call bijections; the pixel ones cost next to
    nothing) and Sec. V-D's post-enhancement, each with its inversions."""
    iters = config["solver"]["iters"]
    images = config["images"]["count"]
    ablation_images = config["ablations"]["images"]
    post = config.get("post_enhancement") or {}
    post_images = len(post.get("bases", [])) * post.get("images", 0)
    latent = latent_variants(config)  # the variants the workflow makes (one function)
    hours = {
        "inversions (every test image, once)": images * costs.inversion_seconds,
        f"MAP, {len(config['priors'])} priors x {images} images x {iters} iterations": (
            len(config["priors"]) * images * iters * costs.iteration_seconds
        ),
        f"ablations ({', '.join(latent)}) x {ablation_images} images": (
            len(latent)
            * ablation_images
            * (iters * costs.iteration_seconds + costs.inversion_seconds)
        ),
        f"post-enhancement, {post_images} outputs": post_images
        * (iters * costs.iteration_seconds + costs.inversion_seconds),
    }
    return {stage: seconds / 3600 for stage, seconds in hours.items()}


MAX_EPOCHS = 100000  # beyond: a runtime request past any queue's


def msliqe_epochs(config: dict) -> int:
    """The epochs MS-LIQE trains for: `dlmap train-msliqe`'s own parse of ``msliqe.options``
    (options it refuses are an ``InputError`` naming them)."""
    from dlmap.cli.main import build_parser

    parser, _ = build_parser("train-msliqe")
    options = config["msliqe"]["options"]
    try:
        epochs = parser.parse_args(["train-msliqe", "--manifest", "m", "--out", "o", *options])
    except SystemExit:
        raise InputError(
            f"msliqe.options: {options} are not options of `dlmap train-msliqe` (see the error "
            "above)"
        ) from None
    if not 1 <= epochs.epochs <= MAX_EPOCHS:
        raise InputError(f"msliqe.options: --epochs {epochs.epochs} must lie in [1, {MAX_EPOCHS}]")
    return epochs.epochs


def msliqe_epoch_seconds(config: dict) -> float:
    """One MS-LIQE epoch by ``gpu_costs``: every set shows as many images as the largest."""
    names = config["msliqe"]["datasets"]
    images = len(names) * max(dataset_images([name]) for name in names)
    return images * config["gpu_costs"]["train_seconds"]


def msliqe_segments(config: dict) -> list[tuple[int, int]]:
    """MS-LIQE's chain of training jobs under the config's walltime
    (``budget.train_segments``)."""
    from dlmap.workflow import budget

    costs = budget.GpuCosts(**config["gpu_costs"])
    limit = slurm_settings(config)["max_runtime_minutes"]
    return budget.train_segments(msliqe_epochs(config), msliqe_epoch_seconds(config), costs, limit)


def segment_name(start: int, end: int) -> str:
    """The folder of one job of MS-LIQE's training chain (``budget.train_segments``):
    ``epochs-000-023``."""
    return f"epochs-{start:03d}-{end:03d}"
