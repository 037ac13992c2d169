"""A synthetic IQA data set from photographs bundled with scikit-image (offline, for tests).

Each source photograph is centre-cropped to a square, resized to ``tiles * size`` pixels and
cut into ``tiles x tiles`` tiles of ``size`` pixels. Each tile gives a pristine image (level 0)
and one image per level 1..5 degraded by the chain blur -> contrast loss -> noise -> JPEG, every
step at that level (``dlmap.data.degradations``). Its MOS is a known decreasing function of the
level, MOS = 1 - level / 6 (in [0, 1], higher is better).

Why a chain: with one degradation per image, "blur at level 2 is as bad as JPEG at level 2"
would be an arbitrary claim, not a known MOS; a chain has one severity axis. Why these
photographs: tiles must have texture, or blur, contrast loss and JPEG leave them unchanged
and their labels are wrong; moon, clock and page have large flat areas and are left out.
(``chain=False`` makes one image per degradation and level instead.)

Splits are by source photograph (seeded), as for the synthetic-distortion IQA sets, so
held-out images show photographs never seen in training. The manifest is ``dlmap.data.manifests``'
format, with its images relative to the set's folder. It tests training machinery, not
image quality.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dlmap.data.degradations import MAX_LEVEL, degrade
from dlmap.data.manifests import Entry, write_manifest
from dlmap.errors import InputError

PHOTOGRAPHS = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "coins",
    "brick",
    "grass",
    "gravel",
    "camera",
)
"""Textured photographs of scikit-image (greyscale ones are replicated to RGB)."""

CHAIN = ("blur", "contrast", "noise", "jpeg")
SCALE = f"degradation level 0-{MAX_LEVEL}; MOS = 1 - level / {MAX_LEVEL + 1}"


def level_mos(level: int) -> float:
    """The synthetic MOS of a degradation level: 1 - level / (MAX_LEVEL + 1)."""
    return 1.0 - level / (MAX_LEVEL + 1)


def photograph(name: str, size: int) -> np.ndarray:
    """scikit-image's photograph ``name`` as (size, size, 3) float64 in [0, 1]."""
    from skimage import data

    from dlmap.images import center_crop_resize

    pixels = np.asarray(getattr(data, name)(), dtype=np.float64) / 255.0
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[..., None], 3, axis=2)
    return center_crop_resize(pixels[..., :3].astype(np.float32), size).astype(np.float64)


def split_sources(names, fractions=(0.6, 0.2, 0.2), seed: int = 0) -> dict[str, str]:
    """Source name -> "train", "val" or "test", by a seeded shuffle (each split non-empty)."""
    names = list(names)
    if len(names) < 3:
        raise InputError("need at least 3 source photographs for train, val and test splits")
    order = [names[i] for i in np.random.default_rng(seed).permutation(len(names))]
    val = max(1, round(fractions[1] * len(names)))
    test = max(1, round(fractions[2] * len(names)))
    train = len(names) - val - test
    return {
        name: "train" if i < train else "val" if i < train + val else "test"
        for i, name in enumerate(order)
    }


def variants(clean: np.ndarray, degradations=CHAIN, chain: bool = True, rng=None):
    """(label, level, image) for level 0 and each degraded version of ``clean``."""
    out = [("pristine", 0, clean)]
    for level in range(1, MAX_LEVEL + 1):
        if chain:
            pixels = clean
            for kind in degradations:
                pixels = degrade(pixels, kind, level, rng)
            out.append(("chain", level, pixels))
        else:
            out += [(kind, level, degrade(clean, kind, level, rng)) for kind in degradations]
    return out


def entry_count(tiles: int = 4, photographs=PHOTOGRAPHS, degradations=CHAIN, chain=True) -> int:
    """How many images ``make_synthetic_set`` writes with these settings."""
    per_tile = 1 + MAX_LEVEL * (1 if chain else len(degradations))
    return len(photographs) * tiles * tiles * per_tile


def make_synthetic_set(
    out: str | Path,
    size: int = 64,
    tiles: int = 4,
    photographs=PHOTOGRAPHS,
    degradations=CHAIN,
    chain: bool = True,
    seed: int = 0,
) -> Path:
    """Write the images and ``manifest.csv`` under ``out``; returns the manifest's path."""
    from PIL import Image

    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    splits = split_sources(photographs, seed=seed)
    rng = np.random.default_rng(seed)
    entries = []
    for name in photographs:
        whole = photograph(name, tiles * size)
        for tile in range(tiles * tiles):
            top, left = (tile // tiles) * size, (tile % tiles) * size
            clean = whole[top : top + size, left : left + size]
            for label, level, pixels in variants(clean, degradations, chain, rng):
                relative = f"images/{name}_{tile}_{label}{level}.png"
                Image.fromarray(np.round(pixels * 255).astype(np.uint8)).save(out / relative)
                entries.append(
                    Entry(
                        "synthetic",
                        relative,
                        level_mos(level),
                        None,
                        name,
                        level,
                        SCALE,
                        splits[name],
                    )
                )
    manifest = out / "manifest.csv"
    settings = {
        "data_root": ".",
        "image_paths": "relative to data_root, itself relative to this manifest's folder",
        "synthetic": {
            "size": size,
            "tiles": tiles,
            "photographs": list(photographs),
            "degradations": list(degradations),
            "chain": chain,
            "seed": seed,
        },
    }
    write_manifest(entries, manifest, settings)
    return manifest
