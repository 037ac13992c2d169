"""The web app of a study (Flask): a subject page per private link, the experimenter's page.

Routes (TOKEN: a subject's private token; ADMIN: the experimenter token of this start):

* ``GET /s/TOKEN`` - the subject's page (instructions, training, trials, pause, resume);
* ``GET /s/TOKEN/state`` - JSON: the next unanswered trial and the progress;
* ``POST /s/TOKEN/answer`` - JSON answer to the subject's next trial, stored in one
  transaction. The next trial is read from the database inside that transaction (the first
  unanswered trial by position, training first; two servers may share one database): an
  answer to any other trial is refused (409) and stores nothing; an identical repeat of a
  stored answer is a 200 no-op (a client retrying after a lost reply), a different answer to
  an answered trial a 409;
* ``GET /s/TOKEN/image/ID`` - an image of the study, by id (never by a client-given path);
  an image whose file changed (size or modification time) since the server started is
  refused (409), never served under the study's old hash;
* ``GET /admin/ADMIN`` and ``POST /admin/ADMIN/subjects`` - progress, links, new subjects.
  The links are built from ``public_url`` (what a reverse proxy serves; default: the address
  served), never from the request's ``Host`` header.

The experimenter token is regenerated at every start of ``serve``, printed once and kept only
in memory (nothing to leak from the database; restart to revoke it). Subject tokens are 32
random url-safe characters stored in the database, so that their links can be shown again.
A request body is at most ``MAX_BODY_BYTES``; an answer is a JSON object with exactly the
fields of ``ANSWER_FIELDS``, each checked against its range (``dlmap.experiment.answers``).
Every refusal is a 4xx with a JSON reason and a warning on the ``dlmap.experiment`` logger;
logged paths show tokens shortened and control characters escaped (``loggable``). Every
response forbids framing; every response but static files and images forbids caching
(tokens travel in them).
"""

from __future__ import annotations

import hmac
import logging
import os
import re
import sqlite3
import unicodedata
from pathlib import Path
from urllib.parse import quote, urlsplit

from flask import Flask, abort, g, jsonify, redirect, render_template, request, send_file
from werkzeug.exceptions import HTTPException
from werkzeug.serving import WSGIRequestHandler

from dlmap.experiment import study
from dlmap.experiment.answers import MAX_BODY_BYTES, PayloadError, parse_answer, read_json_body

LOG = logging.getLogger("dlmap.experiment")
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self'; object-src 'none'; frame-ancestors 'none'"
)
TOKEN_IN_PATH = re.compile(r"(/(?:s|admin)/)([^/?#\s]*)")


def loggable(text: str) -> str:
    """``text`` (a request path) fit for a log line: tokens after ``/s/`` cut to their first
    four characters, the experimenter's token after ``/admin/`` removed, and control
    characters (newlines, NUL, escapes, bidirectional overrides) written as escapes, so that
    no request can forge a log line or leak a token through the log."""

    def shorten(match: re.Match) -> str:
        kept = match.group(2)[:4] if match.group(1) == "/s/" else ""
        return f"{match.group(1)}{kept}…"

    text = TOKEN_IN_PATH.sub(shorten, str(text))
    return "".join(
        character.encode("unicode_escape").decode("ascii")
        if unicodedata.category(character) in ("Cc", "Cf", "Zl", "Zp") or character == "\\"
        else character
        for character in text
    )


def public_root(url: str) -> str:
    """``url`` (``--public-url``: the address subjects reach the app at, e.g. behind a
    reverse proxy) without its final slash; PayloadError unless it is a plain http(s) root."""
    parts = urlsplit(url)
    plain = not (parts.query or parts.fragment or any(c.isspace() for c in url))
    if (
        parts.scheme not in ("http", "https")
        or not parts.netloc
        or not plain
        or (parts.path not in ("", "/"))
    ):
        raise PayloadError(
            f"--public-url {url!r}: must be http(s)://HOST[:PORT] with no path (serve the app "
            "at the root of a host name or port)"
        )
    return f"{parts.scheme}://{parts.netloc}"


class LoggingRequestHandler(WSGIRequestHandler):
    """werkzeug's request handler whose access-log lines pass through ``loggable``: tokens
    shortened, control characters escaped."""

    def log_request(self, code="-", size="-") -> None:
        line = f"{self.command} {getattr(self, 'path', '')} {self.request_version}"
        self.log("info", '"%s" %s %s', line, code, size)

    def log(self, type: str, message: str, *args) -> None:  # noqa: A002 (werkzeug's name)
        super().log(type, message, *(loggable(a) if isinstance(a, str) else a for a in args))


def create_app(db: Path, admin_token: str, public_url: str = "http://127.0.0.1:8000") -> Flask:
    """The Flask app serving the study ``db``; ``admin_token`` opens the experimenter page,
    whose subject links start with ``public_url``. Every image's size and modification time
    are recorded now: a file that differs later is refused, not served."""
    db = Path(db)
    root = public_root(public_url)
    connection = study.open_study(db)  # fails early on a missing or foreign database
    try:
        folder = Path(study.meta(connection)["images_dir"])
        rows = connection.execute("SELECT id, path FROM images").fetchall()
    finally:
        connection.close()
    served = {row["id"]: (folder / row["path"], _signature(folder / row["path"])) for row in rows}
    app = Flask(__name__)
    app.config["STUDY_DB"] = db
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.config["MAX_FORM_MEMORY_SIZE"] = MAX_BODY_BYTES

    def connection() -> sqlite3.Connection:
        if "db" not in g:
            g.db = study.connect(db)
        return g.db

    @app.teardown_appcontext
    def close_connection(_error):
        handle = g.pop("db", None)
        if handle is not None:
            handle.close()

    @app.after_request
    def security_headers(response):
        response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        if request.endpoint not in ("static", "image"):
            response.headers["Cache-Control"] = "no-store"
        return response

    def reject(status: int, reason: str):
        LOG.warning(
            "rejected %s %s from %s: %s",
            request.method,
            loggable(request.path),
            request.remote_addr,
            loggable(reason),
        )
        return jsonify(error=reason), status

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        """Werkzeug's refusals (413 body too large, 400 bad form, 404, 405) as JSON, logged."""
        if error.code == 404 and request.endpoint is None:
            return jsonify(error="not found"), 404  # an unknown URL: not worth a warning
        return reject(error.code or 400, error.description or error.name)

    def subject_or_none(token: str):
        return connection().execute("SELECT * FROM subjects WHERE token = ?", (token,)).fetchone()

    def state(subject) -> dict:
        rows = (
            connection()
            .execute(
                "SELECT t.id, t.position, t.training, t.swapped, p.image_i, p.image_j,"
                " a.trial AS answered FROM trials t JOIN pairs p ON p.id = t.pair"
                " LEFT JOIN answers a ON a.trial = t.id WHERE t.subject = ? ORDER BY t.position",
                (subject["id"],),
            )
            .fetchall()
        )
        training = [row for row in rows if row["training"]]
        main = [row for row in rows if not row["training"]]
        pending = [row for row in rows if row["answered"] is None]
        result = {
            "training_total": len(training),
            "training_answered": sum(row["answered"] is not None for row in training),
            "total": len(main),
            "answered": sum(row["answered"] is not None for row in main),
            "finished": not pending,
            "trial": None,
        }
        if pending:
            row = pending[0]
            left, right = (
                (row["image_j"], row["image_i"])
                if row["swapped"]
                else (row["image_i"], row["image_j"])
            )
            base = f"/s/{subject['token']}/image/"
            result["trial"] = {
                "id": row["id"],
                "training": bool(row["training"]),
                "left": base + str(left),
                "right": base + str(right),
            }
        return result

    @app.get("/s/<token>")
    def subject_page(token: str):
        subject = subject_or_none(token)
        if subject is None:
            abort(404, description="unknown subject token")
        return render_template("subject.html", name=subject["name"], token=token)

    @app.get("/s/<token>/state")
    def subject_state(token: str):
        subject = subject_or_none(token)
        if subject is None:
            return reject(404, "unknown subject token")
        return jsonify(state(subject))

    @app.post("/s/<token>/answer")
    def answer(token: str):
        subject = subject_or_none(token)
        if subject is None:
            return reject(404, "unknown subject token")
        try:
            fields = parse_answer(read_json_body(request.get_data(cache=False)))
        except PayloadError as error:
            return reject(400, f"malformed answer: {error}")
        handle = connection()
        handle.execute("BEGIN IMMEDIATE")
        try:
            trial = handle.execute(
                "SELECT id FROM trials WHERE id = ? AND subject = ?",
                (fields["trial"], subject["id"]),
            ).fetchone()
            stored = handle.execute(
                "SELECT chosen FROM answers WHERE trial = ?", (fields["trial"],)
            ).fetchone()
            following = handle.execute(
                "SELECT t.id FROM trials t LEFT JOIN answers a ON a.trial = t.id"
                " WHERE t.subject = ? AND a.trial IS NULL ORDER BY t.position LIMIT 1",
                (subject["id"],),
            ).fetchone()
            in_turn = following is not None and following["id"] == fields["trial"]
            if trial is not None and stored is None and in_turn:
                columns = ", ".join(fields)
                marks = ", ".join("?" for _ in fields)
                handle.execute(
                    f"INSERT INTO answers ({columns}, received_at) VALUES ({marks}, ?)",
                    (*fields.values(), study.now()),
                )
            handle.execute("COMMIT")
        except BaseException:
            handle.execute("ROLLBACK")
            raise
        if trial is None:
            return reject(404, f"trial {fields['trial']} is not assigned to subject {token[:4]}…")
        if stored is not None and stored["chosen"] != fields["chosen"]:
            return reject(409, f"trial {fields['trial']} was answered {stored['chosen']!r}")
        if stored is None and not in_turn:
            expected = "none (all answered)" if following is None else following["id"]
            return reject(
                409,
                f"trial {fields['trial']} is not the subject's next trial "
                f"(next: {expected}); answers are taken in order",
            )
        return jsonify(status="stored" if stored is None else "duplicate", state=state(subject))

    @app.get("/s/<token>/image/<int:image_id>")
    def image(token: str, image_id: int):
        if subject_or_none(token) is None:
            return reject(404, "unknown subject token")
        if image_id not in served:
            return reject(404, f"no image {str(image_id)[:20]} in this study")
        path, signature = served[image_id]
        try:
            resolved = path.resolve()
        except (OSError, RuntimeError):
            resolved = None
        if resolved is None or not resolved.is_relative_to(folder) or not resolved.is_file():
            return reject(404, f"image {image_id} is missing or outside the study's folder")
        if _signature(path) != signature:
            return reject(
                409,
                f"image {image_id} changed since the server started (size or "
                "modification time); not served under the study's hash",
            )
        response = send_file(resolved, max_age=3600)
        response.cache_control.private = True
        return response

    def check_admin(token: str) -> None:
        if not hmac.compare_digest(token.encode(), admin_token.encode()):
            abort(403, description="wrong experimenter token")

    @app.get("/admin/<token>")
    def admin(token: str):
        check_admin(token)
        message = request.args.get("message", "")
        subjects = study.progress(connection())
        return render_template(
            "admin.html",
            subjects=subjects,
            meta=study.meta(connection()),
            token=token,
            message=message,
            root=root,
        )

    @app.post("/admin/<token>/subjects")
    def add_subject(token: str):
        check_admin(token)
        try:
            added = study.add_subject(connection(), request.form.get("name", ""))
        except study.StudyError as error:
            LOG.warning("subject not added: %s", loggable(str(error)))
            return redirect(f"/admin/{token}?message=" + _quote(str(error)), code=303)
        return redirect(f"/admin/{token}?message=" + _quote(f"added {added['name']}"), code=303)

    return app


def _quote(text: str) -> str:
    return quote(text, safe="")


def _signature(path: Path) -> tuple[int, int] | None:
    """(size, modification time in ns) of ``path``; None when it cannot be read."""
    try:
        status = os.stat(path)
    except (OSError, ValueError):
        return None
    return status.st_size, status.st_mtime_ns
