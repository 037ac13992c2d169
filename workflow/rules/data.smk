# Stage 1: weights and data sets. Downloads are marked for Snakemake's between-workflow
# cache (`--cache`, with $SNAKEMAKE_OUTPUT_CACHE set); sets that need a request form or a
# cloud-drive download fail at once, printing the exact steps and target folder. They run
# where Snakemake runs (localrules: compute nodes often have no internet) unless the config
# says `slurm: {fetch_on_login_node: false}`; mirrors from `weights_mirrors` come first.


_owned = set()  # a file two sets share (OpenAI's CLIP) is fetched by the first
for _set in weight_sets():
    _files = [f for f in weight_files(_set) if f not in _owned]
    _owned.update(_files)
    if not _files:
        continue

    rule:
        name:
            f"fetch_weights_{_set.replace('+', 'plus').replace('-', '_').replace(':', '_')}"
        output:
            **{f"file{i}": path for i, path in enumerate(_files)},
        log:
            f"{LOGS}/fetch_weights/{_set}.log",
        cache: "omit-software"
        localrule: LOCAL_FETCH
        conda:
            "../../envs/jobs.yaml"
        params:
            name=_set,
            cache=lambda wildcards: weights_cache(),  # config-given, not a path of this job's
            mirrors=MIRROR_OPTIONS,
            dlmap=DLMAP,
        shell:  # its table (the source used) goes to the log
            "{params.dlmap} weights fetch '{params.name}' --cache '{params.cache}'"
            " {params.mirrors} > {log} 2>&1"


_backbones = [config["backbone"], config["ablations"]["vanilla_backbone"]]
for _folder in sorted({f for b in _backbones for f in backbone_weights(b)}):

    rule:
        name:
            f"fetch_weights_{os.path.basename(_folder).replace('-', '_')}"
        output:
            directory(_folder),
        log:
            f"{LOGS}/fetch_weights/{os.path.basename(_folder)}.log",
        cache: "omit-software"
        localrule: LOCAL_FETCH
        conda:
            "../../envs/jobs.yaml"
        params:
            name=os.path.basename(_folder),
            cache=lambda wildcards: weights_cache(),  # config-given, not a path of this job's
            mirrors=MIRROR_OPTIONS,
            dlmap=DLMAP,
        shell:  # its table (the source used) goes to the log
            "{params.dlmap} weights fetch '{params.name}' --cache '{params.cache}'"
            " {params.mirrors} > {log} 2>&1"


rule fetch_dataset:
    output:
        directory(f"{DATA}/{{dataset}}"),
    log:
        f"{LOGS}/fetch_dataset/{{dataset}}.log",
    cache: "omit-software"
    localrule: LOCAL_FETCH
    conda:
        "../../envs/jobs.yaml"
    params:
        root=lambda wildcards, output: os.path.dirname(output[0]),
        dlmap=DLMAP,
    shell:
        "{params.dlmap} data fetch {wildcards.dataset} --root '{params.root}' > {log} 2>&1"


rule synthetic_iqa:
    output:
        f"{OUT}/data/synthetic/manifest.csv",
    log:
        f"{LOGS}/synthetic_iqa.log",
    conda:
        "../../envs/jobs.yaml"
    params:
        dlmap=DLMAP,
    shell:
        "{params.dlmap} data synthetic --out $(dirname {output}) > {log} 2>&1"


rule dataset_manifest:
    input:
        manifest_sources,
    output:
        f"{OUT}/data/{{group}}.csv",
    log:
        f"{LOGS}/dataset_manifest/{{group}}.log",
    wildcard_constraints:
        group="train|evaluate|calibration|testpool",
    conda:
        "../../envs/jobs.yaml"
    params:
        names=lambda wildcards: manifest_datasets(wildcards.group),
        root=DATA,
        stamp=stamp(),
    script:
        "../scripts/dataset_manifest.py"
