"""Where model weights live, how they are fetched, and the error raised when they are missing.

Nothing here downloads on its own: loaders call ``locate``, which only looks on disk and
raises ``WeightsMissingError`` (naming the files, the source and the target folder) before any
work starts. Downloads happen only through ``fetch`` (``dlmap weights fetch NAME``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CACHE_ENV = "DLMAP_CACHE"


class WeightsMissingError(RuntimeError):
    """Weights needed by a model are not on disk."""


@dataclass(frozen=True)
class WeightSource:
    """A set of files one model needs, in a folder under the cache named after ``name``.

    ``files`` lists required paths relative to that folder; an entry with alternatives is a
    tuple (any one of them suffices, e.g. safetensors or bin). ``repo_id`` is the Hugging Face
    repository the files come from, or None when they must be placed by hand (``manual``).
    """

    name: str
    description: str
    files: tuple
    repo_id: str | None = None
    manual: str = ""


SOURCES: dict[str, WeightSource] = {
    "sd2-base": WeightSource(
        name="sd2-base",
        description="Stable Diffusion 2 base (UNet, VAE, text encoder, tokenizer)",
        repo_id="stabilityai/stable-diffusion-2-base",
        files=(
            "unet/config.json",
            ("unet/diffusion_pytorch_model.safetensors", "unet/diffusion_pytorch_model.bin"),
            "vae/config.json",
            ("vae/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.bin"),
            "text_encoder/config.json",
            ("text_encoder/model.safetensors", "text_encoder/pytorch_model.bin"),
            "tokenizer/vocab.json",
            "tokenizer/merges.txt",
            "tokenizer/tokenizer_config.json",
            "tokenizer/special_tokens_map.json",
        ),
    ),
    "sd2-controlnet": WeightSource(
        name="sd2-controlnet",
        description="a ControlNet for SD2-base conditioned on the input image (diffusers format)",
        files=(
            "config.json",
            ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin"),
        ),
        manual=(
            "place a diffusers-format ControlNetModel trained for SD2-base "
            "(config.json and diffusion_pytorch_model.safetensors) there"
        ),
    ),
}


def cache_dir(cache: str | os.PathLike | None = None) -> Path:
    """The weights folder: ``cache`` if given, else $DLMAP_CACHE, else ~/.cache/dlmap."""
    if cache is not None:
        return Path(cache).expanduser()
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    return Path.home() / ".cache" / "dlmap"


def _missing_files(folder: Path, files: tuple) -> list[str]:
    missing = []
    for entry in files:
        options = entry if isinstance(entry, tuple) else (entry,)
        if not any((folder / option).is_file() for option in options):
            missing.append(options[0])
    return missing


def locate(name: str, path: str | os.PathLike | None = None, cache=None) -> Path:
    """The folder holding ``name``'s files: ``path`` if given, else ``<cache>/<name>``.

    ``path`` may also be a Hugging Face repo id already present in the local hub cache.
    Raises ``WeightsMissingError`` listing every missing file and how to get it.
    """
    if name not in SOURCES:
        raise KeyError(f"unknown weights {name!r}; known: {', '.join(sorted(SOURCES))}")
    source = SOURCES[name]
    folder = Path(path).expanduser() if path is not None else cache_dir(cache) / name
    if path is not None and not folder.exists() and _looks_like_repo_id(str(path)):
        folder = _hub_snapshot(str(path), source) or folder
    missing = _missing_files(folder, source.files)
    if not missing:
        return folder
    if source.repo_id is not None:
        how = (
            f"fetch them with `dlmap weights fetch {name}` (from the Hugging Face repo "
            f"{source.repo_id}), or copy that repo's files into {folder}"
        )
    else:
        how = source.manual
    raise WeightsMissingError(
        f"{source.description}: missing in {folder}: {', '.join(missing)}; {how}"
    )


def _looks_like_repo_id(text: str) -> bool:
    parts = text.split("/")
    return len(parts) == 2 and all(parts) and not text.startswith((".", "~"))


def _hub_snapshot(repo_id: str, source: WeightSource) -> Path | None:
    """The local hub-cache snapshot of ``repo_id``, or None; never downloads."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError, ValueError):
        return None


def fetch(name: str, cache=None) -> Path:
    """Download ``name``'s files into ``<cache>/<name>`` (the only function that downloads)."""
    if name not in SOURCES:
        raise KeyError(f"unknown weights {name!r}; known: {', '.join(sorted(SOURCES))}")
    source = SOURCES[name]
    folder = cache_dir(cache) / name
    if source.repo_id is None:
        raise WeightsMissingError(
            f"{source.description} cannot be downloaded automatically: {source.manual} "
            f"(folder {folder})"
        )
    from huggingface_hub import snapshot_download

    patterns = [entry[0] if isinstance(entry, tuple) else entry for entry in source.files]
    snapshot_download(source.repo_id, allow_patterns=patterns, local_dir=folder)
    return locate(name, cache=cache)
