# Stage 6: the paper's figures and the report's captions.


rule figure_ablations:
    input:
        inputs=[images_dir(c) for c in chunks_of(ABLATION_IDS)],
        variants=expand(f"{OUT}/ablations/{{variant}}", variant=ablation_variants()),
    output:
        [
            report(
                f"{OUT}/report/{name}.png",
                caption=f"../report/{name}.rst",
                category="Ablations (Figs. 1, 2, 7, 8)",
            )
            for name in ABLATION_FIGURES
        ],
    log:
        f"{LOGS}/figure_ablations.log",
    conda:
        "../../envs/jobs.yaml"
    params:
        figure="ablations",
        ids=ABLATION_IDS,
        lambdas=config["ablations"]["lambdas"],
        prior=config["ablations"]["prior"],
        stamp=stamp(),
    script:
        "../scripts/figures.py"


rule figure_pairs:
    input:
        pairs=f"{OUT}/comparison/{{comparison}}/pairs.csv",
        originals=all_image_dirs(),
    output:
        report(
            f"{OUT}/report/{{figure}}-{{comparison}}.png",
            caption="../report/pairs.rst",
            category="Selected pairs (Figs. 6, 9, 11)",
            labels={"comparison": "{comparison}"},
        ),
    log:
        f"{LOGS}/figure_pairs/{{figure}}-{{comparison}}.log",
    wildcard_constraints:
        figure=r"fig\d+-pairs|pairs",
    conda:
        "../../envs/jobs.yaml"
    params:
        figure="pairs",
        per_pair=config["figures"]["grid_pairs"],
        stamp=stamp(),
    script:
        "../scripts/figures.py"


rule figure_votes:
    input:
        counts=lambda wildcards: observer_files(wildcards.comparison)["counts"],
    output:
        report(
            f"{OUT}/report/votes-{{comparison}}.png",
            caption="../report/votes.rst",
            category="Selected pairs (Figs. 6, 9, 11)",
            labels={"comparison": "{comparison}"},
        ),
    log:
        f"{LOGS}/figure_votes/{{comparison}}.log",
    conda:
        "../../envs/jobs.yaml"
    params:
        figure="votes",
        anchor=lambda wildcards: config["comparisons"][wildcards.comparison]["anchor"],
        stamp=stamp(),
    script:
        "../scripts/figures.py"


rule figure_post:
    input:
        inputs=[images_dir(c) for c in chunks_of(POST_IDS)],
        bases=expand(f"{OUT}/external/{{base}}", base=config["post_enhancement"]["bases"]),
        refined=expand(f"{OUT}/post/{{base}}", base=config["post_enhancement"]["bases"]),
    output:
        report(
            f"{OUT}/report/fig12-post-enhancement.png",
            caption="../report/fig12-post-enhancement.rst",
            category="Post-enhancement (Fig. 12)",
        ),
    log:
        f"{LOGS}/figure_post.log",
    conda:
        "../../envs/jobs.yaml"
    params:
        figure="post",
        ids=POST_IDS,
        bases=config["post_enhancement"]["bases"],
        stamp=stamp(),
    script:
        "../scripts/figures.py"


rule gallery:
    input:
        inputs=[images_dir(c) for c in chunks_of(GALLERY_IDS)],
        enhanced=[
            f"{OUT}/enhanced/{prior}/c{c}" for prior in PRIORS for c in chunks_of(GALLERY_IDS)
        ],
    output:
        report(
            f"{OUT}/report/gallery.html",
            caption="../report/gallery.rst",
            category="Enhanced images",
        ),
    log:
        f"{LOGS}/gallery.log",
    conda:
        "../../envs/jobs.yaml"
    params:
        ids=GALLERY_IDS,
        priors=PRIORS,
        stamp=stamp(),
    script:
        "../scripts/gallery.py"


rule figures:
    input:
        figure_files(),
    output:
        f"{OUT}/report/figures.done",
    log:
        f"{LOGS}/figures.log",
    conda:
        "../../envs/jobs.yaml"
    shell:
        "ls {input} > {output} 2> {log}"
