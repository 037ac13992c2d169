"""The 2AFC web app (dlmap.experiment.app, through Flask's test client): answers taken once and
in order, every bad request a 4xx that stores nothing, images only to subjects, and pages
that leak no token and cannot be framed."""

from __future__ import annotations

import csv
import io
import json
import logging
import sqlite3
import unicodedata
import urllib.request

import pytest
from helpers import (
    ADMIN,
    PUBLIC,
    add_subject,
    answer_all,
    next_state,
    stored_answers,
    subject_trials,
)

from dlmap.experiment import export, study
from dlmap.experiment.app import MAX_BODY_BYTES, create_app, loggable
from dlmap.testing.experiment import ServedStudy, answer_payload


def test_answers_are_idempotent_and_conflicts_are_409(client, db):
    token = add_subject(db, "ann")["token"]
    trial = next_state(client, token)["trial"]["id"]
    first = client.post(f"/s/{token}/answer", json=answer_payload(trial, "left"))
    replay = client.post(f"/s/{token}/answer", json=answer_payload(trial, "left"))
    conflict = client.post(f"/s/{token}/answer", json=answer_payload(trial, "right"))
    assert first.status_code == 200 and first.get_json()["status"] == "stored"
    assert replay.status_code == 200 and replay.get_json()["status"] == "duplicate"
    assert conflict.status_code == 409
    with sqlite3.connect(db) as connection:
        rows = connection.execute("SELECT chosen FROM answers WHERE trial = ?", (trial,)).fetchall()
    assert rows == [("left",)]
    assert next_state(client, token)["trial"]["id"] != trial  # resumes at the next unanswered


def test_foreign_unknown_and_malformed_answers_are_rejected_and_logged(client, db, caplog):
    ann, bob = add_subject(db, "ann"), add_subject(db, "bob")
    bobs_trial = next_state(client, bob["token"])["trial"]["id"]
    ann_trial = next_state(client, ann["token"])["trial"]["id"]
    caplog.set_level(logging.WARNING, logger="dlmap.experiment")
    cases = [
        (ann["token"], answer_payload(bobs_trial), 404),
        ("not-a-token", answer_payload(ann_trial), 404),
        (ann["token"], answer_payload(ann_trial, chosen="middle"), 400),
        (ann["token"], answer_payload(ann_trial, device_pixel_ratio=0), 400),
        (ann["token"], answer_payload("1; DROP TABLE answers"), 400),
        (ann["token"], answer_payload(ann_trial, response_ms=True), 400),
        (ann["token"], [1, 2, 3], 400),
    ]
    for token, payload, status in cases:
        assert client.post(f"/s/{token}/answer", json=payload).status_code == status, payload
    assert client.post(f"/s/{ann['token']}/answer", data="{not json").status_code == 400
    assert len([r for r in caplog.records if "rejected" in r.getMessage()]) == len(cases) + 1
    with sqlite3.connect(db) as connection:
        assert connection.execute("SELECT COUNT(*) FROM answers").fetchone()[0] == 0


def test_images_are_served_by_id_only_to_subjects(client, db):
    token = add_subject(db, "ann")["token"]
    left_url = next_state(client, token)["trial"]["left"]
    response = client.get(left_url)
    assert response.status_code == 200 and response.data[:8] == b"\x89PNG\r\n\x1a\n"
    assert client.get(left_url.replace(token, "someone-else")).status_code == 404
    assert client.get(f"/s/{token}/image/9999").status_code == 404
    assert client.get(f"/s/{token}/image/..%2F..%2Fstudy.sqlite").status_code == 404
    assert client.get("/static/../study.sqlite").status_code == 404


def test_names_are_escaped_and_the_admin_page_needs_its_token(client, db):
    evil = "<script>alert(1)</script>"
    response = client.post(f"/admin/{ADMIN}/subjects", data={"name": evil})
    assert response.status_code == 303
    page = client.get(f"/admin/{ADMIN}").get_data(as_text=True)
    assert evil not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    token = study.progress(study.open_study(db))[0]["token"]
    subject_page = client.get(f"/s/{token}").get_data(as_text=True)
    assert evil not in subject_page and "&lt;script&gt;" in subject_page
    assert "script-src" not in client.get(f"/s/{token}").headers["Content-Security-Policy"]
    assert client.get("/admin/wrong").status_code == 403
    assert client.post("/admin/wrong/subjects", data={"name": "x"}).status_code == 403
    assert client.get(f"/s/{token}/nothing").status_code == 404


def test_answers_are_taken_only_in_order_and_a_retry_stays_a_no_op(client, db):
    token = add_subject(db, "ann")["token"]
    order = subject_trials(db, token)
    # the last main trial while both training trials are unanswered: refused, nothing stored
    response = client.post(f"/s/{token}/answer", json=answer_payload(order[-1]))
    assert response.status_code == 409 and "next" in response.get_json()["error"]
    assert client.post(f"/s/{token}/answer", json=answer_payload(order[1])).status_code == 409
    assert stored_answers(db) == 0
    assert client.post(f"/s/{token}/answer", json=answer_payload(order[0])).status_code == 200
    assert client.post(f"/s/{token}/answer", json=answer_payload(order[1])).status_code == 200
    # a client retrying the first answer after the reply was lost: still a 200 no-op
    again = client.post(f"/s/{token}/answer", json=answer_payload(order[0]))
    assert again.status_code == 200 and again.get_json()["status"] == "duplicate"
    assert (
        client.post(f"/s/{token}/answer", json=answer_payload(order[0], "right")).status_code == 409
    )
    assert stored_answers(db) == 2


def test_the_next_trial_comes_from_the_database_shared_by_two_servers(db):
    token = add_subject(db, "ann")["token"]
    order = subject_trials(db, token)
    one, two = (create_app(db, ADMIN, PUBLIC).test_client() for _ in range(2))
    assert one.post(f"/s/{token}/answer", json=answer_payload(order[0])).status_code == 200
    assert two.post(f"/s/{token}/answer", json=answer_payload(order[2])).status_code == 409
    assert two.post(f"/s/{token}/answer", json=answer_payload(order[1])).status_code == 200


def test_a_running_server_refuses_an_image_changed_since_it_started(client, db, tmp_path):
    token = add_subject(db, "ann")["token"]
    url = client.get(f"/s/{token}/state").get_json()["trial"]["left"]
    assert client.get(url).status_code == 200
    connection = study.open_study(db)
    image_id = int(url.rsplit("/", 1)[1])
    path = connection.execute("SELECT path FROM images WHERE id = ?", (image_id,)).fetchone()[0]
    connection.close()
    (tmp_path / "images" / path).write_bytes(b"\x89PNG new bytes under the old hash")
    response = client.get(url)
    assert response.status_code == 409 and "changed" in response.get_json()["error"]


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
    token = add_subject(db, "ann")["token"]
    trial = subject_trials(db, token)[0]
    response = client.post(f"/s/{token}/answer", json={**answer_payload(trial), **changes})
    assert response.status_code == 400, response.get_data(as_text=True)
    assert stored_answers(db) == 0


def test_huge_image_ids_nested_json_and_big_bodies_are_refused(client, db):
    token = add_subject(db, "ann")["token"]
    assert client.get(f"/s/{token}/image/99999999999999999999999").status_code == 404
    deep = "[" * 100_000 + "]" * 100_000
    answer = f"/s/{token}/answer"
    assert client.post(answer, data=deep, content_type="application/json").status_code == 413
    shallow_but_deep = "[" * 2000 + "]" * 2000  # under the size limit, over the parser's depth
    response = client.post(answer, data=shallow_but_deep, content_type="application/json")
    assert response.status_code == 400
    big = json.dumps({**answer_payload(subject_trials(db, token)[0]), "pad": "x" * MAX_BODY_BYTES})
    assert client.post(answer, data=big, content_type="application/json").status_code == 413
    assert (
        client.post(answer, data=b"\xff\xfe{", content_type="application/json").status_code == 400
    )
    assert stored_answers(db) == 0


def test_formula_like_text_is_refused_at_the_door_and_neutralised_in_answers_csv(
    client, db, tmp_path
):
    for name in ('=HYPERLINK("http://evil")', "+1", "-2", "@SUM(A1)"):
        with pytest.raises(study.StudyError, match="formula"):
            add_subject(db, name)
    # a study made before names were checked: its names are neutralised in answers.csv only
    token = add_subject(db, "ann")["token"]
    answer_all(client, token)
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
    token = add_subject(db, "ann")["token"]
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
    add_subject(db, "ann")
    page = client.get(f"/admin/{ADMIN}", headers={"Host": "evil.example"}).get_data(as_text=True)
    assert "evil.example" not in page and f"{PUBLIC}/s/" in page


def test_pages_forbid_framing_and_token_bearing_responses_forbid_caching(client, db):
    token = add_subject(db, "ann")["token"]
    trial = subject_trials(db, token)[0]
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
