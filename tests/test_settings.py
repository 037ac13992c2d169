"""One source for settings: the command line and the workflow's schema and paper config
agree with the dataclasses of ``dlmap.settings`` (this test fails when one drifts)."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import pytest
import yaml

from dlmap import settings
from dlmap.cli.main import build_parser
from dlmap.errors import InputError
from dlmap.inversion import config as inversion_config
from dlmap.workflow.config_checks import check_workflow_config, schema_disagreements

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())
PAPER = yaml.safe_load((ROOT / "config.yaml").read_text())


def defaults(cls) -> dict:
    return {
        f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING
    }


def test_the_shipped_schema_agrees_with_the_settings():
    assert schema_disagreements(SCHEMA) == []


def _edited(path: str, change) -> dict:
    schema = copy.deepcopy(SCHEMA)
    node = schema
    for part in path.split(".")[:-1]:
        node = node[part]
    change(node, path.split(".")[-1])
    return schema


@pytest.mark.parametrize(
    "path, change, named",
    [
        (
            "definitions.solver.properties.mode",
            lambda node, key: node[key]["enum"].pop(),
            "definitions.solver.properties.mode",
        ),
        (
            "properties.edict.properties.ends",
            lambda node, key: node[key]["enum"].append("alpha-zero"),
            "properties.edict.properties.ends",
        ),
        (
            "properties.edict.properties.gamma",
            lambda node, key: node.pop(key),
            "InversionConfig",
        ),
        (
            "definitions.solver.properties.lr",
            lambda node, key: node.setdefault("learning_rate", {"type": "number"}),
            "SolverConfig",
        ),
        (
            "properties.edict.properties.steps",
            lambda node, key: node[key].update(maximum=999),
            "maximum 999",
        ),
        (
            "properties.memory.properties.vae_slicing",
            lambda node, key: node.pop(key),
            "properties.memory",
        ),
    ],
)
def test_a_schema_that_drifts_from_the_settings_is_refused_before_any_run(path, change, named):
    drifted = _edited(path, change)
    found = schema_disagreements(drifted)
    assert len(found) == 1 and named in found[0]
    with pytest.raises(InputError, match="schema disagrees with dlmap.settings"):
        check_workflow_config(PAPER, drifted)


def test_the_paper_config_uses_the_dataclasses_defaults():
    solver, edict = defaults(settings.SolverConfig), inversion_config.InversionConfig().to_record()
    assert {k: PAPER["solver"][k] for k in PAPER["solver"]} == {
        k: solver[k] for k in PAPER["solver"]
    }
    assert {k: PAPER["edict"][k] for k in PAPER["edict"]} == {k: edict[k] for k in PAPER["edict"]}
    assert PAPER["encode"] == defaults(settings.BackboneSettings)["encode"]


def test_the_command_lines_defaults_are_the_dataclasses():
    parser, _ = build_parser("enhance")
    args = parser.parse_args(["enhance", "x.png", "--out", "o"])
    solver, edict = defaults(settings.SolverConfig), inversion_config.InversionConfig().to_record()
    for option in (
        "mode",
        "iters",
        "lam",
        "lr",
        "momentum",
        "grad_clip",
        "downsampling",
        "gradient",
        "seed",
        "score_scale",
    ):
        assert getattr(args, option) == solver[option], option
    assert (args.steps, args.order, args.steps_offset, args.mix) == (
        edict["steps"],
        edict["order"],
        edict["steps_offset"],
        edict["mix"],
    )
    backbone = defaults(settings.BackboneSettings)
    assert args.encode == backbone["encode"]
    for switch in ("weights_dtype", "checkpoint_blocks", "vae_slicing"):
        assert getattr(args, switch) == backbone[switch] == PAPER["memory"][switch], switch
    choices = {
        a.dest: a.choices
        for a in parser._subparsers._group_actions[0].choices["enhance"]._actions
        if a.choices
    }
    assert (
        tuple(choices["mode"]) == settings.MODES
        and tuple(choices["backbone"]) == settings.BACKBONES
    )


@pytest.mark.parametrize(
    "cls, values, message",
    [
        (settings.SolverConfig, {"mode": "sideways"}, "mode must be one of"),
        (settings.SolverConfig, {"stop_score": 120.0}, "stop_score must lie in"),
        (inversion_config.EdictOptions, {"order": "random"}, "order must be one of"),
        (inversion_config.EdictOptions, {"mix": 0.0}, "mixing p must lie in"),
        (inversion_config.BdiaOptions, {"gamma": 1.5}, "gamma must lie in"),
        (inversion_config.BelmOptions, {"ends": "middle"}, "ends must be one of"),
        (inversion_config.InversionConfig, {"bijection": "ddim"}, "bijection must be one of"),
        (inversion_config.InversionConfig, {"bijection": "belm", "steps": 2}, "at least 3 steps"),
        (settings.BackboneSettings, {"encode": "median"}, "encode must be one of"),
        (settings.BackboneSettings, {"dtype": "float16"}, "dtype must be one of"),
    ],
)
def test_each_bad_setting_is_refused_by_its_dataclass(cls, values, message):
    with pytest.raises(ValueError, match=message):
        cls(**values)
    with pytest.raises(TypeError):
        cls(unknown_key=1)  # unknown keys are an error, never dropped


def test_each_method_reads_its_own_sub_config_and_the_flat_form_round_trips():
    flat = {"steps": 12, "mix": 0.8, "order": "fixed", "bijection": "bdia", "gamma": 0.95}
    config = inversion_config.InversionConfig.from_flat(**flat, ends="alpha-one")
    assert config.method == inversion_config.BdiaOptions(gamma=0.95, ends="alpha-one")
    assert config.edict == inversion_config.EdictOptions(mix=0.8, order="fixed")
    assert config.belm.ends == "alpha-one"  # ends is written once for both two-step methods
    record = config.to_record()
    assert list(record) == list(inversion_config.InversionConfig.FLAT_KEYS)
    assert inversion_config.InversionConfig.from_flat(**record) == config
    with pytest.raises(ValueError, match="unknown inversion setting 'gama'"):
        inversion_config.InversionConfig.from_flat(steps=12, gama=0.9)
