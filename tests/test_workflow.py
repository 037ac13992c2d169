"""The Snakemake workflow: config validation, the paper's full DAG, the profiles, and
what reruns after a change (dry runs that count the planned jobs per rule)."""

import csv
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
DEMO = ROOT / "presets" / "demo.yaml"


def snakemake(*args, cwd=ROOT, check=True):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    run = subprocess.run(
        [SNAKEMAKE, "-s", str(ROOT / "Snakefile"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    if check and run.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{run.stdout}\n{run.stderr}")
    return run


def planned(*args, cwd=ROOT, text=None) -> dict[str, int]:
    """Jobs per rule of a dry run (or of its printed ``text``)."""
    text = text or snakemake("-n", "--cores", "1", *args, cwd=cwd).stdout
    if "Nothing to be done" in text:
        return {}
    table = text[text.index("Job stats:") : text.index("Reasons:")]
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", table, re.M))
    counts.pop("total", None)
    return {rule: int(n) for rule, n in counts.items()}


def write_config(tmp_path, changes: dict, base=DEMO) -> Path:
    values = yaml.safe_load(base.read_text())
    for key, value in changes.items():
        target = values
        *parents, last = key.split(".")
        for parent in parents:
            target = target[parent]
        target[last] = value
    path = tmp_path / f"config-{len(list(tmp_path.glob('config-*')))}.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def test_the_paper_config_builds_the_whole_dag_without_weights_or_data(tmp_path):
    env_cache = {"DLMAP_CACHE": str(tmp_path / "cache"), "DLMAP_DATA": str(tmp_path / "data")}
    os.environ.update(env_cache)
    try:
        text = snakemake(
            "-n", "--cores", "1", "--configfile", str(ROOT / "config.yaml"), cwd=tmp_path
        ).stdout
    finally:
        for key in env_cache:
            os.environ.pop(key)
    jobs = planned(text=text)
    assert jobs["enhance_chunk"] == 9 * 20  # nine priors x 500 images in chunks of 25
    assert jobs["invert_chunk"] == 20 + 1  # once per chunk, plus vanilla SD2 for Fig. 7
    assert jobs["prepare_images"] == 20 and jobs["select_test_images"] == 1
    assert jobs["evaluate_prior"] == 9 and jobs["calibrate_prior"] == 7
    assert jobs["train_msliqe"] == 4 and jobs["msliqe_model"] == 1  # a chain under 720 min
    assert jobs["fetch_dataset"] == 7 and jobs["external_inputs"] == 1
    assert jobs["select_pairs"] == jobs["rank"] == jobs["human_counts"] == 3
    assert jobs["post_enhance"] == jobs["check_external"] == 6
    assert {"fetch_weights_seesr", "fetch_weights_liqe_mix", "table_one", "figures"} <= set(jobs)
    check_gpu_requests(text)


def test_the_modern_preset_plans_the_papers_dag_with_two_more_priors(tmp_path):
    """presets/modern.yaml: config.yaml's DAG, two pyiqa priors more (enhanced, evaluated,
    calibrated, their weights fetched) and a models comparison of 10 enhancers, planned
    without weights or data. The README's trial count follows from it."""
    env_cache = {"DLMAP_CACHE": str(tmp_path / "cache"), "DLMAP_DATA": str(tmp_path / "data")}
    os.environ.update(env_cache)
    try:
        modern = str(ROOT / "presets" / "modern.yaml")
        text = snakemake("-n", "--cores", "1", "--configfile", modern, cwd=tmp_path).stdout
    finally:
        for key in env_cache:
            os.environ.pop(key)
    jobs = planned(text=text)
    modern = yaml.safe_load((ROOT / "presets" / "modern.yaml").read_text())
    paper = yaml.safe_load((ROOT / "config.yaml").read_text())
    added = [p for p in modern["priors"] if p not in paper["priors"]]
    assert added == ["pyiqa:topiq_nr", "pyiqa:qualiclip+"]
    assert jobs["enhance_chunk"] == 11 * 20 and jobs["evaluate_prior"] == 11
    assert jobs["calibrate_prior"] == 9 and jobs["select_pairs"] == jobs["rank"] == 3
    assert {"fetch_weights_pyiqa_topiq_nr", "fetch_weights_pyiqa_qualiclipplus"} <= set(jobs)
    n = len(modern["comparisons"]["models"]["enhancers"])
    k = modern["selection"]["k"]
    trials = k * n * (n - 1) // 2
    assert (n, trials) == (10, 900)
    assert f"K n(n-1)/2 = {k} x {n * (n - 1) // 2} = {trials} 2AFC trials" in " ".join(
        (ROOT / "docs" / "workflow.md").read_text().split()
    )


def job_resources(text: str) -> dict[str, list[dict[str, str]]]:
    """Each rule's jobs' resources, from a dry run's printout."""
    found = {}
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", text):
        rule = re.match(r"(?:local)?rule (\w+):", block)
        line = re.search(r"^\s+resources: (.*)$", block, re.M)
        if rule and line:
            pairs = dict(item.split("=", 1) for item in line.group(1).split(", "))
            found.setdefault(rule.group(1), []).append(pairs)
    return found


def job_blocks(text: str) -> list[dict]:
    """Each planned job of a dry run's printout: its rule, whether it is a local rule, its
    output, threads and resources."""
    found = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", text):
        rule = re.match(r"(local)?rule (\w+):", block)
        if not rule:
            continue
        output = re.search(r"^\s+output: (.*)$", block, re.M)
        threads = re.search(r"^\s+threads: (\d+)$", block, re.M)
        line = re.search(r"^\s+resources: (.*)$", block, re.M)
        found.append(
            {
                "rule": rule.group(2),
                "local": bool(rule.group(1)),
                "output": output.group(1) if output else "",
                "threads": threads.group(1) if threads else "1",
                "resources": dict(i.split("=", 1) for i in line.group(1).split(", "))
                if line
                else {},
            }
        )
    return found


def check_gpu_requests(text: str) -> None:
    """Every GPU rule of the paper's DAG asks for what the formula of dlmap.workflow.budget
    gives with config.yaml's gpu_costs (the profile sets none of it)."""
    from dlmap.data.sources import SETS
    from dlmap.workflow import budget

    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    costs = budget.GpuCosts(**config["gpu_costs"])
    iters, chunk = config["solver"]["iters"], config["chunk_size"]
    found = job_resources(text)
    assert set(found) >= gpu_rules(), sorted(found)
    for rule in gpu_rules():
        for resources in found[rule]:
            assert int(resources["mem_mb"]) == budget.host_mem_mb(costs) == 25000, rule
    runtimes = {rule: {int(r["runtime"]) for r in found[rule]} for rule in gpu_rules()}
    assert runtimes["enhance_chunk"] == {budget.enhance_job_minutes(chunk, iters, costs)}
    assert runtimes["enhance_chunk"] == {278}  # (120 s + 25 x 40 x 11 s) x 1.5 = 278 min
    assert runtimes["invert_chunk"] == {budget.invert_job_minutes(chunk, costs)}
    spaq = SETS["spaq"].count
    assert runtimes["evaluate_prior"] == {budget.score_job_minutes(spaq, costs)}
    largest = max(SETS[name].count for name in config["msliqe"]["datasets"])
    epoch = len(config["msliqe"]["datasets"]) * largest * costs.train_seconds
    segments = budget.train_segments(80, epoch, costs, 720)
    chain = {budget.job_minutes((end - start) * epoch, costs) for start, end in segments}
    assert runtimes["train_msliqe"] == chain == {702, 338}  # 23 epochs a job, 11 in the last
    assert max(max(minutes) for minutes in runtimes.values()) <= 720  # slurm's default
    enhancers = len(config["comparisons"]["models"]["enhancers"])
    assert budget.pairs_job_minutes(500, enhancers, costs) in runtimes["select_pairs"]


@pytest.mark.parametrize(
    "change, message",
    [
        ({"priros": ["niqe"]}, "priros"),
        ({"solver.iters": "forty"}, "forty"),
        ({"edict.order": "sideways"}, "sideways"),
        ({"edict.encode": "sample"}, "encode is a backbone setting"),
        ({"comparisons.models.enhancers": ["niqe"]}, "enhancers"),
        ({"memory.weights_dtype": "bf16"}, "weights_dtype bf16 needs autocast bf16"),
        ({"msliqe.train": True, "msliqe.options": ["--no-such-option"]}, "msliqe.options"),
        ({"priors": ["colorfulness", "pyiqa:fid"]}, "config: priors: pyiqa:fid cannot be a prior"),
        ({"ablations.prior": "pyiqa:topiq-nr"}, "did you mean topiq_nr"),
        ({"solver.lam": -0.01}, "config: solver.lam: -0.01 is less than the minimum of 0"),
        ({"priors": ["niqe", "sharpnes"]}, "config: priors: unknown prior 'sharpnes'"),
        ({"edict.steps": 2}, "config: ablations.bijections: bdia needs at least 3 steps"),
    ],
)
def test_a_bad_config_fails_before_any_job_naming_the_key(tmp_path, change, message):
    run = snakemake(
        "-n", "--configfile", str(write_config(tmp_path, change)), check=False, cwd=tmp_path
    )
    assert run.returncode != 0
    output = run.stdout + run.stderr
    assert message in output
    # the error, not a dump of the schema and the config after it
    assert "ValidationError" not in output and len(output.splitlines()) < 30, output
    assert not (tmp_path / "results").exists()


def test_a_schema_error_shows_jsonschemas_whole_account_under_verbose_only(tmp_path):
    config = str(write_config(tmp_path, {"solver.lam": -0.01}))
    plain = snakemake("-n", "--configfile", config, check=False, cwd=tmp_path)
    verbose = snakemake("-n", "--verbose", "--configfile", config, check=False, cwd=tmp_path)
    assert plain.returncode != 0 and verbose.returncode != 0
    account = "Failed validating 'minimum' in schema['properties']['solver']"
    assert account not in plain.stdout + plain.stderr
    assert account in verbose.stdout + verbose.stderr


def gpu_rules() -> set[str]:
    """The rules that declare the `gpu` resource."""
    names = set()
    for path in (ROOT / "workflow" / "rules").glob("*.smk"):
        for block in re.split(r"^rule ", path.read_text(), flags=re.M)[1:]:
            if "gpu=GPU" in block:
                names.add(block.split(":", 1)[0])
    return names


def test_profile_slurm_resolves_to_the_slurm_executor_with_gpu_resources(monkeypatch):
    from snakemake.cli import parse_args

    monkeypatch.chdir(ROOT)  # `--profile slurm` is ./slurm from the repository root
    _, args = parse_args(["--profile", "slurm", "-n"])
    assert args.executor == "slurm"
    assert set(args.set_resources) == gpu_rules() and "enhance_chunk" in gpu_rules()
    for rule, resources in args.set_resources.items():
        assert resources["gpu"].value == 1, rule
        # runtime and memory come from each rule's formula (check_gpu_requests), not from here
        assert "mem_mb" not in resources and "runtime" not in resources, rule
    assert "rank" not in args.set_resources  # CPU rules ask for no GPU
    # The profile declares the gpu resource, so the workflow does not count the (GPU-less)
    # submitting machine's GPUs, which would take each job's request down to 0.
    assert args.resources["gpu"].value == 100
    partition = args.set_resources["enhance_chunk"]["slurm_partition"].raw
    monkeypatch.setenv("DLMAP_SLURM_GPU_PARTITION", "gpu-a100")
    assert eval(partition) == "gpu-a100"  # the plugin evaluates the same expression
    monkeypatch.delenv("DLMAP_SLURM_GPU_PARTITION")
    monkeypatch.setenv("DLMAP_SLURM_PARTITION", "batch")
    assert eval(partition) == "batch"
    assert eval(args.default_resources["slurm_account"].raw) == ""


def test_under_the_slurm_profile_each_gpu_job_asks_for_a_gpu_from_a_machine_without_one(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("DLMAP_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("DLMAP_DATA", str(tmp_path / "data"))
    text = snakemake(
        "-n",
        "--profile",
        str(ROOT / "slurm"),
        "--cores",
        "32",
        "--configfile",
        str(ROOT / "config.yaml"),
        cwd=tmp_path,
    ).stdout
    found = job_resources(text)
    for rule in gpu_rules():
        assert {r["gpu"] for r in found[rule]} == {"1"}, rule  # CUDA_VISIBLE_DEVICES is ""
    blocks = job_blocks(text)
    threads = {rule: {b["threads"] for b in blocks if b["rule"] == rule} for rule in gpu_rules()}
    assert all(values == {"8"} for values in threads.values()), threads  # slurm.gpu_threads
    runtimes = [int(r["runtime"]) for rows in found.values() for r in rows if "runtime" in r]
    assert max(runtimes) <= 720


def local_rules(config: Path, cwd: Path) -> set[str]:
    """The rules the workflow declares local (run where Snakemake runs, never submitted),
    from the parsed workflow: a dry run's printout does not say."""
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import (
        ConfigSettings,
        OutputSettings,
        ResourceSettings,
        StorageSettings,
    )

    with SnakemakeApi(OutputSettings()) as api:
        workflow = api.workflow(
            snakefile=ROOT / "Snakefile",
            workdir=cwd,
            config_settings=ConfigSettings(configfiles=[config]),
            resource_settings=ResourceSettings(),
            storage_settings=StorageSettings(),
        )._workflow
        return set(workflow._localrules)


def test_downloads_run_on_the_login_node_unless_compute_nodes_have_internet(tmp_path, monkeypatch):
    monkeypatch.setenv("DLMAP_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("DLMAP_DATA", str(tmp_path / "data"))
    local = local_rules(ROOT / "config.yaml", tmp_path)
    fetches = {rule for rule in local if rule.startswith(("fetch_weights_", "fetch_dataset"))}
    assert len(fetches) == 15 and "fetch_weights_sd2_base" in fetches
    assert {"external_inputs", "msliqe_model", "serving_instructions"} <= local
    assert not local & gpu_rules()
    online = write_config(
        tmp_path, {"slurm": {"fetch_on_login_node": False}}, base=ROOT / "config.yaml"
    )
    assert not any(rule.startswith("fetch_") for rule in local_rules(online, tmp_path))


def test_a_shorter_walltime_makes_a_longer_chain(tmp_path, monkeypatch):
    monkeypatch.setenv("DLMAP_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("DLMAP_DATA", str(tmp_path / "data"))
    # chunks of 20 images: an enhance_chunk job, (120 + 20 x 40 x 11) x 1.5 s = 223 min, fits
    config = write_config(
        tmp_path,
        {"slurm": {"max_runtime_minutes": 240}, "chunk_size": 20},
        base=ROOT / "config.yaml",
    )
    text = snakemake(
        "-n", "--profile", str(ROOT / "slurm"), "--configfile", str(config), cwd=tmp_path
    ).stdout
    blocks = job_blocks(text)
    chain = [b for b in blocks if b["rule"] == "train_msliqe"]
    # (240 x 60 / 1.5 - 120) / 1215 s = 7.8: 7 epochs a job, 12 jobs for 80 epochs
    assert len(chain) == 12 and all(int(b["resources"]["runtime"]) <= 240 for b in chain)
    outputs = sorted(b["output"] for b in chain)
    assert outputs[0].endswith("msliqe/epochs-000-007") and outputs[-1].endswith("-077-080")


def test_a_walltime_too_short_for_a_job_fails_before_planning_naming_the_rule(tmp_path):
    config = write_config(
        tmp_path, {"slurm": {"max_runtime_minutes": 150}}, base=ROOT / "config.yaml"
    )
    run = snakemake("-n", "--configfile", str(config), check=False, cwd=tmp_path)
    assert run.returncode != 0
    line = next(x for x in (run.stdout + run.stderr).splitlines() if "max_runtime_minutes" in x)
    assert "enhance_chunk job asks for 278 minutes" in line and "lower chunk_size" in line


def test_every_gpu_rule_records_its_cost_for_checking_the_estimates():
    """A `benchmark:` on every GPU rule; invert_chunk, cached between workflows (which
    forbids the directive), times itself into the same folder."""
    for path in (ROOT / "workflow" / "rules").glob("*.smk"):
        for block in re.split(r"^rule ", path.read_text(), flags=re.M)[1:]:
            if "gpu=GPU" not in block:
                continue
            name = block.split(":", 1)[0].strip()
            if name == "invert_chunk":
                script = ROOT / "workflow" / "scripts" / "invert_chunk.py"
                assert "with benchmark(smk)" in script.read_text()
            else:
                assert "benchmark:" in block and "threads: GPU_THREADS" in block, name


def test_the_phases_plan_in_order(tmp_path, monkeypatch):
    """Each phase target plans what it adds to the one before, from an empty start: no
    enhancement before `enhance`, no pairs before `study`, no ranking before `results`; and
    the default target says which phases wait for steps done by hand."""
    monkeypatch.setenv("DLMAP_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("DLMAP_DATA", str(tmp_path / "data"))
    paper = ["--configfile", str(ROOT / "config.yaml")]
    phases = {
        name: planned(name, *paper, cwd=tmp_path)
        for name in ("prepare", "external_inputs", "enhance", "study", "results")
    }
    prepare = phases["prepare"]
    assert prepare["train_msliqe"] == 4 and prepare["prepare_images"] == 20
    assert prepare["calibrate_prior"] == 7 and prepare["evaluate_prior"] == 9
    assert not {"enhance_chunk", "invert_chunk", "external_inputs"} & set(prepare)
    assert phases["external_inputs"]["external_inputs"] == 1
    assert "enhance_chunk" not in phases["external_inputs"]
    enhance = phases["enhance"]
    assert enhance["enhance_chunk"] == 180 and enhance["check_external"] == 6
    assert enhance["post_enhance"] == 6 and enhance["enhance_ablation"] == 11
    assert not {"select_pairs", "rank"} & set(enhance)
    study = phases["study"]
    assert study["select_pairs"] == study["build_experiment"] == 3
    assert study["serving_instructions"] == 1 and "rank" not in study
    assert phases["results"]["rank"] == 3 and phases["results"]["human_counts"] == 3
    run = snakemake("-n", *paper, cwd=tmp_path)
    notes = [line for line in run.stderr.splitlines() if line.startswith("dlmap: note:")]
    assert "phase `enhance` waits for external enhancers' outputs" in notes[0]
    assert "daclip, ram-promptir, stablesr, seesr, supir, wan20" in notes[0]
    assert "phase `results` waits for human answers done by hand: models" in notes[1]
    assert "prepare, external_inputs, enhance, study, results" in notes[2]


# A small configuration whose enhancement stage really runs (about a minute): 2 images in 2
# chunks, 3 training-free priors, T = 2, one iteration.
SMALL = {
    "size": 192,
    "chunk_size": 1,
    "batch_size": 1,
    "images.count": 2,
    "edict.steps": 2,
    "ablations.bijections": [],  # BDIA and O-BELM need 3 steps (refused up front)
    "solver.iters": 1,
    "priors": ["niqe", "sharpness", "colorfulness"],
    "niqe_model": "fitted",
    "calibration.priors": [],
    "msliqe.train": False,
    "ablations.images": 1,
    "comparisons": {
        "models": {"enhancers": ["niqe", "sharpness", "colorfulness"]},
        "enhancers": {"enhancers": ["sharpness", "unsharp", "denoise"]},
    },
    "post_enhancement.prior": "sharpness",
    "post_enhancement.images": 1,
    "selection.size": 192,
    "selection.k": 1,
    "tiny_vae.steps": 5,
}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A workflow whose enhancement jobs and one comparison really ran (so Snakemake
    recorded their params and inputs) and whose other outputs are marked done with `--touch`,
    as if everything had run."""
    folder = tmp_path_factory.mktemp("finished")
    config = write_config(folder, SMALL)
    out = yaml.safe_load(config.read_text())["out"]
    targets = [f"{out}/enhanced/{p}/c{c:03d}" for p in SMALL["priors"] for c in range(2)]
    targets.append(f"{out}/comparison/models/scores.csv")  # pairs, observers, ranking
    snakemake(*targets, "--cores", "2", "--configfile", str(config), cwd=folder)
    text = snakemake("-n", "--cores", "1", "--configfile", str(config), cwd=folder).stdout
    for line in re.findall(r"^\s+output: (.+)$", text, re.M):
        for name in line.split(", "):
            path = folder / name
            if path.suffix:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.touch()
            else:
                path.mkdir(parents=True, exist_ok=True)
    snakemake("--touch", "--cores", "1", "--configfile", str(config), cwd=folder)
    assert planned("--configfile", str(config), cwd=folder) == {}
    return folder


COMPARISON_RULES = {
    "select_pairs",
    "build_experiment",
    "simulate_observers",
    "rank",
    "report_ranking",
    "figure_pairs",
    "gallery",  # shows every prior's outputs
    "all",
    "figures",
    "table_one",
}


def test_the_enhancement_jobs_wrote_one_record_per_image(finished):
    records = sorted(finished.glob("results/demo/enhanced/*/c*/*.json"))
    assert len(records) == 3 * 2
    assert all(json.loads(r.read_text())["reduced"] is True for r in records)
    assert all(json.loads(r.read_text())["config"]["inversion"] for r in records)


def test_a_new_lambda_for_one_prior_reruns_its_chunks_and_the_comparisons_only(finished):
    settings = yaml.safe_load(DEMO.read_text())["prior_settings"]  # the others' stay as run
    settings = {**settings, "niqe": {"lam": 0.5}}
    changed = write_config(finished, {**SMALL, "prior_settings": settings})
    jobs = planned("--configfile", str(changed), cwd=finished)
    assert jobs.pop("enhance_chunk") == 2  # niqe's two chunks, no other prior's
    assert jobs.pop("select_pairs") == 1  # the one comparison niqe is in
    assert set(jobs) <= COMPARISON_RULES, jobs


def test_a_ninth_prior_adds_its_chunks_and_reruns_only_the_comparisons(finished):
    added = write_config(
        finished,
        {
            **SMALL,
            "priors": SMALL["priors"] + ["musiq"],
            "comparisons": {
                **SMALL["comparisons"],
                "models": {"enhancers": SMALL["priors"] + ["musiq"]},
            },
        },
    )
    jobs = planned("--configfile", str(added), cwd=finished)
    assert jobs.pop("enhance_chunk") == 2 and jobs.pop("evaluate_prior") == 1
    assert jobs.pop("select_pairs") == 1
    assert jobs.pop("fetch_weights_musiq") == 1  # its checkpoint, fetched once
    assert set(jobs) <= COMPARISON_RULES, jobs


def test_a_retrained_tiny_vae_reruns_the_inversions_and_every_prior_but_no_data_rule(finished):
    changed = write_config(finished, {**SMALL, "tiny_vae.steps": 6})
    jobs = planned("--configfile", str(changed), cwd=finished)
    assert jobs.pop("train_tiny_vae") == 1
    assert jobs.pop("enhance_chunk") == 3 * 2  # every prior's every chunk
    assert jobs.pop("invert_chunk") >= 2  # the tiny-seesr chunks (and tiny-vanilla's)
    assert not set(jobs) & {
        "prepare_images",
        "synthetic_iqa",
        "demo_external",
        "check_external",
        "dataset_manifest",
        "calibrate_prior",
    }, jobs


def test_memory_switches_that_change_no_result_rerun_nothing_and_bf16_weights_rerun(finished):
    lean = {**SMALL, "memory.checkpoint_blocks": True, "memory.vae_slicing": True}
    assert planned("--configfile", str(write_config(finished, lean)), cwd=finished) == {}
    bf16 = {**SMALL, "memory.weights_dtype": "bf16", "autocast": "bf16"}
    jobs = planned("--configfile", str(write_config(finished, bf16)), cwd=finished)
    assert jobs.pop("enhance_chunk") == 3 * 2 and jobs.pop("invert_chunk") >= 2


@pytest.mark.parametrize("configfile", [DEMO, ROOT / "config.yaml"], ids=["demo", "paper"])
def test_lint_reports_nothing(configfile, tmp_path):
    """Every rule names its software (conda: envs/jobs.yaml, and the config's container). The
    paper's config too: its fetch rules' cache parameter once read as a hard-coded prefix of
    their outputs, a job that breaks on a cluster without a shared file system."""
    run = snakemake("--lint", "--configfile", str(configfile), check=False, cwd=tmp_path)
    text = run.stdout + run.stderr
    assert run.returncode == 0, text
    assert "Congratulations, your workflow is in a good condition!" in text, text
    assert not re.findall(r"^\s{4}\* (.+?):$", text, re.M), text
    assert "Lints for" not in text, text


def test_each_script_saves_its_job_so_it_can_be_rerun_alone(tmp_path):
    scripts = sorted((ROOT / "workflow" / "scripts").glob("*.py"))
    assert scripts
    for script in scripts:
        if script.name.startswith("_"):
            continue
        assert "job(globals())" in script.read_text(), script.name
    run = subprocess.run(
        [sys.executable, str(scripts[-1])],
        capture_output=True,
        text=True,
        cwd=ROOT / "workflow" / "scripts",
    )
    assert run.returncode != 0 and "LOG.job.json" in run.stderr
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_the_paper_image_stage_selects_and_preprocesses_from_the_data_sets(tmp_path):
    """Sec. IV-A on fake copies of LIVE Challenge, KonIQ-10k and SPAQ (their real layouts):
    manifest, selection with its rules and reasons, 64 px chunks."""
    from fake_iqa_layouts import write_layout

    for name in ("clive", "koniq10k", "spaq"):
        write_layout(name, tmp_path / "data")
    changes = {"data_root": str(tmp_path / "data"), "images.count": 6, "chunk_size": 3, "size": 64}
    config = write_config(tmp_path, changes, base=ROOT / "config.yaml")
    targets = ["results/paper/images/c000", "results/paper/images/c001"]
    snakemake(*targets, "--cores", "2", "--configfile", str(config), cwd=tmp_path)
    out = tmp_path / "results" / "paper" / "images"
    rows = list(csv.DictReader((out / "selection.csv").open()))
    assert [r["dataset"] for r in rows] == ["clive"] * 2 + ["koniq10k"] * 2 + ["spaq"] * 2
    record = json.loads((out / "selection.csv.json").read_text())
    assert {e["reason"].split(" (")[0] for e in record["excluded"]} == {"extremely low quality"}
    pngs = sorted(p.name for p in out.glob("c*/*.png"))
    assert pngs == [f"{i:04d}.png" for i in range(6)]
    from PIL import Image

    assert Image.open(out / "c001" / "0005.png").size == (64, 64)


def test_a_killed_run_leaves_nothing_that_looks_complete_and_a_rerun_finishes(tmp_path):
    import signal
    import time

    config = write_config(
        tmp_path, {**SMALL, "priors": ["sharpness"], "solver.iters": 30, "size": 64}
    )  # small: the solve only has to be under way
    target = "results/demo/enhanced/sharpness/c000"
    args = [
        SNAKEMAKE,
        "-s",
        str(ROOT / "Snakefile"),
        target,
        "--cores",
        "1",
        "--configfile",
        str(config),
    ]
    run = subprocess.Popen(
        args,
        cwd=tmp_path,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    started = tmp_path / target  # made by the job before it solves (30 iterations)
    deadline = time.monotonic() + 240
    while not started.exists() and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert started.exists(), "the enhancement job never started"
    os.killpg(run.pid, signal.SIGKILL)  # snakemake and its job, mid-enhancement
    run.wait()
    assert not list((tmp_path / target).glob("*.json"))  # no finished record
    snakemake("--unlock", "--configfile", str(config), cwd=tmp_path)  # the killed run's lock
    refused = snakemake(
        target, "--cores", "1", "--configfile", str(config), check=False, cwd=tmp_path
    )
    assert refused.returncode != 0 and "incomplete" in (refused.stdout + refused.stderr).lower()
    snakemake(
        target, "--cores", "1", "--rerun-incomplete", "--configfile", str(config), cwd=tmp_path
    )
    records = list((tmp_path / target).glob("*.json"))
    assert len(records) == 1 and json.loads(records[0].read_text())["final"]  # chunk 000: 1


def rule_graph(dot: str) -> tuple[set[str], set[tuple[str, str]]]:
    """The rules and the rule -> rule edges of a Snakemake --rulegraph DOT text."""
    labels = dict(re.findall(r'^\s*(\d+)\[label = "([^"]+)"', dot, re.M))
    edges = {(labels[a], labels[b]) for a, b in re.findall(r"^\s*(\d+) -> (\d+)", dot, re.M)}
    return set(labels.values()), edges


def test_the_drawn_rule_graph_is_the_paper_configurations(tmp_path):
    env_cache = {"DLMAP_CACHE": str(tmp_path / "cache"), "DLMAP_DATA": str(tmp_path / "data")}
    os.environ.update(env_cache)
    try:
        now = snakemake("--rulegraph", "--configfile", str(ROOT / "config.yaml"), cwd=tmp_path)
    finally:
        for key in env_cache:
            os.environ.pop(key)
    rules, edges = rule_graph(now.stdout)
    drawn_rules, drawn_edges = rule_graph((ROOT / "docs" / "rulegraph.dot").read_text())
    assert len(rules) > 30 and ("fetch_weights_niqe", "evaluate_prior") in edges
    assert (rules, edges) == (drawn_rules, drawn_edges), (
        "the workflow's rules changed: redraw docs/rulegraph.dot and .svg (docs/workflow.md)"
    )
    assert (ROOT / "docs" / "rulegraph.svg").read_text().lstrip().startswith("<?xml")


@pytest.mark.parametrize(
    "raised, last_line",
    [
        ("InputError('c000.pt: a damaged inversion; run again')", "dlmap: error: c000.pt: a"),
        ("ValueError('a bug')", "ValueError: a bug"),
    ],
)
def test_a_jobs_dlmap_error_is_its_logs_last_line_and_a_bug_keeps_its_traceback(raised, last_line):
    script = (
        "import sys; sys.path.insert(0, 'workflow/scripts'); import _job; "
        "sys.excepthook = _job._one_line_for_dlmap_errors; "
        f"from dlmap.errors import InputError; raise {raised}"
    )
    run = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 1
    lines = run.stderr.strip().splitlines()
    assert lines[-1].startswith(last_line)
    assert ("Traceback" in run.stderr) == raised.startswith("ValueError")


def test_a_png_damaged_inside_a_finished_folder_is_named_removed_and_made_again(tmp_path):
    """The consumer (external_inputs) finds the truncated image by its folder's SHA256SUMS:
    one line in its log, the folder removed, and the next run makes it again."""
    config = str(write_config(tmp_path, {"images.count": 2, "chunk_size": 1, "size": 64}))
    target = "results/demo/external-inputs"
    snakemake(target, "--cores", "2", "--configfile", config, cwd=tmp_path)
    folder = tmp_path / "results" / "demo" / "images" / "c000"
    image = folder / "0000.png"
    image.write_bytes(image.read_bytes()[:500])
    shutil.rmtree(tmp_path / target)  # a consumer that runs after the damage
    failed = snakemake(target, "--cores", "2", "--configfile", config, check=False, cwd=tmp_path)
    assert failed.returncode != 0
    log = (tmp_path / "results" / "demo" / "logs" / "external_inputs.log").read_text()
    assert log.strip().splitlines()[-1] == (
        "dlmap: error: results/demo/images/c000/0000.png: changed since it was written (sha256 "
        "differs from SHA256SUMS); removed results/demo/images/c000: run the workflow again "
        "and it makes the folder anew"
    )
    assert not folder.exists()
    again = snakemake(target, "--cores", "2", "--configfile", config, cwd=tmp_path)
    assert "rule prepare_images" in again.stdout + again.stderr
    assert files_sound(folder) and files_sound(tmp_path / target)


def files_sound(folder: Path) -> bool:
    from dlmap.files import manifest_problems

    return manifest_problems(folder) == []


def test_a_file_of_overrides_merges_after_a_complete_one_and_alone_is_refused(tmp_path):
    overrides = tmp_path / "mine.yaml"
    overrides.write_text("out: results/mine\nsolver: {lam: 0.02}\n")
    merged = snakemake("-n", "--configfile", str(DEMO), str(overrides), cwd=tmp_path)
    text = merged.stdout + merged.stderr
    assert "results/mine/enhanced/" in text and "results/demo/" not in text
    alone = snakemake("-n", "--configfile", str(overrides), check=False, cwd=tmp_path)
    output = alone.stdout + alone.stderr
    assert alone.returncode != 0 and "a file of overrides goes after a complete one" in output
