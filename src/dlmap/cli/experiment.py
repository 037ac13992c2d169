"""``dlmap experiment create|serve|export``: the 2AFC experiment with human subjects.

* ``create --pairs PAIRS.csv --images DIR --db study.sqlite`` builds the study: every pair
  of PAIRS.csv (``dlmap select``) is a trial, ``--training N`` extra pairs come first;
  sha256 of the pairs file and of every image are stored.
* ``serve --db study.sqlite [--public-url URL]`` runs the web app and prints the
  experimenter's link (a token new at every start); add subjects there, each gets a private
  link starting with URL (what subjects reach, e.g. a reverse proxy; default: the address
  served).
* ``export --db study.sqlite --out DIR`` writes answers.csv, counts.csv, subjects/*.csv (the
  format ``dlmap rank COUNTS.csv --per-subject DIR/subjects`` reads) and export.json, after
  checking that the pairs file and every image are still those the study was built from.

Exit codes: 0 success; 2 (via ``UsageError``) a bad argument or input, reported in one line
before anything is written; ``serve`` and ``export`` also exit 2 when the pairs file or an
image has changed since the study was created (docs/experiment.md).
"""

from __future__ import annotations

import argparse
import logging
import secrets
from pathlib import Path

from dlmap.cli.main import add_command
from dlmap.errors import UsageError
from dlmap.experiment import export, study


def _port(text: str) -> int:
    """A TCP port for argparse: 0 (any free port) to 65535."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0 (any free port) to 65535, got {port}")
    return port


def add_experiment_parser(commands) -> argparse.ArgumentParser:
    """Add ``experiment`` (with create, serve, export) to an argparse subparsers object."""
    experiment = add_command(commands, "experiment")
    actions = experiment.add_subparsers(dest="experiment_command", required=True)
    create = actions.add_parser("create", help="build a study database from PAIRS.csv")
    create.add_argument("--pairs", type=Path, required=True, metavar="PAIRS.csv")
    create.add_argument(
        "--images",
        type=Path,
        required=True,
        metavar="DIR",
        help="the folder the study serves from; file_i/file_j must lie inside it "
        "(relative paths are relative to DIR)",
    )
    create.add_argument("--db", type=Path, required=True, metavar="study.sqlite")
    create.add_argument(
        "--training", type=int, default=5, metavar="N", help="training pairs (default 5)"
    )
    create.add_argument(
        "--repeats", type=int, default=1, metavar="R", help="times each pair is shown (default 1)"
    )
    create.add_argument("--seed", type=int, default=0, help="seed of training and orders")
    serve = actions.add_parser("serve", help="run the experiment's web app")
    serve.add_argument("--db", type=Path, required=True, metavar="study.sqlite")
    serve.add_argument("--host", default="127.0.0.1", help="address (default 127.0.0.1)")
    serve.add_argument("--port", type=_port, default=8000, help="port (default 8000; 0: any free)")
    serve.add_argument(
        "--public-url",
        default=None,
        metavar="URL",
        help="the address subjects reach the app at, e.g. https://study.lab.example behind a "
        "reverse proxy; subject links start with it (default: http://HOST:PORT served)",
    )
    exporter = actions.add_parser("export", help="answers and count matrices for `dlmap rank`")
    exporter.add_argument("--db", type=Path, required=True, metavar="study.sqlite")
    exporter.add_argument("--out", type=Path, required=True, metavar="DIR")
    return experiment


def serve(db: Path, host: str, port: int, public_url: str | None = None) -> None:
    """Serve until interrupted; prints the experimenter's link (new token at every start)."""
    from werkzeug.serving import make_server

    from dlmap.experiment.app import LoggingRequestHandler, PayloadError, create_app, public_root

    if public_url is not None:
        try:
            public_root(public_url)
        except PayloadError as error:
            raise study.StudyError(str(error)) from None
    connection = study.open_study(db)
    try:
        study.verify_study(connection)
    except study.StudyError as error:
        raise study.StudyError(f"{db}: {error}") from None
    finally:
        connection.close()
    token = secrets.token_urlsafe(24)
    try:
        server = make_server(host, port, None, threaded=True, request_handler=LoggingRequestHandler)
    except OSError as error:  # the port is taken, the address not this machine's
        raise study.StudyError(f"cannot serve on {host}:{port} ({error.strerror})") from None
    served = f"http://{host}:{server.server_port}"
    server.app = create_app(db, token, public_url or served)
    print(f"experimenter page: {served}/admin/{token}", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()


def run(args) -> int:
    """Run ``experiment create|serve|export``; raises StudyError on a bad input."""
    if args.experiment_command == "create":
        values = study.create_study(
            args.db, args.pairs, args.images, args.training, args.repeats, args.seed
        )
        print(
            f"{args.db}: {len(values['conditions'])} conditions, pairs sha256 "
            f"{values['pairs_sha256'][:12]}, {values['training']} training pairs"
        )
    elif args.experiment_command == "serve":
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
        serve(args.db, args.host, args.port, args.public_url)
    else:
        summary = export.export_study(args.db, args.out)
        print(
            f"{args.out}: {summary['counted_answers']} counted answers from "
            f"{len(summary['subject_files'])} subject(s)"
        )
    return 0


def experiment_command(args) -> int:
    """``run`` for ``dlmap``'s main command line: study errors become UsageError (exit 2)."""
    try:
        return run(args)
    except study.StudyError as error:
        raise UsageError(str(error)) from error


def add_parsers(commands) -> None:
    add_experiment_parser(commands)


HANDLERS = {"experiment": experiment_command}
