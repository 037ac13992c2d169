"""Eq. 21 (calibration) and Eq. 20 (fidelity)."""

import math

import pytest
import torch
from conftest import photo

from dlmap import calibration, fidelity


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
