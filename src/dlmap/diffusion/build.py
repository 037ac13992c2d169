"""Building the backbone that a ``BackboneSettings`` describes: its spec
(``dlmap.diffusion.specs``) says which networks and weight sets, the settings say where the
weights are, on which device and in which precision.

Real networks load from local folders (or the dlmap cache) with strict key checking
(``dlmap.diffusion.loading.load_strict``: diffusers only warns about missing or unexpected keys
and silently initialises or drops layers). Every weight file is located before anything is
loaded, so a missing file fails at once with one ``WeightsMissingError`` naming every missing
set. The tiny twins are built from config dicts (``dlmap.diffusion.tiny``).
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel

from dlmap.diffusion.backbones import AUTOCAST_DTYPES, TORCH_DTYPES, Backbone
from dlmap.diffusion.loading import encode_empty_prompt, load_strict
from dlmap.diffusion.specs import BACKBONE_SPECS, BackboneSpec
from dlmap.errors import InputError
from dlmap.files import sha256_file
from dlmap.settings import BackboneSettings
from dlmap.weights import catalogue
from dlmap.weights.cache import WeightKeyError
from dlmap.weights.folders import FolderSet


def load_backbone(
    settings: BackboneSettings, *, seed: int = 0, image_embedder_config: dict | None = None
) -> Backbone:
    """The backbone ``settings`` describe, on their device, its memory switches applied
    (``Backbone.save_memory``) and TF32 set as they say (``set_tf32``).

    seed: initialisation of the tiny twins' random networks; image_embedder_config: the
    RAM/DAPE Swin's configuration (default ``dape.DAPE_SWIN_L``; the tests pass a small one).
    A trained tiny VAE (``settings.vae``, ``dlmap.diffusion.tiny_vae``) replaces a tiny twin's
    random VAE; bf16 weights (``settings.weights_dtype``) hold the frozen networks' parameters in
    bfloat16 while latents, EDICT and the prior stay in ``settings.dtype``.
    """
    if settings.device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {settings.device!r}: CUDA is not available on this node")
    spec = BACKBONE_SPECS[settings.name]  # BackboneSettings has checked the name
    if settings.vae is not None and not spec.tiny:
        raise InputError(
            f"a trained tiny VAE ({settings.vae}) replaces the tiny backbones' random VAE; "
            f"backbone {spec.name!r} loads SD2's VAE"
        )
    set_tf32(settings.tf32)
    if spec.tiny:
        backbone = _tiny(spec, settings, seed)
    else:
        backbone = _sd2(spec, settings, image_embedder_config)
    backbone.autocast_dtype = AUTOCAST_DTYPES[settings.autocast]
    backbone = backbone.to(device=settings.device, dtype=TORCH_DTYPES[settings.dtype])
    backbone.save_memory(
        checkpoint_blocks=settings.checkpoint_blocks, vae_slicing=settings.vae_slicing
    )
    return backbone.to(dtype=torch.bfloat16) if settings.weights_dtype == "bf16" else backbone


def set_tf32(enabled: bool) -> None:
    """TensorFloat-32 for CUDA's float32 matmuls and cuDNN's convolutions, on or off, set
    explicitly both ways: PyTorch's own defaults differ (matmuls off, convolutions on), and
    TF32's 10-bit inputs cost EDICT's round trip its exactness (docs/enhance.md)."""
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled


def _tiny(spec: BackboneSpec, settings: BackboneSettings, seed: int) -> Backbone:
    from dlmap.diffusion.tiny import tiny_backbone
    from dlmap.diffusion.tiny_vae import load_trained_vae

    trained = load_trained_vae(settings.vae) if settings.vae is not None else None
    dtype = TORCH_DTYPES[settings.dtype]
    backbone = tiny_backbone(
        spec.tiny_kind, seed=seed, dtype=dtype, encode_mode=settings.encode, vae=trained
    )
    if settings.vae is not None:
        folder = Path(settings.vae).resolve()
        files = sorted(p for p in folder.iterdir() if p.is_file())
        digests = {p.name: sha256_file(p) for p in files}
        backbone.provenance = {"tiny-vae": {"folder": str(folder), "sha256": digests}}
    return backbone


def _sd2(spec: BackboneSpec, settings: BackboneSettings, embedder_config) -> Backbone:
    """SD2-base's UNet, VAE and empty prompt, with the spec's ControlNet."""
    folders = catalogue.require_sets(spec.weight_sets, settings.weight_folders(), settings.cache)
    sd2_folder = folders["sd2-base"]
    vae = load_strict(AutoencoderKL, sd2_folder, "vae")
    prompt = encode_empty_prompt(sd2_folder)
    net, embedder = None, None
    if spec.controlnet == "seesr":
        from dlmap.diffusion.dape import load_image_embedder
        from dlmap.diffusion.seesr import SEESR_UNET_EXTRA_KEYS, SeeSRControlNetModel

        seesr = folders["seesr"]
        unet = load_strict(UNet2DConditionModel, seesr, "unet", ignore=SEESR_UNET_EXTRA_KEYS)
        net = load_strict(SeeSRControlNetModel, seesr, "controlnet")
        if not net.config.use_image_cross_attention:
            raise WeightKeyError(
                f"{seesr / 'controlnet'}: use_image_cross_attention is off in its "
                "config.json; this is not SeeSR's ControlNet"
            )
        ram_file = folders["ram-swin-large"] / "ram_swin_large_14m.pth"
        embedder = load_image_embedder(ram_file, folders["dape"] / "DAPE.pth", embedder_config)
    else:
        unet = load_strict(UNet2DConditionModel, sd2_folder, "unet")
        if spec.controlnet == "diffusers":
            net = load_strict(ControlNetModel, folders["sd2-controlnet"])
    backbone = Backbone(
        spec.name, unet, vae, prompt, net, image_embedder=embedder, encode_mode=settings.encode
    )
    backbone.provenance = {
        name: {"folder": str(folder), "sha256": catalogue.get(name).digests(folder, settings.cache)}
        for name, folder in folders.items()
    }
    stamps = {name: FolderSet.random_weights(folder) for name, folder in folders.items()}
    stamps = {name: text for name, text in stamps.items() if text}
    if stamps:  # a rehearsal's random weights: stamped like a reduced run, and said so
        backbone.reduced = True
        said = {text: [s for s in stamps if stamps[s] == text] for text in stamps.values()}
        backbone.random_weights = "; ".join(f"{', '.join(s)}: {t}" for t, s in said.items())
    return backbone
