"""The ``dlmap`` command line.

Exit codes: 0 success; 1 a run-time failure (missing weights or data, a solve that diverged);
2 bad usage or a bad input (one line on stderr per problem; nothing written for that input);
130 Ctrl-C; 141 the reader of stdout left. Every command takes ``-q/--quiet`` (no progress
bars) and ``-v/--verbose`` (bars even into a log, and an error's traceback); by default a
bar is drawn only on a terminal (``dlmap.progress``).

``COMMANDS`` names every command, the module that implements it and its one-line help. Only
the module of the command asked for is imported (``dlmap --help`` imports none), and each
command module imports torch and the model libraries inside its handlers, so every
``--help`` answers without them.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback

COMMANDS = {  # name -> (module with add_parsers(commands) and HANDLERS, one-line help)
    "enhance": ("dlmap.cli.enhance", "enhance images by MAP in diffusion latents"),
    "demo": ("dlmap.cli.enhance", "enhance bundled photographs on the tiny backbone"),
    "calibrate": ("dlmap.cli.models", "fit a prior's Eq. 21 constants to opinion scores"),
    "score": ("dlmap.cli.models", "a prior's raw and calibrated scores of image files"),
    "priors": ("dlmap.cli.models", "the registered priors"),
    "weights": ("dlmap.cli.weights", "fetch or check model weights"),
    "data": ("dlmap.cli.data", "fetch, check and index the IQA data sets"),
    "train-msliqe": ("dlmap.cli.train", "train MS-LIQE on a manifest (Eqs. 25-27)"),
    "evaluate": ("dlmap.cli.train", "SRCC, KRCC, PLCC of a prior on a manifest"),
    "train-vae": ("dlmap.cli.train", "train the tiny backbone's VAE on bundled photographs"),
    "select": ("dlmap.cli.select", "pick the image pairs that best tell enhancers apart (Eq. 18)"),
    "rank": ("dlmap.cli.rank", "JOD scores, 95%% intervals and group letters (pwcmp, Eq. 19)"),
    "simulate": ("dlmap.cli.compare", "simulated 2AFC observers on selected pairs (not results)"),
    "report": ("dlmap.cli.compare", "ranking figure and tables, Table I's ranks"),
    "experiment": ("dlmap.cli.experiment", "the 2AFC experiment: create, serve, export counts"),
    "doctor": ("dlmap.cli.doctor", "can this machine or cluster run a workflow configuration?"),
    "check-results": ("dlmap.cli.doctor", "verify a results folder and list what to make again"),
}
DESCRIPTION = "NR-IQA models as image priors: MAP estimation in diffusion latents"

EXIT_SIGINT = 130  # 128 + SIGINT, what shells report for a command stopped by Ctrl-C
EXIT_SIGPIPE = 141  # 128 + SIGPIPE, what Unix tools exit with when their reader left


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (the default prints the whole usage first)."""

    def error(self, message: str):
        command = self.prog.removeprefix("dlmap").strip()  # "" for dlmap itself
        where = f"{command}: " if command else ""
        self.exit(2, f"dlmap: error: {where}{message} (see {self.prog} --help)\n")


def add_command(commands, name: str, **kwargs) -> argparse.ArgumentParser:
    """The sub-parser of command ``name``, with its help from ``COMMANDS``."""
    return commands.add_parser(name, help=COMMANDS[name][1], **kwargs)


def build_parser(command: str | None = None):
    """(parser, handlers): the parser of ``command`` alone (its module imported), or, for
    None or an unknown name, one listing every command without importing any."""
    from dlmap import __version__

    parser = Parser(prog="dlmap", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=__version__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    if command in COMMANDS:
        module = importlib.import_module(COMMANDS[command][0])
        module.add_parsers(commands)
        for leaf in _leaf_parsers(parser):
            add_verbosity(leaf)
        return parser, module.HANDLERS
    for name, (_, text) in COMMANDS.items():
        commands.add_parser(name, help=text, add_help=False)
    return parser, {}


def _leaf_parsers(parser: argparse.ArgumentParser):
    """The parsers that run a command: those without sub-commands of their own."""
    nested = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not nested:
        yield parser
    for action in nested:
        for child in dict.fromkeys(action.choices.values()):
            yield from _leaf_parsers(child)


def add_verbosity(parser: argparse.ArgumentParser) -> None:
    """``-q/--quiet`` and ``-v/--verbose``, the same on every command (``main`` applies them
    through ``dlmap.progress.show``)."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="no progress bars, and no summary a command prints when all went well",
    )
    group.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="progress bars even into a file or pipe, and an error's traceback",
    )


def main(argv: list[str] | None = None) -> int:
    from dlmap.errors import DlmapError

    argv = sys.argv[1:] if argv is None else list(argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser, handlers = build_parser(command)
    args = parser.parse_args(argv)
    if args.command not in handlers:  # only when the listing parser accepted a name
        parser.error(f"argument COMMAND: {args.command!r} could not be built")
    from dlmap import progress

    before = progress.SHOWN  # restored after the command (a caller's own choice stays)
    progress.show(False if args.quiet else True if args.verbose else None)
    try:
        return handlers[args.command](args)
    except DlmapError as error:  # anything else is a bug: its traceback is shown
        if args.verbose:
            traceback.print_exc()
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"dlmap: error: {message}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:  # Ctrl-C: one line and the shell's code for SIGINT
        print(f"dlmap: {args.command} interrupted", file=sys.stderr)
        return EXIT_SIGINT
    except BrokenPipeError:  # the reader left (`dlmap score ... | head`): stop quietly
        _detach_stdout()
        return EXIT_SIGPIPE
    finally:
        progress.show(before)


def _detach_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's last flush at exit writes into
    it instead of raising BrokenPipeError again on the closed pipe."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is not a real file (a test's capture)
        pass
    finally:
        os.close(devnull)


if __name__ == "__main__":
    sys.exit(main())
