"""Helpers the tests share (images, tiny checkpoints, running the CLI); fixtures stay in
conftest.py."""

from __future__ import annotations

import json

import torch

from dlmap.diffusion import dape, tiny
from dlmap.priors import zoo


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


def edit_checkpoint(folder, drop=None, add=None) -> None:
    """Drop the key ``drop`` from, or add a key ``add`` to, a diffusers weights file."""
    from safetensors.torch import load_file, save_file

    path = folder / "diffusion_pytorch_model.safetensors"
    state = load_file(path)
    if drop:
        del state[drop]
    if add:
        state[add] = torch.zeros(2)
    save_file(state, path)


def write_tiny_sd2_folder(folder) -> None:
    """SD2-base's diffusers layout (unet, vae, text_encoder, tokenizer) with tiny random nets.

    Exercises the real loading path offline: strict weight loading, the tokenizer and the
    text encoder's empty-prompt embedding.
    """
    from transformers import CLIPTextConfig, CLIPTextModel

    backbone = tiny.tiny_backbone("controlnet", seed=1)
    backbone.unet.save_pretrained(folder / "unet")
    backbone.vae.save_pretrained(folder / "vae")
    backbone.controlnet.save_pretrained(folder / "controlnet")
    CLIPTextModel(CLIPTextConfig(**tiny.TINY_TEXT_ENCODER)).save_pretrained(folder / "text_encoder")
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


def write_tiny_seesr_files(folder, seed: int = 2):
    """SeeSR's, RAM's and DAPE's released files at toy size, named and laid out as theirs.

    <folder>/seesr/{controlnet,unet}: diffusers folders as SeeSR's training script saves them
    (``_class_name`` ControlNetModel, ``use_image_cross_attention`` true; the UNet holds
    extra ``image_attentions`` keys); <folder>/ram/ram_swin_large_14m.pth: RAM's Swin under
    ``visual_encoder.`` with its buffers, ``image_proj`` and a tagging head, wrapped in
    ``model``; <folder>/dape/DAPE.pth: only LoRA tensors, including one of the text heads.
    Returns the backbone whose weights were written, with the adapters merged.
    """
    from safetensors.torch import load_file, save_file

    backbone = tiny.tiny_backbone("seesr", seed=seed)
    control = folder / "seesr" / "controlnet"
    backbone.controlnet.save_pretrained(control)
    config = json.loads((control / "config.json").read_text())
    config.update({"_class_name": "ControlNetModel", "_diffusers_version": "0.21.0"})
    # SeeSR's config has no image_cross_attention_dim (its code hard-codes 512); ours must
    # keep it, since the toy embeddings are 16 wide.
    (control / "config.json").write_text(json.dumps(config))

    unet = folder / "seesr" / "unet"
    backbone.unet.save_pretrained(unet)
    state = load_file(unet / "diffusion_pytorch_model.safetensors")
    for key, value in backbone.controlnet.state_dict().items():
        if ".image_attentions." in key:
            state[key] = value.clone()
            if key.startswith("down_blocks.0."):
                state["up_blocks.1." + key.removeprefix("down_blocks.0.")] = value.clone()
    save_file(state, unet / "diffusion_pytorch_model.safetensors")
    config = json.loads((unet / "config.json").read_text())
    (unet / "config.json").write_text(json.dumps({**config, "use_image_cross_attention": True}))

    embedder = backbone.image_embedder
    generator = torch.Generator().manual_seed(seed)
    adapters = {}
    for name, module in embedder.encoder.named_modules():
        if name.endswith(".attn"):
            dim = module.qkv.in_features
            prefix = f"visual_encoder.{name.replace('.downsample', '')}.qkv"
            adapters[f"{prefix}.lora_A"] = torch.randn(2 * dape.LORA_RANK, dim, generator=generator)
            adapters[f"{prefix}.lora_B"] = torch.randn(2 * dim, dape.LORA_RANK, generator=generator)
    adapters["tag_encoder.encoder.layer.0.crossattention.self.query.lora_A"] = torch.zeros(8, 4)
    ram = dape.embedder_to_ram_state(embedder)
    for name, module in embedder.encoder.named_modules():
        if name.endswith(".attn"):
            ram[f"visual_encoder.{name}.relative_position_index"] = module.relative_position_index
    ram["tag_encoder.embeddings.word_embeddings.weight"] = torch.zeros(4, 4)
    ram["label_embed"] = torch.zeros(3, 4)
    (folder / "ram").mkdir()
    (folder / "dape").mkdir()
    torch.save({"model": ram}, folder / "ram" / "ram_swin_large_14m.pth")
    torch.save(adapters, folder / "dape" / "DAPE.pth")
    merged, _ = dape.ram_to_embedder_state(ram, adapters, embedder)
    embedder.load_state_dict(merged)
    return backbone


def build_prior(name: str, cache):
    """A registered prior built for tests (under ``offline_priors``): small random MS-LIQE."""
    from dlmap.msliqe import model as msliqe
    from dlmap.priors import registry as priors

    if name in zoo.PYIQA_MODELS or name == "niqe":
        return priors.create_prior(name, cache=cache)
    if name == "ms-liqe":
        config = msliqe.MSLIQEConfig(clip=msliqe.TINY_CLIP)
        return priors.create_prior(name, config=config, allow_random=True)
    return priors.create_prior(name)


def run_cli(argv, capsys):
    """``dlmap ARGV`` in this process: (exit code, stdout, stderr)."""
    from dlmap.cli import main as cli

    try:
        code = cli.main([str(a) for a in argv])
    except SystemExit as exit:  # argparse's own errors
        code = exit.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def photo_png(folder, name: str = "astronaut", size: int = 96):
    """A bundled photograph written as FOLDER/NAME.png (8-bit), the way users hand in images."""
    from dlmap.images import save_png_atomic

    path = folder / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_png_atomic(photo(size, name, torch.float32), path)
    return path
