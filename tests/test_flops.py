"""The FLOP count behind config.yaml's gpu_costs (dlmap.enhance.flops): the per-step formula
equals torch's count of a real MAP iteration, the paper's networks cost what the config's
estimate says, and every gpu_costs block names its GPU and precision."""

from pathlib import Path

import pytest
import torch
import yaml

from dlmap.diffusion.tiny import tiny_backbone
from dlmap.enhance import flops, solver
from dlmap.inversion.config import InversionConfig
from dlmap.priors.registry import create_prior
from dlmap.settings import SolverConfig
from dlmap.workflow import budget

ROOT = Path(__file__).parents[1]


@pytest.mark.parametrize(("bijection", "steps"), [("edict", 2), ("belm", 4)])
def test_the_formula_counts_a_real_iteration_and_inversion(bijection, steps):
    """torch's count of map_solve with 2 iterations minus 1 is one iteration; the formula
    (calls x (2 forwards + backward) + outputs x decode both ways) gives the same."""
    backbone = tiny_backbone("seesr", seed=0, dtype=torch.float32)
    prior = create_prior("colorfulness")  # elementwise only: no FLOPs of its own
    images = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    edict = InversionConfig(steps=steps, bijection=bijection)

    def solve(iters):
        config = SolverConfig(iters=iters, early_stop=False)
        return flops.count(
            lambda: solver.map_solve(backbone, prior, images, config, edict, quiet=True)
        )

    measured = solve(2) - solve(1)
    counts = flops.network_flops(backbone, 32)
    assert counts.iteration(steps, bijection) == pytest.approx(measured, rel=0.02)
    inversion = flops.count(lambda: solver.invert_images(backbone, images, edict, [0]))
    assert counts.inversion(steps, bijection) == pytest.approx(inversion, rel=0.02)


def test_config_estimates_follow_from_the_paper_networks_flops():
    counts = flops.paper_network_flops()
    assert counts.iteration() / 1e12 == pytest.approx(171.1, rel=0.01)
    assert counts.inversion() / 1e12 == pytest.approx(51.0, rel=0.01)
    for name in ("config.yaml", "presets/modern.yaml"):
        costs = budget.GpuCosts(**yaml.safe_load((ROOT / name).read_text())["gpu_costs"])
        assert costs.basis == "estimate" and costs.precision == "float32", name
        args = (costs.gpu, costs.precision, costs.efficiency)
        iteration = flops.estimated_seconds(counts.iteration(), *args)
        assert costs.iteration_seconds == round(iteration, 1)
        inversion = flops.estimated_seconds(counts.inversion(), *args)
        assert costs.inversion_seconds == round(inversion, 1)
        assert costs.describe() == "estimate for A100 80GB, float32 (efficiency 0.8)"


def test_every_gpu_costs_block_names_its_gpu_precision_and_basis():
    for path in [ROOT / "config.yaml", *sorted((ROOT / "presets").glob("*.yaml"))]:
        block = yaml.safe_load(path.read_text())["gpu_costs"]
        assert {"gpu", "precision", "basis"} <= set(block), path
        budget.GpuCosts(**block)
    with pytest.raises(ValueError, match="precision must be one of"):
        budget.GpuCosts(precision="fp8")
    with pytest.raises(ValueError, match="basis must be one of"):
        budget.GpuCosts(basis="guess")
    with pytest.raises(ValueError, match="share of the peak"):
        budget.GpuCosts(efficiency=1.5)
    with pytest.raises(ValueError, match="gpu must be a non-empty string"):
        budget.GpuCosts(gpu=" ")


def test_tf32_emulation_rounds_inputs_to_ten_mantissa_bits():
    from dlmap.testing.tf32 import emulated_tf32, round_to_tf32

    values = torch.tensor([1 + 2**-10, 1 + 2**-11, 1 + 3 * 2**-11, -1.5 - 2**-11, float("inf")])
    expected = [1 + 2**-10, 1.0, 1 + 2**-9, -1.5, float("inf")]  # ties to even
    assert round_to_tf32(values).tolist() == expected
    a, b = torch.randn(2, 32, 32, generator=torch.Generator().manual_seed(0))
    with emulated_tf32():
        product = a @ b
    assert torch.equal(product, round_to_tf32(a) @ round_to_tf32(b))
    assert not torch.equal(product, a @ b)


def test_tf32_is_an_explicit_backbone_setting_off_by_default():
    from dlmap.diffusion.build import set_tf32
    from dlmap.settings import BackboneSettings

    assert BackboneSettings().tf32 is False
    with pytest.raises(ValueError, match="tf32 must be true or false"):
        BackboneSettings(tf32="yes")
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    try:
        set_tf32(False)  # both off, cuDNN's convolutions included (PyTorch's default is on)
        assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
        set_tf32(True)
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before
