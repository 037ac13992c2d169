"""The 2AFC app and its commands under attack and accident: each test is one way a subject,
an attacker or a clumsy experimenter could lose or corrupt the study's answers, crash the
server, or get a traceback instead of a one-line error (docs/experiment.md)."""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import sqlite3
import threading
import unicodedata
import urllib.request

import pytest

from dlmap.cli import main as cli
from dlmap.experiment import export, study
from dlmap.experiment.app import MAX_BODY_BYTES, create_app, loggable
from dlmap.testing.experiment import ServedStudy, answer_payload, write_fake_pairs

CONDITIONS = ["alpha", "beta", "gamma"]
ADMIN = "experimenter-secret-token-0123456789"
PUBLIC = "https://study.lab.example"


@pytest.fixture
def db(tmp_path):
    pairs = write_fake_pairs(tmp_path, CONDITIONS, k=2)
    path = tmp_path / "study.sqlite"
    study.create_study(path, pairs, tmp_path / "images", training=2, repeats=1, seed=7)
    return path


@pytest.fixture
def client(db):
    app = create_app(db, ADMIN, PUBLIC)
    app.testing = True
    return app.test_client()


def _subject(db, name):
    connection = study.open_study(db)
    try:
        return study.add_subject(connection, name)
    finally:
        connection.close()


def _trials(db, token) -> list[int]:
    """The subject's trial ids in their order (training first)."""
    with sqlite3.connect(db) as connection:
        rows = connection.execute(
            "SELECT t.id FROM trials t JOIN subjects s ON s.id = t.subject WHERE s.token = ?"
            " ORDER BY t.position",
            (token,),
        ).fetchall()
    return [row[0] for row in rows]


def _stored(db) -> int:
    with sqlite3.connect(db) as connection:
        return connection.execute("SELECT COUNT(*) FROM answers").fetchone()[0]


def _answer_all(client, token):
    while not (state := client.get(f"/s/{token}/state").get_json())["finished"]:
        response = client.post(f"/s/{token}/answer", json=answer_payload(state["trial"]["id"]))
        assert response.status_code == 200, response.get_json()


def _cli(argv, capsys) -> tuple[int, str]:
    """(exit code, stderr) of ``dlmap ARGV``; argparse's own exits count as return codes."""
    try:
        code = cli.main([str(a) for a in argv])
    except SystemExit as exit_:
        code = exit_.code
    return code, capsys.readouterr().err


def _one_line_error(code, err, *needles):
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 or (lines[0].startswith("usage:") and len(lines) == 2), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[-1], (needle, err)


# Data loss and integrity --------------------------------------------------------------------


def test_export_gives_every_subject_its_own_file_even_when_cleaned_names_collide(
    client, db, tmp_path, capsys
):
    # "ann!" is cleaned to "ann" (taken), then "ann-3" (taken by the first subject)
    for name in ("ann-3", "ann", "ann!", "ANN"):
        _answer_all(client, _subject(db, name)["token"])
    out = tmp_path / "export"
    summary = export.export_study(db, out)
    files = summary["subject_files"]
    assert len(files) == 4 and len({f.lower() for f in files.values()}) == 4
    assert len(list((out / "subjects").glob("*.csv"))) == 4
    code, err = _cli(
        [
            "rank",
            out / "counts.csv",
            "--per-subject",
            out / "subjects",
            "--bootstrap",
            "10",
            "--out",
            tmp_path / "scores.csv",
        ],
        capsys,
    )
    assert code == 0, err


def test_stems_stay_unique_whatever_the_names_and_ids():
    names = [(3, "ann"), (1, "ann-3"), (9, "ann-3-2"), (3, "Ann"), (5, "???"), (6, "...")]
    subjects = [{"id": number, "name": name} for number, name in names]
    stems = export.subject_file_stems(subjects)
    assert len({s.lower() for s in stems.values()}) == len(stems)


def test_answers_are_taken_only_in_order_and_a_retry_stays_a_no_op(client, db):
    token = _subject(db, "ann")["token"]
    order = _trials(db, token)
    # the last main trial while both training trials are unanswered: refused, nothing stored
    response = client.post(f"/s/{token}/answer", json=answer_payload(order[-1]))
    assert response.status_code == 409 and "next" in response.get_json()["error"]
    assert client.post(f"/s/{token}/answer", json=answer_payload(order[1])).status_code == 409
    assert _stored(db) == 0
    assert client.post(f"/s/{token}/answer", json=answer_payload(order[0])).status_code == 200
    assert client.post(f"/s/{token}/answer", json=answer_payload(order[1])).status_code == 200
    # a client retrying the first answer after the reply was lost: still a 200 no-op
    again = client.post(f"/s/{token}/answer", json=answer_payload(order[0]))
    assert again.status_code == 200 and again.get_json()["status"] == "duplicate"
    assert (
        client.post(f"/s/{token}/answer", json=answer_payload(order[0], "right")).status_code == 409
    )
    assert _stored(db) == 2


def test_the_next_trial_comes_from_the_database_shared_by_two_servers(db):
    token = _subject(db, "ann")["token"]
    order = _trials(db, token)
    one, two = (create_app(db, ADMIN, PUBLIC).test_client() for _ in range(2))
    assert one.post(f"/s/{token}/answer", json=answer_payload(order[0])).status_code == 200
    assert two.post(f"/s/{token}/answer", json=answer_payload(order[2])).status_code == 409
    assert two.post(f"/s/{token}/answer", json=answer_payload(order[1])).status_code == 200


def test_export_refuses_a_study_whose_image_or_pairs_changed(client, db, tmp_path, capsys):
    _answer_all(client, _subject(db, "ann")["token"])
    image = tmp_path / "images" / "beta" / "img1.png"
    original = image.read_bytes()
    image.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    out = tmp_path / "export"
    code, err = _cli(["experiment", "export", "--db", db, "--out", out], capsys)
    _one_line_error(code, err, "beta/img1.png", "changed")
    assert not out.exists()
    image.write_bytes(original)
    pairs = tmp_path / "PAIRS.csv"
    pairs.write_text(pairs.read_text() + "alpha,beta,img0,9,0,,0,alpha/img0.png,beta/img0.png\n")
    code, err = _cli(["experiment", "export", "--db", db, "--out", out], capsys)
    _one_line_error(code, err, "PAIRS.csv", "changed")
    pairs.unlink()
    code, err = _cli(["experiment", "export", "--db", db, "--out", out], capsys)
    _one_line_error(code, err, "PAIRS.csv", "missing")
    assert not out.exists()


def test_a_running_server_refuses_an_image_changed_since_it_started(client, db, tmp_path):
    token = _subject(db, "ann")["token"]
    url = client.get(f"/s/{token}/state").get_json()["trial"]["left"]
    assert client.get(url).status_code == 200
    connection = study.open_study(db)
    image_id = int(url.rsplit("/", 1)[1])
    path = connection.execute("SELECT path FROM images WHERE id = ?", (image_id,)).fetchone()[0]
    connection.close()
    (tmp_path / "images" / path).write_bytes(b"\x89PNG new bytes under the old hash")
    response = client.get(url)
    assert response.status_code == 409 and "changed" in response.get_json()["error"]


def test_an_answer_stored_while_exporting_is_in_all_of_the_export_or_none_of_it(
    client, db, tmp_path, monkeypatch
):
    token = _subject(db, "ann")["token"]
    order = _trials(db, token)
    for trial in order[:3]:
        assert client.post(f"/s/{token}/answer", json=answer_payload(trial)).status_code == 200
    read_answers = export.answers

    def answers_then_another_server_stores_one(connection):
        records = read_answers(connection)
        # another server, another connection, commits an answer between the export's reads
        assert client.post(f"/s/{token}/answer", json=answer_payload(order[3])).status_code == 200
        return records

    monkeypatch.setattr(export, "answers", answers_then_another_server_stores_one)
    summary = export.export_study(db, tmp_path / "export")
    rows = (tmp_path / "export" / "answers.csv").read_text().splitlines()[1:]
    assert summary["subjects"][0]["answered"] == len(rows) == 3
    assert _stored(db) == 4


def test_an_export_under_load_is_one_snapshot(tmp_path):
    pairs = write_fake_pairs(tmp_path, ["a", "b", "c", "d"], k=20, size=(8, 8))
    db = tmp_path / "study.sqlite"
    study.create_study(db, pairs, tmp_path / "images", training=0, seed=1)
    tokens = [_subject(db, f"s{i}")["token"] for i in range(6)]
    stop = threading.Event()

    def answer(url, token):
        state = json.loads(urllib.request.urlopen(f"{url}/s/{token}/state").read())
        while not stop.is_set() and not state["finished"]:
            body = json.dumps(answer_payload(state["trial"]["id"])).encode()
            request = urllib.request.Request(
                f"{url}/s/{token}/answer", body, {"Content-Type": "application/json"}
            )
            state = json.loads(urllib.request.urlopen(request).read())["state"]

    with ServedStudy(db) as served:
        threads = [threading.Thread(target=answer, args=(served.url, t)) for t in tokens]
        for thread in threads:
            thread.start()
        try:
            for n in range(8):
                out = tmp_path / f"export{n}"
                summary = export.export_study(db, out)
                rows = list(csv.DictReader(io.StringIO((out / "answers.csv").read_text())))
                for subject in summary["subjects"]:
                    mine = sum(row["subject"] == subject["name"] for row in rows)
                    assert mine == subject["answered"], (n, subject, mine)
                assert summary["counted_answers"] == len(rows)  # no training in this study
            assert 0 < len(rows) < 6 * 120, "the exports did not overlap the answering"
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=30)


# Crashes and resource use: each a 4xx, never a 500 -----------------------------------------


@pytest.mark.parametrize(
    "changes",
    [
        {"trial": 2**63},
        {"trial": 10**30},
        {"screen_width": 2**63},
        {"screen_width": 1e300},
        {"window_height": -1},
        {"response_ms": 1e308},
        {"response_ms": -1},
        {"device_pixel_ratio": 1e308},
        {"zoom": 1e308},
        {"zoom": 0},
        {"shown_at": "yesterday"},
        {"answered_at": "2024-01-01"},
        {"answered_at": "=1+1"},
        {"junk": list(range(100))},
    ],
)
def test_out_of_range_and_unknown_fields_are_a_400_and_store_nothing(client, db, changes):
    token = _subject(db, "ann")["token"]
    trial = _trials(db, token)[0]
    response = client.post(f"/s/{token}/answer", json={**answer_payload(trial), **changes})
    assert response.status_code == 400, response.get_data(as_text=True)
    assert _stored(db) == 0


def test_huge_image_ids_nested_json_and_big_bodies_are_refused(client, db):
    token = _subject(db, "ann")["token"]
    assert client.get(f"/s/{token}/image/99999999999999999999999").status_code == 404
    deep = "[" * 100_000 + "]" * 100_000
    answer = f"/s/{token}/answer"
    assert client.post(answer, data=deep, content_type="application/json").status_code == 413
    shallow_but_deep = "[" * 2000 + "]" * 2000  # under the size limit, over the parser's depth
    response = client.post(answer, data=shallow_but_deep, content_type="application/json")
    assert response.status_code == 400
    big = json.dumps({**answer_payload(_trials(db, token)[0]), "pad": "x" * MAX_BODY_BYTES})
    assert client.post(answer, data=big, content_type="application/json").status_code == 413
    assert (
        client.post(answer, data=b"\xff\xfe{", content_type="application/json").status_code == 400
    )
    assert _stored(db) == 0


# Security -----------------------------------------------------------------------------------


def test_formula_like_text_is_refused_at_the_door_and_neutralised_in_answers_csv(
    client, db, tmp_path
):
    for name in ('=HYPERLINK("http://evil")', "+1", "-2", "@SUM(A1)"):
        with pytest.raises(study.StudyError, match="formula"):
            _subject(db, name)
    # a study made before names were checked: its names are neutralised in answers.csv only
    token = _subject(db, "ann")["token"]
    _answer_all(client, token)
    with sqlite3.connect(db) as connection:
        connection.execute("UPDATE subjects SET name = '=cmd|calc' WHERE token = ?", (token,))
    out = tmp_path / "export"
    export.export_study(db, out)
    rows = list(csv.DictReader(io.StringIO((out / "answers.csv").read_text())))
    assert {row["subject"] for row in rows} == {"'=cmd|calc"}
    assert all(not value.startswith(("=", "+", "-", "@")) for r in rows for value in r.values())
    assert json.loads((out / "export.json").read_text())["subject_files"] == {
        "=cmd|calc": "subjects/cmd_calc.csv"
    }


def test_logs_show_no_token_and_no_forged_line(db, caplog):
    token = _subject(db, "ann")["token"]
    caplog.set_level(logging.INFO)
    with ServedStudy(db, admin_token=ADMIN) as served:
        for path in (
            f"/s/{token}",
            f"/s/{token}/state",
            f"/admin/{ADMIN}",
            f"/s/{token}%0aFORGED%20line",
            "/s/x%00y/state",
            "/admin/wrong%0a",
            f"/s/{token}/image/1%1b[31m",
        ):
            try:
                urllib.request.urlopen(served.url + path).read()
            except urllib.error.HTTPError:
                pass
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert caplog.records and token[:4] in text
    assert token not in text and ADMIN not in text
    for record in caplog.records:
        message = record.getMessage()
        assert not any(unicodedata.category(c) == "Cc" for c in message), message
    assert loggable("/s/abcdefgh/x\n\x00\u202e") == "/s/abcd…/x\\n\\x00\\u202e"


def test_subject_links_come_from_the_public_url_not_the_host_header(client, db):
    _subject(db, "ann")
    page = client.get(f"/admin/{ADMIN}", headers={"Host": "evil.example"}).get_data(as_text=True)
    assert "evil.example" not in page and f"{PUBLIC}/s/" in page


def test_pages_forbid_framing_and_token_bearing_responses_forbid_caching(client, db):
    token = _subject(db, "ann")["token"]
    trial = _trials(db, token)[0]
    responses = [
        client.get(f"/s/{token}"),
        client.get(f"/s/{token}/state"),
        client.get(f"/admin/{ADMIN}"),
        client.post(f"/s/{token}/answer", json=answer_payload(trial)),
        client.post(f"/s/{token}/answer", json=answer_payload(trial + 999)),
    ]
    for response in responses:
        assert response.headers["X-Frame-Options"] == "DENY"
        assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
        assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize(
    "name", ["", "   ", "a\x00b", "a\nb", "a\rb", "evil\u202egnp.exe", "x" * 101, "a\u2028b"]
)
def test_bad_subject_names_are_refused(db, name):
    with pytest.raises(study.StudyError):
        _subject(db, name)


def test_subject_names_are_one_unicode_form(db):
    composed, decomposed = "Ren\u00e9", "Rene\u0301"
    assert _subject(db, decomposed)["name"] == composed
    with pytest.raises(study.StudyError, match="exists already"):
        _subject(db, composed)


# Clear errors: one line, exit 2, nothing half-written ----------------------------------------


def test_export_out_that_cannot_be_a_folder(client, db, tmp_path, capsys):
    _answer_all(client, _subject(db, "ann")["token"])
    afile = tmp_path / "afile"
    afile.write_text("x")
    for out in (afile, afile / "sub"):
        code, err = _cli(["experiment", "export", "--db", db, "--out", out], capsys)
        _one_line_error(code, err, str(afile))
    os.symlink("loop-b", tmp_path / "loop-a")
    os.symlink("loop-a", tmp_path / "loop-b")
    code, err = _cli(["experiment", "export", "--db", db, "--out", tmp_path / "loop-a"], capsys)
    _one_line_error(code, err, "loop-a")


@pytest.mark.parametrize("content", [b"", b"not a database at all", b"SQLite format 3\x00junk"])
@pytest.mark.parametrize("command", ["export", "serve"])
def test_a_file_that_is_not_a_study_is_refused_and_left_alone(tmp_path, capsys, content, command):
    fake = tmp_path / "fake.sqlite"
    fake.write_bytes(content)
    extra = ["--out", tmp_path / "out"] if command == "export" else ["--port", "0"]
    code, err = _cli(["experiment", command, "--db", fake, *extra], capsys)
    _one_line_error(code, err, str(fake))
    assert fake.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fake.sqlite"]


@pytest.mark.parametrize("port", ["-1", "70000", "http"])
def test_serve_refuses_a_port_outside_0_65535(db, capsys, port):
    code, err = _cli(["experiment", "serve", "--db", db, "--port", port], capsys)
    _one_line_error(code, err, port)


def test_serve_refuses_a_public_url_that_is_not_a_root(db, capsys):
    for url in ("ftp://x", "http://", "https://lab.example/study", "http://a b"):
        code, err = _cli(["experiment", "serve", "--db", db, "--public-url", url], capsys)
        _one_line_error(code, err, "--public-url")


def _create(tmp_path, capsys, pairs, db=None):
    db = db or tmp_path / "new.sqlite"
    return _cli(
        [
            "experiment",
            "create",
            "--pairs",
            pairs,
            "--images",
            tmp_path / "images",
            "--db",
            db,
            "--training",
            "0",
        ],
        capsys,
    )


def test_create_refuses_bad_databases_images_and_pairs_in_one_line(tmp_path, capsys):
    pairs = write_fake_pairs(tmp_path, CONDITIONS, k=1)
    header = pairs.read_text().splitlines()[0]
    code, err = _create(tmp_path, capsys, pairs, tmp_path / "missing" / "x.sqlite")
    _one_line_error(code, err, "missing")
    assert not (tmp_path / "missing").exists()
    (tmp_path / "images" / "alpha" / "fake.png").write_text("not an image")
    bad = tmp_path / "bad.csv"
    bad.write_text(f"{header}\nalpha,beta,img0,1,0,,0,alpha/fake.png,beta/img0.png\n")
    _one_line_error(*_create(tmp_path, capsys, bad), "fake.png", "not a readable image")
    os.symlink("loop2.png", tmp_path / "images" / "alpha" / "loop1.png")
    os.symlink("loop1.png", tmp_path / "images" / "alpha" / "loop2.png")
    bad.write_text(f"{header}\nalpha,beta,img0,1,0,,0,alpha/loop1.png,beta/img0.png\n")
    _one_line_error(*_create(tmp_path, capsys, bad), "loop1.png")
    bad.write_text(f"{header}\nalpha,beta,img0,1,0,,0,alpha/img0.png,alpha/img0.png\n")
    _one_line_error(*_create(tmp_path, capsys, bad), "same image")
    bad.write_text(f"{header}\nalpha,beta,img0,1,0,,0,alpha/img0.png,alpha/../alpha/img0.png\n")
    _one_line_error(*_create(tmp_path, capsys, bad), "same image")
    bad.write_text(f"{header}\n=evil,beta,img0,1,0,,0,alpha/img0.png,beta/img0.png\n")
    _one_line_error(*_create(tmp_path, capsys, bad), "formula")
    bad.write_text(f"{header}\nalpha,beta,img0\n")
    _one_line_error(*_create(tmp_path, capsys, bad), "cells")
    assert not (tmp_path / "new.sqlite").exists()


def test_a_pairs_file_saved_with_a_byte_order_mark_is_read(tmp_path, capsys):
    pairs = write_fake_pairs(tmp_path, CONDITIONS, k=1)
    pairs.write_bytes(b"\xef\xbb\xbf" + pairs.read_bytes())
    code, err = _create(tmp_path, capsys, pairs)
    assert code == 0, err
