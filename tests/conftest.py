"""Shared fixtures: tiny random backbones of SD2's classes and a tiny SD2-layout folder."""

from __future__ import annotations

import json

import pytest
import torch

from dlmap import backbones


@pytest.fixture(scope="session")
def tiny64():
    """Tiny UNet + ControlNet + VAE in float64 (exactness tests)."""
    return backbones.tiny_backbone(controlnet=True, seed=0, dtype=torch.float64)


@pytest.fixture(scope="session")
def tiny32():
    return backbones.tiny_backbone(controlnet=True, seed=0, dtype=torch.float32)


@pytest.fixture(scope="session")
def tiny_vanilla64():
    return backbones.tiny_backbone(controlnet=False, seed=0, dtype=torch.float64)


def photo(size: int = 64, name: str = "astronaut", dtype=torch.float64) -> torch.Tensor:
    """A real photograph bundled with scikit-image, as (3, size, size) in [0, 1]."""
    import numpy as np
    from skimage import data

    from dlmap.images import center_crop_resize

    pixels = getattr(data, name)()
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[..., None], 3, axis=2)
    resized = center_crop_resize(pixels.astype("float32") / 255, size)
    return torch.from_numpy(resized).permute(2, 0, 1).to(dtype)


def write_tiny_sd2_folder(folder) -> None:
    """SD2-base's diffusers layout (unet, vae, text_encoder, tokenizer) with tiny random nets.

    Exercises the real loading path offline: strict weight loading, the tokenizer and the
    text encoder's empty-prompt embedding.
    """
    from transformers import CLIPTextConfig, CLIPTextModel

    tiny = backbones.tiny_backbone(controlnet=True, seed=1)
    tiny.unet.save_pretrained(folder / "unet")
    tiny.vae.save_pretrained(folder / "vae")
    tiny.controlnet.save_pretrained(folder / "controlnet")
    CLIPTextModel(CLIPTextConfig(**backbones.TINY_TEXT_ENCODER)).save_pretrained(
        folder / "text_encoder"
    )
    tokenizer = folder / "tokenizer"
    tokenizer.mkdir()
    vocab = {"!": 0, **{f"tok{i}</w>": i for i in range(1, 998)}}
    vocab.update({"<|startoftext|>": 998, "<|endoftext|>": 999})
    (tokenizer / "vocab.json").write_text(json.dumps(vocab))
    (tokenizer / "merges.txt").write_text("#version: 0.2\n")
    (tokenizer / "special_tokens_map.json").write_text(
        json.dumps(
            {
                "bos_token": "<|startoftext|>",
                "eos_token": "<|endoftext|>",
                "unk_token": "<|endoftext|>",
                "pad_token": "!",
            }
        )
    )
    (tokenizer / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "model_max_length": 77,
                "tokenizer_class": "CLIPTokenizer",
                "bos_token": "<|startoftext|>",
                "eos_token": "<|endoftext|>",
                "unk_token": "<|endoftext|>",
                "pad_token": "!",
            }
        )
    )
