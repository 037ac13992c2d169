"""Tests for dlmap.images: reading, mode conversion, errors, resize/crop, atomic writes."""

from __future__ import annotations

import os
import struct
import time
import zlib

import numpy as np
import PIL.Image
import pytest
import torch
from PIL import Image

from dlmap.files import write_text_atomic
from dlmap.images import (
    ImageError,
    center_crop_resize,
    load_image,
    read_image,
    save_png_atomic,
    to_uint8,
)


def _save(img: Image.Image, path, **kwargs):
    img.save(path, **kwargs)
    return path


def _png16_rgb(path, arr: np.ndarray) -> None:
    """Write a 16-bit-per-channel RGB PNG by hand (Pillow cannot save one)."""
    h, w, _ = arr.shape
    raw = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(tag + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def _resize_then_crop(image: np.ndarray, size: int) -> np.ndarray:
    """Reference: full bicubic resize to shorter side == size, then centre slice."""
    h, w = image.shape[:2]
    new_w, new_h = (size, round(h * size / w)) if w <= h else (round(w * size / h), size)
    ox, oy = round((new_w - size) / 2), round((new_h - size) / 2)
    planes = [
        np.asarray(Image.fromarray(image[..., c]).resize((new_w, new_h), Image.Resampling.BICUBIC))
        for c in range(image.shape[2])
    ]
    full = np.stack(planes, axis=2)
    return np.clip(full[oy : oy + size, ox : ox + size], 0.0, 1.0)


# --- reading and mode conversion -------------------------------------------------


def test_read_image_returns_float32_rgb_in_unit_range(tmp_path):
    arr = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    out = read_image(_save(Image.fromarray(arr), tmp_path / "a.png"))
    assert out.dtype == np.float32 and out.shape == (5, 7, 3)
    np.testing.assert_array_equal(np.round(out * 255).astype(np.uint8), arr)


@pytest.mark.parametrize(("orientation", "k", "ext"), [(6, -1, "png"), (8, 1, "jpg")])
def test_exif_orientation_is_applied(tmp_path, orientation, k, ext):
    stored = np.zeros((16, 32, 3), dtype=np.uint8)
    stored[:8, :8] = (255, 0, 0)  # red block in the stored top-left corner
    exif = Image.Exif()
    exif[0x0112] = orientation
    extra = {"quality": 100, "subsampling": 0} if ext == "jpg" else {}
    path = _save(Image.fromarray(stored), tmp_path / f"o.{ext}", exif=exif, **extra)
    out = read_image(path)
    expected = np.rot90(stored, k=k).astype(np.float32) / 255
    assert out.shape == (32, 16, 3)
    assert np.abs(out - expected).max() < 0.1


def test_grayscale_gives_equal_channels(tmp_path):
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    out = read_image(_save(Image.fromarray(gray), tmp_path / "g.png"))
    assert out.shape == (3, 4, 3)
    np.testing.assert_array_equal(out[..., 0], out[..., 1])
    np.testing.assert_array_equal(out[..., 0], out[..., 2])
    np.testing.assert_allclose(out[..., 0], gray / 255, atol=1e-6)


def test_bilevel_image_maps_to_black_and_white(tmp_path):
    img = Image.new("1", (2, 1))
    img.putpixel((1, 0), 1)
    out = read_image(_save(img, tmp_path / "b.png"))
    np.testing.assert_array_equal(out, [[[0, 0, 0], [1, 1, 1]]])


def test_rgba_is_composited_over_white(tmp_path):
    rgba = np.array([[[255, 0, 0, 0], [0, 0, 255, 255], [0, 0, 0, 128]]], dtype=np.uint8)
    out = read_image(_save(Image.fromarray(rgba), tmp_path / "t.png"))
    np.testing.assert_allclose(out[0, 0], [1, 1, 1], atol=1e-6)  # fully transparent
    np.testing.assert_allclose(out[0, 1], [0, 0, 1], atol=1e-6)  # opaque keeps colour
    np.testing.assert_allclose(out[0, 2], [1 - 128 / 255] * 3, atol=1e-6)  # blend


def test_gray_alpha_is_composited_over_white(tmp_path):
    img = Image.new("LA", (1, 1), (0, 128))
    out = read_image(_save(img, tmp_path / "la.png"))
    np.testing.assert_allclose(out[0, 0], [1 - 128 / 255] * 3, atol=1e-6)


def test_palette_colours_are_preserved(tmp_path):
    img = Image.new("P", (3, 1))
    img.putpalette([255, 0, 0, 0, 255, 0, 10, 20, 30] + [0] * (256 * 3 - 9))
    img.putdata([0, 1, 2])
    out = read_image(_save(img, tmp_path / "p.png"))
    np.testing.assert_allclose(out[0] * 255, [[255, 0, 0], [0, 255, 0], [10, 20, 30]], atol=1e-4)


def test_palette_transparency_becomes_white(tmp_path):
    img = Image.new("P", (2, 1))
    img.putpalette([255, 0, 0, 0, 0, 0] + [0] * (256 * 3 - 6))
    img.putdata([0, 1])
    out = read_image(_save(img, tmp_path / "pt.png", transparency=1))
    np.testing.assert_allclose(out[0], [[1, 0, 0], [1, 1, 1]], atol=1e-6)


def test_rgb_colour_key_transparency_becomes_white(tmp_path):
    rgb = np.array([[[0, 0, 0], [0, 0, 255]]], dtype=np.uint8)
    out = read_image(_save(Image.fromarray(rgb), tmp_path / "k.png", transparency=(0, 0, 0)))
    np.testing.assert_allclose(out[0], [[1, 1, 1], [0, 0, 1]], atol=1e-6)


def test_16bit_grayscale_png_is_scaled_not_clipped(tmp_path):
    gray = np.array([[0, 32768, 65535]], dtype=np.uint16)
    path = _save(Image.fromarray(gray), tmp_path / "g16.png")
    assert Image.open(path).mode == "I;16"
    out = read_image(path)
    np.testing.assert_allclose(out[0, :, 0], [0, 32768 / 65535, 1.0], atol=1e-6)
    np.testing.assert_array_equal(out[..., 0], out[..., 2])


def test_16bit_big_endian_tiff_is_scaled(tmp_path):
    gray = np.array([[0, 32768, 65535]], dtype=">u2")
    out = read_image(_save(Image.fromarray(gray), tmp_path / "g16.tif"))
    np.testing.assert_allclose(out[0, :, 1], [0, 32768 / 65535, 1.0], atol=1e-6)


def test_16bit_rgb_png_is_read_as_8bit_high_byte(tmp_path):
    # Pillow opens 16-bit RGB PNGs as 8-bit 'RGB', keeping the high byte.
    path = tmp_path / "rgb16.png"
    _png16_rgb(path, np.array([[[65535, 0, 32768], [2570, 51400, 255]]], dtype=np.uint16))
    out = read_image(path)
    np.testing.assert_allclose(out[0] * 255, [[255, 0, 128], [10, 200, 0]], atol=1e-4)


def test_float_image_is_clipped_to_unit_range(tmp_path):
    data = np.array([[-0.5, 0.25, 2.0]], dtype=np.float32)
    out = read_image(_save(Image.fromarray(data), tmp_path / "f.tif"))
    np.testing.assert_allclose(out[0, :, 0], [0.0, 0.25, 1.0])


def test_cmyk_jpeg_pure_cyan_becomes_cyan(tmp_path):
    out = read_image(_save(Image.new("CMYK", (8, 8), (255, 0, 0, 0)), tmp_path / "c.jpg"))
    np.testing.assert_allclose(out[4, 4], [0, 1, 1], atol=0.05)


def test_cmyk_with_unusable_icc_profile_raises(tmp_path):
    img = Image.new("CMYK", (8, 8), (255, 0, 0, 0))
    path = _save(img, tmp_path / "ci.jpg", icc_profile=b"not a profile" * 10)
    with pytest.raises(ImageError, match="ICC profile"):
        read_image(path)


def test_lab_tiff_white_becomes_white(tmp_path):
    out = read_image(_save(Image.new("LAB", (2, 2), (255, 128, 128)), tmp_path / "l.tif"))
    np.testing.assert_allclose(out, 1.0, atol=0.02)


# --- errors ---------------------------------------------------------------------


def _check_error(path, reason_part: str, **kwargs) -> str:
    with pytest.raises(ImageError) as info:
        read_image(path, **kwargs)
    msg = str(info.value)
    assert msg.startswith(f"{path}: ")
    assert "\n" not in msg
    assert reason_part in msg
    return msg


def test_truncated_jpeg_raises_image_error_naming_file(tmp_path):
    arr = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    full = _save(Image.fromarray(arr), tmp_path / "full.jpg")
    cut = tmp_path / "cut.jpg"
    data = full.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    msg = _check_error(cut, "truncated")
    assert "cut.jpg" in msg


def test_truncated_png_raises_image_error(tmp_path):
    arr = np.random.default_rng(2).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    data = _save(Image.fromarray(arr), tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    _check_error(tmp_path / "cut.png", "truncated")


def test_empty_file_raises_image_error(tmp_path):
    (tmp_path / "e.png").write_bytes(b"")
    _check_error(tmp_path / "e.png", "empty file")


def test_text_file_named_png_raises_image_error(tmp_path):
    (tmp_path / "x.png").write_text("hello, I am not a picture\n")
    _check_error(tmp_path / "x.png", "not an image file")


def test_missing_path_raises_image_error(tmp_path):
    _check_error(tmp_path / "missing.png", "no such file")


def test_directory_raises_image_error(tmp_path):
    _check_error(tmp_path, "is a directory")


def test_max_pixels_rejects_larger_images(tmp_path):
    path = _save(Image.new("RGB", (20, 20)), tmp_path / "big.png")
    _check_error(path, "too large: 20x20 pixels exceeds the limit of 100 pixels", max_pixels=100)
    assert read_image(path, max_pixels=400).shape == (20, 20, 3)


@pytest.mark.parametrize("limit", [100, 300])  # 400 px: >2x limit -> error, >1x -> warning
def test_pillow_decompression_bomb_limit_raises_image_error(tmp_path, monkeypatch, limit):
    path = _save(Image.new("RGB", (20, 20)), tmp_path / "bomb.png")
    monkeypatch.setattr(PIL.Image, "MAX_IMAGE_PIXELS", limit)
    msg = _check_error(path, "too large: 400 pixels exceeds the decompression-bomb limit")
    assert msg.endswith(f"limit of {limit * (2 if limit == 100 else 1)} pixels")


# --- center_crop_resize ---------------------------------------------------------


@pytest.mark.parametrize(
    ("h", "w", "size"),
    [
        (100, 150, 64),  # landscape downscale
        (150, 100, 64),  # portrait downscale
        (20, 30, 64),  # landscape upscale
        (31, 17, 64),  # portrait upscale, odd sizes
        (50, 50, 32),  # square
        (64, 64, 64),  # identity size
        (33, 70, 16),  # odd crop offset
        (3, 400, 64),  # extreme aspect ratio
        (400, 5, 16),
        (513, 1000, 512),  # near 1:1 with a large offset: worst case for Pillow's float32 box
    ],
)
def test_center_crop_resize_equals_resize_then_crop(h, w, size):
    image = np.random.default_rng(h * w).random((h, w, 3), dtype=np.float32)
    out = center_crop_resize(image, size)
    ref = _resize_then_crop(image, size)
    assert out.shape == (size, size, 3) and out.dtype == np.float32
    assert np.abs(out - ref).max() <= 1e-4


def test_center_crop_resize_output_is_clipped_to_unit_range():
    image = np.zeros((40, 40, 3), dtype=np.float32)
    image[::2] = 1.0  # stripes make bicubic overshoot
    out = center_crop_resize(image, 100)
    assert out.min() >= 0.0 and out.max() <= 1.0


def test_center_crop_resize_extreme_aspect_ratio_is_fast():
    image = np.random.default_rng(3).random((3, 4000, 3), dtype=np.float32)
    start = time.perf_counter()
    out = center_crop_resize(image, 512)
    assert out.shape == (512, 512, 3)
    assert time.perf_counter() - start < 2.0  # full intermediate would be 512x682667


@pytest.mark.parametrize("size", [0, 7, -512, 8.0, True, None])
def test_center_crop_resize_rejects_bad_size(size):
    with pytest.raises(ValueError, match="size"):
        center_crop_resize(np.zeros((16, 16, 3), dtype=np.float32), size)


# --- load_image, to_uint8, atomic writes -----------------------------------------


def test_load_image_without_size_keeps_resolution(tmp_path):
    path = _save(Image.new("RGB", (7, 5), (255, 0, 0)), tmp_path / "r.png")
    out = load_image(path, size=None)
    assert out.shape == (3, 5, 7) and out.dtype == torch.float32
    assert torch.all(out[0] == 1) and torch.all(out[1:] == 0)


def test_load_image_on_real_photograph(tmp_path):
    from skimage import data

    path = _save(Image.fromarray(data.astronaut()), tmp_path / "astronaut.png")
    out = load_image(path, size=256)
    assert out.shape == (3, 256, 256) and out.dtype == torch.float32
    assert out.min() >= 0.0 and out.max() <= 1.0 and out.std() > 0.1


def test_to_uint8_rounds_and_clips():
    values = torch.tensor([-0.5, 0.0, 0.4 / 255, 0.6 / 255, 0.5, 1.0, 1.7], dtype=torch.float64)
    out = to_uint8(values.view(1, 1, -1).expand(3, 1, -1))
    assert out.dtype == np.uint8 and out.shape == (1, 7, 3)
    np.testing.assert_array_equal(out[0, :, 0], [0, 0, 0, 1, 128, 255, 255])


@pytest.mark.parametrize(
    "bad",
    [
        torch.full((3, 2, 2), float("nan")),
        torch.tensor([[[0.0, float("inf")]]]).expand(3, 1, 2),
        torch.zeros(4, 2, 2),
        torch.zeros(2, 2, 3),
        torch.zeros(3, 2, 2, dtype=torch.uint8),
    ],
)
def test_to_uint8_rejects_bad_input(bad):
    with pytest.raises(ValueError):
        to_uint8(bad)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_png_round_trip_is_exact_for_uint8_data(tmp_path, dtype):
    arr = np.random.default_rng(4).integers(0, 256, (9, 11, 3), dtype=np.uint8)
    tensor = (torch.from_numpy(arr).permute(2, 0, 1).double() / 255).to(dtype)
    path = tmp_path / "rt.png"
    save_png_atomic(tensor, path)
    np.testing.assert_array_equal(to_uint8(load_image(path, size=None)), arr)


def test_save_png_atomic_leaves_no_temporary_file(tmp_path):
    save_png_atomic(torch.rand(3, 4, 4), tmp_path / "out.png")
    save_png_atomic(torch.rand(3, 4, 4), tmp_path / "out.png")  # overwrite
    assert os.listdir(tmp_path) == ["out.png"]


def test_save_png_atomic_failure_leaves_no_files(tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise OSError("disk on fire")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk on fire"):
        save_png_atomic(torch.rand(3, 4, 4), tmp_path / "out.png")
    assert os.listdir(tmp_path) == []


def test_failed_write_keeps_previous_content(tmp_path, monkeypatch):
    target = tmp_path / "result.json"
    write_text_atomic('{"old": 1}', target)
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError("no space")))
    with pytest.raises(OSError, match="no space"):
        write_text_atomic('{"new": 2}', target)
    assert target.read_text() == '{"old": 1}'
    assert os.listdir(tmp_path) == ["result.json"]


def test_write_text_atomic_writes_utf8_text(tmp_path):
    write_text_atomic('{"name": "café"}\n', tmp_path / "r.json")
    assert (tmp_path / "r.json").read_bytes() == '{"name": "café"}\n'.encode()
    assert os.listdir(tmp_path) == ["r.json"]


def test_folders_and_patterns_stand_for_their_images(tmp_path):
    from dlmap.errors import InputError
    from dlmap.images import expand_paths

    for name in ("b.png", "a.JPG", "c.webp", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "d.png").write_bytes(b"x")
    folder = [tmp_path / "a.JPG", tmp_path / "b.png", tmp_path / "c.webp"]
    assert expand_paths([tmp_path]) == folder  # sorted, no subfolder, no text file
    both = [tmp_path / "b.png"] * 2  # a file named twice is scored twice, as given
    assert expand_paths([str(tmp_path / "*.png"), tmp_path / "b.png"]) == both
    assert expand_paths([tmp_path / "missing.png"]) == [tmp_path / "missing.png"]  # read later
    with pytest.raises(InputError, match=r"sub\*\.jpg: no file matches this pattern"):
        expand_paths([tmp_path / "sub*.jpg"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="empty: a folder with no image"):
        expand_paths([tmp_path / "empty"])
