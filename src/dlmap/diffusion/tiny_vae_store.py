"""The demo's trained tiny VAE on disk, without torch: its architecture and training settings
(``VaeTraining``), reading and copying a trained folder. ``dlmap.diffusion.tiny_vae`` trains
and loads it; the command line builds its options from here."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from dlmap.errors import InputError
from dlmap.files import partial_path, sha256_file, write_manifest

KIND = "dlmap tiny VAE"
"""``training.json``'s ``kind``: what ``load_trained_vae`` accepts."""

TRAINED_VAE = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 3,
    up_block_types=("UpDecoderBlock2D",) * 3,
    block_out_channels=(16, 32, 64),
    layers_per_block=1,
    latent_channels=4,
    norm_num_groups=8,
    sample_size=224,
)
"""The trained VAE's architecture: SD2's VAE (``AutoencoderKL``) at toy size."""


def factor_of(config: dict) -> int:
    """Pixels per latent cell along each side: 2 ** (number of blocks - 1)."""
    return 2 ** (len(config["block_out_channels"]) - 1)


@dataclass(frozen=True)
class VaeTraining:
    """How the tiny VAE is trained (every field is recorded in ``training.json``).

    ``threads`` is fixed because the thread count changes the order of floating-point sums
    and this short training is sensitive to it: with the defaults, 2 threads gave 26.1 dB
    mean held-out PSNR and 1 thread 24.3 dB (below bicubic's 25.2, a blue sky decoded
    purple). Fixing it makes the trained weights a function of the settings on one machine.
    """

    steps: int = 3600
    batch_size: int = 8
    crop: int = 48
    colour: float = 0.5  # share of the crops whose colours are rotated (``_recolour``)
    lr: float = 1e-3
    warmup: float = 0.05  # share of the steps with a linear warm-up
    clip: float = 0.5  # the gradient's norm is clipped to this
    kl_weight: float = 1e-4
    ema: float = 0.995
    seed: int = 0
    eval_size: int = 224
    threads: int = 2  # torch CPU threads while training (see above)

    def __post_init__(self):
        for name in ("steps", "batch_size", "crop", "eval_size", "threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.crop % factor_of(TRAINED_VAE):
            raise ValueError(f"crop must be a multiple of {factor_of(TRAINED_VAE)}")
        if not 0 < self.lr < 1 or not 0 <= self.warmup < 1 or not 0 <= self.ema < 1:
            raise ValueError("need 0 < lr < 1, 0 <= warmup < 1 and 0 <= ema < 1")
        if not 0 <= self.colour <= 1:
            raise ValueError(f"colour must be a share in [0, 1], got {self.colour}")
        if self.kl_weight < 0 or self.clip <= 0:
            raise ValueError(f"need kl_weight >= 0 and clip > 0, got {self.kl_weight}, {self.clip}")


SHIPPED = Path(__file__).with_name("shipped_vae")
"""Trained tiny VAEs that ship with dlmap, one folder per recipe (``tiny_vae.recipe_key``):
the demo's first run copies the one of its recipe instead of training for minutes."""


def shipped_vae(recipe: str) -> Path | None:
    """The shipped VAE folder trained by the recipe ``recipe``, or None."""
    folder = SHIPPED / recipe
    return folder if (folder / "training.json").is_file() else None


#: the files of a trained VAE whose sha256 ``training.json`` records (the weights and the
#: architecture the loader reads)
VERIFIED_FILES = ("config.json", "diffusion_pytorch_model.safetensors")


def _partial(target: Path) -> Path:
    """A fresh temporary folder beside ``target`` (one per process; those of killed
    processes are removed first, ``files.partial_path``)."""
    partial = partial_path(target)
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    return partial


def file_digests(folder: str | Path) -> dict[str, str]:
    """The sha256 of each of ``VERIFIED_FILES`` in ``folder``, for its ``training.json``."""
    return {name: sha256_file(Path(folder) / name) for name in VERIFIED_FILES}


def copy_vae(source: str | Path, out: str | Path) -> None:
    """Copy a trained VAE folder to ``out`` (whole or not at all), after checking it, with a
    SHA256SUMS of its files (``files.write_manifest``)."""
    out = Path(out)
    verify_vae(source)
    partial = partial_path(out)
    shutil.rmtree(partial, ignore_errors=True)
    try:
        shutil.copytree(source, partial)
        write_manifest(partial)  # what a workflow job that reads ``out`` verifies first
        shutil.rmtree(out, ignore_errors=True)
        partial.replace(out)
    finally:
        shutil.rmtree(partial, ignore_errors=True)


class TrainedVaeError(InputError):
    """A folder is not a trained tiny VAE; the message names the folder and what is wrong."""


def read_record(folder: str | Path) -> dict:
    """``training.json`` of a trained tiny VAE folder, checked."""
    folder = Path(folder)
    record_path = folder / "training.json"
    if not folder.is_dir():
        raise TrainedVaeError(
            f"{folder}: no such folder (train one: dlmap train-vae --out {folder})"
        )
    if not record_path.is_file():
        raise TrainedVaeError(
            f"{folder}: no training.json; not a VAE written by dlmap "
            "train-vae (or its training did not finish)"
        )
    try:
        record = json.loads(record_path.read_text())
    except (OSError, ValueError) as error:
        raise TrainedVaeError(f"{record_path}: unreadable ({error})") from error
    if not isinstance(record, dict) or record.get("kind") != KIND:
        raise TrainedVaeError(f"{record_path}: not a record of a {KIND}")
    return record


def verify_vae(folder: str | Path, todo: str | None = None) -> dict:
    """``read_record``, and every file whose sha256 the record holds unchanged since
    training; a damaged folder raises ``TrainedVaeError`` naming the file and ``todo`` (what
    to do; default: train it again into this folder). Returns the record."""
    folder = Path(folder)
    todo = todo or f"train it again: dlmap train-vae --out {folder}"
    record = read_record(folder)
    recorded = record.get("files")
    if not isinstance(recorded, dict) or set(recorded) != set(VERIFIED_FILES):
        raise TrainedVaeError(
            f"{folder}/training.json: records no sha256 of {', '.join(VERIFIED_FILES)} "
            f"(written before dlmap 0.3?); {todo}"
        )
    for name, digest in recorded.items():
        path = folder / name
        if not path.is_file():
            raise TrainedVaeError(f"{path}: missing; {todo}")
        if sha256_file(path) != digest:
            raise TrainedVaeError(
                f"{path}: changed since training (sha256 differs from training.json's); {todo}"
            )
    return record
