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
