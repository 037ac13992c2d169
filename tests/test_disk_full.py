"""`dlmap enhance` on a full disk: one line naming the path and the system's words, exit code 1,
and no image left half-written (its PNGs without their JSON)."""

from __future__ import annotations

import errno
import os
import subprocess

import pytest
from helpers import photo_png, run_cli

FAST = ["--backbone", "tiny-seesr", "--size", "64", "--iters", "1", "--steps", "4", "--quiet"]


def test_a_write_that_fails_removes_the_images_other_files(tmp_path, monkeypatch, capsys):
    from dlmap.enhance import records

    def full(text, path):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(records, "write_text_atomic", full)  # the JSON, written last
    image = photo_png(tmp_path / "in", "astronaut", size=64)
    out = tmp_path / "out"
    code, _, err = run_cli(["enhance", str(image), "--out", str(out), *FAST], capsys)
    assert code == 1, err
    lines = err.strip().splitlines()
    assert lines == [f"dlmap: error: cannot write {out}/astronaut.json: No space left on device"]
    assert list(out.iterdir()) == []  # its PNGs went with it


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 64 KiB tmpfs, nearly full (needs root; else the test is skipped)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip("mounting a tmpfs needs root (the simulated full disk above still runs)")
    try:
        (mount / "filler").write_bytes(b"\0" * 60 * 1024)
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_a_really_full_disk_is_one_line_and_leaves_nothing(tmp_path, small_tmpfs, capsys):
    image = photo_png(tmp_path / "in", "coffee", size=64)
    out = small_tmpfs / "out"
    code, _, err = run_cli(["enhance", str(image), "--out", str(out), *FAST], capsys)
    assert code == 1, err
    (line,) = err.strip().splitlines()
    assert line.startswith(f"dlmap: error: cannot write {out}/coffee.") and "No space left" in line
    assert "Traceback" not in err
    assert sorted(p.name for p in out.iterdir()) == []  # nothing half-written, no temp files
