"""Random weights written in the released on-disk layouts of SD2-base, SeeSR, RAM and DAPE.

The loaders' tests write toy-sized networks this way, and the full-size rehearsal
(``bench/full_size.py``) writes the paper's sizes, so both exercise one writer. Names,
shapes, dtypes and file formats are the released ones: SD2-base's diffusers folders (its
published configs: ``SD2_UNET``, ``SD2_VAE``, ``SD2_TEXT_ENCODER``), SeeSR's ``controlnet/``
and ``unet/`` folders as its training script saves them (the UNet with its extra
``image_attentions`` keys), RAM's ``ram_swin_large_14m.pth`` (the Swin under
``visual_encoder.``, a few keys of the heads dlmap ignores) and ``DAPE.pth`` (LoRA tensors
only). The values are random: a folder written here holds ``RANDOM_WEIGHTS_MARK``, and a
backbone loaded from it says so in every record.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import torch

from dlmap.diffusion import dape
from dlmap.inversion.config import SD2_SCHEDULER
from dlmap.weights.folders import RANDOM_WEIGHTS_MARK

#: SD2-base's unet/config.json (stabilityai/stable-diffusion-2-base).
SD2_UNET = dict(
    sample_size=64,
    in_channels=4,
    out_channels=4,
    down_block_types=(
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "DownBlock2D",
    ),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    block_out_channels=(320, 640, 1280, 1280),
    layers_per_block=2,
    cross_attention_dim=1024,
    attention_head_dim=(5, 10, 20, 20),
    use_linear_projection=True,
    norm_num_groups=32,
    act_fn="silu",
    flip_sin_to_cos=True,
    freq_shift=0,
    upcast_attention=False,
)
#: SD2-base's vae/config.json.
SD2_VAE = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    block_out_channels=(128, 256, 512, 512),
    layers_per_block=2,
    latent_channels=4,
    norm_num_groups=32,
    act_fn="silu",
    sample_size=512,
    scaling_factor=0.18215,
)
#: SD2-base's text_encoder/config.json (OpenCLIP ViT-H/14's text tower, 23 of its 24 layers).
SD2_TEXT_ENCODER = dict(
    vocab_size=49408,
    hidden_size=1024,
    intermediate_size=4096,
    num_hidden_layers=23,
    num_attention_heads=16,
    max_position_embeddings=77,
    hidden_act="gelu",
    projection_dim=512,
    layer_norm_eps=1e-5,
    bos_token_id=0,
    eos_token_id=2,
    pad_token_id=1,
)
#: Published parameter counts (millions), for the rehearsal's table.
PUBLISHED_PARAMS = {"unet": 865.9, "vae": 83.7, "text_encoder": 340.4, "ms-liqe": 151.3}

_SPECIALS = {
    "bos_token": "<|startoftext|>",
    "eos_token": "<|endoftext|>",
    "unk_token": "<|endoftext|>",
    "pad_token": "!",
}


def mark(folder: Path, what: str) -> None:
    """Stamp ``folder`` as holding random weights (``RANDOM_WEIGHTS_MARK``)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / RANDOM_WEIGHTS_MARK).write_text(f"RANDOM WEIGHTS, a rehearsal ({what})\n")


def toy_tokenizer_files() -> tuple[dict, list[str]]:
    """A 1000-token CLIP-style vocabulary without merges, for the toy text encoder."""
    vocab = {"!": 0, **{f"tok{i}</w>": i for i in range(1, 998)}}
    vocab.update({"<|startoftext|>": 998, "<|endoftext|>": 999})
    return vocab, []


def clip_bpe_tokenizer_files() -> tuple[dict, list[str]]:
    """CLIP's tokenizer (SD2's) as ``vocab.json`` / ``merges.txt`` contents, built from the
    BPE vocabulary open_clip bundles: 256 byte symbols, the same with ``</w>``, 48894
    merges and the two special tokens (49408 entries)."""
    import open_clip.tokenizer as clip_tokenizer

    lines = gzip.open(clip_tokenizer.default_bpe()).read().decode("utf-8").split("\n")
    merges = lines[1 : 49152 - 256 - 2 + 1]
    symbols = list(clip_tokenizer.bytes_to_unicode().values())
    tokens = [*symbols, *(s + "</w>" for s in symbols), *("".join(m.split()) for m in merges)]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {token: index for index, token in enumerate(tokens)}, merges


def write_sd2_folder(folder: Path, unet, vae, text_encoder, vocab: dict, merges: list[str]):
    """SD2-base's diffusers layout: unet, vae, text_encoder, tokenizer, scheduler."""
    folder = Path(folder)
    unet.save_pretrained(folder / "unet")
    vae.save_pretrained(folder / "vae")
    text_encoder.save_pretrained(folder / "text_encoder")
    tokenizer = folder / "tokenizer"
    tokenizer.mkdir(parents=True, exist_ok=True)
    (tokenizer / "vocab.json").write_text(json.dumps(vocab))
    (tokenizer / "merges.txt").write_text("\n".join(["#version: 0.2", *merges]) + "\n")
    (tokenizer / "special_tokens_map.json").write_text(json.dumps(_SPECIALS))
    config = {"model_max_length": 77, "tokenizer_class": "CLIPTokenizer", **_SPECIALS}
    (tokenizer / "tokenizer_config.json").write_text(json.dumps(config))
    scheduler = {"_class_name": "DDIMScheduler", **SD2_SCHEDULER, "steps_offset": 1}
    (folder / "scheduler").mkdir(exist_ok=True)
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(scheduler))


def write_seesr_files(
    folder: Path, unet, controlnet, embedder, seed: int = 2, keep_embedding_width: bool = True
) -> None:
    """SeeSR's, RAM's and DAPE's released files under ``folder``: ``seesr/{controlnet,unet}``,
    ``ram/ram_swin_large_14m.pth``, ``dape/DAPE.pth``. ``embedder``'s weights become RAM's
    Swin with DAPE's adapters to be merged on loading; ``keep_embedding_width`` keeps
    ``image_cross_attention_dim`` in the ControlNet's config (SeeSR's has none: its code fixes
    512, which only full-size embeddings match)."""
    from safetensors.torch import load_file, save_file

    folder = Path(folder)
    control = folder / "seesr" / "controlnet"
    controlnet.save_pretrained(control)
    config = json.loads((control / "config.json").read_text())
    config.update({"_class_name": "ControlNetModel", "_diffusers_version": "0.21.0"})
    if not keep_embedding_width:
        config.pop("image_cross_attention_dim", None)
    (control / "config.json").write_text(json.dumps(config))

    unet_folder = folder / "seesr" / "unet"
    unet.save_pretrained(unet_folder)
    weights = unet_folder / "diffusion_pytorch_model.safetensors"
    state = load_file(weights)
    for key, value in controlnet.state_dict().items():
        if ".image_attentions." in key:
            state[key] = value.clone()
            if key.startswith("down_blocks.0."):
                state["up_blocks.1." + key.removeprefix("down_blocks.0.")] = value.clone()
    save_file(state, weights)
    del state
    config = json.loads((unet_folder / "config.json").read_text())
    config["use_image_cross_attention"] = True
    (unet_folder / "config.json").write_text(json.dumps(config))

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
    (folder / "ram").mkdir(parents=True, exist_ok=True)
    (folder / "dape").mkdir(parents=True, exist_ok=True)
    torch.save({"model": ram}, folder / "ram" / "ram_swin_large_14m.pth")
    torch.save(adapters, folder / "dape" / "DAPE.pth")
    return ram, adapters
