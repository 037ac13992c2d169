"""The pyiqa priors of Table I: their weight files and the error when they are missing.

(Every prior is built offline with random weights and run forward and backward by the walker
in ``test_priors.py``, through conftest's ``offline_priors`` fixture.)
"""

import pytest

from dlmap import priors, weights, zoo


def test_missing_weights_fail_at_construction_listing_files_urls_and_folder(tmp_path):
    with pytest.raises(weights.WeightsMissingError) as error:
        priors.create_prior("dbcnn", cache=tmp_path)
    message = str(error.value)
    assert "\n" not in message and str(tmp_path) in message
    assert "torch/pyiqa/DBCNN_KonIQ10k-2de81c0a.pth <- https://huggingface.co/" in message
    assert "torch/checkpoints/vgg16-397923af.pth" in message
    assert "dlmap weights fetch dbcnn" in message


def test_the_papers_liqe_is_pyiqas_liqe_mix_and_clip_urls_come_from_pyiqa():
    liqe = zoo.PYIQA_MODELS["liqe"]
    assert liqe.metric == "liqe_mix"
    files = {file.kind: file for file in liqe.files()}
    assert files["clip"].path == "torch/clip/ViT-B-32.pt"
    assert files["pyiqa"].path == "torch/pyiqa/liqe_mix.pt"


def test_fetch_downloads_exactly_the_missing_files_into_the_cache(tmp_path, monkeypatch):
    import torch

    downloads = []

    def fake_download(url, path, progress=True):
        downloads.append(url)
        weights.Path(path).write_bytes(url.encode())

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    model = zoo.PYIQA_MODELS["paq2piq"]
    assert len(zoo.missing_files(model, tmp_path)) == 2
    placed = zoo.fetch("paq2piq", cache=tmp_path)
    assert sorted(downloads) == sorted(file.url for file in model.files())
    assert zoo.missing_files(model, tmp_path) == [] and len(placed) == 2
    manifest = (tmp_path / weights.MANIFEST).read_text()
    assert all(str(path.resolve()) in manifest for path in placed)  # sha256 recorded
    downloads.clear()
    zoo.fetch("paq2piq", cache=tmp_path)
    assert downloads == []  # nothing fetched twice


def test_cli_priors_list_shows_every_prior_and_what_to_fetch(tmp_path, capsys):
    from dlmap import cli

    assert cli.main(["priors", "list", "--cache", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for name in priors.available_priors():
        assert f"\n{name} " in out
    assert "MISSING: dlmap weights fetch dbcnn" in out
    assert "dlmap-fitted (offline)" in out  # NIQE works with no download
    assert "ms_liqe.pt" in out
