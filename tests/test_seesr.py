"""SeeSR's image-attention ControlNet: strict key mapping, ControlNet properties, loading."""

import json
import shutil

import pytest
import torch
from diffusers import ControlNetModel, UNet2DConditionModel
from helpers import (
    edit_checkpoint,
    load_backbone,
    photo,
    write_tiny_sd2_folder,
    write_tiny_seesr_files,
)

from dlmap.diffusion import backbones, tiny
from dlmap.diffusion.loading import load_strict
from dlmap.diffusion.seesr import SEESR_UNET_EXTRA_KEYS, SeeSRControlNetModel
from dlmap.enhance import solver
from dlmap.files import sha256_file
from dlmap.inversion.config import InversionConfig
from dlmap.priors.registry import create_prior
from dlmap.settings import SolverConfig
from dlmap.weights import cache as weights
from dlmap.weights import catalogue
from dlmap.weights.cache import WeightKeyError


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Tiny SD2, SeeSR, RAM and DAPE files laid out and named as released."""
    folder = tmp_path_factory.mktemp("released")
    (folder / "sd2").mkdir()
    write_tiny_sd2_folder(folder / "sd2")
    written = write_tiny_seesr_files(folder)
    return folder, written


def _load(folder, cache):
    return load_backbone(
        "sd2-seesr",
        sd2=folder / "sd2",
        seesr=folder / "seesr",
        dape=folder / "dape",
        ram=folder / "ram",
        image_embedder_config=tiny.TINY_DAPE,
        cache=cache,
        dtype="float64",
    )


def _inputs(batch=1, size=64, dtype=torch.float64):
    generator = torch.Generator().manual_seed(3)
    latent = torch.randn(batch, 4, size // 8, size // 8, generator=generator, dtype=dtype)
    images = torch.stack([photo(size, "astronaut", dtype), photo(size, "coffee", dtype)])[:batch]
    return latent, images


def test_seesr_checkpoint_round_trips_with_strict_loading(files, tmp_path):
    folder, written = files
    loaded = load_strict(SeeSRControlNetModel, folder / "seesr" / "controlnet")
    ours, theirs = written.controlnet.state_dict(), loaded.state_dict()
    assert list(ours) == list(theirs)
    assert all(torch.equal(ours[key], theirs[key]) for key in ours)
    # SeeSR's names: e.g. down_blocks.0.image_attentions.0...attn2.to_k.weight, mid_block too
    assert "down_blocks.0.image_attentions.0.transformer_blocks.0.attn2.to_k.weight" in theirs
    assert any(key.startswith("mid_block.image_attentions.0.") for key in theirs)
    assert json.loads((folder / "seesr/controlnet/config.json").read_text())["_class_name"] == (
        "ControlNetModel"
    )


@pytest.mark.parametrize(
    "edit, message",
    [
        (dict(add="down_blocks.0.image_attentions.0.extra.weight"), r"1 unexpected keys \(down_"),
        (
            dict(drop="mid_block.image_attentions.0.proj_out.weight"),
            r"1 missing keys \(mid_block.image_attentions.0.proj_out.weight\)",
        ),
    ],
)
def test_controlnet_checkpoint_with_one_extra_or_missing_key_is_rejected(
    files, tmp_path, edit, message
):
    folder, written = files
    written.controlnet.save_pretrained(tmp_path)
    edit_checkpoint(tmp_path, **edit)
    with pytest.raises(WeightKeyError, match=message):
        load_strict(SeeSRControlNetModel, tmp_path)


def test_stock_controlnet_class_would_drop_the_image_attentions(files):
    folder, _ = files
    with pytest.raises(WeightKeyError, match=r"unexpected keys \(.*image_attentions"):
        load_strict(ControlNetModel, folder / "seesr" / "controlnet")


def test_seesr_unet_loads_as_the_stock_unet_dropping_only_image_attentions(files, tmp_path):
    folder, written = files
    unet = load_strict(UNet2DConditionModel, folder / "seesr", "unet", ignore=SEESR_UNET_EXTRA_KEYS)
    for key, value in written.unet.state_dict().items():
        assert torch.equal(unet.state_dict()[key], value), key
    # any other unexpected key still fails, and so does a UNet without image attentions
    written.unet.save_pretrained(tmp_path)
    with pytest.raises(WeightKeyError, match="found none"):
        load_strict(UNet2DConditionModel, tmp_path, ignore=SEESR_UNET_EXTRA_KEYS)
    edit_checkpoint(tmp_path, add="mid_block.image_attentions.0.norm.weight")
    edit_checkpoint(tmp_path, add="conv_in.extra")
    with pytest.raises(WeightKeyError, match=r"1 unexpected keys \(conv_in.extra\)"):
        load_strict(UNet2DConditionModel, tmp_path, ignore=SEESR_UNET_EXTRA_KEYS)


def test_sd2_seesr_backbone_loads_every_released_file_strictly(files, tmp_path):
    folder, written = files
    backbone = _load(folder, tmp_path / "cache")
    assert backbone.name == "sd2-seesr" and backbone.uses_image_embeddings
    for part in ("unet", "controlnet", "image_embedder"):
        ours = getattr(written, part).state_dict()
        theirs = getattr(backbone, part).state_dict()
        assert all(torch.equal(ours[k].double(), theirs[k]) for k in ours), part
    assert not any(p.requires_grad for p in backbone.parameters())
    # provenance for result files: every weight file with its recorded sha256
    assert set(backbone.provenance) == {"sd2-base", "seesr", "ram-swin-large", "dape"}
    dape_record = backbone.provenance["dape"]
    assert dape_record["sha256"]["DAPE.pth"] == sha256_file(folder / "dape" / "DAPE.pth")


def test_zero_controlnet_leaves_the_unet_prediction_unchanged_and_a_perturbed_one_does_not():
    seesr = tiny.tiny_backbone("seesr", dtype=torch.float64)
    vanilla = backbones.Backbone("unet only", seesr.unet, seesr.vae, seesr.prompt_embedding)
    latent, images = _inputs()
    with torch.no_grad():
        for name, param in seesr.controlnet.named_parameters():
            if any(module in name for module in tiny.ZERO_MODULES):
                param.zero_()
    expected = vanilla.eps(latent, 500, vanilla.condition(images))
    assert torch.equal(seesr.eps(latent, 500, seesr.condition(images)), expected)
    with torch.no_grad():
        seesr.controlnet.controlnet_mid_block.weight.normal_(0, 0.02)
    assert (seesr.eps(latent, 500, seesr.condition(images)) - expected).abs().max() > 1e-6


def test_image_embeddings_change_the_controlnet_output_only_with_image_attention():
    seesr = tiny.tiny_backbone("seesr", dtype=torch.float64)
    latent, images = _inputs()
    cond = seesr.condition(images)
    other = torch.randn_like(cond.image_embeddings)
    net = seesr.controlnet

    def run(net, embeddings):
        text, control = cond.text, cond.control_image
        return net(
            latent, 500, text, control, image_encoder_hidden_states=embeddings, return_dict=False
        )

    down_a, mid_a = run(net, cond.image_embeddings)
    down_b, mid_b = run(net, other)
    assert (mid_a - mid_b).abs().max() > 1e-6
    assert max((a - b).abs().max() for a, b in zip(down_a, down_b, strict=True)) > 1e-6

    config = {k: v for k, v in net.config.items() if not k.startswith("_")}
    off = SeeSRControlNetModel(**{**config, "use_image_cross_attention": False}).double()
    off.load_state_dict(
        {k: v for k, v in net.state_dict().items() if ".image_attentions." not in k}
    )
    down_a, mid_a = run(off, cond.image_embeddings)
    down_b, mid_b = run(off, other)
    assert torch.equal(mid_a, mid_b)
    assert all(torch.equal(a, b) for a, b in zip(down_a, down_b, strict=True))


def test_with_silent_image_attentions_it_equals_diffusers_stock_controlnet():
    """Zeroing each image attention's output projection (a residual branch) must give
    diffusers' own ControlNet forward: checks our per-layer order and residual plumbing."""
    seesr = tiny.tiny_backbone("seesr", dtype=torch.float64)
    net = seesr.controlnet
    with torch.no_grad():
        for name, param in net.named_parameters():
            if ".image_attentions." in name and ".proj_out." in name:
                param.zero_()
    config = {k: v for k, v in net.config.items() if not k.startswith("_")}
    config.pop("use_image_cross_attention"), config.pop("image_cross_attention_dim")
    stock = ControlNetModel(**config).double()
    stock.load_state_dict(
        {k: v for k, v in net.state_dict().items() if ".image_attentions." not in k}
    )
    latent, images = _inputs(batch=2)
    cond = seesr.condition(images)
    ours = net(latent, 300, cond.text, images, image_encoder_hidden_states=cond.image_embeddings)
    theirs = stock(latent, 300, cond.text, images)
    assert torch.allclose(ours.mid_block_res_sample, theirs.mid_block_res_sample, atol=1e-12)
    for a, b in zip(ours.down_block_res_samples, theirs.down_block_res_samples, strict=True):
        assert torch.allclose(a, b, atol=1e-12)


def test_image_embeddings_are_computed_once_per_image_per_solve(tiny32):
    calls = []
    hook = tiny32.image_embedder.register_forward_hook(
        lambda module, args, output: calls.append(args[0].shape[0])
    )
    try:
        _, images = _inputs(batch=2, dtype=torch.float32)
        config = SolverConfig(iters=3)
        prior = create_prior("colorfulness")
        solver.map_solve(tiny32, prior, images, config, InversionConfig(steps=3), quiet=True)
    finally:
        hook.remove()
    assert calls == [2]


def test_missing_image_embeddings_are_an_error(tiny32):
    latent, images = _inputs(dtype=torch.float32)
    cond = tiny32.condition(images)
    cond.image_embeddings = None
    with pytest.raises(ValueError, match="needs image embeddings"):
        tiny32.eps(latent, 500, cond)
    with pytest.raises(ValueError, match="condition for 1 images, latents for 2"):
        tiny32.eps(torch.cat([latent, latent]), 500, tiny32.condition(images))


def test_image_attention_is_refused_for_configurations_it_does_not_cover(tiny32):
    config = {k: v for k, v in tiny32.controlnet.config.items() if not k.startswith("_")}
    with pytest.raises(ValueError, match="class_embed_type='timestep'"):
        SeeSRControlNetModel(**{**config, "class_embed_type": "timestep"})


def test_missing_seesr_files_fail_fast_with_the_manual_steps(files, tmp_path):
    folder, _ = files
    with pytest.raises(weights.WeightsMissingError) as error:
        load_backbone("sd2-seesr", sd2=folder / "sd2", cache=tmp_path)
    message = str(error.value)
    assert "\n" not in message and catalogue.SEESR_DRIVE in message
    assert str(tmp_path / "seesr") in message and "controlnet/config.json" in message
    with pytest.raises(weights.WeightsMissingError, match=r"ram_swin_large_14m\.pth.*recognize"):
        load_backbone("sd2-seesr", sd2=folder / "sd2", seesr=folder / "seesr", cache=tmp_path)


def test_a_controlnet_without_image_attention_is_not_accepted_as_seesrs(files, tmp_path):
    folder, _ = files
    shutil.copytree(folder, tmp_path / "copy")
    stock = tiny.tiny_backbone("controlnet", seed=2).controlnet
    shutil.rmtree(tmp_path / "copy" / "seesr" / "controlnet")
    stock.save_pretrained(tmp_path / "copy" / "seesr" / "controlnet")
    with pytest.raises(WeightKeyError, match="this is not SeeSR's ControlNet"):
        _load(tmp_path / "copy", tmp_path / "cache")


def test_image_embeddings_of_the_wrong_width_are_a_one_line_key_error(files, tmp_path):
    folder, _ = files
    shutil.copytree(folder / "seesr" / "controlnet", tmp_path / "controlnet")
    config = json.loads((tmp_path / "controlnet" / "config.json").read_text())
    del config["image_cross_attention_dim"]  # as in SeeSR's file: 512, not the toy 16
    (tmp_path / "controlnet" / "config.json").write_text(json.dumps(config))
    with pytest.raises(WeightKeyError) as error:
        load_strict(SeeSRControlNetModel, tmp_path / "controlnet")
    message = str(error.value)
    assert "\n" not in message and "size mismatch for down_blocks.0.image_attentions" in message
