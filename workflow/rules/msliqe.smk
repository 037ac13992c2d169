# Stage 3: priors' Eq. 21 constants fitted on a calibration set, MS-LIQE trained (Sec. V,
# Eqs. 25-27), and every prior's SRCC on the evaluation set (Table I, SPAQ in the paper).


rule calibrate_prior:
    input:
        unpack(lambda wildcards: {**prior_inputs(wildcards.prior), "calibration": []}),
        manifest=f"{OUT}/data/calibration.csv",
    output:
        f"{OUT}/calibration/{{prior}}.json",
    params:
        prior=lambda wildcards: wildcards.prior,
        prior_options=lambda wildcards: prior_options(wildcards.prior),
        size=config["calibration"]["size"],
        device=config["device"],
        cache=config["cache"],
        stamp=stamp(),
    resources:  # README "What the workflow's GPU jobs cost"
        gpu=GPU,
        mem_mb=HOST_MB,
        runtime=lambda wildcards, attempt: budget.score_job_minutes(
            dataset_images(config["calibration"]["datasets"]), COSTS, attempt
        ),
    log:
        f"{LOGS}/calibrate_prior/{{prior}}.log",
    script:
        "../scripts/calibrate_prior.py"


rule train_msliqe:
    input:
        manifest=f"{OUT}/data/train.csv",
        weights=weight_files("clip-vit-b-32") if "clip-vit-b-32" in weight_sets() else [],
    output:
        checkpoint=f"{OUT}/msliqe/ms_liqe.pt",
        metrics=report(
            f"{OUT}/msliqe/metrics.png",
            caption="../report/msliqe_training.rst",
            category="MS-LIQE (Sec. V)",
        ),
    params:
        options=" ".join(config["msliqe"]["options"]),
        cache=lambda wildcards: weights_cache(),
        folder=lambda wildcards, output: os.path.dirname(output.checkpoint),
        dlmap=DLMAP,
    resources:  # README "What the workflow's GPU jobs cost"
        gpu=GPU,
        mem_mb=HOST_MB,
        runtime=lambda wildcards, attempt: msliqe_train_minutes(attempt),
    log:
        f"{LOGS}/train_msliqe.log",
    benchmark:
        f"{BENCH}/train_msliqe.tsv"
    shell:
        "{params.dlmap:q} train-msliqe --manifest {input.manifest} --out {params.folder}"
        " --resume-if-compatible"
        " --cache '{params.cache}' --quiet {params.options} > {log} 2>&1"


rule evaluate_prior:
    input:
        unpack(lambda wildcards: {**prior_inputs(wildcards.prior), "calibration": []}),
        manifest=f"{OUT}/data/evaluate.csv",
    output:
        f"{OUT}/srcc/{{prior}}.csv",
    params:
        prior=lambda wildcards: wildcards.prior,
        prior_options=lambda wildcards: prior_options(wildcards.prior),
        split=config["msliqe"]["evaluate_split"],
        size=config["msliqe"]["evaluate_size"],
        device=config["device"],
        cache=config["cache"],
    resources:  # README "What the workflow's GPU jobs cost"
        gpu=GPU,
        mem_mb=HOST_MB,
        runtime=lambda wildcards, attempt: budget.score_job_minutes(
            dataset_images(config["msliqe"]["evaluate_on"]), COSTS, attempt
        ),
    log:
        f"{LOGS}/evaluate_prior/{{prior}}.log",
    script:
        "../scripts/evaluate_prior.py"
