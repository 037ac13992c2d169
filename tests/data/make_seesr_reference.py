"""Write ``seesr_reference.pt``: outputs of SeeSR's OWN code on deterministic random weights.

``tests/test_reference.py`` loads the same weights into dlmap's classes and must reproduce
these outputs. This script runs SeeSR's implementation (its ``models/controlnet.py`` and RAM's
``ram/models/swin_transformer_lora.py``), which is not part of dlmap and is not copied here:

    git clone https://github.com/cswry/SeeSR /tmp/SeeSR
    python3 -m venv /tmp/seesr-venv
    /tmp/seesr-venv/bin/pip install torch diffusers==0.21.0 huggingface_hub==0.25.2 \\
        transformers==4.36.2 loralib timm==0.9.16 scipy
    /tmp/seesr-venv/bin/python tests/data/make_seesr_reference.py /tmp/SeeSR

Every parameter is drawn from its own generator seeded by its name (``deterministic``), so
the weights do not depend on the order in which either implementation creates its layers.
Stored: each network's parameter names and shapes, its buffers, the outputs. Recorded with
torch 2.14.1 (CPU), diffusers 0.21.0, loralib 0.1.2, timm 0.9.16.
"""

from __future__ import annotations

import importlib.util
import sys
import zlib
from pathlib import Path

import torch

CONTROLNET = dict(
    block_out_channels=(32, 64),
    layers_per_block=1,
    down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
    cross_attention_dim=32,
    attention_head_dim=(2, 4),
    norm_num_groups=8,
    conditioning_embedding_out_channels=(8, 8, 16, 16),
    use_image_cross_attention=True,
)
"""A toy SD2-like ControlNet; SeeSR's image attention width is fixed at 512."""
SWIN = dict(
    image_size=64,
    patch_size=4,
    embed_dim=16,
    depths=(2, 2),
    num_heads=(1, 2),
    window_size=4,
    embedding_dim=16,
)


def deterministic(name: str, shape, scale: float = 0.1) -> torch.Tensor:
    """A float64 tensor drawn from a generator seeded by ``name`` alone."""
    generator = torch.Generator().manual_seed(zlib.crc32(name.encode()))
    return torch.randn(*shape, generator=generator, dtype=torch.float64) * scale


def inputs() -> dict:
    return dict(
        latent=deterministic("latent", (2, 4, 8, 8), 1.0),
        text=deterministic("text", (2, 77, 32), 1.0),
        control=deterministic("control", (2, 3, 64, 64), 1.0).sigmoid(),
        image_embeddings=deterministic("image_embeddings", (2, 5, 512), 1.0),
        pixels=deterministic("pixels", (2, 3, 64, 64), 1.0).sigmoid(),
    )


def fill(module: torch.nn.Module, prefix: str = "") -> None:
    with torch.no_grad():
        for name, param in module.named_parameters():
            param.copy_(deterministic(prefix + name, param.shape))


def main(seesr_repo: str) -> None:
    sys.path.insert(0, seesr_repo)
    from models.controlnet import ControlNetModel

    x = inputs()
    net = ControlNetModel(**CONTROLNET).double().eval()
    fill(net)
    with torch.no_grad():
        down, mid = net(
            x["latent"],
            500,
            encoder_hidden_states=x["text"],
            controlnet_cond=x["control"],
            image_encoder_hidden_states=x["image_embeddings"],
            return_dict=False,
        )

    path = Path(seesr_repo) / "ram" / "models" / "swin_transformer_lora.py"
    spec = importlib.util.spec_from_file_location("swin_transformer_lora", path)
    swin_module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(swin_module)
    swin = swin_module.SwinTransformer(
        img_size=SWIN["image_size"],
        patch_size=SWIN["patch_size"],
        in_chans=3,
        embed_dim=SWIN["embed_dim"],
        depths=list(SWIN["depths"]),
        num_heads=list(SWIN["num_heads"]),
        window_size=SWIN["window_size"],
        mlp_ratio=4.0,
        qkv_bias=True,
        drop_rate=0.0,
        drop_path_rate=0.1,
        ape=False,
        patch_norm=True,
    ).double()
    proj = torch.nn.Linear(swin.num_features, SWIN["embedding_dim"]).double()
    fill(swin, "visual_encoder.")
    fill(proj, "image_proj.")
    params = {f"visual_encoder.{k}": tuple(v.shape) for k, v in swin.named_parameters()}
    params.update({f"image_proj.{k}": tuple(v.shape) for k, v in proj.named_parameters()})
    buffers = {f"visual_encoder.{k}": v.clone() for k, v in swin.named_buffers()}
    swin.eval()  # loralib merges the adapters into qkv here
    mean = torch.tensor([0.485, 0.456, 0.406], dtype=torch.float64).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225], dtype=torch.float64).view(1, 3, 1, 1)
    with torch.no_grad():  # SeeSR's transform: Resize((384, 384)) (identity here), Normalize
        embeddings = proj(swin((x["pixels"] - mean) / std))

    torch.save(
        dict(
            controlnet_config=CONTROLNET,
            controlnet_params={k: tuple(v.shape) for k, v in net.named_parameters()},
            controlnet_down=[t.clone() for t in down],
            controlnet_mid=mid.clone(),
            swin_config=SWIN,
            ram_params=params,
            ram_buffers=buffers,
            embeddings=embeddings.clone(),
        ),
        Path(__file__).with_name("seesr_reference.pt"),
    )


if __name__ == "__main__":
    main(sys.argv[1])
