"""The pyiqa priors of Table I: metadata, Table I's columns, and missing weights.

(Every prior is built offline with random weights and run forward and backward by the walker
in ``test_priors.py``, through conftest's ``offline_priors`` fixture.)
"""

import pytest

from dlmap.cli import main as cli
from dlmap.priors import base, specs
from dlmap.priors import registry as priors
from dlmap.weights import cache as weights
from dlmap.weights import catalogue


def test_missing_weights_fail_at_construction_listing_files_urls_and_folder(tmp_path):
    with pytest.raises(weights.WeightsMissingError) as error:
        priors.create_prior("dbcnn", cache=tmp_path)
    message = str(error.value)
    assert "\n" not in message and str(tmp_path) in message
    assert "torch/pyiqa/DBCNN_KonIQ10k-2de81c0a.pth <- https://huggingface.co/" in message
    assert "torch/checkpoints/vgg16-397923af.pth" in message
    assert "dlmap weights fetch dbcnn" in message


def test_the_papers_liqe_is_pyiqas_liqe_mix_and_clip_urls_come_from_pyiqa():
    assert specs.PRIOR_SPECS["liqe"].pyiqa_metric == "liqe_mix"
    files = {file.kind: file for file in catalogue.get("liqe").files()}
    assert files["clip"].path == "torch/clip/ViT-B-32.pt"
    assert files["pyiqa"].path == "torch/pyiqa/liqe_mix.pt"
    with_files = {name for name, spec in specs.PRIOR_SPECS.items() if spec.file_set()}
    assert with_files == set(specs.PAPER_PRIORS) and with_files <= set(catalogue.CATALOGUE)


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
    with random_weights(small_clip=name == "liqe"):
        prior = priors.create_prior(name, cache=tmp_path, **kwargs)
    count = _parameters(prior)
    held = getattr(prior.metric.net, "clip_model", None) if hasattr(prior, "metric") else None
    if isinstance(held, list):
        count += sum(_parameters(model) for model in held)
    if name == "liqe":
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
    assert by_name["unique"]["training_set"] == by_name["liqe"]["training_set"] == "Multiple"
    assert "KADID-10k" in by_name["liqe"]["training_sets"]
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
        priors.table_one_columns(["liqe", "mine"])


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
    assert "provisional" not in lines["liqe"]  # the authors' LIVE-fitted constants
