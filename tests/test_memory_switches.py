"""The switches for smaller GPUs (docs/enhance.md, "GPU memory") on the tiny backbones:
checkpointing the UNet's and ControlNet's blocks and slicing the VAE leave a solve unchanged,
bf16 weights halve the networks' memory and stay within the stated tolerance of float32."""

import pytest
import torch
from helpers import load_backbone, photo, relative_error

from dlmap.enhance import solver
from dlmap.errors import InputError
from dlmap.inversion import edict
from dlmap.inversion.config import InversionConfig
from dlmap.priors.registry import create_prior
from dlmap.settings import BackboneSettings, SolverConfig

KINDS = ["tiny-seesr", "tiny-controlnet"]


def images(dtype):
    return torch.stack([photo(64, "astronaut", dtype), photo(64, "coffee", dtype)])


def solve(backbone, batch):
    return solver.map_solve(
        backbone,
        create_prior("sharpness"),
        batch,
        SolverConfig(iters=2),
        InversionConfig(steps=2),
        seeds=[0, 1],
        quiet=True,
    )


def counting(module, attribute):
    """Count the calls of ``module.attribute`` (a function or a bound method)."""
    calls = []
    original = getattr(module, attribute)

    def wrapper(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    setattr(module, attribute, wrapper)
    return calls


@pytest.mark.parametrize("kind", KINDS)
def test_block_checkpointing_leaves_a_solve_bit_for_bit_unchanged(kind):
    plain = solve(load_backbone(kind), images(torch.float32))
    backbone = load_backbone(kind, checkpoint_blocks=True)
    assert backbone.memory_switches == {"checkpoint_blocks": True, "vae_slicing": False}
    blocks = [
        backbone.unet.down_blocks[0],
        backbone.controlnet.down_blocks[0],
        backbone.controlnet.mid_block,
    ]
    calls = [counting(block, "_gradient_checkpointing_func") for block in blocks]
    checkpointed = solve(backbone, images(torch.float32))
    assert all(calls), "the blocks were not recomputed"
    assert torch.equal(checkpointed.x, plain.x) and torch.equal(checkpointed.y, plain.y)
    assert [h["loss"] for h in checkpointed.history] == [h["loss"] for h in plain.history]


def test_vae_slicing_decodes_one_image_at_a_time_with_the_same_result():
    plain = solve(load_backbone("tiny-seesr", dtype="float64"), images(torch.float64))
    backbone = load_backbone("tiny-seesr", dtype="float64", vae_slicing=True)
    calls = counting(backbone.vae, "_decode")
    sliced = solve(backbone, images(torch.float64))
    # Each iteration decodes the batch's 2 x 2 EDICT latents, one by one.
    assert len(calls) >= 2 * 4 and len(calls) % 4 == 0
    assert torch.allclose(sliced.x, plain.x, atol=1e-9, rtol=0)
    assert torch.allclose(sliced.y, plain.y, atol=1e-9, rtol=0)


@pytest.mark.parametrize("kind", KINDS)
def test_bf16_weights_halve_the_networks_and_stay_within_tolerance(kind):
    batch = images(torch.float32)
    full = load_backbone(kind)
    half = load_backbone(kind, autocast="bf16", weights_dtype="bf16")
    for net in (half.unet, half.vae, half.controlnet):
        assert {p.dtype for p in net.parameters()} == {torch.bfloat16}
    size = sum(p.numel() * p.element_size() for p in half.parameters())
    assert size * 2 == sum(p.numel() * p.element_size() for p in full.parameters())
    latent = full.encode(batch, seeds=[0, 1])
    # One noise prediction: bf16's 8-bit mantissa, about 2^-8 per operation (stated: 3%).
    eps = half.eps(latent, 500, half.condition(batch))
    assert eps.dtype == torch.float32  # the latents and EDICT stay in float32
    assert relative_error(eps, full.eps(latent, 500, full.condition(batch))) < 0.03
    # The gradient the solver follows points the same way (stated: cosine > 0.99; measured
    # 0.997-0.9999 here).
    grads = []
    for backbone in (full, half):
        noise = torch.cat([latent, latent]).requires_grad_(True)
        x0, y0 = edict.denoise(
            backbone.eps,
            noise[:2],
            noise[2:],
            edict.make_schedule(InversionConfig(steps=2)),
            backbone.condition(batch),
        )
        loss = (backbone.decode(torch.cat([x0, y0])) - 0.5).square().mean()
        grads.append(torch.autograd.grad(loss, noise)[0].flatten())
    cosine = torch.nn.functional.cosine_similarity(grads[0], grads[1], dim=0).item()
    assert cosine > 0.99
    result = solve(half, batch)
    assert result.x.dtype == torch.float32 and torch.isfinite(result.x).all()


def test_bf16_weights_need_bf16_autocast():
    with pytest.raises(InputError, match="weights_dtype bf16 needs autocast bf16"):
        BackboneSettings(name="tiny-seesr", weights_dtype="bf16")
    with pytest.raises(InputError, match="weights_dtype must be one of same, bf16"):
        BackboneSettings(name="tiny-seesr", weights_dtype="fp8")
    with pytest.raises(InputError, match="checkpoint_blocks must be true or false"):
        BackboneSettings(name="tiny-seesr", checkpoint_blocks="yes")
