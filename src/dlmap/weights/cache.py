"""Where model weights live, how they are fetched, and the error raised when they are missing.

Nothing here downloads on its own: loaders call ``locate``, which only looks on disk and
raises ``WeightsMissingError`` (naming the files, the source and the target folder) before any
work starts. Downloads happen only through ``fetch`` (``dlmap weights fetch NAME``).
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from dlmap.errors import DlmapError
from dlmap.files import sha256_file as sha256_of
from dlmap.files import write_text_atomic

CACHE_ENV = "DLMAP_CACHE"


class WeightsMissingError(DlmapError, RuntimeError):
    """Weights needed by a model are not on disk."""


class WeightKeyError(DlmapError, RuntimeError):
    """A checkpoint's keys do not match the network it is loaded into."""


class ChecksumError(DlmapError, RuntimeError):
    """A weight file differs from the one whose sha256 was recorded at first placement."""


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
    repo_type: str = "model"
    manual: str = ""


SEESR_DRIVE = "https://drive.google.com/drive/folders/12HXrRGEXUAnmHRaf0bIn-S8XSK4Ku0JO"
SEESR_ONEDRIVE = (
    "https://connectpolyu-my.sharepoint.com/:f:/g/personal/22042244r_connect_polyu_hk/"
    "EiUmSfWRmQFNiTGJWs7rOx0BpZn2xhoKN6tXFmTSGJ4Jfw?e=RdLbvg"
)
_SEESR_LINKS = (
    f"SeeSR's Google Drive folder {SEESR_DRIVE} (or its OneDrive mirror {SEESR_ONEDRIVE})"
)

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
    "seesr": WeightSource(
        name="seesr",
        description="SeeSR's ControlNet and UNet (Wu et al., CVPR 2024)",
        files=(
            "controlnet/config.json",
            (
                "controlnet/diffusion_pytorch_model.safetensors",
                "controlnet/diffusion_pytorch_model.bin",
            ),
            "unet/config.json",
            ("unet/diffusion_pytorch_model.safetensors", "unet/diffusion_pytorch_model.bin"),
        ),
        manual=(
            f"open {_SEESR_LINKS}, download its folder `seesr` (subfolders `controlnet` and "
            "`unet`, each a config.json and a diffusion_pytorch_model file) and place both "
            "subfolders in the target folder"
        ),
    ),
    "dape": WeightSource(
        name="dape",
        description="SeeSR's DAPE adapters for RAM (DAPE.pth)",
        files=("DAPE.pth",),
        manual=f"open {_SEESR_LINKS}, download DAPE.pth and place it in the target folder",
    ),
    "ram-swin-large": WeightSource(
        name="ram-swin-large",
        description="RAM's Swin-L checkpoint (ram_swin_large_14m.pth)",
        files=("ram_swin_large_14m.pth",),
        repo_id="xinyu1205/recognize-anything",
        repo_type="space",
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
            "(config.json and diffusion_pytorch_model.safetensors) in the target folder"
        ),
    ),
}


PAPER_WEIGHTS = ("sd2-base", "seesr", "ram-swin-large", "dape")
"""What the paper's backbone (``sd2-seesr``) needs; ``sd2-controlnet`` is for your own."""


def cache_dir(cache: str | os.PathLike | None = None) -> Path:
    """The weights folder: ``cache`` if given, else $DLMAP_CACHE, else ~/.cache/dlmap."""
    if cache is not None:
        return Path(cache).expanduser()
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    return Path.home() / ".cache" / "dlmap"


def present_files(folder: Path, files: tuple) -> tuple[list[Path], list[str]]:
    """The files of ``files`` found in ``folder`` and the names of those missing."""
    present, missing = [], []
    for entry in files:
        options = entry if isinstance(entry, tuple) else (entry,)
        found = [folder / option for option in options if (folder / option).is_file()]
        if found:
            present.append(found[0])
        else:
            missing.append(options[0])
    return present, missing


def manual_steps(name: str, cache=None, folder: Path | None = None) -> str:
    """How to get ``name``'s files by hand, naming the exact target folder and files."""
    source = SOURCES[name]
    folder = folder or cache_dir(cache) / name
    wanted = ", ".join(entry[0] if isinstance(entry, tuple) else entry for entry in source.files)
    if source.repo_id is not None:
        how = (
            f"run `dlmap weights fetch {name}` (Hugging Face {source.repo_type} "
            f"{source.repo_id}), or copy those files there"
        )
    else:
        how = source.manual
    return f"{source.description}: {how}. Target folder: {folder}; files: {wanted}"


def locate(name: str, path: str | os.PathLike | None = None, cache=None) -> Path:
    """The folder holding ``name``'s files: ``path`` if given, else ``<cache>/<name>``.

    ``path`` may also be a Hugging Face repo id already present in the local hub cache.
    Raises ``WeightsMissingError`` listing every missing file and how to get it, and
    ``ChecksumError`` if a file changed since its sha256 was recorded (``verify_files``).
    """
    if name not in SOURCES:
        raise KeyError(f"unknown weights {name!r}; known: {', '.join(sorted(SOURCES))}")
    source = SOURCES[name]
    folder = Path(path).expanduser() if path is not None else cache_dir(cache) / name
    hub = False
    if path is not None and not folder.exists() and _looks_like_repo_id(str(path)):
        snapshot = _hub_snapshot(str(path), source)
        folder, hub = (snapshot, True) if snapshot else (folder, False)
    present, missing = present_files(folder, source.files)
    if missing:
        raise WeightsMissingError(
            f"{source.description}: missing in {folder}: {', '.join(missing)}; "
            + manual_steps(name, cache, folder).split(": ", 1)[1]
        )
    if not hub:  # the hub cache checks its own files
        verify_files(present, cache)
    return folder


def _looks_like_repo_id(text: str) -> bool:
    parts = text.split("/")
    return len(parts) == 2 and all(parts) and not text.startswith((".", "~"))


def _hub_snapshot(repo_id: str, source: WeightSource) -> Path | None:
    """The local hub-cache snapshot of ``repo_id``, or None; never downloads."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, repo_type=source.repo_type, local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError, ValueError):
        return None


# --- our own sha256 records ------------------------------------------------------------------

MANIFEST = "sha256-manifest.json"


def verify_files(paths: list[Path], cache=None, full: bool = False) -> dict[str, str]:
    """Record each file's sha256 the first time it is seen; check it every time after.

    The records live in ``<cache>/sha256-manifest.json``, keyed by absolute path, with size
    and modification time. A file whose size changed, or whose modification time changed
    and whose sha256 differs, raises ``ChecksumError``. ``full=True`` (``dlmap weights
    check``) re-hashes every file whatever its modification time. Returns path -> sha256.
    """
    manifest_path = cache_dir(cache) / MANIFEST
    records = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    changed, digests, to_hash = False, {}, []
    for path in paths:
        key, stat = str(path.resolve()), path.stat()
        record = records.get(key)
        if record is not None and record["size"] != stat.st_size:
            raise ChecksumError(_changed(path, record, f"size {stat.st_size}", manifest_path))
        if record is not None and record["mtime_ns"] == stat.st_mtime_ns and not full:
            digests[key] = record["sha256"]
        else:
            to_hash.append((path, key, stat, record))
    total = sum(stat.st_size for _, _, stat, _ in to_hash)
    with tqdm(
        total=total, unit="B", unit_scale=True, desc="sha256", disable=total < 1 << 28
    ) as bar:
        for path, key, stat, record in to_hash:
            digest = sha256_of(path, progress=bar)
            if record is not None and digest != record["sha256"]:
                raise ChecksumError(_changed(path, record, f"sha256 {digest}", manifest_path))
            digests[key] = digest
            entry = {"sha256": digest, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
            changed = changed or records.get(key) != entry
            records[key] = entry
    if changed:
        try:
            manifest_path.parent.mkdir(parents=True, exist_ok=True)
            write_text_atomic(json.dumps(records, indent=1, sort_keys=True) + "\n", manifest_path)
        except OSError as error:  # a read-only shared cache: verify, but cannot record
            warnings.warn(f"cannot record sha256 in {manifest_path}: {error}", stacklevel=2)
    return digests


def digests(name: str, folder: Path, cache=None) -> dict[str, str]:
    """sha256 of each of ``name``'s files in ``folder`` (relative path -> digest), checked
    against the records; for the provenance of results."""
    present, _ = present_files(folder, SOURCES[name].files)
    recorded = verify_files(present, cache)
    return {str(path.relative_to(folder)): recorded[str(path.resolve())] for path in present}


def _changed(path: Path, record: dict, now: str, manifest: Path) -> str:
    return (
        f"{path} changed since its first placement (recorded size {record['size']}, sha256 "
        f"{record['sha256']}; now {now}). Restore the original file, or delete its entry "
        f"in {manifest} if the replacement is deliberate"
    )


def fetch(name: str, cache=None) -> Path:
    """Download ``name``'s files into ``<cache>/<name>`` (the only function that downloads).

    Files that cannot be downloaded automatically raise ``WeightsMissingError`` with the
    exact manual steps, unless they are already in place (then they are verified).
    """
    if name not in SOURCES:
        raise KeyError(f"unknown weights {name!r}; known: {', '.join(sorted(SOURCES))}")
    source = SOURCES[name]
    folder = cache_dir(cache) / name
    if source.repo_id is None:
        present, missing = present_files(folder, source.files)
        if missing:
            raise WeightsMissingError(
                f"cannot be downloaded automatically: {manual_steps(name, cache)}; "
                f"missing: {', '.join(missing)}"
            )
        return locate(name, cache=cache)
    from huggingface_hub import snapshot_download

    patterns = [entry[0] if isinstance(entry, tuple) else entry for entry in source.files]
    snapshot_download(
        source.repo_id, repo_type=source.repo_type, allow_patterns=patterns, local_dir=folder
    )
    return locate(name, cache=cache)
