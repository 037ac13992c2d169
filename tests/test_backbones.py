"""Backbones: strict weight loading, missing weights, the ControlNet path, VAE encoding."""

import pytest
import torch
from diffusers import UNet2DConditionModel
from helpers import edit_checkpoint, load_backbone, photo, write_tiny_sd2_folder

from dlmap.diffusion import tiny
from dlmap.diffusion.loading import load_strict
from dlmap.weights import cache as weights
from dlmap.weights import catalogue
from dlmap.weights.cache import WeightKeyError


@pytest.fixture(scope="module")
def sd2_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sd2")
    write_tiny_sd2_folder(folder)
    return folder


def test_real_loading_path_builds_both_backbones_from_a_local_folder(sd2_folder):
    vanilla = load_backbone("sd2", sd2=sd2_folder)
    control = load_backbone("sd2-controlnet", sd2=sd2_folder, controlnet=sd2_folder / "controlnet")
    assert vanilla.controlnet is None and control.controlnet is not None
    assert control.prompt_embedding.shape == (1, 77, 32)
    assert not any(p.requires_grad for p in control.parameters())
    # the empty prompt went through the tokenizer (BOS, EOS, then "!" padding) and encoder
    assert torch.isfinite(control.prompt_embedding).all()


def test_strict_loader_round_trips_weights(tmp_path, tiny32):
    tiny32.unet.save_pretrained(tmp_path)
    loaded = load_strict(UNet2DConditionModel, tmp_path)
    for (name, ours), theirs in zip(
        tiny32.unet.state_dict().items(), loaded.state_dict().values(), strict=True
    ):
        assert torch.equal(ours, theirs), name


def test_strict_loader_rejects_a_missing_key_naming_it(tmp_path, tiny32):
    tiny32.unet.save_pretrained(tmp_path)
    edit_checkpoint(tmp_path, drop="conv_out.weight")
    with pytest.raises(WeightKeyError, match=r"1 missing keys \(conv_out.weight\)"):
        load_strict(UNet2DConditionModel, tmp_path)


def test_strict_loader_rejects_an_unexpected_key_naming_it(tmp_path, tiny32):
    tiny32.unet.save_pretrained(tmp_path)
    edit_checkpoint(tmp_path, add="image_attentions.0.weight")
    with pytest.raises(WeightKeyError, match=r"unexpected keys \(image_attentions"):
        load_strict(UNet2DConditionModel, tmp_path)


def test_missing_weights_fail_fast_naming_files_command_and_folder(tmp_path):
    with pytest.raises(weights.WeightsMissingError) as error:
        load_backbone("sd2-controlnet", cache=tmp_path)
    message = str(error.value)
    assert "\n" not in message
    assert str(tmp_path / "sd2-base") in message
    assert "unet/diffusion_pytorch_model.safetensors" in message
    assert "dlmap weights fetch sd2-base" in message
    assert "stabilityai/stable-diffusion-2-base" in message


def test_missing_controlnet_names_its_folder(tmp_path, sd2_folder):
    with pytest.raises(weights.WeightsMissingError, match="ControlNet.*config.json"):
        load_backbone("sd2-controlnet", sd2=sd2_folder, cache=tmp_path)


def test_uncached_hub_id_is_reported_without_downloading(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(weights.WeightsMissingError, match="dlmap weights fetch sd2-base"):
        catalogue.locate("sd2-base", "someone/not-cached")


def test_cache_folder_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(weights.CACHE_ENV, str(tmp_path))
    assert weights.cache_dir() == tmp_path
    assert weights.cache_dir("/elsewhere") == weights.Path("/elsewhere")


def test_unknown_backbone_is_rejected():
    with pytest.raises(ValueError, match="backbone must be one of sd2-seesr, .*, got 'sd3'"):
        load_backbone("sd3")


def test_control_image_changes_the_noise_prediction(tiny64):
    latent = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0)).double()
    first = tiny64.condition(photo(64, "astronaut")[None])
    second = tiny64.condition(photo(64, "coffee")[None])
    eps_a, eps_b = tiny64.eps(latent, 500, first), tiny64.eps(latent, 500, second)
    assert (eps_a - eps_b).abs().max() > 1e-6
    assert eps_a.dtype == torch.float64 and eps_a.shape == latent.shape


def test_vanilla_backbone_ignores_the_input_image(tiny_vanilla64):
    latent = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0)).double()
    first = tiny_vanilla64.condition(photo(64, "astronaut")[None])
    second = tiny_vanilla64.condition(photo(64, "coffee")[None])
    assert first.control_image is None
    assert torch.equal(
        tiny_vanilla64.eps(latent, 500, first), tiny_vanilla64.eps(latent, 500, second)
    )


def test_vae_posterior_sample_is_seeded_per_image(tiny64):
    images = torch.stack([photo(64, "astronaut"), photo(64, "coffee")])
    batch = tiny64.encode(images, seeds=[3, 4])
    alone = tiny64.encode(images[1:], seeds=[4])
    assert (batch[1] - alone[0]).abs().max() < 1e-12
    assert not torch.equal(
        tiny64.encode(images[:1], seeds=[3]), tiny64.encode(images[:1], seeds=[5])
    )
    with pytest.raises(ValueError, match="one seed per image"):
        tiny64.encode(images)


def test_vae_mean_mode_is_deterministic_and_differs_from_a_sample():
    mean_backbone = tiny.tiny_backbone(dtype=torch.float64, encode_mode="mean")
    sample_backbone = tiny.tiny_backbone(dtype=torch.float64, encode_mode="sample")
    image = photo(64, "astronaut")[None]
    assert torch.equal(mean_backbone.encode(image), mean_backbone.encode(image, seeds=[9]))
    assert not torch.equal(mean_backbone.encode(image), sample_backbone.encode(image, seeds=[0]))


def test_decoder_checkpointing_leaves_the_gradient_unchanged():
    grads = []
    for checkpoint in (True, False):
        backbone = tiny.tiny_backbone(dtype=torch.float64)
        if not checkpoint:
            backbone.vae.disable_gradient_checkpointing()
        assert backbone.vae.decoder.gradient_checkpointing is checkpoint
        latent = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0)).double()
        latent.requires_grad_(True)
        (grad,) = torch.autograd.grad(backbone.decode(latent).square().sum(), latent)
        grads.append(grad)
    assert torch.allclose(grads[0], grads[1], rtol=1e-12, atol=0)
