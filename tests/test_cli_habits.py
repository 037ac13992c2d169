"""What a command-line user expects of every ``dlmap`` command: ``python -m dlmap``, one error
prefix, ``-q/--quiet`` and ``-v/--verbose`` everywhere, and progress bars only where someone
watches (``dlmap.progress``)."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest

from dlmap import __version__, progress
from dlmap.cli import main as cli


def test_python_m_dlmap_is_the_command():
    run = subprocess.run(
        [sys.executable, "-m", "dlmap", "--version"], capture_output=True, text=True
    )
    assert run.returncode == 0 and run.stdout.strip() == __version__


@pytest.mark.parametrize(
    "argv, line",
    [
        (["nosuch"], "dlmap: error: argument COMMAND: invalid choice: 'nosuch'"),
        (["enhance"], "dlmap: error: enhance: the following arguments are required: INPUT"),
        (["weights", "fetch", "--backbone", "x"], "dlmap: error: weights fetch: argument"),
        ([], "dlmap: error: the following arguments are required: COMMAND"),
    ],
)
def test_a_usage_error_has_one_prefix(argv, line, capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main(argv)
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.startswith(line) and err.count("\n") == 1, err
    assert "dlmap: dlmap" not in err and "error: dlmap" not in err


def leaves(parser):
    return list(cli._leaf_parsers(parser))


def test_every_command_takes_quiet_and_verbose_and_not_both():
    seen = 0
    for name in cli.COMMANDS:
        parser, _ = cli.build_parser(name)
        for leaf in leaves(parser):
            options = {o for action in leaf._actions for o in action.option_strings}
            assert {"-q", "--quiet", "-v", "--verbose"} <= options, leaf.prog
            seen += 1
    assert seen >= len(cli.COMMANDS) + 8  # weights, data, priors, experiment have several
    with pytest.raises(SystemExit):
        cli.main(["check-results", ".", "--quiet", "--verbose"])


def drawn(stream) -> str:
    with progress.bar(range(3), file=stream, desc="work", mininterval=0) as bar:
        for _ in bar:
            pass
    return stream.getvalue()


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def restore_progress():
    before = progress.SHOWN
    yield
    progress.show(before)


def test_bars_are_drawn_on_a_terminal_only_unless_asked(restore_progress):
    assert drawn(io.StringIO()) == ""  # a log file or a pipe: no \r frames
    assert "work" in drawn(Terminal()) and "\r" in drawn(Terminal())
    progress.show(True)  # --verbose
    assert "work" in drawn(io.StringIO())
    progress.show(False)  # --quiet
    assert drawn(Terminal()) == ""
    progress.show(None)
    assert progress.disabled(quiet=True) is True and progress.disabled() is None


def test_the_command_restores_the_callers_choice(tmp_path, restore_progress, capsys):
    progress.show(True)
    assert cli.main(["check-results", str(tmp_path), "--quiet"]) == 0
    assert progress.SHOWN is True


def test_verbose_adds_the_traceback_of_an_error(tmp_path, capsys):
    missing = str(tmp_path / "nowhere")
    assert cli.main(["check-results", missing]) == 2
    plain = capsys.readouterr().err
    assert cli.main(["check-results", missing, "--verbose"]) == 2
    verbose = capsys.readouterr().err
    assert "Traceback" not in plain and "Traceback" in verbose
    assert (
        plain.splitlines()[-1]
        == verbose.splitlines()[-1]
        == (f"dlmap: error: {missing}: no such folder")
    )


def test_score_takes_a_folder_and_a_pattern_as_pyiqa_does(tmp_path, capsys):
    from helpers import photo_png

    files = [photo_png(tmp_path, name, size=32) for name in ("coffee", "astronaut")]
    assert cli.main(["score", *map(str, files), "--prior", "sharpness"]) == 0
    one_by_one = capsys.readouterr().out
    assert cli.main(["score", str(tmp_path), "--prior", "sharpness"]) == 0
    assert sorted(capsys.readouterr().out.splitlines()) == sorted(one_by_one.splitlines())
    assert cli.main(["score", str(tmp_path / "c*.png"), "--prior", "sharpness"]) == 0
    assert capsys.readouterr().out.count("\n") == 1
