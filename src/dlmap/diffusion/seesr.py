"""SeeSR's ControlNet (Wu et al., CVPR 2024): the SD2 UNet encoder with image cross-attention.

SeeSR's ControlNet is diffusers' ControlNet (a copy of the UNet's encoder, zero convolutions
on its outputs, a small conditioning embedding for the input image in [0, 1]) plus one extra
``Transformer2DModel`` after every cross-attention layer of the encoder and of the middle
block. Those extra layers (``image_attentions``) attend to image embeddings of the degraded
input (RAM's Swin-L fine-tuned as DAPE, see ``dlmap.diffusion.dape``) instead of the text prompt.
Loading SeeSR's checkpoint into diffusers' stock ``ControlNetModel`` silently drops them.

``SeeSRControlNetModel`` subclasses diffusers' class, so every layer and weight name is
diffusers' own; it only adds the ``image_attentions`` lists (named as in SeeSR's checkpoint,
e.g. ``down_blocks.0.image_attentions.1.transformer_blocks.0.attn2.to_k.weight``) and a
forward pass that runs each layer in SeeSR's order: resnet, text attention, image attention
(and in the middle block: resnet, then text attention, image attention, resnet).

SeeSR's UNet is SD2-base's UNet plus its own ``image_attentions``. SeeSR's training script
(``train_seesr.py``) freezes the UNet and trains only the modules whose name ends in
``image_attentions``, so with image cross-attention off (as the authors' MAP code loads it)
SeeSR's UNet has exactly SD2-base's weights. ``SEESR_UNET_EXTRA_KEYS`` names the keys
that are dropped when it is loaded that way; every other key is checked strictly.
"""

from __future__ import annotations

import re

import torch
from diffusers import ControlNetModel, UNet2DConditionModel
from diffusers.configuration_utils import register_to_config
from diffusers.models.controlnets.controlnet import ControlNetOutput

from dlmap.errors import InputError

SEESR_UNET_EXTRA_KEYS = re.compile(
    r"^(down_blocks\.\d+|up_blocks\.\d+|mid_block)\.image_attentions\."
)
"""Keys of SeeSR's UNet checkpoint that a UNet without image cross-attention does not have."""


class SeeSRControlNetModel(ControlNetModel):
    """diffusers' ControlNet with SeeSR's image cross-attention layers.

    Configuration: diffusers' ``ControlNetModel`` arguments (SeeSR's ``config.json`` holds
    them), plus ``use_image_cross_attention`` (SeeSR's key; True in its checkpoint) and
    ``image_cross_attention_dim`` (the width of the image embeddings; 512 for RAM/DAPE,
    absent from SeeSR's config, where it is a hard-coded default).
    """

    @register_to_config
    def __init__(
        self,
        in_channels: int = 4,
        conditioning_channels: int = 3,
        flip_sin_to_cos: bool = True,
        freq_shift: int = 0,
        down_block_types: tuple[str, ...] = (
            "CrossAttnDownBlock2D",
            "CrossAttnDownBlock2D",
            "CrossAttnDownBlock2D",
            "DownBlock2D",
        ),
        mid_block_type: str | None = "UNetMidBlock2DCrossAttn",
        only_cross_attention: bool | tuple[bool] = False,
        block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280),
        layers_per_block: int = 2,
        downsample_padding: int = 1,
        mid_block_scale_factor: float = 1,
        act_fn: str = "silu",
        norm_num_groups: int | None = 32,
        norm_eps: float = 1e-5,
        cross_attention_dim: int = 1280,
        transformer_layers_per_block: int | tuple[int, ...] = 1,
        encoder_hid_dim: int | None = None,
        encoder_hid_dim_type: str | None = None,
        attention_head_dim: int | tuple[int, ...] = 8,
        num_attention_heads: int | tuple[int, ...] | None = None,
        use_linear_projection: bool = False,
        class_embed_type: str | None = None,
        addition_embed_type: str | None = None,
        addition_time_embed_dim: int | None = None,
        num_class_embeds: int | None = None,
        upcast_attention: bool = False,
        resnet_time_scale_shift: str = "default",
        projection_class_embeddings_input_dim: int | None = None,
        controlnet_conditioning_channel_order: str = "rgb",
        conditioning_embedding_out_channels: tuple[int, ...] | None = (16, 32, 96, 256),
        global_pool_conditions: bool = False,
        addition_embed_type_num_heads: int = 64,
        use_image_cross_attention: bool = False,
        image_cross_attention_dim: int = 512,
    ):
        super().__init__(
            in_channels=in_channels,
            conditioning_channels=conditioning_channels,
            flip_sin_to_cos=flip_sin_to_cos,
            freq_shift=freq_shift,
            down_block_types=down_block_types,
            mid_block_type=mid_block_type,
            only_cross_attention=only_cross_attention,
            block_out_channels=block_out_channels,
            layers_per_block=layers_per_block,
            downsample_padding=downsample_padding,
            mid_block_scale_factor=mid_block_scale_factor,
            act_fn=act_fn,
            norm_num_groups=norm_num_groups,
            norm_eps=norm_eps,
            cross_attention_dim=cross_attention_dim,
            transformer_layers_per_block=transformer_layers_per_block,
            encoder_hid_dim=encoder_hid_dim,
            encoder_hid_dim_type=encoder_hid_dim_type,
            attention_head_dim=attention_head_dim,
            num_attention_heads=num_attention_heads,
            use_linear_projection=use_linear_projection,
            class_embed_type=class_embed_type,
            addition_embed_type=addition_embed_type,
            addition_time_embed_dim=addition_time_embed_dim,
            num_class_embeds=num_class_embeds,
            upcast_attention=upcast_attention,
            resnet_time_scale_shift=resnet_time_scale_shift,
            projection_class_embeddings_input_dim=projection_class_embeddings_input_dim,
            controlnet_conditioning_channel_order=controlnet_conditioning_channel_order,
            conditioning_embedding_out_channels=conditioning_embedding_out_channels,
            global_pool_conditions=global_pool_conditions,
            addition_embed_type_num_heads=addition_embed_type_num_heads,
        )
        if not use_image_cross_attention:
            return
        unsupported = {
            "class_embed_type": class_embed_type,
            "addition_embed_type": addition_embed_type,
            "encoder_hid_dim_type": encoder_hid_dim_type,
        }
        for key, value in unsupported.items():
            if value is not None:
                raise InputError(
                    f"image cross-attention is implemented for SD2 only; {key}={value!r}"
                )
        if global_pool_conditions or mid_block_type != "UNetMidBlock2DCrossAttn":
            raise InputError("image cross-attention needs SD2's middle block without pooling")
        for block in [*self.down_blocks, self.mid_block]:
            if getattr(block, "attentions", None):
                block.image_attentions = torch.nn.ModuleList(
                    _image_attention(attn, image_cross_attention_dim) for attn in block.attentions
                )

    @classmethod
    def from_unet(
        cls,
        unet: UNet2DConditionModel,
        use_image_cross_attention: bool = True,
        image_cross_attention_dim: int = 512,
        **kwargs,
    ) -> SeeSRControlNetModel:
        """A ControlNet whose encoder copies ``unet``'s (as SeeSR initialises it).

        The image cross-attention layers are new and keep their random initialisation.
        ``kwargs`` go to diffusers' ``ControlNetModel.from_unet``.
        """
        stock = ControlNetModel.from_unet(unet, **kwargs)
        config = {k: v for k, v in stock.config.items() if not k.startswith("_")}
        net = cls(
            **config,
            use_image_cross_attention=use_image_cross_attention,
            image_cross_attention_dim=image_cross_attention_dim,
        )
        missing, unexpected = net.load_state_dict(stock.state_dict(), strict=False)
        if unexpected or any(".image_attentions." not in key for key in missing):
            raise RuntimeError(f"from_unet: unexpected {unexpected}, missing {missing}")
        return net

    def forward(
        self,
        sample: torch.Tensor,
        timestep,
        encoder_hidden_states: torch.Tensor,
        controlnet_cond: torch.Tensor,
        conditioning_scale: float = 1.0,
        image_encoder_hidden_states: torch.Tensor | None = None,
        return_dict: bool = True,
        **kwargs,
    ):
        """diffusers' ControlNet forward, with ``image_encoder_hidden_states`` (B, N, D) read
        by the image cross-attention layers. Without image cross-attention this is exactly
        diffusers' forward and the image embeddings are not used."""
        if not self.config.use_image_cross_attention:
            return super().forward(
                sample,
                timestep,
                encoder_hidden_states,
                controlnet_cond,
                conditioning_scale=conditioning_scale,
                return_dict=return_dict,
                **kwargs,
            )
        if kwargs:
            raise TypeError(f"unsupported arguments with image cross-attention: {sorted(kwargs)}")
        if image_encoder_hidden_states is None:
            raise InputError("this ControlNet has image cross-attention: pass image embeddings")
        text, image = encoder_hidden_states, image_encoder_hidden_states
        if self.config.controlnet_conditioning_channel_order == "bgr":
            controlnet_cond = torch.flip(controlnet_cond, dims=[1])
        emb = self._time_embedding(sample, timestep)

        hidden = self.conv_in(sample) + self.controlnet_cond_embedding(controlnet_cond)
        residuals = [hidden]
        for block in self.down_blocks:
            if not hasattr(block, "image_attentions"):
                hidden, outputs = block(hidden_states=hidden, temb=emb)
                residuals.extend(outputs)
                continue
            for resnet, attn, image_attn in zip(
                block.resnets, block.attentions, block.image_attentions, strict=True
            ):
                hidden = _run(block, resnet, hidden, emb)
                hidden = attn(hidden, encoder_hidden_states=text, return_dict=False)[0]
                hidden = image_attn(hidden, encoder_hidden_states=image, return_dict=False)[0]
                residuals.append(hidden)
            for downsampler in block.downsamplers or []:
                hidden = downsampler(hidden)
                residuals.append(hidden)

        mid = self.mid_block
        hidden = _run(mid, mid.resnets[0], hidden, emb)
        for attn, image_attn, resnet in zip(
            mid.attentions, mid.image_attentions, mid.resnets[1:], strict=True
        ):
            hidden = attn(hidden, encoder_hidden_states=text, return_dict=False)[0]
            hidden = image_attn(hidden, encoder_hidden_states=image, return_dict=False)[0]
            hidden = _run(mid, resnet, hidden, emb)

        down = tuple(
            zero_conv(residual) * conditioning_scale
            for residual, zero_conv in zip(residuals, self.controlnet_down_blocks, strict=True)
        )
        mid_out = self.controlnet_mid_block(hidden) * conditioning_scale
        if not return_dict:
            return down, mid_out
        return ControlNetOutput(down_block_res_samples=down, mid_block_res_sample=mid_out)

    def _time_embedding(self, sample: torch.Tensor, timestep) -> torch.Tensor:
        timesteps = torch.as_tensor(timestep, device=sample.device)
        if not timesteps.is_floating_point():
            timesteps = timesteps.long()
        timesteps = timesteps.reshape(-1).expand(sample.shape[0])
        return self.time_embedding(self.time_proj(timesteps).to(dtype=sample.dtype))


def _run(block: torch.nn.Module, layer: torch.nn.Module, *inputs: torch.Tensor) -> torch.Tensor:
    """``layer(*inputs)``, recomputed in the backward pass when ``block`` checkpoints (as
    diffusers' own blocks run their resnets; the attention layers checkpoint their
    transformer blocks themselves)."""
    if torch.is_grad_enabled() and getattr(block, "gradient_checkpointing", False):
        return block._gradient_checkpointing_func(layer, *inputs)
    return layer(*inputs)


def _image_attention(text_attention, cross_attention_dim: int):
    """A copy of a text cross-attention layer's configuration that attends to image
    embeddings of width ``cross_attention_dim`` (fresh random weights)."""
    config = {k: v for k, v in text_attention.config.items() if not k.startswith("_")}
    config["cross_attention_dim"] = cross_attention_dim
    return type(text_attention)(**config)
