"""The ``dlmap`` command line.

Exit codes: 0 success; 1 a run-time failure (missing weights or data, a solve that diverged);
2 bad usage or a bad input (one line on stderr per problem; nothing written for that input).

Commands that need no network models (``rank``, ``report``, ``simulate``, ``data``,
``experiment``) build only their own parser, so they start without importing torch's model
libraries; every other command goes through the full parser of ``dlmap.cli.enhance``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

LIGHT = {  # command -> (module, function adding its parser, handler)
    "rank": ("dlmap.cli.rank", "add_rank_parser", "rank_command"),
    "report": ("dlmap.cli.compare", "add_compare_parsers", "report_command"),
    "simulate": ("dlmap.cli.compare", "add_compare_parsers", "simulate_command"),
    "data": ("dlmap.cli.data", "add_data_parser", "data_command"),
    "experiment": ("dlmap.cli.experiment", "add_experiment_parser", "experiment_command"),
}


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (the default prints the whole usage first)."""

    def error(self, message: str):
        self.exit(2, f"dlmap: error: {self.prog}: {message} (see {self.prog} --help)\n")


def main(argv: list[str] | None = None) -> int:
    from dlmap.data.sources import DatasetError
    from dlmap.errors import UsageError
    from dlmap.weights.cache import ChecksumError, WeightKeyError, WeightsMissingError

    argv = sys.argv[1:] if argv is None else list(argv)
    command = argv[0] if argv else None
    if command in LIGHT:
        module, add_parser, handler = LIGHT[command]
        module = importlib.import_module(module)
        parser = Parser(prog="dlmap")
        getattr(module, add_parser)(parser.add_subparsers(dest="command", required=True))
        handlers = {command: getattr(module, handler)}
    else:
        from dlmap.cli.enhance import HANDLERS, build_parser

        parser, handlers = build_parser(), HANDLERS
    args = parser.parse_args(argv)
    try:
        return handlers[args.command](args)
    except UsageError as error:
        print(f"dlmap: error: {error}", file=sys.stderr)
        return 2
    except (DatasetError, WeightsMissingError, WeightKeyError, ChecksumError) as error:
        print(f"dlmap: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
