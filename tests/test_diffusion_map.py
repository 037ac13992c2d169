"""The pipeline object (``dlmap.DiffusionMAP``) on the tiny backbone: it is the one solver
behind a diffusers-like face, and ``load_image``'s output goes straight in."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from helpers import photo_png
from PIL import Image

from dlmap import DiffusionMAP, load_image
from dlmap.diffusion import build
from dlmap.enhance import solver
from dlmap.errors import InputError
from dlmap.files import sha256_file
from dlmap.images import to_uint8


@pytest.fixture(scope="module")
def pipe():
    return DiffusionMAP.from_pretrained(
        "tiny-seesr", prior="sharpness", lam=0.02, iters=2, steps=4, device="cpu"
    )


def test_the_pipeline_enhances_a_loaded_image_as_map_solve_does(pipe, tmp_path):
    path = photo_png(tmp_path, "coffee", size=32)
    image = load_image(path, size=None)  # (3, H, W): straight in
    out = pipe(image, seed=3)
    alone = solver.map_solve(
        build.load_backbone(pipe.settings.backbone),
        pipe.prior,
        image[None],
        pipe.settings.solver,
        pipe.settings.inversion,
        seeds=[3],
        quiet=True,
    )
    assert torch.equal(out.result.x, alone.x)  # the same solver, not a second path
    assert isinstance(out.images[0], Image.Image) and out.images[0].size == (32, 32)
    assert (np.asarray(out.images[0]) == to_uint8(alone.x[0])).all()  # 8-bit, as written
    record = out.records[0]
    assert record["prior"]["name"] == "sharpness" and record["config"]["solver"]["lam"] == 0.02
    assert record["final"]["x"]["score"] == pytest.approx(alone.final["x"]["score"][0])
    assert record["input"] is None  # in memory: the digest of its 8-bit pixels
    assert record["input_sha256"] == hashlib.sha256(to_uint8(image).tobytes()).hexdigest()
    by_path = pipe(path, seed=3)  # a path: read as load_image reads it
    assert torch.equal(by_path.result.x, out.result.x)
    assert by_path.records[0]["input"] == str(path)
    assert by_path.records[0]["input_sha256"] == sha256_file(path)
    assert len(pipe([path, path], seed=3).images) == 2  # a list: one batch


def test_to_moves_the_pipeline_and_returns_it(pipe):
    assert pipe.to("cpu") is pipe and pipe.device == torch.device("cpu")


def test_from_pretrained_names_what_it_cannot_load(tmp_path):
    with pytest.raises(InputError, match="not a backbone name"):
        DiffusionMAP.from_pretrained(str(tmp_path / "nowhere"), prior="sharpness", device="cpu")
