"""The diffusion backbone: SD2-base's UNet and VAE, optionally with a ControlNet on the input.

A ``Backbone`` offers what the solver needs: ``encode`` (image -> scaled VAE latent),
``decode`` (latent -> image in [0, 1]), ``condition`` (the per-image conditioning, computed
once per image) and ``eps`` (the noise prediction eps(latent, t, condition) that EDICT calls).
The authors' MAP code uses an empty prompt and no classifier-free guidance, so each eps is
one ControlNet call plus one UNet call.

Backbones (``BACKBONES``):

* ``sd2-seesr`` (the paper's): SeeSR's ControlNet with image cross-attention
  (``dlmap.diffusion.seesr``) reading RAM/DAPE image embeddings (``dlmap.diffusion.dape``),
  SeeSR's UNet loaded
  with image cross-attention off (SD2-base's weights), SD2-base's VAE and text encoder;
* ``sd2-controlnet``: a stock diffusers ControlNet of your own for SD2-base;
* ``sd2``: vanilla SD2-base, no ControlNet (the paper's Fig. 7 ablation);
* ``tiny-seesr``, ``tiny-controlnet``, ``tiny-vanilla``: the same classes and code paths at
  toy size with random weights, built from config dicts (``dlmap.diffusion.tiny``).

Real networks load from local folders or the local Hugging Face cache with strict key
checking (diffusers only warns about missing or unexpected keys and silently initialises or
drops layers).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import torch
from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel

from dlmap.errors import InputError
from dlmap.settings import ENCODES as ENCODE_MODES

logger = logging.getLogger(__name__)


TORCH_DTYPES = {"float32": torch.float32, "float64": torch.float64}  # settings.DTYPES
AUTOCAST_DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}  # AUTOCASTS


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

    def __getitem__(self, index) -> Condition:
        """The conditioning of some of the images, e.g. ``cond[:1]``."""

        def pick(t):
            return None if t is None else t[index]

        return replace(
            self,
            text=pick(self.text),
            control_image=pick(self.control_image),
            image_embeddings=pick(self.image_embeddings),
        )

    def to(self, device=None, dtype=None) -> Condition:
        def move(t):
            return None if t is None else t.to(device=device, dtype=dtype)

        return replace(
            self,
            text=move(self.text),
            control_image=move(self.control_image),
            image_embeddings=move(self.image_embeddings),
        )


class Backbone(torch.nn.Module):
    """UNet + VAE (+ ControlNet (+ image embedder)) with frozen weights and an empty prompt.

    image_embedder: for a ControlNet with image cross-attention (SeeSR's), the network that
    turns each input image into the embeddings it attends to (RAM/DAPE); run once per image
    in ``condition``, never per step.
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
        image_embedder: torch.nn.Module | None = None,
        encode_mode: str = "sample",
        autocast_dtype: torch.dtype | None = None,
        reduced: bool = False,
        checkpoint_decoder: bool = True,
    ):
        super().__init__()
        if encode_mode not in ENCODE_MODES:
            raise InputError(f"encode_mode must be one of {ENCODE_MODES}, got {encode_mode!r}")
        self.name = name
        self.unet, self.vae, self.controlnet = unet, vae, controlnet
        self.image_embedder = image_embedder
        if self.uses_image_embeddings and image_embedder is None:
            raise InputError(
                f"backbone {name!r}: a ControlNet with image attention needs an embedder"
            )
        self.register_buffer("prompt_embedding", prompt_embedding.detach().clone())
        self.encode_mode = encode_mode
        self.autocast_dtype = autocast_dtype
        self.reduced = reduced
        self.random_weights: str | None = None  # what a RANDOM-WEIGHTS stamp said, if any
        self.provenance: dict = {}  # weight folders and file sha256 (set by load_backbone)
        # The VAE decoder runs with grad once per MAP iteration; checkpointing its blocks
        # keeps one block's activations instead of all of them, for one extra forward pass.
        if checkpoint_decoder:
            self.vae.enable_gradient_checkpointing()
        self.requires_grad_(False)
        self.eval()

    def save_memory(self, checkpoint_blocks: bool = False, vae_slicing: bool = False) -> None:
        """Switches for smaller GPUs (docs/enhance.md, "GPU memory"). checkpoint_blocks:
        recompute the UNet's and ControlNet's blocks in each EDICT step's backward pass instead
        of storing their activations (diffusers' gradient checkpointing; the same result, one
        more forward pass per step). vae_slicing: encode and decode one image at a time (with
        the decoder's checkpointing, its backward too; the same result up to rounding)."""
        if checkpoint_blocks:
            self.unet.enable_gradient_checkpointing()
            if self.controlnet is not None:
                self.controlnet.enable_gradient_checkpointing()
        if vae_slicing:
            self.vae.enable_slicing()

    @property
    def memory_switches(self) -> dict[str, bool]:
        """Which of ``save_memory``'s switches are on."""
        return {
            "checkpoint_blocks": bool(self.unet.is_gradient_checkpointing),
            "vae_slicing": bool(self.vae.use_slicing),
        }

    @property
    def dtype(self) -> torch.dtype:
        """The frozen networks' parameter dtype (bfloat16 with ``weights_dtype``)."""
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

    @property
    def uses_image_embeddings(self) -> bool:
        """Whether the ControlNet has SeeSR's image cross-attention."""
        config = getattr(self.controlnet, "config", {})
        return bool(config.get("use_image_cross_attention", False))

    def _autocast(self):
        if self.autocast_dtype is None:
            return torch.autocast(self.device.type, enabled=False)
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def condition(self, images: torch.Tensor) -> Condition:
        """The conditioning of a batch of input images (B, 3, H, W) in [0, 1].

        Computes the image embeddings (one embedder call per image) when the ControlNet reads
        them; the solver calls this once per solve.
        """
        text = self.prompt_embedding.expand(images.shape[0], -1, -1)
        control = images if self.controlnet is not None else None
        embeddings = None
        if self.uses_image_embeddings:
            with torch.no_grad(), self._autocast():
                embeddings = self.image_embedder(images.to(self.dtype)).to(images.dtype)
        return Condition(text=text, control_image=control, image_embeddings=embeddings)

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
                raise InputError("encode_mode='sample' needs one seed per image")
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
        if cond.text.shape[0] != latent.shape[0]:
            raise InputError(
                f"condition for {cond.text.shape[0]} images, latents for {latent.shape[0]}"
            )
        sample = latent.to(self.dtype)
        text = cond.text.to(self.dtype)
        with self._autocast():
            residuals = {}
            if self.controlnet is not None:
                if cond.control_image is None:
                    raise InputError(f"backbone {self.name!r} needs a control image")
                image = {}
                if self.uses_image_embeddings:
                    if cond.image_embeddings is None:
                        raise InputError(f"backbone {self.name!r} needs image embeddings")
                    image = {"image_encoder_hidden_states": cond.image_embeddings.to(self.dtype)}
                down, mid = self.controlnet(
                    sample,
                    t,
                    encoder_hidden_states=text,
                    controlnet_cond=cond.control_image.to(self.dtype),
                    return_dict=False,
                    **image,
                )
                residuals = {
                    "down_block_additional_residuals": down,
                    "mid_block_additional_residual": mid,
                }
            noise = self.unet(sample, t, encoder_hidden_states=text, return_dict=False, **residuals)
        return noise[0].to(latent.dtype)
