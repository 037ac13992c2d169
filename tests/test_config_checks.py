"""Property-based tests of the workflow's config as a parser of outside input: its JSON
schema, then ``dlmap.workflow.config_checks`` and the request formulas of
``dlmap.workflow.budget``. Whatever the config, it passes, or fails in one line naming the
key (a dlmap error, or the schema's error about that key); never another exception."""

from __future__ import annotations

import copy
import math
import re
from pathlib import Path

import jsonschema
import pytest
import yaml
from helpers import FUZZ
from hypothesis import example, given, settings
from hypothesis import strategies as st
from snakemake.exceptions import WorkflowError

from dlmap.cli.main import build_parser
from dlmap.data.sources import SETS
from dlmap.errors import DlmapError, InputError
from dlmap.settings import RESULT_NEUTRAL_SWITCHES, RunSettings
from dlmap.workflow import budget, chunks, plan
from dlmap.workflow.config_checks import check_workflow_config, validate_config

ROOT = Path(__file__).resolve().parents[1]


SCHEMA_PATH = ROOT / "workflow" / "schemas" / "config.schema.yaml"
SCHEMA = yaml.safe_load(SCHEMA_PATH.read_text())
BASES = {
    name: yaml.safe_load((ROOT / name).read_text())
    for name in ("config.yaml", "presets/demo.yaml", "presets/slurm-test.yaml")
}
# The Snakefile's one check before its validate(): `if <condition>:` raises WorkflowError.
SNAKEFILE_PRECHECK = re.search(
    r"^if (.*\"encode\" in .*):$", (ROOT / "Snakefile").read_text(), re.M
).group(1)
MAX_EPOCHS = 100000  # workflow/rules/common.smk's


def snakefile_precheck(config: dict) -> None:
    """The Snakefile's condition, as written, before the schema (edict.encode has moved)."""
    if eval(SNAKEFILE_PRECHECK, {"config": config}):  # noqa: S307 (the Snakefile's own line)
        raise WorkflowError("config: edict.encode has moved")


def dataset_images(names) -> int:
    """common.smk's dataset_images."""
    from dlmap.data import synthetic_iqa

    return sum(synthetic_iqa.entry_count() if n == "synthetic" else SETS[n].count for n in names)


def msliqe_epochs(config: dict) -> int:
    """common.smk's msliqe_epochs: `dlmap train-msliqe`'s parse of msliqe.options."""
    parser, _ = build_parser("train-msliqe")
    command = ["train-msliqe", "--manifest", "m.csv", "--out", "o", *config["msliqe"]["options"]]
    try:
        epochs = parser.parse_args(command).epochs
    except SystemExit:
        raise WorkflowError("config: msliqe.options: not options of train-msliqe") from None
    if not 1 <= epochs <= MAX_EPOCHS:
        raise WorkflowError(f"config: msliqe.options: --epochs {epochs}") from None
    return epochs


def job_checks(config: dict) -> None:
    """Each GPU job's own argument check, as its script runs it
    (``RunSettings.from_job_params``) on the params its rule passes (``plan``'s): the
    inversions, each prior's chunks, post-enhancement and every ablation run."""
    backbone = config["backbone"]
    memory = {k: config["memory"][k] for k in RESULT_NEUTRAL_SWITCHES}
    runs = [(backbone, {}, plan.edict_values(config))]
    for prior in [*config["priors"], config["post_enhancement"]["prior"]]:
        runs.append((backbone, plan.prior_solver(config, prior), plan.edict_values(config)))
    for variant, changes in plan.ablation_variants(config).items():
        runs.append(
            (
                changes.get("backbone", backbone),
                plan.ablation_solver(config, variant),
                plan.ablation_edict(config, variant),
            )
        )
    for name, solver, edict in runs:
        params = RunSettings.from_config(config, backbone=name).backbone.job_params()
        RunSettings.from_job_params(params, solver, edict, config["size"], memory)


def workflow_checks(config: dict) -> dict:
    """What the workflow runs on its config before any job: the Snakefile's check and
    validate_config (the schema, in one line), common.smk's check_workflow_config and the values it
    derives at parse time, and each GPU rule's requests (as its resources ask, on the first
    and a third attempt). Returns the requests."""
    snakefile_precheck(config)
    validate_config(config, SCHEMA)
    check_workflow_config(config, SCHEMA)
    ids = chunks.image_ids(config["images"]["count"])
    chunk_lists = chunks.chunks(config["images"]["count"], config["chunk_size"])
    assert [i for chunk in chunk_lists for i in chunk] == ids and len(chunk_lists) <= 1000
    external = {n: p.format(out=config["out"]) for n, p in config["external"].items()}
    assert all(isinstance(folder, str) for folder in external.values())
    costs = budget.GpuCosts(**config["gpu_costs"])
    requests = {
        "mem_mb": budget.host_mem_mb(costs),
        "gpu_gib": budget.gpu_gib(config["batch_size"], costs),
    }
    if config["msliqe"]["train"]:
        epochs = msliqe_epochs(config)
        datasets = config["msliqe"]["datasets"]
        per_epoch = len(datasets) * max(dataset_images([name]) for name in datasets)
    for attempt in (1, 3):
        for prior in {
            *config["priors"],
            config["ablations"]["prior"],
            config["post_enhancement"]["prior"],
        }:
            iters = {**config["solver"], **config["prior_settings"].get(prior, {})}["iters"]
            for images in {
                len(chunk_lists[0]),
                len(ids[: config["ablations"]["images"]]),
                len(ids[: config["post_enhancement"]["images"]]),
            }:
                requests[f"enhance {prior} {images} {attempt}"] = budget.enhance_job_minutes(
                    images, iters, costs, attempt
                )
        requests[f"invert {attempt}"] = budget.invert_job_minutes(len(chunk_lists[0]), costs)
        for key in ("calibration", "msliqe"):
            names = config[key]["datasets" if key == "calibration" else "evaluate_on"]
            requests[f"score {key} {attempt}"] = budget.score_job_minutes(
                dataset_images(names), costs, attempt
            )
        for name, comparison in config["comparisons"].items():
            requests[f"pairs {name} {attempt}"] = budget.pairs_job_minutes(
                len(ids), len(comparison["enhancers"]), costs, attempt
            )
        if config["msliqe"]["train"]:
            requests[f"train {attempt}"] = budget.train_job_minutes(
                per_epoch, epochs, costs, attempt
            )
    variants = [f"pixel-map-lambda{lam:g}" for lam in config["ablations"]["lambdas"]]
    assert all(variants)
    return requests


def tree_paths(node, prefix=()):
    """Every path into a config (dict keys and list indices), the root excluded."""
    children = (
        node.items()
        if isinstance(node, dict)
        else enumerate(node)
        if isinstance(node, list)
        else []
    )
    for key, child in children:
        yield (*prefix, key)
        yield from tree_paths(child, (*prefix, key))


SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 10**6),
    st.sampled_from([0, 1, 2, 6, 999, 1001, 2**53, 2**63, 10**30, 10**400, -(10**30)]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, 0.5, 1.0, 6.0, 1e-300, 1e308, -1.0, float("nan"), float("inf")]),
    st.text(max_size=8),
    st.sampled_from(
        [
            "",
            "{",
            "{x}",
            "{0}",
            "{out}",
            "{out.x}",
            "a/b",
            "cuda:1",
            "bf16",
            "printed",
            "niqe",
            "koniq",
            "synthetic",
            "sample",
            "--epochs",
            "100000000",
            "-1",
            "--help",
            "line\nbreak",
        ]
    ),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)


def at(config, path):
    for key in path:
        config = config[key]
    return config


@st.composite
def mutated_configs(draw):
    """A preset mutated once or twice: a value replaced, a key (or list item) deleted, or an
    unknown key added; with the paths mutated."""
    config = copy.deepcopy(BASES[draw(st.sampled_from(sorted(BASES)))])
    changed = []
    for _ in range(draw(st.integers(1, 2))):
        action = draw(st.sampled_from(["replace"] * 5 + ["delete", "add"]))
        if action == "add":
            mappings = [()] + [p for p in tree_paths(config) if isinstance(at(config, p), dict)]
            path = draw(st.sampled_from(mappings))
            parent = at(config, path)
            key = draw(st.text(min_size=1, max_size=8))
            while key in parent:
                key += "!"
            parent[key] = draw(VALUES)
            changed.append((*path, key))
            continue
        path = draw(st.sampled_from(list(tree_paths(config))))
        parent = at(config, path[:-1])
        if action == "replace":
            parent[path[-1]] = draw(VALUES)
        else:
            del parent[path[-1]]
            if isinstance(parent, list):  # the items after it moved: the list changed
                path = path[:-1]
        changed.append(path)
    return config, changed


def names_a_changed_key(message: str, changed) -> bool:
    keys = {str(part) for path in changed for part in path if isinstance(part, str)}
    keys |= {_dotted(path[:n]) for path in changed for n in range(1, len(path) + 1)}
    return any(key and key in message for key in keys)


def _dotted(path) -> str:
    return ".".join(str(part) for part in path)


def schema_error_is_about(error: jsonschema.ValidationError, changed) -> bool:
    """The error's place is the changed path, inside it, or its parent (a key required or
    not allowed there)."""
    at = tuple(error.absolute_path)
    return any(
        at[: len(path)] == path or (path[: len(at)] == at and len(at) >= len(path) - 1)
        for path in changed
    )


@settings(max_examples=200, **FUZZ)
@given(case=mutated_configs())
@example(case=({**copy.deepcopy(BASES["presets/demo.yaml"]), "chunk_size": 3.0}, [("chunk_size",)]))
@example(
    case=(
        {
            **copy.deepcopy(BASES["config.yaml"]),
            "msliqe": {**BASES["config.yaml"]["msliqe"], "options": ["--epochs", "100000000"]},
        },
        [("msliqe", "options")],
    )
)
@example(  # accepted once, then dying in the 19th of 50 jobs
    case=(
        {
            **copy.deepcopy(BASES["presets/demo.yaml"]),
            "edict": {**BASES["presets/demo.yaml"]["edict"], "steps": 2},
        },
        [("edict", "steps")],
    )
)
def test_a_mutated_config_passes_or_fails_in_one_line_naming_the_key(case):
    config, changed = case
    try:
        requests = workflow_checks(config)
    except WorkflowError as error:  # the Snakefile's precheck, msliqe.options
        assert "\n" not in str(error) and names_a_changed_key(str(error), changed), error
        return
    except InputError as error:  # the schema, check_workflow_config and the formulas
        message = str(error)
        assert "\n" not in message and message.startswith("config: "), message
        if isinstance(error.__cause__, jsonschema.ValidationError):
            assert schema_error_is_about(error.__cause__, changed), (message, changed)
        else:
            assert names_a_changed_key(message, changed), (message, changed)
        return
    job_checks(config)  # what passes the checks passes every job's own
    for name, value in requests.items():
        assert math.isfinite(value) and value > 0, (name, value)
        assert name == "gpu_gib" or isinstance(value, int), (name, value)


@pytest.mark.parametrize("name", sorted(BASES))
def test_the_presets_pass_every_check(name):
    requests = workflow_checks(copy.deepcopy(BASES[name]))
    assert requests["mem_mb"] >= 1000


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"chunk_size": 3.0}, "chunk_size: 3.0 is not an integer"),
        ({"images.count": 6.0}, "images.count: 6.0 is not an integer"),
        ({"solver.lam": math.inf}, "solver.lam: inf is not a finite number"),
        ({"ablations.lambdas": [10**400]}, "ablations.lambdas.0: "),
        ({"images.count": 5000, "chunk_size": 1}, "5000 chunks"),
        ({"external.unsharp": "{x}/unsharp"}, "external.unsharp"),
        ({"comparisons.msliqe.anchor": "nobody"}, "comparisons.msliqe.anchor"),
        ({"post_enhancement.bases": ["niqe"]}, "post_enhancement.bases: 'niqe'"),
        ({"msliqe.datasets": ["koniq"]}, "msliqe.datasets: unknown data set 'koniq'"),
        ({"msliqe.datasets": []}, "msliqe.datasets: names no data set"),
        ({"ranking.bootstrap": 1}, "ranking.bootstrap"),
        ({"solver.stop_score": 150.0}, "solver: stop_score must lie in"),
        (
            {"prior_settings.niqe": {"score_scale": "printed", "stop_score": 90}},
            "prior_settings.niqe (over solver): stop_score",
        ),
        ({"edict.steps_offset": 300}, "edict: steps_offset must lie in"),
        ({"memory.weights_dtype": "bf16"}, "weights_dtype bf16 needs autocast bf16"),
        ({"prior_settings.a\nb": {"lam": math.nan}}, "prior_settings.'a\\nb'.lam"),
        ({"priors": ["niqe", "sharpnes"]}, "priors: unknown prior 'sharpnes'"),
        ({"priors": ["niqe", "sharpnes"]}, "did you mean 'sharpness'"),
        ({"prior_settings.sharpnes": {"lam": 0.2}}, "prior_settings.sharpnes: unknown prior"),
        ({"prior_settings.musiq": {"lam": 0.2}}, None),  # a real prior this run leaves out
        ({"comparisons.models.enhancers": ["niqe", "musiq"]}, None),  # enhanced for it
        ({"comparisons.enhancers.enhancers": ["niqe", "unsharpp"]}, "did you mean 'unsharp'?"),
        (
            {"comparisons.models.enhancers": ["niqe", "pyiqa:fid"]},
            "comparisons.models.enhancers: pyiqa:fid cannot be a prior",
        ),
        ({"calibration.priors": ["niqe", "dbcn"]}, "calibration.priors: unknown prior 'dbcn'"),
        ({"post_enhancement.prior": "ms-liq"}, "post_enhancement.prior: unknown prior"),
        ({"ablations.prior": "sharp"}, "ablations.prior: unknown prior 'sharp'"),
        ({"priors": ["niqe", "pyiqa:fid"]}, "priors: pyiqa:fid cannot be a prior"),
        (
            {"comparisons.models.enhancers": ["niqe", "sharpnes"]},
            "comparisons.models.enhancers: 'sharpnes' is neither a prior nor a key of "
            "external; did you mean 'sharpness'?",
        ),
        (
            {"edict.steps": 2},
            "config: ablations.bijections: bdia needs at least 3 steps, got 2 (edict.steps is 2)",
        ),
        ({"ablations.lambdas": [0.1], "ablations.pixel_lam": None}, None),
    ],
)
def test_what_the_schema_cannot_say_is_refused_in_one_line_naming_the_key(change, message):
    config = copy.deepcopy(BASES["presets/demo.yaml"])
    for key, value in change.items():
        *parents, last = key.split(".")
        at(config, parents)[last] = value
    if message is None:  # a change every check accepts
        check_workflow_config(config, SCHEMA)
        return
    with pytest.raises(InputError) as raised:
        check_workflow_config(config, SCHEMA)
    assert message in str(raised.value) and "\n" not in str(raised.value), str(raised.value)
    assert str(raised.value).startswith("config: ")


DELETE = object()


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("solver.iters", 10**400),
        ("gpu_costs.host_gib", 1e308),
        ("gpu_costs.margin", 10**400),
        ("solver.seed", 2**63),
        ("images.count", 10**30),
        ("edict.steps", 1001),
        ("ranking.bootstrap", 10**9),
        ("out", "results/{x}"),
        ("solver.iters", DELETE),
        ("ablations.lambdas", DELETE),
        ("cache", DELETE),
        ("comparisons", {"a b": {"enhancers": ["niqe", "liqe"]}}),
    ],
    ids=lambda value: "delete" if value is DELETE else str(value)[:24],
)
def test_the_schema_bounds_what_would_overflow_and_requires_what_is_read(key, value):
    config = copy.deepcopy(BASES["config.yaml"])
    *parents, last = key.split(".")
    target = at(config, parents)
    if value is DELETE:
        del target[last]
    else:
        target[last] = value
    with pytest.raises(InputError) as raised:
        validate_config(config, SCHEMA)
    assert schema_error_is_about(raised.value.__cause__, [tuple(key.split("."))])
    assert str(raised.value).startswith("config: ") and "\n" not in str(raised.value)


def test_the_request_formulas_refuse_what_overflows_in_one_line():
    for value in (10**400, math.inf, math.nan):
        with pytest.raises(InputError, match="gpu_costs.host_gib must be a positive number"):
            budget.GpuCosts(host_gib=value)
    costs = budget.GpuCosts()
    for formula in (
        lambda: budget.enhance_job_minutes(10**400, 40, costs),
        lambda: budget.train_job_minutes(10**200, 10**200, costs),
        lambda: budget.host_mem_mb(budget.GpuCosts(host_gib=1e308, margin=10.0)),
        lambda: budget.gpu_gib(10**400, costs),
    ):
        with pytest.raises(InputError, match="overflows") as raised:
            formula()
        assert "\n" not in str(raised.value)


@pytest.mark.parametrize("edict", [5, 1.5, True])
def test_the_snakefile_precheck_survives_an_edict_that_is_not_a_mapping(edict):
    config = {**copy.deepcopy(BASES["presets/demo.yaml"]), "edict": edict}
    with pytest.raises((WorkflowError, DlmapError)):
        snakefile_precheck(config)
        validate_config(config, SCHEMA)
