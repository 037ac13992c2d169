"""One source for settings: the command line and the workflow's schema and paper config
agree with the dataclasses of ``dlmap.settings`` (this test fails when one drifts)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from dlmap import settings
from dlmap.cli.main import build_parser

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())
PAPER = yaml.safe_load((ROOT / "config.yaml").read_text())


def defaults(cls) -> dict:
    return {
        f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING
    }


def test_the_schemas_allowed_values_are_the_settings_tuples():
    solver = SCHEMA["definitions"]["solver"]["properties"]
    top = SCHEMA["properties"]
    assert tuple(solver["mode"]["enum"]) == settings.MODES
    assert tuple(solver["gradient"]["enum"]) == settings.GRADIENTS
    assert tuple(solver["score_scale"]["enum"]) == tuple(settings.SCORE_SCALES)
    assert tuple(top["edict"]["properties"]["order"]["enum"]) == settings.ORDERS
    assert tuple(top["backbone"]["enum"]) == settings.BACKBONES
    assert tuple(top["encode"]["enum"]) == settings.ENCODES
    assert tuple(top["dtype"]["enum"]) == settings.DTYPES
    assert tuple(top["autocast"]["enum"]) == settings.AUTOCASTS
    memory = top["memory"]["properties"]
    assert tuple(memory["weights_dtype"]["enum"]) == settings.WEIGHTS_DTYPES
    selection = top["selection"]["properties"]
    assert tuple(selection["d1"]["enum"]) == settings.D1_METRICS
    assert tuple(selection["d2"]["enum"]) == settings.D2_EMBEDDINGS


def test_the_schema_names_exactly_the_dataclasses_fields():
    solver = set(SCHEMA["definitions"]["solver"]["properties"])
    assert solver == {f.name for f in dataclasses.fields(settings.SolverConfig)}
    edict = set(SCHEMA["properties"]["edict"]["properties"])
    assert edict == {f.name for f in dataclasses.fields(settings.EdictConfig)} - {"scheduler"}
    backbone = {"backbone", "device", "dtype", "autocast", "tf32", "encode", "cache"}
    assert backbone <= set(SCHEMA["properties"]) and "encode" not in edict
    switches = {"weights_dtype", "checkpoint_blocks", "vae_slicing"}
    assert set(SCHEMA["properties"]["memory"]["properties"]) == switches
    assert switches <= {f.name for f in dataclasses.fields(settings.BackboneSettings)}


def test_the_paper_config_uses_the_dataclasses_defaults():
    solver, edict = defaults(settings.SolverConfig), defaults(settings.EdictConfig)
    assert {k: PAPER["solver"][k] for k in PAPER["solver"]} == {
        k: solver[k] for k in PAPER["solver"]
    }
    assert {k: PAPER["edict"][k] for k in PAPER["edict"]} == {k: edict[k] for k in PAPER["edict"]}
    assert PAPER["encode"] == defaults(settings.BackboneSettings)["encode"]


def test_the_command_lines_defaults_are_the_dataclasses():
    parser, _ = build_parser("enhance")
    args = parser.parse_args(["enhance", "x.png", "--out", "o"])
    solver, edict = defaults(settings.SolverConfig), defaults(settings.EdictConfig)
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
        (settings.EdictConfig, {"order": "random"}, "order must be one of"),
        (settings.BackboneSettings, {"encode": "median"}, "encode must be one of"),
        (settings.BackboneSettings, {"dtype": "float16"}, "dtype must be one of"),
    ],
)
def test_each_bad_setting_is_refused_by_its_dataclass(cls, values, message):
    with pytest.raises(ValueError, match=message):
        cls(**values)
    with pytest.raises(TypeError):
        cls(unknown_key=1)  # unknown keys are an error, never dropped
