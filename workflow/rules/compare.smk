# Stage 5: comparisons (Sec. III-C, Sec. V-B, Sec. V-C): pair selection (Eq. 18), the 2AFC
# study, observers (simulated, or a human study's export checked against its hashes), the
# ranking (Eq. 19) and its report.


rule select_pairs:
    input:
        unpack(comparison_inputs),
    output:
        pairs=f"{OUT}/comparison/{{comparison}}/pairs.csv",
    log:
        f"{LOGS}/select_pairs/{{comparison}}.log",
    benchmark:
        f"{BENCH}/select_pairs/{{comparison}}.tsv"
    conda:
        "../../envs/jobs.yaml"
    threads: GPU_THREADS
    resources:  # README "What the workflow's GPU jobs cost"
        gpu=GPU,
        mem_mb=HOST_MB,
        runtime=lambda wildcards, attempt: capped(
            budget.pairs_job_minutes(
                len(IDS), len(comparison_enhancers(wildcards.comparison)), COSTS, attempt
            )
        ),
    params:
        enhancers=lambda wildcards: comparison_enhancers(wildcards.comparison),
        anchor=lambda wildcards: config["comparisons"][wildcards.comparison].get("anchor"),
        selection=config["selection"],
        device=config["device"],
        cache=config["cache"],
        stamp=stamp(),
    script:
        "../scripts/select_pairs.py"


rule build_experiment:
    input:
        f"{OUT}/comparison/{{comparison}}/pairs.csv",
    output:
        f"{OUT}/experiment/{{comparison}}.sqlite",
    log:
        f"{LOGS}/build_experiment/{{comparison}}.log",
    conda:
        "../../envs/jobs.yaml"
    params:
        training=config["observers"]["training"],
        images=lambda wildcards, output: str(Path(output[0]).parents[1]),
        dlmap=DLMAP,
    shell:
        "{params.dlmap} experiment create --pairs {input} --images {params.images} --db {output}"
        " --training {params.training} > {log} 2>&1"


rule simulate_observers:
    input:
        pairs=f"{OUT}/comparison/{{comparison}}/pairs.csv",
        references=all_image_dirs(),
    output:
        counts=f"{OUT}/comparison/{{comparison}}/simulated/sim-total.csv",
        subjects=directory(f"{OUT}/comparison/{{comparison}}/simulated/sim-subjects"),
    log:
        f"{LOGS}/simulate_observers/{{comparison}}.log",
    conda:
        "../../envs/jobs.yaml"
    params:
        subjects=config["observers"]["subjects"],
        metric=config["observers"]["metric"],
        seed=config["ranking"]["seed"],
        stamp=stamp(),
    script:
        "../scripts/simulate_observers.py"


rule human_counts:
    input:
        pairs=f"{OUT}/comparison/{{comparison}}/pairs.csv",
        study=f"{OUT}/experiment/{{comparison}}.sqlite",
    output:
        counts=f"{OUT}/comparison/{{comparison}}/human/counts.csv",
        subjects=directory(f"{OUT}/comparison/{{comparison}}/human/subjects"),
    log:
        f"{LOGS}/human_counts/{{comparison}}.log",
    conda:
        "../../envs/jobs.yaml"
    params:
        export=lambda wildcards: human_export(wildcards.comparison),
        digest=lambda wildcards: chunks.folder_digest(
            human_export(wildcards.comparison), (".csv", ".json")
        ),
        images=lambda wildcards, input: str(Path(input.study).parents[1]),
    script:
        "../scripts/human_counts.py"


rule rank:
    input:
        unpack(lambda wildcards: observer_files(wildcards.comparison)),
    output:
        scores=f"{OUT}/comparison/{{comparison}}/scores.csv",
    log:
        f"{LOGS}/rank/{{comparison}}.log",
    conda:
        "../../envs/jobs.yaml"
    params:
        bootstrap=config["ranking"]["bootstrap"],
        dlmap=DLMAP,
        seed=config["ranking"]["seed"],
    shell:
        "{params.dlmap} rank {input.counts} --per-subject {input.subjects} --bootstrap {params.bootstrap}"
        " --seed {params.seed} --out {output.scores} > {log} 2>&1"


rule report_ranking:
    input:
        f"{OUT}/comparison/{{comparison}}/scores.csv",
    output:
        figure=report(
            f"{OUT}/report/ranking-{{comparison}}.png",
            caption="../report/ranking.rst",
            category="Rankings (Figs. 5, 10; Sec. V-B)",
            labels={"comparison": "{comparison}"},
        ),
        table=f"{OUT}/report/ranking-{{comparison}}.md",
    log:
        f"{LOGS}/report_ranking/{{comparison}}.log",
    conda:
        "../../envs/jobs.yaml"
    params:
        title=lambda wildcards: ranking_title(wildcards.comparison),
        prefix=lambda wildcards: f"{OUT}/report/ranking-{wildcards.comparison}",
        reduced="--reduced" if REDUCED else "",
        dlmap=DLMAP,
    shell:
        "{params.dlmap} report {input} --out {params.prefix} --title {params.title:q} {params.reduced}"
        " > {log} 2>&1"


rule table_one:
    input:
        scores=f"{OUT}/comparison/models/scores.csv",
        srcc=[f"{OUT}/srcc/{p}.csv" for p in PRIORS],  # MS-LIQE's SPAQ SRCC too (Sec. V)
    output:
        table=report(
            f"{OUT}/report/table1.csv",
            caption="../report/table1.rst",
            category="Table I",
        ),
        markdown=f"{OUT}/report/table1.md",
    log:
        f"{LOGS}/table_one.log",
    conda:
        "../../envs/jobs.yaml"
    params:
        prefix=f"{OUT}/report/table1-ranking",
        dataset=config["msliqe"]["evaluate_on"][0],
        reduced="--reduced" if REDUCED else "",
        dlmap=DLMAP,
    shell:
        "{params.dlmap} report {input.scores} --out {params.prefix} --srcc {input.srcc} {params.reduced}"
        " --dataset {params.dataset} > {log} 2>&1 && cp {params.prefix}.table1.csv {output.table}"
        " && cp {params.prefix}.table1.md {output.markdown}"


rule serving_instructions:  # phase `study` ends here: how to serve and export each study
    input:
        studies=[f"{OUT}/experiment/{c}.sqlite" for c in config["comparisons"]],
    output:
        f"{OUT}/experiment/SERVING.txt",
    log:
        f"{LOGS}/serving_instructions.log",
    localrule: True
    conda:
        "../../envs/jobs.yaml"
    params:
        exports={c: human_export(c) for c in config["comparisons"]},
        training=config["observers"]["training"],
    script:
        "../scripts/serving_instructions.py"
