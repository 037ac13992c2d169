"""The errors dlmap raises on purpose, and the exit code each maps to (importing only os).

Every dlmap error subclasses ``DlmapError`` (and, for callers that catch them so, the builtin
error it always was: ``ValueError`` for bad input, ``RuntimeError`` for a failure). The
command line maps a ``DlmapError`` to its ``exit_code`` in one place
(``dlmap.cli.main.main``); any other exception is a bug and is shown with its traceback,
never reported as bad usage.
"""

import os


class DlmapError(Exception):
    """Base of every error dlmap raises on purpose; ``exit_code``: 1 run-time failure."""

    exit_code = 1


class UsageError(DlmapError, ValueError):
    """A bad argument or input: reported in one line, exit code 2."""

    exit_code = 2


class InputError(DlmapError, ValueError):
    """A bad input file or value handed to the library (exit code 2 on the command line)."""

    exit_code = 2


class OutputError(DlmapError, OSError):
    """A result could not be written (a full disk, a lost mount): one line naming the path
    and the system's words for why (exit code 1, a run-time failure)."""


def output_error(path, error: OSError) -> OutputError:
    """``OutputError`` for ``error`` met while writing ``path``."""
    words = os.strerror(error.errno) if error.errno else " ".join(str(error).split())
    return OutputError(f"cannot write {path}: {words}")


class MissingInputError(InputError, FileNotFoundError):
    """A file the caller named does not exist (exit code 2 on the command line)."""


def check_choice(what: str, value, allowed: tuple) -> None:
    """Raise ``InputError`` unless ``value`` is one of ``allowed``, naming ``what``."""
    if value not in allowed:
        raise InputError(f"{what} must be one of {', '.join(allowed)}, got {value!r}")
