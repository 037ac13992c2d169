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
    assert sorted(pyiqa_nr.table()) == sorted(pyiqa_nr.pyiqa_own(listed))  # nothing gone
    from dlmap.msliqe.pyiqa_metric import METRIC

    assert pyiqa_nr.DLMAP_METRICS == (METRIC,)


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


FD_SUBSET = ["cnniqa", "wadiqam_nr"]
FD_SKIPPED = {"maniqa-kadid": "one forward + backward takes ~2 min and ~13 GiB here"}
FD_ALL = [
    pytest.param(m, marks=pytest.mark.zoo)
    for m, row in sorted(pyiqa_nr.table().items())
    if row.usable and m not in FD_SUBSET and m not in FD_SKIPPED
]


def relative_error(numeric: float, analytic: float) -> float:
    return abs(numeric - analytic) / max(abs(numeric), abs(analytic), 1e-12)


@pytest.mark.parametrize("metric", [*FD_SUBSET, *FD_ALL])
def test_a_metric_classed_differentiable_builds_offline_and_matches_finite_differences(metric):
    """The table's gradient check, repeated: pyiqa's real architecture with random weights,
    nothing downloaded, the gradient of the score against central differences along two
    directions. In float64 where the metric then computes in float64 (relative error < 1e-3,
    the best of eps 1e-6 down to 1e-10: ReLU and max-pool kinks crossed by a larger step cost
    accuracy, rounding a smaller one); else in float32 (OpenAI's CLIP casts to float32 inside)
    along random directions plus the gradient's (< 5e-2, eps 1e-3 or 1e-2). Two metrics by
    default, every differentiable row but MANIQA-KADID (FD_SKIPPED) with -m zoo."""
    import torch

    from dlmap.testing.offline_pyiqa import modules_of, offline_random_weights

    assert pyiqa_nr.table()[metric].usable
    with offline_random_weights(seed=0):
        with torch.no_grad():  # LIQE encodes its prompts at build time
            net = pyiqa.create_metric(metric, as_loss=True, loss_reduction="none", device="cpu")
    for module in modules_of(net):
        module.requires_grad_(False)
        for key, value in list(vars(module).items()):  # tensors made at build time
            if isinstance(value, torch.Tensor) and value.grad_fn is not None:
                setattr(module, key, value.detach())
        module.double().eval()
    generator = torch.Generator().manual_seed(1)

    def score(x):
        torch.manual_seed(0)  # metrics that crop at random crop alike every call
        out = net(x.clone())
        return (out[0] if isinstance(out, (tuple, list)) else out).sum()

    image = torch.rand(1, 3, 224, 224, dtype=torch.float64, generator=generator)
    try:
        double = score(image).dtype == torch.float64
    except RuntimeError:  # "mixed dtype": a CLIP that casts to float32 inside
        double = False
    if not double:
        for module in modules_of(net):
            module.float()
        image = image.float()
    leaf = image.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(score(leaf), leaf)
    assert torch.isfinite(grad).all() and grad.abs().max() > 0
    for _ in range(2):
        direction = torch.randn(image.shape, dtype=image.dtype, generator=generator)
        if not double:  # a derivative that rounding in float32 cannot drown
            direction = direction + grad / grad.norm() * direction.norm()
        analytic = float((grad * direction).sum())
        errors = []
        for eps in (1e-6, 1e-7, 1e-8, 1e-9, 1e-10) if double else (1e-3, 1e-2):
            with torch.no_grad():
                numeric = float(score(image + eps * direction) - score(image - eps * direction))
            errors.append(relative_error(numeric / (2 * eps), analytic))
            if errors[-1] < (1e-5 if double else 5e-4):
                break
        assert min(errors) < (1e-3 if double else 5e-2), (metric, image.dtype, errors)


def _measured(**fields) -> dict:
    """A probe record of a metric that built, ran, and whose gradient was finite and non-zero."""
    record = dict(metric="some_metric", builds=True, forward_ok=True, finite=True)
    record.update(grad_finite=True, grad_nonzero_fraction=0.7)
    return record | fields


def _fd(errors, dtype="float64") -> dict:
    return {"rel_err": errors, "dtype": dtype, "directions": len(errors), "tried": []}


@pytest.mark.parametrize(
    "record, expected, reason",
    [
        (_measured(fd=_fd([2e-5, 4e-4])), "differentiable", "rel err max 4.0e-04"),
        (_measured(fd=_fd([2e-5, 3e-3])), "not differentiable", "disagrees with FD"),
        (_measured(fd=_fd([1e-2], "float32")), "differentiable", "float32"),
        (_measured(fd=_fd([9e-2], "float32")), "not differentiable", ">= 0.05"),
        (_measured(grad_nonzero_fraction=0.0), "not differentiable", "identically zero"),
        (_measured(grad_finite=False), "not differentiable", "non-finite gradient"),
        (_measured(grad="no grad_fn: detached"), "not differentiable", "detached"),
        (_measured(forward_ok=False, forward_ok_without_grad=True), "not differentiable", ""),
        (_measured(fd=None), "not checked offline", "no time for the FD check"),
        (_measured(builds=False, build_error="HTTP 404"), "not checked offline", "HTTP 404"),
        (_measured(killed="timeout after 600 s"), "not checked offline", "timeout"),
        (_measured(metric="fid"), "not a prior", "distribution metric"),
        (_measured(metric="qalign"), "not checked offline", "not launched"),
    ],
)
def test_the_policy_classifies_a_probe_record_by_its_first_failing_measurement(
    record, expected, reason
):
    klass, why = pyiqa_nr.classify(record)
    assert klass == expected and reason in why
    assert klass in pyiqa_nr.CLASSES


def test_the_shipped_table_follows_the_policys_name_lists():
    rows = pyiqa_nr.table()
    for name in set(pyiqa_nr.NOT_PRIORS) & set(rows):
        assert rows[name].kind == "not a prior", name
    for name in set(pyiqa_nr.NOT_LAUNCHED) & set(rows):
        assert rows[name].kind == "not checked offline", name
