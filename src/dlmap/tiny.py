"""Tiny, randomly initialised backbones: SD2's network classes at toy size, from config dicts.

They run the same code paths as the real backbones (SeeSR's image cross-attention and the
RAM/DAPE Swin embedder included) in seconds on a CPU, for tests, the demo and benchmarks.
Their outputs are not images anyone would want: a random VAE cannot reconstruct a photograph.
"""

from __future__ import annotations

import torch
from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel

from dlmap.backbones import Backbone

KINDS = ("seesr", "controlnet", "vanilla")

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


def tiny_controlnet(unet: UNet2DConditionModel, kind: str = "seesr") -> ControlNetModel:
    """A ControlNet copied from ``unet``, with its zero convolutions randomised (N(0, 0.02^2))
    so that the conditioning path is exercised; SeeSR's image cross-attention if ``seesr``."""
    if kind == "seesr":
        from dlmap.seesr import SeeSRControlNetModel

        net = SeeSRControlNetModel.from_unet(
            unet, image_cross_attention_dim=TINY_DAPE["embedding_dim"], **TINY_CONTROLNET
        )
    else:
        net = ControlNetModel.from_unet(unet, **TINY_CONTROLNET)
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
) -> Backbone:
    """A tiny backbone of ``kind`` (one of ``KINDS``), randomly initialised from ``seed``."""
    from transformers import CLIPTextConfig, CLIPTextModel

    if kind not in KINDS:
        raise ValueError(f"unknown tiny backbone {kind!r}; choose one of {', '.join(KINDS)}")
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**(unet_config or TINY_UNET))
    vae = AutoencoderKL(**TINY_VAE)
    text_encoder = CLIPTextModel(CLIPTextConfig(**TINY_TEXT_ENCODER))
    net = tiny_controlnet(unet, kind) if kind != "vanilla" else None
    embedder = None
    if kind == "seesr":
        from dlmap.dape import ImageEmbedder

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
