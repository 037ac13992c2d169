"""The pyiqa priors (dlmap.priors.zoo): Table I's, with their metadata, columns and missing
weights; and ``--prior pyiqa:NAME``, any differentiable NR metric of pyiqa through one generic
wrapper (``generic_factory``), with its weights in the catalogue, its metadata from pyiqa and
our table, and one latent-MAP step on the tiny backbone for each metric the table classes
differentiable (a representative subset by default; all of them with ``-m zoo``).

(Every prior is built offline with random weights and run forward and backward by the walker
in ``test_priors.py``, through conftest's ``offline_priors`` fixture.)
"""

from __future__ import annotations

import os

import pyiqa
import pytest
import torch
from helpers import photo, photo_png, run_cli

from dlmap.cli import main as cli
from dlmap.priors import base, pyiqa_nr, specs
from dlmap.priors import registry as priors
from dlmap.settings import SolverConfig
from dlmap.testing.offline_pyiqa import offline_random_weights
from dlmap.weights import cache as weights
from dlmap.weights import catalogue
from dlmap.weights.cache import WeightsMissingError

DIFFERENTIABLE = sorted(m for m, row in pyiqa_nr.table().items() if row.usable)
GENERIC = [m for m in DIFFERENTIABLE if m not in specs.PAPER_METRICS]
SUBSET = ["cnniqa", "topiq_nr", "nima-koniq"]  # three families: plain CNN, attention, NIMA
ZOO = [pytest.param(m, marks=pytest.mark.zoo) for m in GENERIC if m not in SUBSET]
# Peak resident memory of the latent-MAP test below, measured on a 2-core CPU (GiB): MANIQA
# scores 20 crops with a ViT-B/8 and keeps their activations for the backward pass, for x
# and y; on a 24 GiB machine (this one, and CI) the kernel kills the process.
PEAK_GIB = {"maniqa-kadid": 24}


def test_missing_weights_fail_at_construction_listing_files_urls_and_folder(tmp_path):
    with pytest.raises(weights.WeightsMissingError) as error:
        priors.create_prior("dbcnn", cache=tmp_path)
    message = str(error.value)
    assert "\n" not in message and str(tmp_path) in message
    assert "torch/pyiqa/DBCNN_KonIQ10k-2de81c0a.pth <- https://huggingface.co/" in message
    assert "torch/checkpoints/vgg16-397923af.pth" in message
    assert "dlmap weights fetch dbcnn" in message


def test_the_papers_liqe_is_liqe_mix_and_liqe_is_pyiqas_koniq_liqe():
    mix, koniq = specs.PRIOR_SPECS["liqe-mix"], specs.PRIOR_SPECS["liqe"]
    assert (mix.pyiqa_metric, koniq.pyiqa_metric) == ("liqe_mix", "liqe")
    assert "liqe-mix" in specs.PAPER_PRIORS and "liqe" not in specs.PAPER_PRIORS
    assert mix.calibration_fitted and not koniq.calibration_fitted
    assert koniq.training_set == "KonIQ-10k" and "KADID-10k" in mix.training_set
    for name, checkpoint in (("liqe-mix", "liqe_mix.pt"), ("liqe", "liqe_koniq.pt")):
        files = {file.kind: file for file in catalogue.get(name).files()}
        assert files["clip"].path == "torch/clip/ViT-B-32.pt"
        assert files["pyiqa"].path == f"torch/pyiqa/{checkpoint}"
    assert priors.prior_factory("pyiqa:liqe_mix") is priors.prior_factory("liqe-mix")
    assert priors.prior_factory("pyiqa:liqe") is priors.prior_factory("liqe")
    with_files = {name for name, spec in specs.PRIOR_SPECS.items() if spec.file_set()}
    assert with_files == {*specs.PAPER_PRIORS, "liqe"} and with_files <= set(catalogue.CATALOGUE)


@pytest.mark.parametrize("name", [*specs.PYIQA_SPECS, "niqe", "ms-liqe"])
def test_published_parameter_counts_are_those_of_the_built_architectures(name, tmp_path):
    """Table I's third column comes from metadata: check it against the real architecture
    (full size, random weights). CLIPIQA+ keeps its CLIP in a list, outside .parameters().
    LIQE is built with a small CLIP: at full size pyiqa encodes its 495 prompts through the
    text tower at construction (20 GB here), so the test shows that LIQE's parameters are its
    CLIP's, and counts the full-size CLIP alone."""
    from dlmap.testing.random_priors import random_clip, random_weights

    if name == "niqe":
        prior = priors.create_prior("niqe", cache=tmp_path)
        mu, cov = (prior.metric.net.mu_pris_param, prior.metric.net.cov_pris_param)
        assert priors.prior_info(name).params == mu.numel() + cov.numel() == 36 + 36 * 36
        return
    kwargs = {"allow_random": True} if name == "ms-liqe" else {}
    with random_weights(small_clip=name in ("liqe", "liqe-mix")):
        prior = priors.create_prior(name, cache=tmp_path, **kwargs)
    count = _parameters(prior)
    held = getattr(prior.metric.net, "clip_model", None) if hasattr(prior, "metric") else None
    if isinstance(held, list):
        count += sum(_parameters(model) for model in held)
    if name in ("liqe", "liqe-mix"):
        assert count == _parameters(random_clip("ViT-B/32", small=True))
        count = _parameters(random_clip("ViT-B/32"))
    assert priors.prior_info(name).params == count


def _parameters(module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_table_one_columns_come_from_the_metadata_in_the_papers_row_order(tmp_path, capsys):
    rows = priors.table_one_columns()
    assert [row["prior"] for row in rows] == list(priors.PAPER_PRIORS)
    by_name = {row["prior"]: row for row in rows}
    # the paper's Table I: NIQE "-" 0.001; DBCNN, HyperIQA, MUSIQ KonIQ-10k; PaQ-2-PiQ FLIVE;
    # UNIQUE and LIQE "Multiple" (LIVE, CSIQ, BID, CLIVE, KonIQ-10k, KADID-10k)
    assert (by_name["niqe"]["training_set"], by_name["niqe"]["params_millions"]) == ("-", "0.001")
    assert by_name["dbcnn"]["params_millions"] == "15.311"
    assert by_name["musiq"]["params_millions"] == "27.126"
    assert by_name["paq2piq"]["training_set"] == "FLIVE"
    assert by_name["unique"]["training_set"] == by_name["liqe-mix"]["training_set"] == "Multiple"
    assert "KADID-10k" in by_name["liqe-mix"]["training_sets"]
    out = tmp_path / "table1.csv"
    assert cli.main(["priors", "table", "--out", str(out)]) == 0
    assert "LIQE" in capsys.readouterr().out
    lines = out.read_text().splitlines()
    assert lines[0] == "model,training_set,params_millions,training_sets,prior" and len(lines) == 9


def test_a_prior_without_a_parameter_count_cannot_enter_table_one(monkeypatch):
    info = specs.PriorInfo("mine", "Mine", True, 0.0, 1.0, (0.0, 1.0))

    def factory():
        return base.CallablePrior(lambda images: images.mean(dim=(1, 2, 3)), info)

    factory.info = info
    monkeypatch.setitem(base.REGISTERED, "mine", factory)
    with pytest.raises(ValueError, match="'mine' publishes no parameter count"):
        priors.table_one_columns(["liqe-mix", "mine"])


def test_cli_priors_list_shows_every_prior_and_what_to_fetch_without_building_any(
    tmp_path, capsys, monkeypatch
):
    def no_building(*args, **kwargs):
        raise AssertionError("priors list must not build priors")

    monkeypatch.setattr(priors, "create_prior", no_building)
    assert cli.main(["priors", "list", "--cache", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for name in priors.available_priors():
        assert f"\n{name} " in out
    assert "MISSING: dlmap weights fetch dbcnn" in out
    assert "dlmap-fitted (offline)" in out  # NIQE works with no download
    assert "ms_liqe.pt" in out
    assert "151.3M" in out and "1332" in out  # LIQE's and NIQE's parameter counts
    lines = {line.split()[0]: line for line in out.splitlines()[2:]}
    assert "provisional calibration" in lines["dbcnn"]  # nobody fitted DBCNN's constants
    assert "provisional" not in lines["liqe-mix"]  # the authors' LIVE-fitted constants
    assert "provisional calibration" in lines["liqe"]  # pyiqa's KonIQ-10k LIQE: nobody's


def machine_gib() -> float:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30


def test_a_generic_prior_carries_pyiqa_metadata_and_provisional_constants():
    from pyiqa.default_model_configs import DEFAULT_CONFIGS

    for metric in GENERIC:
        info = priors.prior_info(f"pyiqa:{metric}")
        config = DEFAULT_CONFIGS[metric]
        row = pyiqa_nr.table()[metric]
        assert info.name == f"pyiqa:{metric}" and info.reference == row.reference
        assert info.higher_is_better is not bool(config.get("lower_better", False)), metric
        assert info.params == row.params and info.params > 0, metric
        low, high = info.score_range
        middle = (low + high) / 2
        assert info.xi3 == (middle if info.higher_is_better else -middle), metric
        assert info.xi4 == (high - low) / 4 > 0 and not info.calibration_fitted, metric
        assert "provisional" in info.calibration_source and "dlmap calibrate" in (
            info.calibration_source
        )


def test_pyiqa_score_ranges_are_read_as_numbers():
    assert pyiqa_nr.score_range("musiq-spaq") == (0.0, 100.0)  # "~0, ~100"
    assert all(pyiqa_nr.score_range(m) is not None for m in GENERIC)


def test_the_papers_metrics_keep_their_names_metadata_and_weights():
    for metric, name in specs.PAPER_METRICS.items():
        assert priors.prior_info(f"pyiqa:{metric}") == priors.prior_info(name), metric
        assert priors.weight_sets(f"pyiqa:{metric}") == priors.weight_sets(name), metric


@pytest.mark.parametrize("metric", ["fid", "clipscore", "entropy", "qalign", "uranker"])
def test_a_metric_that_cannot_be_a_prior_is_refused_in_one_line_with_an_alternative(
    metric, tmp_path, capsys
):
    row = pyiqa_nr.table()[metric]
    with pytest.raises(pyiqa_nr.UnusablePriorError, match=f"pyiqa:{row.alternative}"):
        priors.create_prior(f"pyiqa:{metric}")
    code, _, err = run_cli(
        ["score", str(photo_png(tmp_path)), "--prior", f"pyiqa:{metric}"], capsys
    )
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert row.kind in err and f"pyiqa:{row.alternative}" in err


def test_an_unknown_pyiqa_name_suggests_the_closest():
    with pytest.raises(pyiqa_nr.UnusablePriorError, match="did you mean.*topiq_nr"):
        priors.create_prior("pyiqa:topiq-nr")


def test_the_weight_sets_are_pyiqas_own_urls_and_match_the_papers_sets():
    """The files recorded from pyiqa's loaders are, for the paper's models, exactly the
    catalogue's hand-made sets (same URLs, same places), and for a generic one the URL in
    pyiqa's own table."""
    for metric, name in specs.PAPER_METRICS.items():
        recorded = pyiqa_nr.files_table().get(metric)
        if recorded is None or name == "niqe":  # not built offline; dlmap's own NIQE
            continue
        ours = {(f.url, f.path) for f in catalogue.get(name).files() if f.kind != "timm"}
        assert {(url, path) for kind, url, path in recorded if kind != "timm"} == ours, metric
    from pyiqa.archs.cnniqa_arch import default_model_urls

    files = catalogue.get("pyiqa:cnniqa").files()
    assert [f.url for f in files] == [default_model_urls["koniq10k"]]
    assert files[0].path.startswith("torch/pyiqa/")
    for metric in GENERIC:
        assert catalogue.has(f"pyiqa:{metric}") and catalogue.get(f"pyiqa:{metric}").files()
    assert not catalogue.has("pyiqa:fid") and not catalogue.has("pyiqa:nothing")


def test_missing_weights_are_named_before_anything_is_built(tmp_path, capsys):
    with pytest.raises(WeightsMissingError, match="dlmap weights fetch pyiqa:topiq_nr"):
        priors.create_prior("pyiqa:topiq_nr", cache=tmp_path)
    code, _, err = run_cli(["weights", "fetch", "pyiqa:fid", "--cache", str(tmp_path)], capsys)
    assert code == 2 and "unknown pyiqa:fid" in err


def test_a_small_image_is_upsampled_to_the_metrics_smallest_side_and_it_says_so():
    with offline_random_weights(seed=0):
        prior = priors.create_prior("pyiqa:cnniqa")
    side = pyiqa_nr.table()["cnniqa"].min_side
    small = torch.rand(2, 3, side // 2, side // 2)
    with pytest.warns(UserWarning, match=f"under its smallest side {side}: upsampled"):
        scores = prior(small)
    assert scores.shape == (2,) and torch.isfinite(scores).all()
    with offline_random_weights(seed=0):
        net = pyiqa.create_metric("cnniqa", as_loss=True, loss_reduction="none", device="cpu")
    image = photo(64, "coffee", torch.float32)[None]
    assert torch.allclose(prior(image), net.eval()(image).reshape(1))  # pyiqa's own forward


def test_enhance_with_an_uncalibrated_prior_says_which_constants_it_uses(tmp_path, capsys):
    png = photo_png(tmp_path, size=64)
    argv = [
        "enhance",
        str(png),
        "--out",
        str(tmp_path / "out"),
        "--prior",
        "pyiqa:cnniqa",
        "--mode",
        "pixel-map",
        "--iters",
        "1",
        "--size",
        "64",
        "--quiet",
    ]
    with offline_random_weights(seed=0):
        code, _, err = run_cli(argv, capsys)
    assert code == 0, err
    info = priors.prior_info("pyiqa:cnniqa")
    assert f"using provisional xi3 = {info.xi3:g}, xi4 = {info.xi4:g}" in err


@pytest.mark.parametrize("metric", [*SUBSET, *ZOO])
def test_one_latent_map_step_with_each_differentiable_metric(metric, tiny32):
    """Built generically with random weights of its real architecture (nothing downloaded),
    one latent-MAP update on the tiny backbone: finite, and (lambda large, so the prior leads)
    raises the calibrated score of a photograph (MANIQA needs ~24 GiB: ``PEAK_GIB``). The step
    is a quarter of the paper's (lr 0.5): random networks are rougher than trained ones, and the
    paper's step overshoots CNNIQA's max/min pooling."""
    from dlmap.enhance import solver
    from dlmap.inversion.config import InversionConfig

    if PEAK_GIB.get(metric, 0) * 1.25 > machine_gib():
        pytest.skip(
            f"{metric} peaks at ~{PEAK_GIB[metric]} GiB; this machine has {machine_gib():.0f} GiB"
        )
    images = photo(224, "astronaut", torch.float32)[None]
    config = SolverConfig(mode="latent-map", lam=1e4, iters=1, lr=0.5)
    with offline_random_weights(seed=0):
        prior = priors.create_prior(f"pyiqa:{metric}")
    result = solver.map_solve(tiny32, prior, images, config, InversionConfig(steps=2), quiet=True)
    before = result.history[0]["score"][0]
    after = (result.final["x"]["score"][0] + result.final["y"]["score"][0]) / 2
    assert all(torch.isfinite(torch.as_tensor(result.final[k]["score"])).all() for k in "xy")
    assert after > before, (metric, before, after)


def test_the_demo_uses_every_weight_free_differentiable_pyiqa_metric():
    """The demo runs offline, so it can take a pyiqa metric only if it needs no weight file:
    none of 0.1.16's does and is differentiable (entropy has no autograd graph, PIQE a zero
    gradient); a pyiqa release that adds one makes this fail until the demo lists it."""
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parents[1]
    weight_free = [m for m in DIFFERENTIABLE if not pyiqa_nr.files_table().get(m)]
    demo = yaml.safe_load((root / "presets" / "demo.yaml").read_text())
    assert [m for m in weight_free if f"pyiqa:{m}" not in demo["priors"]] == []
    for metric in ("entropy", "piqe"):
        row = pyiqa_nr.table()[metric]
        assert row.params is not None and not pyiqa_nr.files_table().get(metric)
        assert row.kind == "not differentiable"
