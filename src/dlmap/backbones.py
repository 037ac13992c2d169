"""The diffusion backbone: SD2-base UNet + VAE, optionally with a ControlNet on the input image.

A ``Backbone`` offers what the solver needs: ``encode`` (image -> scaled VAE latent),
``decode`` (latent -> image in [0, 1]), ``condition`` (the per-image conditioning) and ``eps``
(the noise prediction eps(latent, t, condition) that EDICT calls). The authors' MAP code uses
an empty prompt and no classifier-free guidance, so each eps is one ControlNet call plus one
UNet call.

Two ways to build one:

* ``load_backbone("sd2" | "sd2-controlnet", ...)``: the real networks, from a local folder or
  the local Hugging Face cache, with strict weight-key checking (diffusers only warns about
  missing or unexpected keys and silently initialises or drops layers).
* ``tiny_backbone(...)``: the same classes at toy size with random weights, built from config
  dicts (tests, the demo, CPU benchmarks).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

import torch
from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel

from dlmap import weights

BACKBONES = ("tiny", "tiny-vanilla", "sd2-controlnet", "sd2")
ENCODE_MODES = ("sample", "mean")


@dataclass
class Condition:
    """Everything eps is conditioned on, batched like the latents.

    text: prompt embedding (B, L, D) (the empty prompt).
    control_image: ControlNet conditioning image (B, 3, H, W) in [0, 1], or None (vanilla SD2).
    image_embeddings: image embeddings for SeeSR's image cross-attention (B, N, D), or None.
    """

    text: torch.Tensor
    control_image: torch.Tensor | None = None
    image_embeddings: torch.Tensor | None = None

    def to(self, device=None, dtype=None) -> Condition:
        def move(t):
            return None if t is None else t.to(device=device, dtype=dtype)

        return replace(
            self,
            text=move(self.text),
            control_image=move(self.control_image),
            image_embeddings=move(self.image_embeddings),
        )


class WeightKeyError(RuntimeError):
    """A checkpoint's keys do not match the network it is loaded into."""


class Backbone(torch.nn.Module):
    """UNet + VAE (+ ControlNet) with frozen weights and an empty-prompt embedding.

    checkpoint_decoder: recompute the VAE decoder's blocks in the backward pass (diffusers'
    gradient checkpointing) instead of storing their activations; the gradient is the same.
    """

    def __init__(
        self,
        name: str,
        unet: UNet2DConditionModel,
        vae: AutoencoderKL,
        prompt_embedding: torch.Tensor,
        controlnet: ControlNetModel | None = None,
        encode_mode: str = "sample",
        autocast_dtype: torch.dtype | None = None,
        reduced: bool = False,
        checkpoint_decoder: bool = True,
    ):
        super().__init__()
        if encode_mode not in ENCODE_MODES:
            raise ValueError(f"encode_mode must be one of {ENCODE_MODES}, got {encode_mode!r}")
        self.name = name
        self.unet, self.vae, self.controlnet = unet, vae, controlnet
        self.register_buffer("prompt_embedding", prompt_embedding.detach().clone())
        self.encode_mode = encode_mode
        self.autocast_dtype = autocast_dtype
        self.reduced = reduced
        # The VAE decoder runs with grad once per MAP iteration; checkpointing its blocks
        # keeps one block's activations instead of all of them, for one extra forward pass.
        if checkpoint_decoder:
            self.vae.enable_gradient_checkpointing()
        self.requires_grad_(False)
        self.eval()

    @property
    def dtype(self) -> torch.dtype:
        return next(self.unet.parameters()).dtype

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    @property
    def latent_scale(self) -> float:
        return float(self.vae.config.scaling_factor)

    @property
    def downsampling(self) -> int:
        """Pixels per latent cell along each side (8 for SD2's VAE)."""
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    def _autocast(self):
        if self.autocast_dtype is None:
            return torch.autocast(self.device.type, enabled=False)
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def condition(self, images: torch.Tensor, image_embeddings=None) -> Condition:
        """The conditioning of a batch of input images (B, 3, H, W) in [0, 1]."""
        text = self.prompt_embedding.expand(images.shape[0], -1, -1)
        control = images if self.controlnet is not None else None
        return Condition(text=text, control_image=control, image_embeddings=image_embeddings)

    def encode(self, images: torch.Tensor, seeds: list[int] | None = None) -> torch.Tensor:
        """Scaled VAE latents of images in [0, 1]; the posterior mean or a seeded sample.

        With ``encode_mode="sample"`` each image draws its posterior noise from its own
        generator seeded by ``seeds[i]``, so a result does not depend on its batch position.
        """
        with torch.no_grad(), self._autocast():
            posterior = self.vae.encode(images.to(self.dtype) * 2 - 1).latent_dist
        mean, std = posterior.mean.float(), posterior.std.float()
        if self.encode_mode == "sample":
            if seeds is None or len(seeds) != images.shape[0]:
                raise ValueError("encode_mode='sample' needs one seed per image")
            noise = torch.stack(
                [
                    torch.randn(
                        mean.shape[1:],
                        generator=torch.Generator("cpu").manual_seed(int(seed)),
                        dtype=torch.float64,
                    )
                    for seed in seeds
                ]
            ).to(mean.device)
            latents = mean.double() + std.double() * noise
        else:
            latents = mean
        return (latents * self.latent_scale).to(images.dtype)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] (unclamped, so gradients flow everywhere) from scaled latents."""
        with self._autocast():
            images = self.vae.decode(latents.to(self.dtype) / self.latent_scale).sample
        return (images.to(latents.dtype) + 1) / 2

    def eps(self, latent: torch.Tensor, t: int, cond: Condition) -> torch.Tensor:
        """The noise prediction eps(latent; t) of Eq. 4, in the latent's dtype."""
        sample = latent.to(self.dtype)
        text = cond.text.to(self.dtype)
        with self._autocast():
            residuals = {}
            if self.controlnet is not None:
                if cond.control_image is None:
                    raise ValueError(f"backbone {self.name!r} needs a control image")
                down, mid = self.controlnet(
                    sample,
                    t,
                    encoder_hidden_states=text,
                    controlnet_cond=cond.control_image.to(self.dtype),
                    return_dict=False,
                )
                residuals = {
                    "down_block_additional_residuals": down,
                    "mid_block_additional_residual": mid,
                }
            noise = self.unet(sample, t, encoder_hidden_states=text, return_dict=False, **residuals)
        return noise[0].to(latent.dtype)


# --- tiny random backbones -----------------------------------------------------------------

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


def tiny_backbone(
    controlnet: bool = True,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    encode_mode: str = "sample",
    unet_config: dict | None = None,
) -> Backbone:
    """SD2's network classes at toy size, randomly initialised from ``seed``.

    The ControlNet's zero convolutions (its output convolutions and the last convolution of
    its conditioning embedding) get small random weights instead of zeros, so that the
    conditioning path is exercised (a zero ControlNet adds exactly nothing).
    """
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**(unet_config or TINY_UNET))
    vae = AutoencoderKL(**TINY_VAE)
    text_encoder = CLIPTextModel(CLIPTextConfig(**TINY_TEXT_ENCODER))
    net = None
    if controlnet:
        net = ControlNetModel.from_unet(unet, **TINY_CONTROLNET)
        zero_modules = ("controlnet_down_blocks", "controlnet_mid_block", "cond_embedding.conv_out")
        with torch.no_grad():
            for name, param in net.named_parameters():
                if any(module in name for module in zero_modules):
                    param.normal_(0.0, 0.02)
    # An empty prompt is [BOS, EOS, PAD...] (SD2's tokenizer pads with id 0).
    ids = torch.zeros(1, TINY_TEXT_ENCODER["max_position_embeddings"], dtype=torch.long)
    ids[0, 0], ids[0, 1] = TINY_TEXT_ENCODER["bos_token_id"], TINY_TEXT_ENCODER["eos_token_id"]
    with torch.no_grad():
        prompt = text_encoder(ids)[0]
    name = "tiny" if controlnet else "tiny-vanilla"
    backbone = Backbone(name, unet, vae, prompt, net, encode_mode=encode_mode, reduced=True)
    return backbone.to(dtype)


# --- the real SD2-base networks ------------------------------------------------------------


def load_strict(model_class, folder, subfolder: str | None = None, **kwargs):
    """``model_class.from_pretrained`` that fails on missing, unexpected or mismatched keys.

    Works for diffusers models and transformers models alike (both report loading info).
    """
    if model_class.__module__.startswith("diffusers"):
        kwargs.setdefault("low_cpu_mem_usage", False)  # the same checks with or without accelerate
    model, info = model_class.from_pretrained(
        folder, subfolder=subfolder, output_loading_info=True, **kwargs
    )
    problems = []
    for kind in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs"):
        keys = info.get(kind) or []
        if keys:
            shown = ", ".join(str(k) for k in list(keys)[:5])
            more = f" and {len(keys) - 5} more" if len(keys) > 5 else ""
            problems.append(f"{len(keys)} {kind.replace('_', ' ')} ({shown}{more})")
    if problems:
        where = os.path.join(str(folder), subfolder or "")
        raise WeightKeyError(
            f"{model_class.__name__} weights in {where} do not match the network: "
            + "; ".join(problems)
        )
    return model


def encode_empty_prompt(folder) -> torch.Tensor:
    """SD2's embedding of the empty prompt (1, 77, 1024), from its tokenizer and text encoder."""
    from transformers import CLIPTextModel, CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(folder, subfolder="tokenizer")
    text_encoder = load_strict(CLIPTextModel, folder, "text_encoder")
    ids = tokenizer(
        "", padding="max_length", max_length=tokenizer.model_max_length, return_tensors="pt"
    ).input_ids
    with torch.no_grad():
        return text_encoder(ids)[0]


def load_backbone(
    name: str,
    sd2: str | os.PathLike | None = None,
    controlnet: str | os.PathLike | None = None,
    cache=None,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    encode_mode: str = "sample",
    autocast_dtype: torch.dtype | None = None,
    seed: int = 0,
) -> Backbone:
    """Build the backbone ``name`` (one of ``BACKBONES``).

    sd2: folder (or cached hub id) of SD2-base in diffusers layout; default <cache>/sd2-base.
    controlnet: folder of a diffusers ControlNetModel for SD2-base; default
    <cache>/sd2-controlnet. Every weight file is located before anything is loaded, so a
    missing file fails at once with ``WeightsMissingError``. seed: initialisation of the
    tiny random networks only (a fixed model by default, whatever the solver's seed).
    """
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
    if name.startswith("tiny"):
        backbone = tiny_backbone(name == "tiny", seed=seed, dtype=dtype, encode_mode=encode_mode)
        backbone.autocast_dtype = autocast_dtype
        return backbone.to(device)
    sd2_folder = weights.locate("sd2-base", sd2, cache)
    control_folder = None
    if name == "sd2-controlnet":
        control_folder = weights.locate("sd2-controlnet", controlnet, cache)
    unet = load_strict(UNet2DConditionModel, sd2_folder, "unet")
    vae = load_strict(AutoencoderKL, sd2_folder, "vae")
    net = load_strict(ControlNetModel, control_folder) if control_folder else None
    prompt = encode_empty_prompt(sd2_folder)
    backbone = Backbone(
        name, unet, vae, prompt, net, encode_mode=encode_mode, autocast_dtype=autocast_dtype
    )
    return backbone.to(device=device, dtype=dtype)
