"""``dlmap doctor``: can this machine, or this cluster account, run a workflow configuration?

Every check gives rows of (section, item, state, detail, what to do). A state is ``ok``,
``note`` (worth knowing, not in the way), ``missing`` (the workflow or a command makes it:
weights it downloads, data sets it fetches) or ``BLOCKING`` (the run cannot start: a config
error, no GPU where one is needed, too little GPU memory or disk, weights or data that only a
person can bring). Nothing here downloads, and nothing raises: a check that fails is a row.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

OK, NOTE, MISSING, BLOCKING = "ok", "note", "missing", "BLOCKING"
GIB = 2**30
SLURM_VARIABLES = {  # what slurm/config.yaml reads from the environment
    "DLMAP_SLURM_PARTITION": "CPU jobs' partition (unset: the cluster's default)",
    "DLMAP_SLURM_GPU_PARTITION": "GPU jobs' partition (unset: DLMAP_SLURM_PARTITION)",
    "DLMAP_SLURM_ACCOUNT": "the account jobs are charged to (unset: the plugin's guess)",
}


@dataclass(frozen=True)
class Row:
    section: str
    item: str
    state: str
    detail: str
    todo: str = ""


def load_config(path: Path) -> tuple[dict | None, list[Row]]:
    """The configuration, checked as the workflow checks it (its schema, then what a schema
    cannot say); a bad file is one BLOCKING row naming the key."""
    import yaml

    from dlmap.workflow import plan
    from dlmap.workflow.config_checks import check_workflow_config, validate_config

    try:
        config = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as error:
        first = " ".join(str(error).split())[:200]
        return None, [Row("config", str(path), BLOCKING, f"cannot read it: {first}")]
    schema_path = _schema(path)
    if not isinstance(config, dict):
        return None, [Row("config", str(path), BLOCKING, "not a mapping of settings")]
    try:
        schema = yaml.safe_load(schema_path.read_text())
        validate_config(config, schema)
        check_workflow_config(config, schema)
        plan.check_walltime(config)
    except (OSError, ValueError, KeyError, TypeError) as error:
        return None, [Row("config", str(path), BLOCKING, " ".join(str(error).split())[:300])]
    return config, [Row("config", str(path), OK, "valid (the workflow's schema and checks)")]


def _schema(config_path: Path) -> Path:
    """The workflow's schema: beside the config (a checkout), else in the working folder."""
    relative = Path("workflow", "schemas", "config.schema.yaml")
    for base in (Path(config_path).resolve().parent, Path.cwd()):
        if (base / relative).is_file():
            return base / relative
    return relative


def check_gpus(config: dict) -> list[Row]:
    """GPUs here against what a job needs (``weights_gib + batch x activation_gib`` by the
    config's gpu_costs), or, on a SLURM login node, the GPU partitions' limits."""
    from dlmap.workflow import budget

    costs = budget.GpuCosts(**config["gpu_costs"])
    need = budget.gpu_gib(config["batch_size"], costs)
    if not config["device"].startswith("cuda"):
        return [Row("gpu", "device", OK, f"{config['device']}: no GPU needed")]
    gpus = _gpus()
    slurm = shutil.which("sbatch") is not None
    estimate = costs.basis == "estimate"
    todo = "measure yours: python bench/gpu_iteration.py" if estimate else ""
    detail = f"runtimes and memory are {costs.describe()}"
    rows = [Row("gpu", "gpu_costs", NOTE if estimate else OK, detail, todo)]
    if not gpus:
        state = NOTE if slurm else BLOCKING
        where = (
            "jobs run on the cluster's GPU nodes (sbatch found)"
            if slurm
            else "and no SLURM here (no sbatch): run on a GPU machine or a cluster login node"
        )
        rows.append(Row("gpu", "this machine", state, f"no CUDA GPU visible; {where}"))
    for name, gib in gpus:
        fits = gib >= need
        rows.append(
            Row(
                "gpu",
                name,
                OK if fits else BLOCKING,
                f"{gib:.1f} GiB; a job needs {need:.1f} GiB (weights {costs.weights_gib} + "
                f"batch {config['batch_size']} x {costs.activation_gib} GiB, gpu_costs)",
                ""
                if fits
                else "lower batch_size, or turn on memory.checkpoint_blocks and "
                "memory.vae_slicing (README: GPU memory)",
            )
        )
    if slurm:
        rows += _partitions(config)
    return rows


def _gpus() -> list[tuple[str, float]]:
    """(name, GiB) of each CUDA GPU this process can see; none without torch's CUDA."""
    try:
        import torch

        if not torch.cuda.is_available():
            return []
        return [
            (
                torch.cuda.get_device_name(i),
                torch.cuda.get_device_properties(i).total_memory / 2**30,
            )
            for i in range(torch.cuda.device_count())
        ]
    except (ImportError, RuntimeError):
        return []


def _partitions(config: dict) -> list[Row]:
    """The GPU partition's time limit against ``slurm.max_runtime_minutes`` (``sinfo``)."""
    from dlmap.workflow import plan

    limit = plan.slurm_settings(config)["max_runtime_minutes"]
    partition = os.environ.get("DLMAP_SLURM_GPU_PARTITION") or os.environ.get(
        "DLMAP_SLURM_PARTITION"
    )
    command = ["sinfo", "--noheader", "-o", "%P %l %G"]
    if partition:
        command += ["-p", partition]
    try:
        listing = subprocess.run(command, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as error:
        return [Row("gpu", "sinfo", NOTE, f"cannot ask SLURM for its partitions: {error}")]
    rows = []
    for line in listing.stdout.splitlines():
        name, time_limit, gres = (line.split() + ["", "", ""])[:3]
        if "gpu" not in gres and not partition:
            continue
        minutes = slurm_minutes(time_limit)
        fits = minutes is None or limit <= minutes
        rows.append(
            Row(
                "gpu",
                f"partition {name.rstrip('*')}",
                OK if fits else BLOCKING,
                f"time limit {time_limit}, GRES {gres or '-'}; slurm.max_runtime_minutes {limit}",
                "" if fits else f"set slurm.max_runtime_minutes to {minutes} or less",
            )
        )
    return rows or [Row("gpu", "partitions", NOTE, "sinfo lists no partition with GPUs")]


def slurm_minutes(time_limit: str) -> int | None:
    """A SLURM time limit in whole minutes (seconds round up): ``MM``, ``MM:SS``,
    ``HH:MM:SS``, ``D-HH``, ``D-HH:MM``, ``D-HH:MM:SS``; None for ``infinite``, ``UNLIMITED``
    or anything else (an unknown limit is not held against the config)."""
    text = (time_limit or "").strip()
    days, dash, clock = text.rpartition("-")
    parts = clock.split(":")
    digits = all(p.isascii() and p.isdigit() for p in parts)  # not "²": int() refuses it
    if not digits or (dash and not (days.isascii() and days.isdigit())) or len(parts) > 3:
        return None
    numbers = [int(p) for p in parts]
    if dash:  # D-HH[:MM[:SS]]
        hours, minutes, seconds = (numbers + [0, 0])[:3]
    elif len(numbers) == 3:
        hours, minutes, seconds = numbers
    else:  # MM or MM:SS
        hours, (minutes, seconds) = 0, (numbers + [0])[:2]
    return (int(days or 0) * 24 + hours) * 60 + minutes + (seconds > 0)


def check_weights(config: dict) -> list[Row]:
    """Every weight set the run needs: present and unchanged, or missing with its step."""
    from dlmap.weights import catalogue
    from dlmap.weights.cache import ChecksumError, WeightsMissingError
    from dlmap.weights.folders import FolderSet
    from dlmap.workflow import plan

    rows = []
    for name in [*plan.folder_sets(config), *plan.weight_sets(config)]:
        entry = catalogue.get(name)
        try:
            detail = entry.check(config["cache"])
            rows.append(Row("weights", name, OK, detail))
        except WeightsMissingError:
            fetchable = not isinstance(entry, FolderSet) or bool(entry.sources)
            todo = (
                f"dlmap weights fetch {name} (or let the workflow's fetch rule do it)"
                if fetchable
                else entry.manual_steps(config["cache"])
            )
            rows.append(Row("weights", name, MISSING if fetchable else BLOCKING, "missing", todo))
        except ChecksumError as error:
            rows.append(
                Row(
                    "weights",
                    name,
                    BLOCKING,
                    " ".join(str(error).split())[:300],
                    f"dlmap weights check {name}",
                )
            )
    return rows


def check_data(config: dict) -> list[Row]:
    """Every IQA data set the run reads: placed and complete, or missing with its step."""
    from dlmap.data import manifests, sources
    from dlmap.workflow import plan

    rows = []
    for name in plan.datasets(config):
        try:
            rows.append(Row("data", name, OK, manifests.check(name, config["data_root"])))
        except manifests.DatasetMissingError as error:
            downloads = bool(sources.spec(name).downloads)
            state, todo = (
                (MISSING, f"dlmap data fetch {name} (or let the workflow's fetch rule do it)")
                if downloads
                else (BLOCKING, " ".join(sources.manual_steps(name, config["data_root"]).split()))
            )
            rows.append(Row("data", name, state, " ".join(str(error).split())[:200], todo))
        except (manifests.DatasetError, OSError, ValueError) as error:
            detail = " ".join(str(error).split())[:300]
            rows.append(Row("data", name, BLOCKING, detail, f"dlmap data check {name}"))
    return rows


def check_disk(config: dict) -> list[Row]:
    """Free space where the outputs go against the run's estimated output size."""
    from dlmap.workflow import plan

    sizes = plan.output_bytes(config)
    need = sum(sizes.values())
    folder = Path(config["out"]).resolve()
    while not folder.exists():
        folder = folder.parent
    free = shutil.disk_usage(folder).free
    detail = (
        f"{_bytes(free)} free at {folder}; the outputs need about {_bytes(need)} ("
        + ", ".join(f"{kind} {_bytes(size)}" for kind, size in sizes.items())
        + ")"
    )
    fits = free >= need
    return [
        Row(
            "disk",
            config["out"],
            OK if fits else BLOCKING,
            detail,
            "" if fits else "free space there, or set `out` to a larger disk",
        )
    ]


def _bytes(size: float) -> str:
    return f"{size / 1e9:.1f} GB" if size >= 1e9 else f"{size / 1e6:.0f} MB"


def check_slurm() -> list[Row]:
    """The SLURM commands and the variables the profile reads."""
    rows = []
    if shutil.which("sbatch") is None:
        rows.append(
            Row(
                "slurm",
                "sbatch",
                NOTE,
                "not found: `--profile slurm` needs a SLURM "
                "login node; `--profile profiles/local` runs on this machine",
            )
        )
    else:
        rows.append(Row("slurm", "sbatch", OK, shutil.which("sbatch")))
        if shutil.which("sacct") is None:
            rows.append(
                Row(
                    "slurm",
                    "sacct",
                    NOTE,
                    "not found",
                    "add --slurm-status-command squeue --slurm-no-account",
                )
            )
    for variable, meaning in SLURM_VARIABLES.items():
        value = os.environ.get(variable)
        rows.append(Row("slurm", variable, OK if value else NOTE, value or f"unset: {meaning}"))
    return rows


def check_phases(config: dict, rows: list[Row]) -> list[Row]:
    """Which phase targets can run now: `prepare` once nothing blocks; the phases after a
    step done by hand once that step is done (``phases.hand_steps``)."""
    from dlmap.workflow import chunks, phases

    blocked = any(row.state == BLOCKING for row in rows)
    steps = phases.hand_steps(config, chunks.image_ids(config["images"]["count"]), config["out"])
    waiting = {step.phase for step in steps}
    out = []
    for phase in phases.PHASES:
        if blocked:
            state, detail = BLOCKING, "waits for the BLOCKING rows above"
        elif phase.name in waiting:
            mine = [step for step in steps if step.phase == phase.name]
            state, detail = NOTE, f"waits for {len(mine)} step(s) done by hand after the one before"
        else:
            state, detail = OK, "can run (snakemake ... " + phase.name + ")"
        out.append(Row("phases", phase.name, state, detail, phase.does))
    for step in steps:
        out.append(Row("phases", f"  {step.name}", NOTE, step.missing, step.todo))
    return out


def diagnose(config_path: Path, cache=None, data_root=None, out=None) -> list[Row]:
    """Every check, in order; a bad config stops after its row."""
    config, rows = load_config(config_path)
    if config is None:
        return rows
    overrides = {"cache": cache, "data_root": data_root, "out": out}
    config.update({key: value for key, value in overrides.items() if value is not None})
    for check in (check_gpus, check_weights, check_data, check_disk):
        rows += check(config)
    rows += check_slurm()
    rows += check_phases(config, rows)
    return rows
