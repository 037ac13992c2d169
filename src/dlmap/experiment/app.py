"""The web app of a study (Flask): a subject page per private link, the experimenter's page.

Routes (TOKEN: a subject's private token; ADMIN: the experimenter token of this start):

* ``GET /s/TOKEN`` - the subject's page (instructions, training, trials, pause, resume);
* ``GET /s/TOKEN/state`` - JSON: the next unanswered trial and the progress;
* ``POST /s/TOKEN/answer`` - JSON answer to one trial, stored in one transaction: a repeat of
  a stored answer is a 200 no-op, a different answer to an answered trial a 409;
* ``GET /s/TOKEN/image/ID`` - an image of the study, by id (never by a client-given path);
* ``GET /admin/ADMIN`` and ``POST /admin/ADMIN/subjects`` - progress, links, new subjects.

The experimenter token is regenerated at every start of ``serve``, printed once and kept only
in memory (nothing to leak from the database; restart to revoke it). Subject tokens are 32
random url-safe characters stored in the database, so that their links can be shown again.
Rejected requests (unknown token, foreign trial, malformed payload) get a 4xx answer and a
warning on the ``dlmap.experiment`` logger.
"""

from __future__ import annotations

import hmac
import logging
import math
import sqlite3
from pathlib import Path
from urllib.parse import quote

from flask import Flask, abort, g, jsonify, redirect, render_template, request, send_file

from dlmap.experiment import study

LOG = logging.getLogger("dlmap.experiment")
SIDES = ("left", "right")
INPUTS = ("key", "click")
INTEGER_FIELDS = ("screen_width", "screen_height", "window_width", "window_height")
POSITIVE_FIELDS = ("device_pixel_ratio", "zoom")
TIME_FIELDS = ("shown_at", "answered_at")
MAX_TIME_TEXT = 40
CONTENT_SECURITY_POLICY = "default-src 'self'; img-src 'self'; object-src 'none'"


class PayloadError(ValueError):
    """A malformed answer; the message says which field and what is valid."""


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def parse_answer(payload) -> dict:
    """The validated fields of an answer's JSON body; PayloadError otherwise."""
    if not isinstance(payload, dict):
        raise PayloadError("the body must be a JSON object")
    answer = {}
    trial = payload.get("trial")
    if not isinstance(trial, int) or isinstance(trial, bool) or trial < 1:
        raise PayloadError(f"trial must be a positive integer, got {trial!r}")
    answer["trial"] = trial
    if payload.get("chosen") not in SIDES:
        raise PayloadError(f"chosen must be 'left' or 'right', got {payload.get('chosen')!r}")
    answer["chosen"] = payload["chosen"]
    if payload.get("input") not in INPUTS:
        raise PayloadError(f"input must be 'key' or 'click', got {payload.get('input')!r}")
    answer["input"] = payload["input"]
    response_ms = payload.get("response_ms")
    if not _is_number(response_ms) or response_ms < 0:
        raise PayloadError(f"response_ms must be a number >= 0, got {response_ms!r}")
    answer["response_ms"] = float(response_ms)
    for field in INTEGER_FIELDS:
        value = payload.get(field)
        if not _is_number(value) or value < 0 or value != int(value):
            raise PayloadError(f"{field} must be an integer >= 0, got {value!r}")
        answer[field] = int(value)
    for field in POSITIVE_FIELDS:
        value = payload.get(field)
        if not _is_number(value) or value <= 0:
            raise PayloadError(f"{field} must be a number > 0, got {value!r}")
        answer[field] = float(value)
    for field in TIME_FIELDS:
        value = payload.get(field)
        if not isinstance(value, str) or not 0 < len(value) <= MAX_TIME_TEXT:
            raise PayloadError(f"{field} must be a timestamp text of 1-{MAX_TIME_TEXT} characters")
        answer[field] = value
    return answer


def create_app(db: Path, admin_token: str) -> Flask:
    """The Flask app serving the study ``db``; ``admin_token`` opens the experimenter page."""
    db = Path(db)
    study.open_study(db).close()  # fails early on a missing or foreign database
    app = Flask(__name__)
    app.config["STUDY_DB"] = db

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
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        return response

    def reject(status: int, reason: str):
        LOG.warning("rejected %s %s from %s: %s", request.method, request.path,
                    request.remote_addr, reason)  # fmt: skip
        return jsonify(error=reason), status

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
            left, right = (row["image_j"], row["image_i"]) if row["swapped"] else (
                row["image_i"], row["image_j"])  # fmt: skip
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
            LOG.warning("unknown subject token on %s from %s", request.path, request.remote_addr)
            abort(404)
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
            fields = parse_answer(request.get_json(silent=True))
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
            if trial is not None and stored is None:
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
        return jsonify(status="stored" if stored is None else "duplicate", state=state(subject))

    @app.get("/s/<token>/image/<int:image_id>")
    def image(token: str, image_id: int):
        if subject_or_none(token) is None:
            return reject(404, "unknown subject token")
        row = connection().execute("SELECT path FROM images WHERE id = ?", (image_id,)).fetchone()
        if row is None:
            return reject(404, f"no image {image_id} in this study")
        folder = Path(study.meta(connection())["images_dir"])
        path = (folder / row["path"]).resolve()
        if not path.is_relative_to(folder) or not path.is_file():
            return reject(404, f"image {image_id} is missing or outside the study's folder")
        return send_file(path, max_age=3600)

    def check_admin(token: str) -> None:
        if not hmac.compare_digest(token.encode(), admin_token.encode()):
            LOG.warning("wrong experimenter token on %s from %s", request.path,
                        request.remote_addr)  # fmt: skip
            abort(403)

    @app.get("/admin/<token>")
    def admin(token: str):
        check_admin(token)
        message = request.args.get("message", "")
        subjects = study.progress(connection())
        return render_template(
            "admin.html", subjects=subjects, meta=study.meta(connection()), token=token,
            message=message, root=request.host_url.rstrip("/"),
        )  # fmt: skip

    @app.post("/admin/<token>/subjects")
    def add_subject(token: str):
        check_admin(token)
        try:
            added = study.add_subject(connection(), request.form.get("name", ""))
        except study.StudyError as error:
            LOG.warning("subject not added: %s", error)
            return redirect(f"/admin/{token}?message=" + _quote(str(error)), code=303)
        return redirect(f"/admin/{token}?message=" + _quote(f"added {added['name']}"), code=303)

    return app


def _quote(text: str) -> str:
    return quote(text, safe="")
