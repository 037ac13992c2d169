"""MS-LIQE (paper Sec. V, Eqs. 22-24): views, scoring, weights, the prior wrapper."""

from __future__ import annotations

import open_clip
import pytest
import torch
import torch.nn.functional as F
from helpers import photo

from dlmap.msliqe.model import (
    MSLIQE,
    TINY_CLIP,
    MSLIQEConfig,
    MSLIQEPrior,
    crop_indices,
    default_checkpoint,
)
from dlmap.priors.registry import create_prior
from dlmap.weights import cache as weights
from dlmap.weights.cache import WeightKeyError, WeightsMissingError

TINY = MSLIQEConfig(clip=TINY_CLIP)


def build(config: MSLIQEConfig = TINY, seed: int = 0, checkpoint=None) -> MSLIQE:
    torch.manual_seed(seed)
    return MSLIQE.from_config(config, checkpoint).double().eval()


@pytest.fixture(scope="module")
def tiny():
    return build()


def resize(images, size):
    """The authors' resize: bicubic, no antialiasing."""
    return F.interpolate(images, size=size, mode="bicubic", align_corners=False)


def scaled(images, scale):
    """The authors' pyramid level: F.interpolate by a scale factor (size floored)."""
    return F.interpolate(images, scale_factor=scale, mode="bicubic", align_corners=False)


def test_crop_indices_are_the_authors_and_pyiqas():
    assert crop_indices(7, 100) == [0, 14, 28, 42, 56, 70, 84]  # 512 px, scale 1
    assert crop_indices(7, 36) == [0, 5, 10, 15, 20, 25, 30]  # 384 px
    assert crop_indices(7, 28) == [0, 4, 8, 12, 16, 20, 24]
    assert crop_indices(7, 7) == list(range(7))
    assert crop_indices(7, 4) == [0, 1, 2, 3]  # fewer positions than k: each once (pyiqa)
    assert crop_indices(7, 1) == [0]
    assert crop_indices(1, 5) == [0]


def _check_crops(views, first, level, indices, grid_columns):
    for view, n in enumerate(indices, start=first):
        y, x = 32 * (n // grid_columns), 32 * (n % grid_columns)
        assert torch.equal(views[:, view], level[..., y : y + 224, x : x + 224]), (view, n)


def test_views_of_a_512_image(tiny):
    images = torch.rand(1, 3, 512, 512, dtype=torch.float64)
    views = tiny.views(images)
    assert views.shape == (1, 15, 3, 224, 224) and TINY.num_views == 15
    assert torch.equal(views[:, 0], resize(images, (224, 224)))
    _check_crops(views, 1, images, [0, 14, 28, 42, 56, 70, 84], 10)  # a 10 x 10 grid
    level = scaled(images, 0.75)
    assert level.shape[-2:] == (384, 384)
    _check_crops(views, 8, level, [0, 5, 10, 15, 20, 25, 30], 6)  # a 6 x 6 grid
    assert torch.equal(tiny.views(images), views)  # deterministic


def test_views_of_a_384_image_and_a_non_square_one(tiny):
    images = torch.rand(1, 3, 384, 384, dtype=torch.float64)
    views = tiny.views(images)
    assert views.shape == (1, 15, 3, 224, 224)
    _check_crops(views, 1, images, [0, 5, 10, 15, 20, 25, 30], 6)
    level = scaled(images, 0.75)  # 288 x 288: a 3 x 3 grid, step 9 // 7 = 1
    _check_crops(views, 8, level, list(range(7)), 3)
    images = torch.rand(2, 3, 320, 416, dtype=torch.float64)
    views = tiny.views(images)  # scale 1: a 4 x 7 grid; scale 0.75: 240 x 312, a 1 x 3 grid
    assert views.shape == (2, 1 + 7 + 3, 3, 224, 224)
    _check_crops(views, 1, images, [0, 4, 8, 12, 16, 20, 24], 7)
    _check_crops(views, 8, scaled(images, 0.75), [0, 1, 2], 3)


def test_whole_view_of_a_224_image_is_the_image(tiny):
    images = torch.rand(1, 3, 224, 224, dtype=torch.float64)
    views = tiny.views(images)
    assert views.shape[1] == 3  # the image, its one crop, and the 0.75 level brought back up
    assert torch.equal(views[:, 0], images) and torch.equal(views[:, 1], images)


def test_small_images_are_upsampled_to_a_224_shorter_side(tiny):
    images = torch.rand(1, 3, 100, 150, dtype=torch.float64)
    views = tiny.views(images)
    assert views.shape == (1, 1 + 4 + 4, 3, 224, 224)  # N = 4 < 7 positions per level
    level = resize(images, (224, 336))  # scale 1: shorter side 100 -> 224, aspect kept
    _check_crops(views, 1, level, [0, 1, 2, 3], 4)
    level = resize(images, (224, 335))  # scale 0.75: 75 x 112 -> 224 x round(334.51) = 335
    _check_crops(views, 5, level, [0, 1, 2, 3], 4)
    assert torch.isfinite(tiny(images)).all()


def test_antialiasing_is_an_option(tiny):
    images = torch.rand(1, 3, 512, 512, dtype=torch.float64)
    smooth = build(MSLIQEConfig(clip=TINY_CLIP, antialias=True))
    whole = F.interpolate(images, size=(224, 224), mode="bicubic", antialias=True)
    assert torch.equal(smooth.views(images)[:, 0], whole)
    assert not torch.equal(tiny.views(images)[:, 0], whole)


def test_probabilities_and_score(tiny):
    images = torch.stack([photo(256, "astronaut"), photo(256, "coffee")])
    p = tiny.probabilities(images)
    q = tiny(images)
    assert p.shape == (2, 5) and q.shape == (2,)
    assert torch.allclose(p.sum(dim=1), torch.ones(2, dtype=p.dtype))
    assert ((q >= 1) & (q <= 5)).all()
    assert torch.allclose(q, (p * torch.arange(1, 6, dtype=p.dtype)).sum(dim=1))


def test_logits_are_the_mean_over_views(tiny):
    image = photo(288, "chelsea")[None]
    views = tiny.views(image)[0]
    mean = torch.tensor(open_clip.OPENAI_DATASET_MEAN, dtype=views.dtype).view(1, 3, 1, 1)
    std = torch.tensor(open_clip.OPENAI_DATASET_STD, dtype=views.dtype).view(1, 3, 1, 1)
    with torch.no_grad():
        image_features = tiny.clip.encode_image((views - mean) / std)
        text_features = tiny.clip.encode_text(open_clip.tokenize(list(TINY.prompts), 16))
        cosine = F.cosine_similarity(image_features[:, None], text_features[None], dim=-1)
        logits = (tiny.clip.logit_scale.exp() * cosine).mean(dim=0)
        assert torch.allclose(tiny.logits(image)[0], logits, atol=1e-10)
        p = torch.softmax(logits / 2, dim=0)
        assert torch.allclose(tiny.probabilities(image)[0], p, atol=1e-12)
        # the mean, not one view: the per-view logits really differ
        assert (cosine - cosine.mean(dim=0)).abs().max() > 1e-4


def test_single_scale_is_the_same_code_with_one_level(tiny):
    single = MSLIQE(tiny.clip, MSLIQEConfig(clip=TINY_CLIP, scales=(1.0,))).double().eval()
    images = torch.stack([photo(320, "astronaut")])
    views = single.views(images)
    assert views.shape[1] == 1 + 7 == single.config.num_views
    assert torch.equal(views, tiny.views(images)[:, :8])
    assert not torch.allclose(single(images), tiny(images), rtol=0, atol=1e-9)


def test_each_image_is_scored_on_its_own(tiny):
    images = torch.stack([photo(256, "astronaut"), photo(256, "coffee")])
    both = tiny(images)
    alone = torch.cat([tiny(images[:1]), tiny(images[1:])])
    assert torch.allclose(both, alone, rtol=0, atol=1e-12)
    assert not torch.allclose(both[0], both[1])


@pytest.mark.parametrize("size", [224, 512])
def test_gradients_reach_the_images(tiny, size):
    crops_only = (
        MSLIQE(tiny.clip, MSLIQEConfig(clip=TINY_CLIP, include_whole=False)).double().eval()
    )
    for model in (tiny, crops_only):  # through the whole view and through the crops alone
        images = photo(size, "astronaut")[None].requires_grad_(True)
        model(images).sum().backward()
        assert torch.isfinite(images.grad).all()
        assert images.grad.abs().sum() > 0


def test_checkpoint_round_trip_and_strict_keys(tmp_path, tiny):
    path = tmp_path / "ms_liqe.pt"
    torch.save(tiny.clip.state_dict(), path)
    loaded = build(seed=1, checkpoint=path)
    images = photo(256, "coffee")[None]
    assert not torch.allclose(build(seed=1)(images), tiny(images))  # another random init
    assert torch.equal(loaded(images), tiny(images))

    state = {k: v.clone() for k, v in tiny.clip.state_dict().items()}
    with pytest.raises(WeightKeyError, match="unexpected extra.weight"):
        build(checkpoint={**state, "extra.weight": torch.zeros(2)})
    del state["visual.proj"]
    torch.save(state, path)
    with pytest.raises(WeightKeyError, match=r"missing visual\.proj"):
        build(checkpoint=path)


def test_prior_needs_weights_and_never_downloads(tmp_path, monkeypatch, tiny):
    monkeypatch.setenv(weights.CACHE_ENV, str(tmp_path))
    expected = tmp_path / "ms-liqe" / "ms_liqe.pt"
    assert default_checkpoint() == expected
    with pytest.raises(WeightsMissingError, match="dlmap train-msliqe --install") as error:
        MSLIQEPrior(config=TINY)
    assert str(expected) in str(error.value) and "\n" not in str(error.value)
    with pytest.raises(WeightsMissingError, match="nowhere.pt"):
        MSLIQEPrior(checkpoint=tmp_path / "nowhere.pt", config=TINY, allow_random=True)

    prior = create_prior("ms-liqe", config=TINY, allow_random=True)
    images = photo(224, "astronaut", torch.float32)[None]
    assert prior.info.higher_is_better and prior.info.score_range == (1.0, 5.0)
    assert 0 < prior.calibrated(images, "printed").item() < 1
    assert not prior.info.calibration_fitted  # random weights: the shipped fit does not apply

    expected.parent.mkdir()
    torch.save(tiny.clip.state_dict(), expected)
    found = create_prior("ms-liqe", config=TINY).double()
    assert torch.equal(found(images.double()), tiny(images.double()))
    assert found.model.text_features() is found.model.text_features()  # frozen: cached


def test_default_config_is_quickgelu_vit_b_32():
    config = MSLIQEConfig()
    assert config.clip == "ViT-B-32-quickgelu" and config.temperature == 2.0
    assert config.num_views == 15 and config.scales == (1.0, 0.75)
    assert config.prompts[0] == "a photo with bad quality"
    assert config.prompts[4] == "a photo with perfect quality"
    model = MSLIQE.from_config(config)  # random init, offline
    activations = {type(m) for m in model.clip.visual.modules()}
    assert open_clip.transformer.QuickGELU in activations
    assert model.clip.visual.conv1.kernel_size == (32, 32)
    with torch.no_grad():
        q = model(torch.rand(1, 3, 224, 224))
    assert q.shape == (1,) and 1 <= q.item() <= 5


@pytest.mark.parametrize("first", ["dlmap", "pyiqa"])
def test_pyiqa_builds_ms_liqe_once_dlmap_is_imported(tmp_path, first):
    """pyiqa.create_metric("ms-liqe", pretrained_model_path=CKPT) scores as dlmap's prior
    does, whichever of dlmap and pyiqa is imported first (a fresh interpreter each)."""
    import dataclasses
    import json
    import subprocess
    import sys

    from helpers import photo_png

    torch.manual_seed(0)
    model = MSLIQE.from_config(TINY)
    checkpoint = tmp_path / "ms_liqe.pt"
    config = json.loads(json.dumps(dataclasses.asdict(model.config)))
    torch.save({"state_dict": model.clip.state_dict(), "config": config}, checkpoint)
    image = photo_png(tmp_path, "coffee", size=224)
    ours = create_prior("ms-liqe", checkpoint=checkpoint)(image).item()
    second = "pyiqa" if first == "dlmap" else "dlmap"
    script = (
        f"import {first}, {second}\n"
        "metric = pyiqa.create_metric('ms-liqe', pretrained_model_path=r'%s', device='cpu')\n"
        "print('ms-liqe' in pyiqa.list_models(metric_mode='NR'), metric(r'%s').item())"
    ) % (checkpoint, image)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    listed, score = run.stdout.split()
    assert listed == "True" and float(score) == pytest.approx(ours, rel=1e-5)
