"""dlmap's SeeSR ControlNet and RAM/DAPE embedder reproduce SeeSR's own implementation.

``data/seesr_reference.pt`` holds outputs of SeeSR's code (its ControlNet with image
cross-attention, RAM's Swin with loralib adapters) on weights drawn per parameter name; see
``data/make_seesr_reference.py`` for how it was recorded. Here the same weights go through
dlmap's key mapping into dlmap's classes, which must give the same outputs.
"""

from pathlib import Path

import pytest
import torch
from data.make_seesr_reference import deterministic, inputs

from dlmap.diffusion import dape
from dlmap.diffusion.seesr import SeeSRControlNetModel

REFERENCE = Path(__file__).parent / "data" / "seesr_reference.pt"


@pytest.fixture(scope="module")
def reference():
    return torch.load(REFERENCE, weights_only=True)


def test_seesr_controlnet_matches_seesr_code_key_for_key_and_output(reference):
    config = {**reference["controlnet_config"], "image_cross_attention_dim": 512}
    net = SeeSRControlNetModel(**config).double().eval()
    ours = {k: tuple(v.shape) for k, v in net.named_parameters()}
    assert ours == reference["controlnet_params"]
    state = {name: deterministic(name, shape) for name, shape in ours.items()}
    net.load_state_dict(state, strict=True)
    x = inputs()
    with torch.no_grad():
        down, mid = net(
            x["latent"],
            500,
            x["text"],
            x["control"],
            image_encoder_hidden_states=x["image_embeddings"],
            return_dict=False,
        )
    assert torch.allclose(mid, reference["controlnet_mid"], rtol=0, atol=1e-10)
    for a, b in zip(down, reference["controlnet_down"], strict=True):
        assert torch.allclose(a, b, rtol=0, atol=1e-10)


def test_ram_dape_embeddings_match_seesr_code_through_the_key_mapping(reference):
    params, buffers = reference["ram_params"], reference["ram_buffers"]
    checkpoint = {name: deterministic(name, shape) for name, shape in params.items()}
    ram = {k: v for k, v in checkpoint.items() if "lora_" not in k} | buffers
    adapters = {k: v for k, v in checkpoint.items() if "lora_" in k}
    assert adapters and any(k.endswith("attn_mask") for k in ram)
    embedder = dape.ImageEmbedder(reference["swin_config"]).double().eval()
    state, ignored = dape.ram_to_embedder_state(ram, adapters, embedder)
    assert ignored == []
    embedder.load_state_dict(state, strict=True)
    with torch.no_grad():
        out = embedder(inputs()["pixels"])
    assert torch.allclose(out, reference["embeddings"], rtol=0, atol=1e-10)
