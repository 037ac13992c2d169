"""Eq. 21 (calibration) and Eq. 20 (fidelity)."""

import math

import pytest
import torch
from helpers import photo
from hypothesis import given, settings
from hypothesis import strategies as st

from dlmap.enhance import fidelity
from dlmap.priors import calibration


def test_logistic_is_increasing_with_range_0_1_and_midpoint_xi3():
    q = torch.linspace(-10, 10, 101, dtype=torch.float64)
    out = calibration.logistic(q, xi3=2.0, xi4=1.5)
    assert (out.diff() > 0).all() and (out > 0).all() and (out < 1).all()
    assert calibration.logistic(torch.tensor(2.0), 2.0, 1.5).item() == pytest.approx(0.5)
    # |xi4|: the sign of xi4 does not flip the direction
    assert torch.equal(out, calibration.logistic(q, xi3=2.0, xi4=-1.5))
    # e-fold scale: at q = xi3 + |xi4| the logistic is 1 / (1 + e^-1)
    value = calibration.logistic(torch.tensor(3.5, dtype=torch.float64), 2.0, 1.5).item()
    assert value == pytest.approx(1 / (1 + math.exp(-1)))


def test_lower_is_better_scores_are_negated_first():
    q = torch.tensor([3.0, 5.0, 7.0], dtype=torch.float64)
    out = calibration.calibrate(q, xi3=-5.0, xi4=1.0, higher_is_better=False)
    assert (out.diff() < 0).all() and out[1].item() == pytest.approx(0.5)


def test_zero_scale_is_rejected():
    with pytest.raises(ValueError, match="xi4"):
        calibration.logistic(torch.tensor(1.0), 0.0, 0.0)


def test_fidelity_is_zero_for_identical_images_and_exact_for_a_constant_shift():
    image = photo(64, "astronaut")[None]
    assert fidelity.downsampled_l2(image, image, 4).item() == 0.0
    shifted = image + 0.01
    # bicubic downsampling preserves constants: D0 = 0.01 * sqrt(3 * 16 * 16)
    expected = 0.01 * math.sqrt(3 * 16 * 16)
    assert fidelity.downsampled_l2(shifted, image, 4).item() == pytest.approx(expected, rel=1e-9)


def test_fidelity_ignores_fine_detail_that_plain_l2_punishes():
    image = photo(64, "astronaut")[None]
    rows = torch.arange(64, dtype=torch.float64)
    checker = 0.05 * ((rows[:, None] + rows[None, :]) % 2 * 2 - 1)  # +-0.05 at Nyquist
    detailed = image + checker
    coarse = fidelity.downsampled_l2(detailed, image, 4).item()
    plain = fidelity.downsampled_l2(detailed, image, 1).item()
    assert coarse < 0.05 * plain
    shifted = fidelity.downsampled_l2(image + 0.05, image, 4).item()
    assert coarse < 0.1 * shifted


def test_fidelity_is_per_image():
    images = torch.stack([photo(64, "astronaut"), photo(64, "coffee")])
    ref = images.clone()
    ref[1] += 0.1
    values = fidelity.downsampled_l2(images, ref, 4)
    assert values[0].item() == 0.0 and values[1].item() > 0


@pytest.mark.parametrize("factor", [0, -2, 2.5])
def test_bad_downsampling_factor_is_rejected(factor):
    with pytest.raises(ValueError, match="downsampling factor"):
        fidelity.downsample(torch.zeros(1, 3, 8, 8), factor)


def test_mse_is_mean_squared_error_per_image():
    a = torch.zeros(2, 3, 4, 4)
    b = torch.zeros(2, 3, 4, 4)
    b[1] = 0.5
    assert fidelity.mse(a, b).tolist() == [0.0, 0.25]


def _synthetic(xi3, xi4, count=200, noise=0.02, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    raw = rng.uniform(xi3 - 4 * xi4, xi3 + 4 * xi4, count)
    mos = 1 / (1 + np.exp(-(raw - xi3) / xi4)) + rng.normal(0, noise, count)
    return raw, mos.clip(0, 1)


def test_fit_recovers_known_constants_and_reports_agreement():
    raw, mos = _synthetic(xi3=40.0, xi4=8.0)
    fit = calibration.fit_logistic(raw, mos)
    assert fit.xi3 == pytest.approx(40.0, abs=1.0) and fit.xi4 == pytest.approx(8.0, rel=0.1)
    assert fit.count == 200 and fit.srcc > 0.95
    assert fit.plcc_calibrated > fit.plcc_raw  # the logistic straightens the relation


def test_fit_of_a_lower_is_better_model_is_on_the_negated_scale():
    raw, mos = _synthetic(xi3=-6.0, xi4=1.5)
    fit = calibration.fit_logistic(-raw, mos, higher_is_better=False)
    assert fit.xi3 == pytest.approx(-6.0, abs=0.3) and fit.srcc > 0.95
    calibrated = calibration.calibrate(torch.tensor(-raw), fit.xi3, fit.xi4, False)
    assert torch.corrcoef(torch.stack([calibrated, torch.tensor(mos)]))[0, 1] > 0.95


@pytest.mark.parametrize(
    "raw, mos, message",
    [
        ([1, 2, 3], [0.1, 0.2, 0.3], "at least 4"),
        ([1, 2, 3, 4], [0.1, 0.2, 0.3, 40], r"normalised to \[0, 1\]"),
        ([1, 1, 1, 1], [0.1, 0.2, 0.3, 0.4], "all raw scores are equal"),
        ([1, 2, float("nan"), 4], [0.1, 0.2, 0.3, 0.4], "finite"),
    ],
)
def test_fit_rejects_bad_data_with_a_clear_message(raw, mos, message):
    with pytest.raises(ValueError, match=message):
        calibration.fit_logistic(raw, mos)


def test_cli_calibrate_stores_constants_that_the_registry_then_uses(tmp_path, capsys):
    import json

    from dlmap.cli import main as cli
    from dlmap.priors import registry as priors

    raw, mos = _synthetic(xi3=30.0, xi4=10.0)
    scores = tmp_path / "scores.csv"
    scores.write_text(
        "score,mos\n" + "".join(f"{r},{m * 4 + 1}\n" for r, m in zip(raw, mos, strict=True))
    )
    argv = ["calibrate", "--prior", "colorfulness", "--scores", str(scores)]
    argv += ["--out", str(tmp_path / "fit.json"), "--mos-range", "1", "5"]
    assert cli.main([*argv, "--cache", str(tmp_path / "cache")]) == 0
    out = capsys.readouterr().out
    assert "colorfulness: n = 200" in out and "stored in" in out
    fit = json.loads((tmp_path / "fit.json").read_text())
    assert fit["xi3"] == pytest.approx(30.0, abs=1.5)
    prior = priors.create_prior("colorfulness", cache=tmp_path / "cache")
    assert prior.info.xi3 == fit["xi3"] and prior.info.calibration_source.startswith("fitted")
    assert priors.create_prior("colorfulness").info.xi3 == 33.0  # the shipped constants


@pytest.mark.parametrize(
    "content, message",
    [
        ("raw,mos\n1,0.5\n", "columns score and mos"),
        ("score,mos\n1,0.5\n2,x\n", "not a number"),
        ("score,mos\n1,0.5\n2,0.6\n", "at least 4"),
    ],
)
def test_cli_calibrate_answers_bad_csv_files_in_one_line(tmp_path, capsys, content, message):
    from dlmap.cli import main as cli

    scores = tmp_path / "scores.csv"
    scores.write_text(content)
    argv = ["calibrate", "--prior", "sharpness", "--scores", str(scores), "--out"]
    assert cli.main([*argv, str(tmp_path / "fit.json"), "--cache", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "fit.json").exists()


@settings(max_examples=200, deadline=None)
@given(content=st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_score_tables_parse_or_fail_with_one_input_error(tmp_path_factory, content):
    """Any bytes: two equal-length lists of floats, or an InputError (never a crash)."""
    from dlmap.errors import InputError

    path = tmp_path_factory.mktemp("scores") / "scores.csv"
    path.write_bytes(b"score,mos\n" + content)
    try:
        raw, mos = calibration.read_score_table(path)
    except InputError as error:
        assert str(error) and "\n" not in str(error).strip()
        return
    assert len(raw) == len(mos) and all(isinstance(v, float) for v in raw + mos)
