# Stage 3: priors' Eq. 21 constants fitted on a calibration set, MS-LIQE trained (Sec. V,
# Eqs. 25-27), and every prior's SRCC on the evaluation set (Table I, SPAQ in the paper).


rule calibrate_prior:
    input:
        unpack(lambda wildcards: {**prior_inputs(wildcards.prior), "calibration": []}),
        manifest=f"{OUT}/data/calibration.csv",
    output:
        f"{OUT}/calibration/{{prior}}.json",
    log:
        f"{LOGS}/calibrate_prior/{{prior}}.log",
    benchmark:
        f"{BENCH}/calibrate_prior/{{prior}}.tsv"
    conda:
        "../../envs/jobs.yaml"
    threads: GPU_THREADS
    resources:  # README "What the workflow's GPU jobs cost"
        gpu=GPU,
        mem_mb=HOST_MB,
        runtime=lambda wildcards, attempt: capped(
            budget.score_job_minutes(
                dataset_images(config["calibration"]["datasets"]), COSTS, attempt
            )
        ),
    params:
        prior=lambda wildcards: wildcards.prior,
        prior_options=lambda wildcards: prior_options(wildcards.prior),
        size=config["calibration"]["size"],
        device=config["device"],
        cache=config["cache"],
        stamp=stamp(),
    script:
        "../scripts/calibrate_prior.py"


rule train_msliqe:  # one job of the chain (dlmap.workflow.budget.train_segments)
    input:
        manifest=f"{OUT}/data/train.csv",
        weights=weight_files("clip-vit-b-32") if "clip-vit-b-32" in weight_sets() else [],
        previous=msliqe_previous,
    output:
        temp(directory(f"{OUT}/msliqe/epochs-{{start}}-{{end}}")),
    log:
        f"{LOGS}/train_msliqe/epochs-{{start}}-{{end}}.log",
    benchmark:
        f"{BENCH}/train_msliqe/epochs-{{start}}-{{end}}.tsv"
    wildcard_constraints:
        start=r"\d{3}",
        end=r"\d{3}",
    conda:
        "../../envs/jobs.yaml"
    threads: GPU_THREADS  # one for the loop, the others load images
    resources:  # README "What the workflow's GPU jobs cost"; each job within the walltime
        gpu=GPU,
        mem_mb=HOST_MB,
        runtime=msliqe_segment_minutes,
    params:
        options=" ".join(config["msliqe"]["options"]),
        resume=lambda wildcards, input: (
            f"--resume-from {input.previous[0]}/last.pt" if input.previous else ""
        ),
        until=lambda wildcards: msliqe_segment(wildcards)[1],
        cache=lambda wildcards: weights_cache(),
        dlmap=DLMAP,
    shell:
        "{params.dlmap} train-msliqe --manifest {input.manifest} --out {output}"
        " {params.resume} --until-epoch {params.until} --workers $(({threads} - 1))"
        " --cache '{params.cache}' --quiet {params.options} > {log} 2>&1"


rule msliqe_model:  # the chain's last job holds the trained model and its training curve
    input:
        lambda wildcards: f"{OUT}/msliqe/{plan.segment_name(*msliqe_segments()[-1])}",
    output:
        checkpoint=f"{OUT}/msliqe/ms_liqe.pt",
        metrics=report(
            f"{OUT}/msliqe/metrics.png",
            caption="../report/msliqe_training.rst",
            category="MS-LIQE (Sec. V)",
        ),
        table=f"{OUT}/msliqe/metrics.csv",
    log:
        f"{LOGS}/msliqe_model.log",
    localrule: True
    conda:
        "../../envs/jobs.yaml"
    shell:
        "(cp {input}/ms_liqe.pt {output.checkpoint} && cp {input}/metrics.png {output.metrics}"
        " && cp {input}/metrics.csv {output.table}) 2> {log}"


rule evaluate_prior:
    input:
        unpack(lambda wildcards: {**prior_inputs(wildcards.prior), "calibration": []}),
        manifest=f"{OUT}/data/evaluate.csv",
    output:
        f"{OUT}/srcc/{{prior}}.csv",
    log:
        f"{LOGS}/evaluate_prior/{{prior}}.log",
    benchmark:
        f"{BENCH}/evaluate_prior/{{prior}}.tsv"
    conda:
        "../../envs/jobs.yaml"
    threads: GPU_THREADS
    resources:  # README "What the workflow's GPU jobs cost"
        gpu=GPU,
        mem_mb=HOST_MB,
        runtime=lambda wildcards, attempt: capped(
            budget.score_job_minutes(
                dataset_images(config["msliqe"]["evaluate_on"]), COSTS, attempt
            )
        ),
    params:
        prior=lambda wildcards: wildcards.prior,
        prior_options=lambda wildcards: prior_options(wildcards.prior),
        split=config["msliqe"]["evaluate_split"],
        size=config["msliqe"]["evaluate_size"],
        device=config["device"],
        cache=config["cache"],
    script:
        "../scripts/evaluate_prior.py"
