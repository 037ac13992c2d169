"""presets/fast.yaml: config.yaml's run with bf16 networks and the integer leapfrog, valid, and
projected at a fraction of config.yaml's GPU-hours by the same budget formula."""

from pathlib import Path

import yaml

from dlmap.inversion.config import InversionConfig
from dlmap.settings import BackboneSettings
from dlmap.workflow import budget, plan
from dlmap.workflow.config_checks import check_workflow_config, validate_config

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())


def load(name: str) -> dict:
    return yaml.safe_load((ROOT / name).read_text())


def hours(config: dict) -> float:
    costs = config["gpu_costs"]
    gpu = budget.GpuCosts(costs["iteration_seconds"], costs["inversion_seconds"])
    return sum(plan.project_gpu_hours(config, gpu).values())


def test_the_fast_preset_is_the_papers_run_in_bf16_with_the_integer_leapfrog():
    fast, paper = load("presets/fast.yaml"), load("config.yaml")
    validate_config(fast, SCHEMA)
    check_workflow_config(fast, SCHEMA)
    changed = {key for key in paper if fast[key] != paper[key]}
    assert changed == {"out", "autocast", "batch_size", "edict", "memory", "gpu_costs"}
    assert InversionConfig.from_flat(**fast["edict"]).bijection == "leapfrog-int"
    assert InversionConfig.from_flat(**paper["edict"]).bijection == "edict"
    assert fast["solver"]["early_stop"] and fast["batch_size"] == 8
    settings = BackboneSettings(
        name=fast["backbone"],
        autocast=fast["autocast"],
        weights_dtype=fast["memory"]["weights_dtype"],
    )
    assert (settings.autocast, settings.weights_dtype) == ("bf16", "bf16")
    # the header's figures are the formula's: 42 against 556 A100-hours
    assert round(hours(fast)) == 42 and round(hours(paper)) == 556
    header = (ROOT / "presets" / "fast.yaml").read_text().split("\nout:")[0]
    assert "42 GPU-hours" in header and "config.yaml's 556" in header
