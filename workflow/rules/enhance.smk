# Stage 4: the demo's tiny VAE trained on the spot (tiny backbones only), EDICT inversion
# (once per image, reused by every prior), MAP enhancement in jobs
# of one prior x one chunk (models loaded once per job, the chunk solved in batches), the
# ablations (Figs. 1, 2, 7, 8), other enhancers' outputs (Sec. V-C) and post-enhancement
# (Sec. V-D).


rule train_tiny_vae:
    output:
        vae=directory(f"{OUT}/tiny-vae"),
        plot=report(
            f"{OUT}/report/tiny-vae.png",
            caption="../report/tiny-vae.rst",
            category="Tiny VAE (demo)",
        ),
    log:
        f"{LOGS}/train_tiny_vae.log",
    benchmark:
        f"{BENCH}/train_tiny_vae.tsv"
    conda:
        "../../envs/jobs.yaml"
    threads: 2  # the training fixes its torch threads at 2 (dlmap.diffusion.tiny_vae_store.VaeTraining)
    params:
        steps=config["tiny_vae"]["steps"],
        seed=config["tiny_vae"]["seed"],
        library=chunks.source_digest((), ("diffusion/tiny_vae",)),
        cache=lambda wildcards: weights_cache(),
        dlmap=DLMAP,
    shell:  # reuses <cache>/tiny-vae/KEY when the same training already ran (dlmap.diffusion.tiny_vae)
        "{params.dlmap} train-vae --out {output.vae} --steps {params.steps}"
        " --seed {params.seed} --cache '{params.cache}' --quiet > {log} 2>&1"
        " && cp {output.vae}/training.png {output.plot}"


rule invert_chunk:
    input:
        unpack(lambda wildcards: vae_input(wildcards.backbone)),
        images=lambda wildcards: images_dir(wildcards.chunk),
        weights=lambda wildcards: backbone_weights(wildcards.backbone),
    output:
        f"{OUT}/inversions/{{backbone}}/c{{chunk}}.pt",
    log:
        f"{LOGS}/invert_chunk/{{backbone}}-c{{chunk}}.log",  # and its timing, written by the
    # script to BENCH/invert_chunk/ (a rule cached between workflows takes no `benchmark:`)
    cache: "omit-software"
    conda:
        "../../envs/jobs.yaml"
    threads: GPU_THREADS
    resources:  # README "What the workflow's GPU jobs cost"
        gpu=GPU,
        mem_mb=HOST_MB,
        runtime=lambda wildcards, attempt: capped(
            budget.invert_job_minutes(len(chunk_ids(wildcards)), COSTS, attempt)
        ),
    params:
        backbone=lambda wildcards: backbone_settings(wildcards.backbone),
        edict=edict_values(),
        size=config["size"],
        seed=config["solver"]["seed"],
        batch_size=config["batch_size"],
        library=chunks.source_digest(),
    script:
        "../scripts/invert_chunk.py"


rule enhance_chunk:
    input:
        unpack(lambda wildcards: {**prior_inputs(wildcards.prior), **vae_input(config["backbone"])}),
        images=lambda wildcards: images_dir(wildcards.chunk),
        inversion=f"{OUT}/inversions/{config['backbone']}/c{{chunk}}.pt",
    output:
        directory(f"{OUT}/enhanced/{{prior}}/c{{chunk}}"),
    log:
        f"{LOGS}/enhance_chunk/{{prior}}-c{{chunk}}.log",
    benchmark:
        f"{BENCH}/enhance_chunk/{{prior}}-c{{chunk}}.tsv"
    conda:
        "../../envs/jobs.yaml"
    threads: GPU_THREADS
    resources:  # README "What the workflow's GPU jobs cost"
        gpu=GPU,
        mem_mb=HOST_MB,
        runtime=lambda wildcards, attempt: capped(
            budget.enhance_job_minutes(
                len(chunk_ids(wildcards)), prior_solver(wildcards.prior)["iters"], COSTS, attempt
            )
        ),
    params:
        prior=lambda wildcards: wildcards.prior,
        prior_options=lambda wildcards: prior_options(wildcards.prior),
        solver=lambda wildcards: prior_solver(wildcards.prior),
        backbone=backbone_settings(),
        edict=edict_values(),
        size=config["size"],
        batch_size=config["batch_size"],
        stamp=stamp(),
    script:
        "../scripts/enhance_chunk.py"


rule enhance_ablation:
    input:
        unpack(ablation_inputs),
    output:
        directory(f"{OUT}/ablations/{{variant}}"),
    log:
        f"{LOGS}/enhance_ablation/{{variant}}.log",
    benchmark:
        f"{BENCH}/enhance_ablation/{{variant}}.tsv"
    conda:
        "../../envs/jobs.yaml"
    threads: GPU_THREADS
    resources:  # README "What the workflow's GPU jobs cost"
        gpu=GPU,
        mem_mb=HOST_MB,
        runtime=lambda wildcards, attempt: capped(
            budget.enhance_job_minutes(
                len(ABLATION_IDS),
                prior_solver(config["ablations"]["prior"])["iters"],
                COSTS,
                attempt,
            )
        ),
    params:
        prior=config["ablations"]["prior"],
        prior_options=prior_options(config["ablations"]["prior"]),
        ids=ABLATION_IDS,
        solver=lambda wildcards: plan.ablation_solver(config, wildcards.variant),
        backbone=lambda wildcards: backbone_settings(
            ablation_variants()[wildcards.variant].get("backbone")
        ),
        edict=lambda wildcards: ablation_edict(wildcards.variant),
        size=config["size"],
        batch_size=config["batch_size"],
        stamp=stamp(),
    script:
        "../scripts/enhance_chunk.py"


rule external_inputs:  # phase `external_inputs`: what the external enhancers are run on
    input:
        all_image_dirs(),
    output:
        folder=directory(f"{OUT}/external-inputs"),
    log:
        f"{LOGS}/external_inputs.log",
    localrule: True
    conda:
        "../../envs/jobs.yaml"
    params:
        external=EXTERNAL,
        size=config["size"],
        stamp=stamp(),
    script:
        "../scripts/external_inputs.py"


rule check_external:
    input:
        external_source,
        selection=f"{OUT}/external-inputs",  # the test images the outputs must answer
    output:
        directory(f"{OUT}/external/{{enhancer}}"),
    log:
        f"{LOGS}/check_external/{{enhancer}}.log",
    conda:
        "../../envs/jobs.yaml"
    params:
        source=lambda wildcards: EXTERNAL[wildcards.enhancer],
        digest=lambda wildcards: chunks.folder_digest(EXTERNAL[wildcards.enhancer]),
        ids=IDS,
        size=config["size"],
    script:
        "../scripts/check_external.py"


rule demo_external:
    input:
        all_image_dirs(),
    output:
        directory(f"{OUT}/demo-external/{{enhancer}}"),
    log:
        f"{LOGS}/demo_external/{{enhancer}}.log",
    conda:
        "../../envs/jobs.yaml"
    params:
        stamp=stamp(),
    script:
        "../scripts/demo_external.py"


rule post_enhance:
    input:
        unpack(
            lambda wildcards: {
                **prior_inputs(config["post_enhancement"]["prior"]),
                **vae_input(config["backbone"]),
            }
        ),
        base=f"{OUT}/external/{{base}}",
    output:
        directory(f"{OUT}/post/{{base}}"),
    log:
        f"{LOGS}/post_enhance/{{base}}.log",
    benchmark:
        f"{BENCH}/post_enhance/{{base}}.tsv"
    conda:
        "../../envs/jobs.yaml"
    threads: GPU_THREADS
    resources:  # README "What the workflow's GPU jobs cost"
        gpu=GPU,
        mem_mb=HOST_MB,
        runtime=lambda wildcards, attempt: capped(
            budget.enhance_job_minutes(
                len(POST_IDS),
                prior_solver(config["post_enhancement"]["prior"])["iters"],
                COSTS,
                attempt,
            )
        ),
    params:
        prior=config["post_enhancement"]["prior"],
        prior_options=prior_options(config["post_enhancement"]["prior"]),
        ids=POST_IDS,
        solver=prior_solver(config["post_enhancement"]["prior"]),
        backbone=backbone_settings(),
        edict=edict_values(),
        size=config["size"],
        batch_size=config["batch_size"],
        stamp=stamp(),
    script:
        "../scripts/enhance_chunk.py"
