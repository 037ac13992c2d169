"""How ``dlmap`` ends when it is told to stop (``dlmap.cli.main``): Ctrl-C gives one line and
exit code 130; a reader that leaves the pipe (``| head``) ends it quietly with 141, as Unix
tools do; neither prints a traceback."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from helpers import photo_png

DLMAP = [sys.executable, "-m", "dlmap.cli"]


def test_a_reader_that_leaves_the_pipe_ends_score_quietly(tmp_path):
    image = photo_png(tmp_path, "coffee", size=32)
    # far more rows than a pipe buffers, so that writing meets the closed pipe
    process = subprocess.Popen(
        [*DLMAP, "score", *[str(image)] * 3000, "--prior", "sharpness"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    first = process.stdout.readline()
    process.stdout.close()  # what `| head -1` does after its line
    _, err = process.communicate(timeout=300)
    assert first.strip(), err
    assert process.returncode == 141, err
    assert b"Traceback" not in err and b"BrokenPipe" not in err, err


def test_ctrl_c_during_enhance_is_one_line_and_exit_130(tmp_path):
    image = photo_png(tmp_path / "in", "astronaut", size=64)
    command = [*DLMAP, "enhance", str(image), "--out", str(tmp_path / "out")]
    command += ["--backbone", "tiny-seesr", "--size", "64", "--steps", "4", "--iters", "500"]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    time.sleep(8)  # the networks are built and the solve has started
    assert process.poll() is None, process.stderr.read()
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    lines = [line for line in err.splitlines() if line.strip() and "\r" not in line]
    assert lines[-1] == "dlmap: enhance interrupted", err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
