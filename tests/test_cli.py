"""`dlmap enhance` / `dlmap weights`: outputs, bad inputs, exit codes, nothing half-written."""

import json
import subprocess
import sys

import pytest
from helpers import photo_png, run_cli

from dlmap import images
from dlmap.cli import main as cli
from dlmap.priors import base, specs
from dlmap.priors import registry as priors

FAST = ["--backbone", "tiny-seesr", "--size", "64", "--iters", "2", "--steps", "4", "--quiet"]


@pytest.fixture()
def good_png(tmp_path):
    return photo_png(tmp_path / "in", "astronaut")


def run(argv, capsys):
    code, _, err = run_cli(argv, capsys)
    return code, err


def test_enhance_writes_the_pair_and_a_json_record(tmp_path, good_png, capsys):
    out = tmp_path / "out"
    code, err = run(["enhance", good_png, "--out", out, *FAST], capsys)
    assert code == 0, err
    for name in ("astronaut.x.png", "astronaut.y.png"):
        assert images.read_image(out / name).shape == (64, 64, 3)
    record = json.loads((out / "astronaut.json").read_text())
    assert len(record["history"]) == 2
    assert set(record["history"][0]) == {
        "iteration",
        "loss",
        "score",
        "raw_score",
        "fidelity",
        "grad_fidelity",
        "grad_prior",
        "prior_share",
        "active",
    }
    assert record["score_scale"] == {"name": "authors", "xi1": 100.0, "range": [0.0, 100.0]}
    assert record["early_stop"]["applied"] is False  # colorfulness: provisional constants
    assert record["config"]["edict"]["steps"] == 4 and record["config"]["solver"]["lam"] == 0.01
    assert record["reduced"] is True and record["prior"]["name"] == "colorfulness"
    assert set(record["final"]) == {"loss", "x", "y"}
    assert not list(out.glob(".*tmp"))


def test_bad_inputs_exit_2_with_one_line_each_and_write_nothing_for_them(
    tmp_path, good_png, capsys
):
    folder = good_png.parent
    (folder / "notes.png").write_text("not an image")
    (folder / "empty.jpg").write_bytes(b"")
    out = tmp_path / "out"
    argv = ["enhance", good_png, folder / "missing.png", folder / "notes.png", folder / "empty.jpg"]
    code, err = run([*argv, "--out", out, *FAST], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 3 and all(line.startswith("dlmap: error: ") for line in lines)
    for name in ("missing.png", "notes.png", "empty.jpg"):
        assert sum(name in line for line in lines) == 1
    assert sorted(p.name for p in out.iterdir()) == [
        "SHA256SUMS",  # the digests of the three others
        "astronaut.json",
        "astronaut.x.png",
        "astronaut.y.png",
        "summary.csv",  # one row per image
    ]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--prior", "colourfulness"], "did you mean 'colorfulness'"),
        (["--steps", "0"], "positive integer"),
        (["--size", "100"], "multiple of 8"),
        (["--lambda", "-1"], "lambda"),
        (["--mix", "2"], "(0, 1]"),
        (["--steps-offset", "60", "--steps", "20"], "steps_offset must lie in [0, 50)"),
        (["--downsampling", "0"], "downsampling s must be a positive integer"),
        (["--downsampling", "128"], "exceeds --size"),
        (["--seed", "-1"], "seed must lie in"),
        (["--device", "cuda:3"], "CUDA is not available"),
        (["--batch-size", "0"], "positive integer"),
        (["--mode", "latent"], "invalid choice"),
        (["--score-scale", "percent"], "invalid choice"),
        (["--stop-at", "120"], "stop_score must lie in (0, 100] on the authors scale"),
        (["--stop-at", "2", "--score-scale", "printed"], "stop_score must lie in (0, 1]"),
        (["--weights-dtype", "bf16"], "weights_dtype bf16 needs autocast bf16"),
    ],
)
def test_bad_settings_exit_2_with_one_line_before_any_work(
    tmp_path, good_png, capsys, extra, message
):
    out = tmp_path / "out"
    code, err = run(["enhance", good_png, "--out", out, *FAST, *extra], capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_an_output_path_that_is_a_file_is_refused(tmp_path, good_png, capsys):
    out = tmp_path / "taken"
    out.write_text("")
    code, err = run(["enhance", good_png, "--out", out, *FAST], capsys)
    assert code == 2 and "is not a folder" in err


def test_missing_weights_exit_1_naming_what_to_fetch(tmp_path, good_png, capsys):
    out = tmp_path / "out"
    argv = ["enhance", good_png, "--out", out, "--backbone", "sd2", "--cache", tmp_path / "w"]
    code, err = run(argv, capsys)
    assert code == 1 and "dlmap weights fetch sd2-base" in err
    assert len(err.strip().splitlines()) == 1 and not out.exists()


def test_offline_the_default_backbone_names_every_missing_set_in_one_error(
    tmp_path, good_png, capsys
):
    out, cache = tmp_path / "out", tmp_path / "w"
    argv = ["enhance", good_png, "--out", out, "--prior", "liqe-mix", "--cache", cache]
    code, err = run(argv, capsys)  # sd2-seesr by default: SD2, SeeSR, RAM, DAPE, the prior's
    assert code == 1 and len(err.strip().splitlines()) == 1 and not out.exists()
    assert "5 weight sets are missing" in err
    for folder in ("sd2-base", "seesr", "ram-swin-large", "dape"):
        assert str(cache / folder) in err
    assert "torch/pyiqa/liqe_mix.pt" in err and "drive.google.com" in err  # manual steps too
    assert err.rstrip().endswith("`dlmap weights fetch sd2-base ram-swin-large liqe-mix`")
    code, err = run([*argv, "--mode", "pixel-map"], capsys)  # no backbone: the prior's alone
    assert code == 1 and "sd2-base" not in err and "dlmap weights fetch liqe-mix" in err


def test_duplicate_output_names_are_refused(tmp_path, good_png, capsys):
    other = tmp_path / "astronaut.png"
    other.write_bytes(good_png.read_bytes())
    code, err = run(["enhance", good_png, other, "--out", tmp_path / "out", *FAST], capsys)
    assert code == 2 and "same output name" in err


def test_a_diverging_solve_exits_1_and_writes_nothing(tmp_path, good_png, capsys):
    @priors.register_prior("test-nan")
    def make():
        info = specs.PriorInfo("test-nan", "NaN", True, 0.0, 1.0, (0, 1))
        return base.CallablePrior(lambda x: x.flatten(1).mean(1) * float("nan"), info)

    try:
        out = tmp_path / "out"
        code, err = run(["enhance", good_png, "--out", out, *FAST, "--prior", "test-nan"], capsys)
    finally:
        base.REGISTERED.pop("test-nan")
    assert code == 1 and "iteration 0: non-finite loss" in err and "nothing written" in err
    assert list(out.iterdir()) == []


def test_pixel_mode_writes_only_x(tmp_path, good_png, capsys):
    out = tmp_path / "out"
    code, err = run(["enhance", good_png, "--out", out, *FAST, "--mode", "pixel-direct"], capsys)
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == [
        "SHA256SUMS",
        "astronaut.json",
        "astronaut.x.png",
        "summary.csv",
    ]
    assert json.loads((out / "astronaut.json").read_text())["backbone"] is None


def test_weights_check_reports_missing_files(tmp_path, capsys):
    assert cli.main(["weights", "check", "--cache", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "sd2-base: MISSING" in out and "sd2-controlnet: MISSING" in out


def test_console_script_is_installed():
    result = subprocess.run(
        [sys.executable, "-m", "dlmap.cli", "--version"], capture_output=True, text=True
    )
    assert result.returncode == 0 and result.stdout.strip() == __import__("dlmap").__version__


def test_plot_option_writes_the_trajectory_figure(tmp_path, good_png, capsys):
    out = tmp_path / "out"
    code, err = run(["enhance", good_png, "--out", out, *FAST, "--plot"], capsys)
    assert code == 0, err
    height, width, _ = images.read_image(out / "astronaut.history.png").shape
    assert width > 2 * height  # three panels side by side
    record = json.loads((out / "astronaut.json").read_text())
    assert record["outputs"]["plot"] == "astronaut.history.png"


def test_same_seed_same_files_and_the_seed_matters(tmp_path, good_png, capsys):
    outputs = {}
    for run_name, seed in (("a", 5), ("b", 5), ("c", 6)):
        out = tmp_path / run_name
        code, err = run(["enhance", good_png, "--out", out, *FAST, "--seed", seed], capsys)
        assert code == 0, err
        outputs[run_name] = (out / "astronaut.x.png").read_bytes()
    assert outputs["a"] == outputs["b"] and outputs["a"] != outputs["c"]


def test_the_memory_switches_write_the_same_files_and_bf16_weights_are_recorded(
    tmp_path, good_png, capsys
):
    outputs = {}
    # (VAE slicing is left out: it changes float32 results in the last bits; see
    # test_memory_switches.py for it in float64.)
    bf16 = ["--weights-dtype", "bf16", "--autocast", "bf16"]
    for name, switches in (("plain", []), ("lean", ["--checkpoint-blocks"]), ("bf16", bf16)):
        out = tmp_path / name
        code, err = run(["enhance", good_png, "--out", out, *FAST, *switches], capsys)
        assert code == 0, err
        outputs[name] = (out / "astronaut.x.png").read_bytes()
        record = json.loads((out / "astronaut.json").read_text())
        assert record["config"]["weights_dtype"] == ("bf16" if name == "bf16" else "same")
    assert outputs["lean"] == outputs["plain"]


def test_errors_map_to_exit_codes_in_one_place_and_bugs_are_not_usage_errors(monkeypatch, capsys):
    from dlmap.cli import compare, main
    from dlmap.errors import DlmapError, InputError, UsageError
    from dlmap.weights.cache import WeightsMissingError

    for error, code in (
        (UsageError("bad option"), 2),
        (InputError("bad file"), 2),
        (WeightsMissingError("no weights"), 1),
    ):
        assert isinstance(error, DlmapError)
        monkeypatch.setitem(
            compare.HANDLERS, "report", lambda args, e=error: (_ for _ in ()).throw(e)
        )
        assert main.main(["report", "x.csv", "--out", "o"]) == code
        assert capsys.readouterr().err.strip() == f"dlmap: error: {error}"
    monkeypatch.setitem(compare.HANDLERS, "report", lambda args: int("not a number"))
    with pytest.raises(ValueError, match="invalid literal"):  # a bug: its traceback, not exit 2
        main.main(["report", "x.csv", "--out", "o"])
