"""Helpers the tests share (images, tiny checkpoints, running the CLI); fixtures stay in
conftest.py."""

from __future__ import annotations

import torch
from hypothesis import HealthCheck

from dlmap.diffusion import dape, tiny
from dlmap.priors import specs
from dlmap.testing import released

#: hypothesis settings for fuzzing: no example database (nothing written into the checkout),
#: no deadline (CI's machines are slow and noisy)
FUZZ = {
    "deadline": None,
    "database": None,
    "suppress_health_check": [HealthCheck.function_scoped_fixture],
}


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    """||a - b|| / ||b||: how far a tensor is from a reference, relative to the reference."""
    return ((a - b).norm() / b.norm()).item()


def photo(size: int = 64, name: str = "astronaut", dtype=torch.float64) -> torch.Tensor:
    """A real photograph bundled with scikit-image, as (3, size, size) in [0, 1]."""
    import numpy as np
    from skimage import data

    from dlmap.images import center_crop_resize

    pixels = getattr(data, name)()
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[..., None], 3, axis=2)
    resized = center_crop_resize(pixels.astype("float32") / 255, size)
    return torch.from_numpy(resized).permute(2, 0, 1).to(dtype)


def edit_checkpoint(folder, drop=None, add=None) -> None:
    """Drop the key ``drop`` from, or add a key ``add`` to, a diffusers weights file."""
    from safetensors.torch import load_file, save_file

    path = folder / "diffusion_pytorch_model.safetensors"
    state = load_file(path)
    if drop:
        del state[drop]
    if add:
        state[add] = torch.zeros(2)
    save_file(state, path)


def write_tiny_sd2_folder(folder) -> None:
    """SD2-base's diffusers layout (unet, vae, text_encoder, tokenizer) with tiny random nets
    (``dlmap.testing.released``, the full-size rehearsal's writer).

    Exercises the real loading path offline: strict weight loading, the tokenizer and the
    text encoder's empty-prompt embedding. The controlnet/ folder is for the sd2-controlnet
    tests.
    """
    from transformers import CLIPTextConfig, CLIPTextModel

    backbone = tiny.tiny_backbone("controlnet", seed=1)
    text_encoder = CLIPTextModel(CLIPTextConfig(**tiny.TINY_TEXT_ENCODER))
    vocab, merges = released.toy_tokenizer_files()
    released.write_sd2_folder(folder, backbone.unet, backbone.vae, text_encoder, vocab, merges)
    backbone.controlnet.save_pretrained(folder / "controlnet")


def write_tiny_seesr_files(folder, seed: int = 2):
    """SeeSR's, RAM's and DAPE's released files at toy size, named and laid out as theirs
    (``dlmap.testing.released.write_seesr_files``): <folder>/seesr/{controlnet,unet},
    <folder>/ram/ram_swin_large_14m.pth, <folder>/dape/DAPE.pth. Returns the backbone whose
    weights were written, with the adapters merged."""
    backbone = tiny.tiny_backbone("seesr", seed=seed)
    embedder = backbone.image_embedder
    ram, adapters = released.write_seesr_files(
        folder, backbone.unet, backbone.controlnet, embedder, seed
    )
    merged, _ = dape.ram_to_embedder_state(ram, adapters, embedder)
    embedder.load_state_dict(merged)
    return backbone


def build_prior(name: str, cache):
    """A registered prior built for tests (under ``offline_priors``): small random MS-LIQE."""
    from dlmap.msliqe import model as msliqe
    from dlmap.priors import registry as priors

    if name in specs.PYIQA_SPECS or name == "niqe":
        return priors.create_prior(name, cache=cache)
    if name == "ms-liqe":
        config = msliqe.MSLIQEConfig(clip=msliqe.TINY_CLIP)
        return priors.create_prior(name, config=config, allow_random=True)
    return priors.create_prior(name)


def run_cli(argv, capsys):
    """``dlmap ARGV`` in this process: (exit code, stdout, stderr)."""
    from dlmap.cli import main as cli

    try:
        code = cli.main([str(a) for a in argv])
    except SystemExit as exit:  # argparse's own errors
        code = exit.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def photo_png(folder, name: str = "astronaut", size: int = 96):
    """A bundled photograph written as FOLDER/NAME.png (8-bit), the way users hand in images."""
    from dlmap.images import save_png_atomic

    path = folder / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_png_atomic(photo(size, name, torch.float32), path)
    return path


def load_backbone(name: str, *, seed: int = 0, image_embedder_config=None, **fields):
    """``dlmap.diffusion.build.load_backbone`` on the CPU for the ``BackboneSettings`` fields
    given (folders may be paths)."""
    from pathlib import Path

    from dlmap.diffusion import build
    from dlmap.settings import BackboneSettings

    fields = {key: str(v) if isinstance(v, Path) else v for key, v in fields.items()}
    settings = BackboneSettings(name=name, device="cpu", **fields)
    return build.load_backbone(settings, seed=seed, image_embedder_config=image_embedder_config)


# --- the 2AFC study (dlmap.experiment); the fixtures ``db`` and ``client`` are in conftest.py ---

CONDITIONS = ["gamma", "alpha", "beta"]  # not in sorted order: exports must sort them
ADMIN = "experimenter-secret-token-0123456789"
PUBLIC = "https://study.lab.example"


def add_subject(db, name: str) -> dict:
    """A new subject of the study in ``db``: its row, with its token."""
    from dlmap.experiment import study

    connection = study.open_study(db)
    try:
        return study.add_subject(connection, name)
    finally:
        connection.close()


def subject_trials(db, token) -> list[int]:
    """The subject's trial ids in their order (training first)."""
    import sqlite3

    with sqlite3.connect(db) as connection:
        rows = connection.execute(
            "SELECT t.id FROM trials t JOIN subjects s ON s.id = t.subject WHERE s.token = ?"
            " ORDER BY t.position",
            (token,),
        ).fetchall()
    return [row[0] for row in rows]


def stored_answers(db) -> int:
    import sqlite3

    with sqlite3.connect(db) as connection:
        return connection.execute("SELECT COUNT(*) FROM answers").fetchone()[0]


def next_state(client, token) -> dict:
    response = client.get(f"/s/{token}/state")
    assert response.status_code == 200
    return response.get_json()


def answer_all(client, token, prefer=None) -> None:
    """Answer every trial through the app: the left image, or with ``prefer`` (conditions,
    best first) the image of the condition it ranks higher."""
    import sqlite3

    from dlmap.testing.experiment import answer_payload

    connection = sqlite3.connect(client.application.config["STUDY_DB"])
    try:
        while not (state := next_state(client, token))["finished"]:
            trial, side = state["trial"]["id"], "left"
            if prefer is not None:
                i, j, swapped = connection.execute(
                    "SELECT p.enhancer_i, p.enhancer_j, t.swapped FROM trials t"
                    " JOIN pairs p ON p.id = t.pair WHERE t.id = ?",
                    (trial,),
                ).fetchone()
                left, right = (j, i) if swapped else (i, j)
                side = "left" if prefer.index(left) < prefer.index(right) else "right"
            response = client.post(f"/s/{token}/answer", json=answer_payload(trial, side))
            assert response.status_code == 200, response.get_json()
    finally:
        connection.close()


def cli_exit(argv, capsys) -> tuple[int, str]:
    """(exit code, stderr) of ``dlmap ARGV``; argparse's own exits count as return codes."""
    code, _, err = run_cli(argv, capsys)
    return code, err


def one_line_error(code, err, *needles) -> None:
    """A refusal: exit code 2, one line (after argparse's usage line, if any), no traceback,
    naming each of ``needles``."""
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 or (lines[0].startswith("usage:") and len(lines) == 2), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[-1], (needle, err)
