"""Progress bars for long work: tqdm's, shown only where someone watches.

By default a bar is drawn when its stream (stderr) is a terminal, so a log file or a pipe
never fills with ``\\r`` frames (in a notebook, tqdm's widget is always drawn). The ``dlmap``
command's ``--quiet`` hides every bar and ``--verbose`` draws them even into a log
(``show``); a library caller hides the bars of one call with ``quiet=True``.
"""

from __future__ import annotations

SHOWN: bool | None = None
"""The process-wide choice: None (on a terminal only), True (always), False (never)."""


def show(choice: bool | None) -> None:
    """Set ``SHOWN``: the ``dlmap`` command calls it with its ``--quiet``/``--verbose``."""
    global SHOWN
    SHOWN = choice


def disabled(quiet: bool = False) -> bool | None:
    """tqdm's ``disable`` for a bar: True when ``quiet`` or ``SHOWN`` is False, False when
    ``SHOWN`` is True, else None (tqdm draws it only on a terminal)."""
    if quiet or SHOWN is False:
        return True
    return False if SHOWN else None


def bar(iterable=None, quiet: bool = False, **options):
    """A tqdm bar over ``iterable`` (``options``: tqdm's), drawn as ``disabled`` says."""
    from tqdm.auto import tqdm

    return tqdm(iterable, disable=disabled(quiet), **options)
