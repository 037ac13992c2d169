"""The classification of pyiqa's NR metrics as priors (dlmap.priors.pyiqa_nr): it covers the
installed pyiqa's whole NR list, its rows are consistent, and an unusable metric is refused
in one line that says why and names an alternative."""

from __future__ import annotations

import importlib.metadata

import pyiqa
import pytest

from dlmap.cli import main as cli
from dlmap.priors import pyiqa_nr


def test_the_table_covers_every_nr_metric_the_installed_pyiqa_lists():
    installed = importlib.metadata.version("pyiqa")
    assert installed == pyiqa_nr.PYIQA_VERSION, (
        f"pyiqa {installed} installed; the table was made with {pyiqa_nr.PYIQA_VERSION}: "
        "probe the new release (bench/pyiqa_zoo_probe.py) and update pyiqa_nr.csv"
    )
    listed = pyiqa.list_models(metric_mode="NR")
    assert pyiqa_nr.missing_from_table(listed) == []
    assert sorted(pyiqa_nr.table()) == sorted(listed)  # and nothing pyiqa no longer lists


def test_every_row_is_complete_and_every_class_is_explained():
    for name, row in pyiqa_nr.table().items():
        assert row.reason and row.reference and row.licence and row.source, name
        if not row.usable:
            assert pyiqa_nr.table()[row.alternative].usable, name
    numbers = pyiqa_nr.counts()
    assert sum(numbers.values()) == len(pyiqa_nr.table())
    assert numbers["differentiable"] > 0 and numbers["not a prior"] >= 4  # FID and relatives


@pytest.mark.parametrize("metric", ["fid", "inception_score", "clipscore", "qalign"])
def test_an_unusable_metric_is_refused_saying_why_and_what_to_use(metric):
    with pytest.raises(pyiqa_nr.UnusablePriorError) as raised:
        pyiqa_nr.require_usable(metric)
    message = str(raised.value)
    row = pyiqa_nr.table()[metric]
    assert "\n" not in message and row.kind in message and f"pyiqa:{row.alternative}" in message


def test_an_unknown_metric_names_the_closest():
    with pytest.raises(pyiqa_nr.UnusablePriorError, match="did you mean.*topiq_nr"):
        pyiqa_nr.require_usable("topiq-nr")


def test_priors_list_all_prints_every_metric_with_its_class(capsys):
    assert cli.main(["priors", "list", "--all"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert f"{len(pyiqa_nr.table())} NR metrics" in lines[0]
    for name, row in pyiqa_nr.table().items():
        line = next(line for line in lines if line.startswith(f"{name} "))
        assert row.kind in line


@pytest.mark.parametrize("metric", ["cnniqa", "wadiqam_nr"])
def test_a_metric_classed_differentiable_builds_offline_and_matches_finite_differences(metric):
    """The representative subset of the table's gradient checks (bench/pyiqa_zoo_probe.py runs
    them all): pyiqa's real architecture with random weights, nothing downloaded, the
    gradient of the score against central differences in float64 along random directions."""
    import torch

    from dlmap.testing.offline_pyiqa import offline_random_weights

    assert pyiqa_nr.table()[metric].usable
    with offline_random_weights(seed=0):
        net = pyiqa.create_metric(metric, as_loss=True, loss_reduction="none", device="cpu")
    net = net.double().eval()
    generator = torch.Generator().manual_seed(1)
    image = torch.rand(1, 3, 224, 224, dtype=torch.float64, generator=generator)
    leaf = image.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(net(leaf.clone()).sum(), leaf)
    assert torch.isfinite(grad).all() and grad.abs().max() > 0
    for _ in range(2):
        direction = torch.randn(image.shape, dtype=torch.float64, generator=generator)
        direction /= direction.norm()
        eps = 1e-5
        with torch.no_grad():
            change = net(image + eps * direction) - net(image - eps * direction)
        numeric = change.sum() / (2 * eps)
        analytic = (grad * direction).sum()
        assert abs(float(numeric - analytic)) <= 1e-6 * float(grad.norm()), (numeric, analytic)
