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


@pytest.fixture
def db(tmp_path):
    """A 2AFC study of three conditions, two pairs each, two training trials."""
    from helpers import CONDITIONS

    from dlmap.experiment import study
    from dlmap.testing.experiment import write_fake_pairs

    pairs = write_fake_pairs(tmp_path, CONDITIONS, k=2)
    path = tmp_path / "study.sqlite"
    study.create_study(path, pairs, tmp_path / "images", training=2, repeats=1, seed=7)
    return path


@pytest.fixture
def client(db):
    """Flask's test client of the app serving ``db``, with its public URL."""
    from helpers import ADMIN, PUBLIC

    from dlmap.experiment.app import create_app

    app = create_app(db, ADMIN, PUBLIC)
    app.testing = True
    return app.test_client()
