"""Tiny, randomly initialised backbones: SD2's network classes at toy size, from config dicts.

They run the same code paths as the real backbones (SeeSR's image cross-attention and the
RAM/DAPE Swin embedder included) in seconds on a CPU, for tests, the demo and benchmarks.
With their random VAE their outputs are noise (a random decoder cannot reconstruct a
photograph); given the VAE trained by ``dlmap.diffusion.tiny_vae`` (``vae=``), latent MAP returns
photographs changed by the prior, while the UNet and ControlNet stay random.
"""

from __future__ import annotations

import math

import torch
from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel

from dlmap.diffusion.backbones import Backbone
from dlmap.diffusion.specs import BACKBONE_SPECS
from dlmap.errors import InputError

KINDS = tuple(spec.tiny_kind for spec in BACKBONE_SPECS.values() if spec.tiny)

TINY_UNET = dict(
    sample_size=16,
    in_channels=4,
    out_channels=4,
    block_out_channels=(32, 64),
    layers_per_block=1,
    down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=32,
    attention_head_dim=(2, 4),
    norm_num_groups=8,
)
TINY_UNET_4X = dict(
    TINY_UNET,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
)
"""The tiny UNet under the trained 4x VAE (``dlmap.diffusion.tiny_vae``): its latents have 4 times
the
positions of the 8x VAE's, so its cross- and self-attention move to the lower of its two
resolutions, where they run at the size they ran at under the 8x VAE (28x28 for a 224-pixel
image) instead of at 16 times the attention cost."""
TINY_VAE = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    block_out_channels=(8, 16, 16, 16),
    layers_per_block=1,
    latent_channels=4,
    norm_num_groups=8,
    sample_size=128,
    scaling_factor=0.18215,
)
TINY_CONTROLNET = dict(conditioning_embedding_out_channels=(8, 8, 16, 16))
"""Four entries: the conditioning image is downsampled 8x, as the VAE's latents are."""
TINY_TEXT_ENCODER = dict(
    vocab_size=1000,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=2,
    max_position_embeddings=77,
    bos_token_id=998,
    eos_token_id=999,
    pad_token_id=0,
)
TINY_DAPE = dict(
    image_size=64,
    patch_size=4,
    embed_dim=16,
    depths=(2, 2),
    num_heads=(1, 2),
    window_size=4,
    embedding_dim=16,
)
"""RAM's Swin at toy size: 64x64 input, 8x8 final tokens (65 embeddings of width 16)."""

ZERO_MODULES = ("controlnet_down_blocks", "controlnet_mid_block", "cond_embedding.conv_out")
"""A ControlNet's zero convolutions: its output convolutions and the last layer of its
conditioning embedding. Zero in a fresh ControlNet, so that it adds exactly nothing."""


def conditioning_channels(factor: int) -> tuple[int, ...]:
    """A ControlNet conditioning embedding that downsamples by ``factor`` (a power of two):
    one entry more than the number of halvings, as diffusers builds it; (8, 8, 16, 16) at 8x."""
    halvings = int(math.log2(factor))
    if factor < 1 or 2**halvings != factor:
        raise InputError(f"the VAE's factor must be a power of two, got {factor}")
    entries = halvings + 1
    return (8,) * (entries // 2) + (16,) * (entries - entries // 2)


def tiny_controlnet(
    unet: UNet2DConditionModel, kind: str = "seesr", factor: int = 8
) -> ControlNetModel:
    """A ControlNet copied from ``unet``, with its zero convolutions randomised (N(0, 0.02^2))
    so that the conditioning path is exercised; SeeSR's image cross-attention if ``seesr``.
    ``factor``: the VAE's downsampling, which the conditioning embedding must match."""
    settings = {
        **TINY_CONTROLNET,
        "conditioning_embedding_out_channels": conditioning_channels(factor),
    }
    if kind == "seesr":
        from dlmap.diffusion.seesr import SeeSRControlNetModel

        net = SeeSRControlNetModel.from_unet(
            unet, image_cross_attention_dim=TINY_DAPE["embedding_dim"], **settings
        )
    else:
        net = ControlNetModel.from_unet(unet, **settings)
    with torch.no_grad():
        for name, param in net.named_parameters():
            if any(module in name for module in ZERO_MODULES):
                param.normal_(0.0, 0.02)
    return net


def tiny_backbone(
    kind: str = "seesr",
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    encode_mode: str = "sample",
    unet_config: dict | None = None,
    vae: AutoencoderKL | None = None,
) -> Backbone:
    """A tiny backbone of ``kind`` (one of ``KINDS``), randomly initialised from ``seed``.

    vae: a trained VAE (``dlmap.diffusion.tiny_vae.load_trained_vae``) instead of the random one.
    The
    ControlNet's conditioning embedding follows the VAE's factor, and under a VAE that
    downsamples less than 8x the UNet (and the ControlNet copied from it) attends at its
    lower resolution (``TINY_UNET_4X``). Every network is drawn from ``seed`` (the random VAE
    too, then replaced)."""
    from transformers import CLIPTextConfig, CLIPTextModel

    if kind not in KINDS:
        raise InputError(f"unknown tiny backbone {kind!r}; choose one of {', '.join(KINDS)}")
    torch.manual_seed(seed)
    factor = 8 if vae is None else 2 ** (len(vae.config.block_out_channels) - 1)
    unet = UNet2DConditionModel(**(unet_config or (TINY_UNET_4X if factor < 8 else TINY_UNET)))
    random_vae = AutoencoderKL(**TINY_VAE)
    vae = random_vae if vae is None else vae
    text_encoder = CLIPTextModel(CLIPTextConfig(**TINY_TEXT_ENCODER))
    net = tiny_controlnet(unet, kind, factor) if kind != "vanilla" else None
    embedder = None
    if kind == "seesr":
        from dlmap.diffusion.dape import ImageEmbedder

        embedder = ImageEmbedder(TINY_DAPE)
    # An empty prompt is [BOS, EOS, PAD...] (SD2's tokenizer pads with id 0).
    ids = torch.zeros(1, TINY_TEXT_ENCODER["max_position_embeddings"], dtype=torch.long)
    ids[0, 0], ids[0, 1] = TINY_TEXT_ENCODER["bos_token_id"], TINY_TEXT_ENCODER["eos_token_id"]
    with torch.no_grad():
        prompt = text_encoder(ids)[0]
    backbone = Backbone(
        f"tiny-{kind}",
        unet,
        vae,
        prompt,
        net,
        image_embedder=embedder,
        encode_mode=encode_mode,
        reduced=True,
    )
    return backbone.to(dtype)
