"""Errors shared by the command-line modules (kept free of heavy imports)."""


class UsageError(ValueError):
    """A bad argument or input: reported in one line, exit code 2."""
