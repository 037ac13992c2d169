# Stage 2: the test images (Sec. IV-A), named by position (0000, 0001, ...) so the DAG is
# known before any data exists; chunks of `chunk_size` ids are fixed by position.


rule select_test_images:
    input:
        f"{OUT}/data/testpool.csv",
    output:
        f"{OUT}/images/selection.csv",
    log:
        f"{LOGS}/select_test_images.log",
    conda:
        "../../envs/jobs.yaml"
    params:
        rules={k: v for k, v in config["images"].items() if k != "photographs"},
        stamp=stamp(),
    script:
        "../scripts/select_test_images.py"


rule prepare_images:
    input:
        prepare_inputs,
    output:
        directory(f"{OUT}/images/c{{chunk}}"),
    log:
        f"{LOGS}/prepare_images/c{{chunk}}.log",
    conda:
        "../../envs/jobs.yaml"
    params:
        ids=chunk_ids,
        source=config["images"]["source"],
        photographs=config["images"]["photographs"],
        seed=config["images"]["seed"],
        size=config["size"],
        stamp=stamp(),
    script:
        "../scripts/prepare_images.py"
