"""Shared fixtures: tiny random backbones of SD2's classes, tiny SD2/SeeSR/RAM/DAPE files."""

from __future__ import annotations

import pytest
import torch

from dlmap.diffusion import tiny


@pytest.fixture(scope="session", params=["seesr", "controlnet"])
def tiny64(request):
    """Tiny UNet + ControlNet + VAE in float64 (exactness tests), once with SeeSR's
    image-attention ControlNet and RAM/DAPE embedder, once with diffusers' stock ControlNet."""
    return tiny.tiny_backbone(request.param, seed=0, dtype=torch.float64)


@pytest.fixture(scope="session")
def tiny32():
    """The tiny SeeSR backbone in float32."""
    return tiny.tiny_backbone("seesr", seed=0, dtype=torch.float32)


@pytest.fixture(scope="session")
def tiny_vanilla64():
    return tiny.tiny_backbone("vanilla", seed=0, dtype=torch.float64)


@pytest.fixture()
def offline_priors(tmp_path):
    """Build every prior with random weights (``dlmap.testing.random_priors``, small CLIPs): nothing
    downloads, no weight file is read. Returns the cache folder to pass to ``build_prior``."""
    from dlmap.testing.random_priors import random_weights

    with random_weights(small_clip=True):
        yield tmp_path
