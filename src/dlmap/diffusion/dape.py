"""The image embeddings SeeSR's image cross-attention reads: RAM's Swin-L, fine-tuned as DAPE.

SeeSR computes them once per image (``RAMLora.generate_image_embeds`` in SeeSR's code): the
input in [0, 1] is resized to 384x384 (bilinear), normalised with ImageNet's mean and std,
and passed through RAM's Swin-L image encoder; its final tokens (12x12 = 144 of width 1536)
get their average prepended as a first token, and ``image_proj`` (a linear layer) maps all
145 tokens to width 512. DAPE is RAM with LoRA adapters (rank 8, alpha 1, so a scale of 1/8)
on the query and value parts of every window attention's ``qkv`` layer; its file holds only
the adapters.

We build the Swin-L from timm (``timm.models.swin_transformer.SwinTransformer``, the same
architecture as the original Swin code RAM uses) and map checkpoint keys onto it:

* RAM's ``visual_encoder.*`` keys lose that prefix; the original Swin downsamples at the end
  of a stage and timm at the start of the next, so ``layers.i.downsample`` becomes
  ``layers.{i+1}.downsample`` (the 2x2 patch order inside the merge is the same in both);
* ``relative_position_index`` buffers are not loaded but must equal timm's (a check of the
  window size); ``attn_mask`` buffers are recomputed by timm;
* DAPE's adapters are merged into ``qkv.weight``: rows of q and v get ``scale * B @ A`` for
  their half of ``lora_B`` and ``lora_A``, as loralib's ``MergedLinear`` does in eval mode;
* RAM's tagging and captioning heads (and DAPE's adapters in them) do not take part in the
  embeddings: they are listed as ignored, by prefix. Any other key is an error.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import torch
import torch.nn.functional as F

from dlmap.weights.cache import WeightKeyError

logger = logging.getLogger(__name__)

DAPE_SWIN_L = dict(
    image_size=384,
    patch_size=4,
    embed_dim=192,
    depths=(2, 2, 18, 2),
    num_heads=(6, 12, 24, 48),
    window_size=12,
    embedding_dim=512,
)
"""RAM's Swin-L at 384x384 (SeeSR's ``config_swinL_384.json``) and the 512-wide projection."""

LORA_RANK = 8
LORA_SCALE = 1.0 / LORA_RANK  # loralib: lora_alpha (default 1) / r
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

RAM_UNUSED_PREFIXES = (
    "tag_encoder.",
    "text_decoder.",
    "tagging_head.",
    "vision_multi.",  # older RAM checkpoints' name of tagging_head
    "label_embed",
    "wordvec_proj.",
    "fc.",
)
"""Parts of RAM that tag or caption images; the image embeddings do not use them."""

_DOWNSAMPLE = re.compile(r"^layers\.(\d+)\.downsample\.")
_LORA = re.compile(r"^visual_encoder\.(layers\.\d+\.blocks\.\d+\.attn\.qkv)\.lora_([AB])$")


class ImageEmbedder(torch.nn.Module):
    """RAM's image-embedding path: resize, normalise, Swin, [mean token; tokens], projection.

    ``config`` holds ``DAPE_SWIN_L``'s keys. ``antialias`` applies to the resize; SeeSR resizes
    a tensor with torchvision 0.15's ``Resize``, which does not antialias tensors (default).
    Input: images (B, 3, H, W) in [0, 1]; output: embeddings (B, 1 + tokens, embedding_dim).
    """

    def __init__(self, config: dict | None = None, antialias: bool = False):
        super().__init__()
        from timm.models.swin_transformer import SwinTransformer

        self.config = dict(config or DAPE_SWIN_L)
        self.antialias = antialias
        c = self.config
        self.encoder = SwinTransformer(
            img_size=c["image_size"],
            patch_size=c["patch_size"],
            embed_dim=c["embed_dim"],
            depths=tuple(c["depths"]),
            num_heads=tuple(c["num_heads"]),
            window_size=c["window_size"],
            num_classes=0,
        )
        self.image_proj = torch.nn.Linear(self.encoder.num_features, c["embedding_dim"])

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        size = self.config["image_size"]
        pixels = F.interpolate(
            images,
            size=(size, size),
            mode="bilinear",
            align_corners=False,
            antialias=self.antialias,
        )
        mean = torch.tensor(IMAGENET_MEAN, dtype=pixels.dtype, device=pixels.device)
        std = torch.tensor(IMAGENET_STD, dtype=pixels.dtype, device=pixels.device)
        pixels = (pixels - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)
        tokens = self.encoder.forward_features(pixels).flatten(1, 2)  # (B, H*W, C), after norm
        tokens = torch.cat([tokens.mean(dim=1, keepdim=True), tokens], dim=1)
        return self.image_proj(tokens)


def ram_to_embedder_state(
    ram_state: dict, dape_state: dict | None, embedder: ImageEmbedder
) -> tuple[dict, list[str]]:
    """Map RAM (and DAPE) checkpoint tensors onto ``embedder``'s keys.

    Returns the new state dict and the sorted list of ignored keys (RAM's tagging heads and
    DAPE's adapters in them). Raises ``WeightKeyError`` naming every unknown, missing or
    misshapen key.
    """
    target = embedder.state_dict()
    state, ignored, unknown = {}, [], []
    for key, value in ram_state.items():
        if key.startswith("image_proj."):
            state[key] = value
        elif key.startswith("visual_encoder."):
            name = _DOWNSAMPLE.sub(
                lambda m: f"layers.{int(m.group(1)) + 1}.downsample.", key[len("visual_encoder.") :]
            )
            if name.endswith(".attn_mask"):
                continue
            if name.endswith(".relative_position_index"):
                _check_relative_position_index(embedder, name, value)
                continue
            state["encoder." + name] = value
        elif key.startswith(RAM_UNUSED_PREFIXES):
            ignored.append(key)
        else:
            unknown.append(key)
    _raise_on_key_problems("RAM", unknown, state, target)
    if dape_state is not None:
        ignored += _merge_lora(dape_state, state)
    return state, sorted(ignored)


def embedder_to_ram_state(embedder: ImageEmbedder) -> dict:
    """``embedder``'s tensors under RAM's checkpoint names (the inverse of the mapping)."""
    state = {}
    for key, value in embedder.state_dict().items():
        if key.startswith("encoder."):
            name = _DOWNSAMPLE.sub(
                lambda m: f"layers.{int(m.group(1)) - 1}.downsample.", key[len("encoder.") :]
            )
            key = "visual_encoder." + name
        state[key] = value.clone()
    return state


def _check_relative_position_index(embedder, name: str, value: torch.Tensor) -> None:
    ours = embedder.encoder.get_submodule(name.rsplit(".", 1)[0]).relative_position_index
    if ours.shape != value.shape or not torch.equal(ours.cpu(), value.long()):
        raise WeightKeyError(
            f"RAM checkpoint: visual_encoder.{name} does not match a window of "
            f"{embedder.config['window_size']} (wrong Swin configuration?)"
        )


def _merge_lora(dape_state: dict, state: dict) -> list[str]:
    """Add DAPE's q and v adapters into the mapped ``qkv`` weights; return ignored keys."""
    adapters: dict[str, dict[str, torch.Tensor]] = {}
    ignored, unknown = [], []
    for key, value in dape_state.items():
        match = _LORA.match(key)
        if match:
            adapters.setdefault(match.group(1), {})[match.group(2)] = value
        elif "lora_" in key and key.startswith(RAM_UNUSED_PREFIXES):
            ignored.append(key)
        else:
            unknown.append(key)
    expected = sorted(
        k[len("encoder.") : -len(".weight")] for k in state if k.endswith("qkv.weight")
    )
    missing = [
        f"visual_encoder.{layer}.lora_{part}"
        for layer in expected
        for part in "AB"
        if part not in adapters.get(layer, {})
    ]
    unknown += [f"visual_encoder.{layer}.lora_*" for layer in adapters if layer not in expected]
    if unknown or missing:
        raise WeightKeyError(_describe("DAPE checkpoint", unknown=unknown, missing=missing))
    for layer, pair in adapters.items():
        weight = state[f"encoder.{layer}.weight"]
        dim = weight.shape[1]
        a, b = pair["A"].double(), pair["B"].double()
        if a.shape != (2 * LORA_RANK, dim) or b.shape != (2 * dim, LORA_RANK):
            raise WeightKeyError(
                f"DAPE checkpoint: visual_encoder.{layer}.lora_A/B have shapes "
                f"{tuple(a.shape)}/{tuple(b.shape)}, expected {(2 * LORA_RANK, dim)}/"
                f"{(2 * dim, LORA_RANK)}"
            )
        merged = weight.double().clone()
        merged[:dim] += LORA_SCALE * b[:dim] @ a[:LORA_RANK]  # query rows
        merged[2 * dim :] += LORA_SCALE * b[dim:] @ a[LORA_RANK:]  # value rows
        state[f"encoder.{layer}.weight"] = merged.to(weight.dtype)
    return ignored


def _raise_on_key_problems(what: str, unknown: list, state: dict, target: dict) -> None:
    missing = [key for key in target if key not in state]
    unexpected = unknown + [key for key in state if key not in target]
    misshapen = [
        f"{key} {tuple(state[key].shape)} != {tuple(target[key].shape)}"
        for key in state
        if key in target and state[key].shape != target[key].shape
    ]
    if missing or unexpected or misshapen:
        raise WeightKeyError(
            _describe(f"{what} checkpoint", unknown=unexpected, missing=missing, shape=misshapen)
        )


def _describe(what: str, **problems: list) -> str:
    parts = []
    for kind, keys in problems.items():
        if keys:
            shown = ", ".join(keys[:5]) + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")
            label = {"unknown": "unexpected keys", "missing": "missing keys"}.get(kind, "shapes")
            parts.append(f"{len(keys)} {label} ({shown})")
    return f"{what} does not match the image encoder: " + "; ".join(parts)


def read_checkpoint(path: str | Path) -> dict:
    """Tensors of a torch checkpoint, unwrapped from a ``model`` or ``params`` entry."""
    state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    for wrapper in ("model", "params", "state_dict"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict):
        raise WeightKeyError(f"{path}: not a state dict ({type(state).__name__})")
    return {key.removeprefix("module."): value for key, value in state.items()}


def load_image_embedder(
    ram_path: str | Path, dape_path: str | Path | None, config: dict | None = None
) -> ImageEmbedder:
    """RAM's Swin-L with DAPE's adapters merged, loaded strictly from their released files."""
    embedder = ImageEmbedder(config)
    dape_state = read_checkpoint(dape_path) if dape_path is not None else None
    state, ignored = ram_to_embedder_state(read_checkpoint(ram_path), dape_state, embedder)
    embedder.load_state_dict(state, strict=True)
    logger.info(
        "%s: ignored %d keys of RAM's tagging heads (not used for embeddings)",
        ram_path,
        len(ignored),
    )
    return embedder.eval().requires_grad_(False)
