"""Image I/O and the paper's preprocessing.

The paper resizes every image to 512x512 "via bicubic interpolation and
center cropping".  :func:`load_image` implements exactly that on top of a
strict reader (:func:`read_image`) that turns every Pillow mode into float32
RGB in [0, 1] and reports bad inputs as a one-line :class:`ImageError`.

Choices worth knowing:

* Transparent pixels are composited over a WHITE background.
* 16-bit grayscale is scaled by 1/65535 (Pillow's own ``convert("RGB")``
  clips it at 255).  16-bit RGB(A) PNGs are opened by Pillow as 8-bit
  'RGB'/'RGBA' (the high byte of each sample), so they lose their low byte.
* Outputs are written atomically (temporary file + fsync + ``os.replace``).
"""

from __future__ import annotations

import glob
import io
import math
import os
import re
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from dlmap.errors import InputError
from dlmap.files import write_bytes_atomic

_GRAY16_MODES = ("I;16", "I;16B", "I;16L", "I")
_ALPHA_MODES = ("LA", "RGBA", "PA")
_CONVERT_MODES = ("YCbCr", "LAB", "HSV", "RGBX")
_BOMB_RE = re.compile(r"\((\d+) pixels\) exceeds limit of (\d+) pixels")


class ImageError(InputError):
    """An input could not be read as an image; message is ``"{path}: {reason}"``."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        reason = " ".join(str(reason).split())  # always a single line
        super().__init__(f"{os.fspath(path)}: {reason}")
        self.path = os.fspath(path)
        self.reason = reason


def _bomb_reason(exc: Exception) -> str:
    match = _BOMB_RE.search(str(exc))
    if match is None:
        return f"too large: {exc}"
    pixels, limit = match.groups()
    return f"too large: {pixels} pixels exceeds the decompression-bomb limit of {limit} pixels"


def _to_rgb(img: Image.Image, path: str | os.PathLike) -> np.ndarray:
    """Convert a loaded Pillow image of any supported mode to float32 RGB in [0, 1]."""
    mode = img.mode
    has_transparency = "transparency" in img.info
    if mode in _ALPHA_MODES or (mode in ("P", "L", "RGB") and has_transparency):
        rgba = np.asarray(img.convert("RGBA"), dtype=np.float32) / 255.0
        alpha = rgba[..., 3:]
        return rgba[..., :3] * alpha + (1.0 - alpha)  # over white
    if mode == "RGB":
        return np.asarray(img, dtype=np.float32) / 255.0
    if mode in ("L", "1"):
        gray = np.asarray(img.convert("L"), dtype=np.float32) / 255.0
        return np.repeat(gray[..., None], 3, axis=2)
    if mode in _GRAY16_MODES:  # 'I' is treated as 16-bit too (older Pillow's 16-bit PNG mode)
        gray = np.clip(np.asarray(img).astype(np.float32) / 65535.0, 0.0, 1.0)
        return np.repeat(gray[..., None], 3, axis=2)
    if mode == "F":
        gray = np.clip(np.asarray(img, dtype=np.float32), 0.0, 1.0)
        return np.repeat(gray[..., None], 3, axis=2)
    if mode == "P":
        return np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
    if mode == "CMYK":
        icc = img.info.get("icc_profile")
        if icc:
            try:
                src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
                img = ImageCms.profileToProfile(
                    img, src, ImageCms.createProfile("sRGB"), outputMode="RGB"
                )
            except (OSError, ImageCms.PyCMSError) as exc:  # unreadable/unusable profile
                raise ImageError(path, f"invalid embedded ICC profile: {exc}") from exc
        else:
            img = img.convert("RGB")
        return np.asarray(img, dtype=np.float32) / 255.0
    if mode in _CONVERT_MODES:
        return np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
    raise ImageError(path, f"unsupported image mode {mode!r}")


def read_image(path: str | os.PathLike, max_pixels: int | None = None) -> np.ndarray:
    """Read an image file as float32 RGB of shape (H, W, 3) with values in [0, 1].

    EXIF orientation is applied and the whole file is decoded, so truncated
    data is detected.  Images larger than Pillow's decompression-bomb limit
    (``PIL.Image.MAX_IMAGE_PIXELS``; Pillow's warning is treated as an error)
    are rejected; ``max_pixels`` tightens that limit further (it cannot raise
    it).  Every failure to read is raised as :class:`ImageError`.
    """
    try:
        with open(path, "rb") as fh:
            if os.fstat(fh.fileno()).st_size == 0:
                raise ImageError(path, "empty file")
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(fh) as img:
                    width, height = img.size
                    if max_pixels is not None and width * height > max_pixels:
                        raise ImageError(
                            path,
                            f"too large: {width}x{height} pixels exceeds the limit "
                            f"of {max_pixels} pixels",
                        )
                    img.load()
                    img = ImageOps.exif_transpose(img)
                    rgb = _to_rgb(img, path)
    except FileNotFoundError as exc:
        raise ImageError(path, "no such file") from exc
    except IsADirectoryError as exc:
        raise ImageError(path, "is a directory") from exc
    except PermissionError as exc:
        raise ImageError(path, "permission denied") from exc
    except UnidentifiedImageError as exc:
        raise ImageError(path, "not an image file") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(path, _bomb_reason(exc)) from exc
    except SyntaxError as exc:
        raise ImageError(path, f"corrupt image data: {exc}") from exc
    except OSError as exc:
        msg = str(exc)
        if "truncated" in msg or "broken data stream" in msg:
            raise ImageError(path, "truncated image data") from exc
        raise ImageError(path, f"cannot read image: {msg}") from exc
    return np.ascontiguousarray(rgb, dtype=np.float32)


def check_size(size: int) -> int:
    """The square output side, validated: an integer >= 8."""
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 8:
        raise InputError(f"size must be an integer >= 8, got {size!r}")
    return int(size)


def _axis_window(n: int, new_n: int, offset: int, size: int) -> tuple[int, int, float, float]:
    """For one axis: source window [lo, hi) that the crop needs, and the box edges in it."""
    scale = n / new_n  # source pixels per resized pixel
    b0, b1 = offset * scale, (offset + size) * scale
    margin = 2.0 * max(scale, 1.0) + 2.0  # bicubic support (2, widened when shrinking) + slack
    lo, hi = max(0, math.floor(b0 - margin)), min(n, math.ceil(b1 + margin))
    return lo, hi, b0 - lo, b1 - lo


def center_crop_resize(image: np.ndarray, size: int = 512) -> np.ndarray:
    """Bicubic-resize so the shorter side is ``size``, then centre-crop to size x size.

    Equivalent (to ~1e-4) to resizing the whole (H, W, C) image to a shorter
    side of ``size`` (longer side ``round(long * size / short)``) and cropping
    the centre at integer offset ``round((new_long - size) / 2)``, but the
    large intermediate is never allocated: Pillow's ``resize(box=...)`` maps
    the crop back to source coordinates.  The source is first sliced to the
    window the filter needs, which keeps the box coordinates small (Pillow
    passes them as 32-bit floats) and avoids copying huge inputs.
    Returns float32 clipped to [0, 1].
    """
    size = check_size(size)
    image = np.asarray(image)
    if image.ndim != 3 or min(image.shape[:2]) < 1:
        raise InputError(f"expected an (H, W, C) image, got shape {image.shape}")
    height, width = image.shape[:2]
    if width <= height:
        new_w, new_h = size, round(height * size / width)
    else:
        new_w, new_h = round(width * size / height), size
    x_lo, x_hi, x0, x1 = _axis_window(width, new_w, round((new_w - size) / 2), size)
    y_lo, y_hi, y0, y1 = _axis_window(height, new_h, round((new_h - size) / 2), size)
    window = image[y_lo:y_hi, x_lo:x_hi]
    channels = []
    for c in range(image.shape[2]):
        plane = Image.fromarray(np.ascontiguousarray(window[..., c], dtype=np.float32))
        out = plane.resize((size, size), Image.Resampling.BICUBIC, box=(x0, y0, x1, y1))
        channels.append(np.asarray(out, dtype=np.float32))
    return np.clip(np.stack(channels, axis=2), 0.0, 1.0)


def load_image(
    path: str | os.PathLike, size: int | None = 512, max_pixels: int | None = None
) -> torch.Tensor:
    """Read an image and apply the paper's preprocessing.

    Returns a float32 tensor of shape (3, size, size) in [0, 1]; with
    ``size=None`` the original resolution (3, H, W) is kept.
    """
    if size is not None:
        size = check_size(size)
    image = read_image(path, max_pixels=max_pixels)
    if size is not None:
        image = center_crop_resize(image, size)
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))


def as_tensor(image) -> torch.Tensor:
    """One image as a float32 (3, H, W) tensor in [0, 1], from what a user has at hand, as
    pyiqa's metrics take it: a path (read as ``read_image`` reads files: EXIF orientation,
    ICC profile, alpha over white), a PIL image, an (H, W), (H, W, 3) or (H, W, 4) array
    (uint8 or uint16 counts, or floats in [0, 1]), or a (3, H, W) tensor (returned as is).
    Anything else raises ``InputError`` saying what was given."""
    if isinstance(image, torch.Tensor):
        if image.ndim != 3 or image.shape[0] != 3:
            raise InputError(
                f"expected an image tensor of shape (3, H, W), got {tuple(image.shape)}"
            )
        return image
    if isinstance(image, (str, os.PathLike)):
        return load_image(image, size=None)
    if isinstance(image, Image.Image):
        array = _to_rgb(ImageOps.exif_transpose(image), "a PIL image")
    elif isinstance(image, np.ndarray):
        array = _array_to_rgb(image)
    else:
        raise InputError(
            f"cannot read a {type(image).__name__} as an image (give a path, a PIL image, an "
            "array or a tensor)"
        )
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1), dtype=np.float32))


def _array_to_rgb(array: np.ndarray) -> np.ndarray:
    """An (H, W[, 3 or 4]) array as float32 (H, W, 3) in [0, 1] (alpha over white)."""
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise InputError(f"expected an (H, W), (H, W, 3) or (H, W, 4) array, got {array.shape}")
    if array.dtype in (np.uint8, np.uint16):
        values = array.astype(np.float32) / np.iinfo(array.dtype).max
    elif np.issubdtype(array.dtype, np.floating):
        values = array.astype(np.float32)
        if not np.isfinite(values).all() or values.min() < 0 or values.max() > 1:
            raise InputError("a float image array must hold finite values in [0, 1]")
    else:
        raise InputError(f"an image array must be uint8, uint16 or float, not {array.dtype}")
    if values.shape[2] == 4:
        alpha = values[..., 3:]
        values = values[..., :3] * alpha + (1.0 - alpha)
    return np.repeat(values, 3, axis=2) if values.shape[2] == 1 else values


def as_batch(images) -> torch.Tensor:
    """A (B, 3, H, W) batch from a batch tensor (returned as is), one image, or a list of
    images (each as ``as_tensor`` takes it; all of one size, else ``InputError``)."""
    if isinstance(images, torch.Tensor) and images.ndim == 4:
        return images
    items = list(images) if isinstance(images, (list, tuple)) else [images]
    tensors = [as_tensor(item) for item in items]
    if not tensors:
        raise InputError("no image given")
    if len({tuple(t.shape) for t in tensors}) > 1:
        sizes = ", ".join(sorted({f"{t.shape[2]}x{t.shape[1]}" for t in tensors}))
        raise InputError(
            f"images of different sizes ({sizes}) make no batch: give them one at a time"
        )
    return torch.stack(tensors)


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """Convert a float (3, H, W) tensor in [0, 1] to a (H, W, 3) uint8 array.

    Values are clipped to [0, 1] and rounded to the nearest of 0..255.
    Raises ValueError for a wrong shape, a non-float dtype or non-finite values.
    """
    if not isinstance(image, torch.Tensor) or not image.is_floating_point():
        raise InputError("expected a floating-point torch.Tensor")
    if image.ndim != 3 or image.shape[0] != 3:
        raise InputError(f"expected shape (3, H, W), got {tuple(image.shape)}")
    data = image.detach().to(device="cpu", dtype=torch.float64)
    if not torch.isfinite(data).all():
        raise InputError("image contains non-finite values (NaN or inf)")
    return np.ascontiguousarray(_levels(data).to(torch.uint8).permute(1, 2, 0).numpy())


def _levels(images: torch.Tensor) -> torch.Tensor:
    """The nearest of 0..255 to each value clamped to [0, 1], computed in float64."""
    return torch.round(images.to(torch.float64).clamp(0.0, 1.0) * 255.0)


def quantise(images: torch.Tensor) -> torch.Tensor:
    """Images as an 8-bit PNG stores them: clamped to [0, 1] and rounded to the nearest of
    0..255 (as ``to_uint8``), back in [0, 1] with the input's dtype and device."""
    return _levels(images.detach()).to(images.dtype) / 255.0  # k / 255 as read_image gives


def save_png_atomic(image: torch.Tensor, path: str | os.PathLike) -> None:
    """Save a float (3, H, W) tensor in [0, 1] as an 8-bit RGB PNG, atomically."""
    buf = io.BytesIO()
    Image.fromarray(to_uint8(image)).save(buf, format="PNG")
    write_bytes_atomic(path, buf.getvalue())


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
"""The files a folder argument stands for (``expand_paths``), compared case-insensitively."""


def expand_paths(arguments) -> list[Path]:
    """Image paths from command-line arguments, as ``pyiqa -t`` takes them: a folder stands
    for its image files (``IMAGE_SUFFIXES``, not its subfolders), a pattern that names no
    file (``*``, ``?``, ``[``) for its sorted matches, anything else for itself (a missing
    file is reported when it is read). A folder without images or a pattern that matches
    nothing raises ``InputError`` naming it."""
    paths: list[Path] = []
    for argument in map(Path, arguments):
        if argument.is_dir():
            found = sorted(
                p for p in argument.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
            )
            if not found:
                raise InputError(
                    f"{argument}: a folder with no image ({', '.join(IMAGE_SUFFIXES)})"
                )
            paths += found
        elif not argument.exists() and glob.has_magic(str(argument)):
            found = sorted(Path(p) for p in glob.glob(str(argument)) if Path(p).is_file())
            if not found:
                raise InputError(f"{argument}: no file matches this pattern")
            paths += found
        else:
            paths.append(argument)
    return paths
