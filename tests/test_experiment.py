"""The 2AFC study: creation, the app's guarantees (Flask test client) and the export."""

from __future__ import annotations

import argparse
import json
import logging
import sqlite3

import numpy as np
import pytest

from dlmap.cli import main as cli
from dlmap.cli.experiment import experiment_command, serve
from dlmap.compare.counts import read_counts
from dlmap.errors import UsageError
from dlmap.experiment import export, study
from dlmap.experiment.app import create_app
from dlmap.testing.experiment import answer_payload, write_fake_pairs

CONDITIONS = ["gamma", "alpha", "beta"]
ADMIN = "secret-admin-token"


@pytest.fixture
def db(tmp_path):
    pairs = write_fake_pairs(tmp_path, CONDITIONS, k=2)
    path = tmp_path / "study.sqlite"
    study.create_study(path, pairs, tmp_path / "images", training=2, repeats=1, seed=7)
    return path


def _subject(db, name):
    connection = study.open_study(db)
    try:
        return study.add_subject(connection, name)
    finally:
        connection.close()


@pytest.fixture
def client(db):
    app = create_app(db, ADMIN)
    app.testing = True
    return app.test_client()


def test_eight_models_k20_give_560_trials_plus_training(tmp_path):
    names = [f"m{i}" for i in range(8)]
    pairs = write_fake_pairs(tmp_path, names, k=20, size=(4, 4))
    path = tmp_path / "s.sqlite"
    values = study.create_study(path, pairs, tmp_path / "images", training=5, seed=1)
    connection = study.open_study(path)
    added = study.add_subject(connection, "ann")
    training = connection.execute("SELECT COUNT(*) FROM trials WHERE training = 1").fetchone()[0]
    first = connection.execute("SELECT training FROM trials ORDER BY position LIMIT 5").fetchall()
    images = connection.execute("SELECT COUNT(*) FROM images").fetchone()[0]
    connection.close()
    assert added["trials"] == 560 + 5 and training == 5
    assert all(row[0] == 1 for row in first)  # the training block comes first
    assert values["conditions"] == sorted(names) and images == 8 * 20
    assert values["pairs_sha256"] == study.sha256_file(pairs)


def test_subject_orders_differ_but_are_reproducible_from_the_recorded_seed(tmp_path, db):
    ann, bob = _subject(db, "ann"), _subject(db, "bob")
    connection = study.open_study(db)
    sequences = {
        s["id"]: [
            (r["pair"], r["swapped"])
            for r in connection.execute(
                "SELECT pair, swapped FROM trials WHERE subject = ? ORDER BY position", (s["id"],)
            )
        ]
        for s in (ann, bob)
    }
    stored_seed = connection.execute("SELECT seed FROM subjects WHERE name = 'ann'").fetchone()[0]
    connection.close()
    assert sequences[ann["id"]] != sequences[bob["id"]]
    assert stored_seed == study.subject_seed(7, "ann")
    # The same study seed and name rebuild the same sequence in another database.
    pairs = write_fake_pairs(tmp_path / "again", CONDITIONS, k=2)
    again = tmp_path / "again" / "study.sqlite"
    study.create_study(again, pairs, tmp_path / "again" / "images", training=2, seed=7)
    twin = _subject(again, "ann")
    connection = study.open_study(again)
    rebuilt = [
        (r["pair"], r["swapped"])
        for r in connection.execute(
            "SELECT pair, swapped FROM trials WHERE subject = ? ORDER BY position", (twin["id"],)
        )
    ]
    connection.close()
    assert rebuilt == sequences[ann["id"]]


def test_create_refuses_images_outside_the_folder_and_existing_databases(tmp_path, db):
    pairs = tmp_path / "evil.csv"
    outside = tmp_path / "outside.png"
    outside.write_bytes((tmp_path / "images" / "alpha" / "img0.png").read_bytes())
    pairs.write_text(
        "enhancer_i,enhancer_j,image,order,d1,d2,objective,file_i,file_j\n"
        "alpha,beta,img0,1,0,,0,alpha/img0.png,../outside.png\n"
    )
    with pytest.raises(study.StudyError, match="outside the images folder"):
        study.create_study(tmp_path / "evil.sqlite", pairs, tmp_path / "images")
    assert not (tmp_path / "evil.sqlite").exists()
    with pytest.raises(study.StudyError, match="exists already"):
        study.create_study(db, tmp_path / "PAIRS.csv", tmp_path / "images")


def _next(client, token):
    response = client.get(f"/s/{token}/state")
    assert response.status_code == 200
    return response.get_json()


def test_answers_are_idempotent_and_conflicts_are_409(client, db):
    token = _subject(db, "ann")["token"]
    trial = _next(client, token)["trial"]["id"]
    first = client.post(f"/s/{token}/answer", json=answer_payload(trial, "left"))
    replay = client.post(f"/s/{token}/answer", json=answer_payload(trial, "left"))
    conflict = client.post(f"/s/{token}/answer", json=answer_payload(trial, "right"))
    assert first.status_code == 200 and first.get_json()["status"] == "stored"
    assert replay.status_code == 200 and replay.get_json()["status"] == "duplicate"
    assert conflict.status_code == 409
    with sqlite3.connect(db) as connection:
        rows = connection.execute("SELECT chosen FROM answers WHERE trial = ?", (trial,)).fetchall()
    assert rows == [("left",)]
    assert _next(client, token)["trial"]["id"] != trial  # resumes at the next unanswered


def test_foreign_unknown_and_malformed_answers_are_rejected_and_logged(client, db, caplog):
    ann, bob = _subject(db, "ann"), _subject(db, "bob")
    bobs_trial = _next(client, bob["token"])["trial"]["id"]
    ann_trial = _next(client, ann["token"])["trial"]["id"]
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
    token = _subject(db, "ann")["token"]
    left_url = _next(client, token)["trial"]["left"]
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


def _answer_all(client, token, prefer):
    """Answer every trial, choosing the image of the condition ``prefer`` ranks higher."""
    connection = sqlite3.connect(client.application.config["STUDY_DB"])
    while not (state := _next(client, token))["finished"]:
        trial = state["trial"]["id"]
        i, j, swapped = connection.execute(
            "SELECT p.enhancer_i, p.enhancer_j, t.swapped FROM trials t"
            " JOIN pairs p ON p.id = t.pair WHERE t.id = ?",
            (trial,),
        ).fetchone()
        left, right = (j, i) if swapped else (i, j)
        side = "left" if prefer.index(left) < prefer.index(right) else "right"
        assert (
            client.post(f"/s/{token}/answer", json=answer_payload(trial, side)).status_code == 200
        )
    connection.close()


def test_export_counts_match_answers_and_rank_reads_them(client, db, tmp_path):
    # ann always prefers alpha > beta > gamma, bob the reverse; training is not counted.
    _answer_all(client, _subject(db, "ann")["token"], ["alpha", "beta", "gamma"])
    _answer_all(client, _subject(db, "<bob>")["token"], ["gamma", "beta", "alpha"])
    _subject(db, "carl")  # no answer: no file
    out = tmp_path / "export"
    assert cli.main(["experiment", "export", "--db", str(db), "--out", str(out)]) == 0
    names, ann = read_counts(out / "subjects" / "ann.csv")
    _, bob = read_counts(out / "subjects" / "bob.csv")
    total_names, total = read_counts(out / "counts.csv")
    assert names == total_names == ["alpha", "beta", "gamma"]
    k = 2  # each pair of conditions is shown k times
    assert np.array_equal(ann, np.array([[0, k, k], [0, 0, k], [0, 0, 0]]))
    assert np.array_equal(bob, ann.T) and np.array_equal(total, ann + bob)
    summary = json.loads((out / "export.json").read_text())
    assert summary["pairs_sha256"] == study.sha256_file(tmp_path / "PAIRS.csv")
    assert summary["image_sha256"]["alpha/img0.png"] == study.sha256_file(
        tmp_path / "images" / "alpha" / "img0.png"
    )
    assert sorted(summary["subject_files"]) == ["<bob>", "ann"]
    lines = (out / "answers.csv").read_text().splitlines()
    assert len(lines) == 1 + 2 * (3 * k + 2)  # header + every answer, training included
    assert sum(",1," in line.split("img")[0] for line in lines[1:]) >= 4  # training flagged
    with pytest.raises(study.StudyError, match="empty folder"):
        export.export_study(db, out)


def test_cli_create_reports_bad_input_in_one_line(tmp_path, capsys):
    pairs = write_fake_pairs(tmp_path, CONDITIONS, k=1)
    images = str(tmp_path / "images")
    arguments = ["experiment", "create", "--pairs", str(pairs), "--images", images]
    assert cli.main([*arguments, "--db", str(tmp_path / "s.sqlite"), "--training", "1"]) == 0
    assert cli.main([*arguments, "--db", str(tmp_path / "t.sqlite"), "--training", "9"]) == 2
    assert "--training 9" in capsys.readouterr().err
    (tmp_path / "images" / "alpha" / "img0.png").write_bytes(b"changed")
    with pytest.raises(study.StudyError, match="changed or missing"):
        serve(tmp_path / "s.sqlite", "127.0.0.1", 0)
    with pytest.raises(UsageError, match="changed or missing"):
        experiment_command(
            argparse.Namespace(
                experiment_command="serve",
                db=tmp_path / "s.sqlite",
                host="127.0.0.1",
                port=0,
                public_url=None,
            )
        )


def test_an_export_is_refused_once_the_pairs_or_an_image_changed(db, tmp_path):
    """The workflow's human_counts: old answers never meet new images (DESIGN "2AFC")."""
    out = tmp_path / "export"
    export.export_study(db, out)
    pairs, images = tmp_path / "PAIRS.csv", tmp_path / "images"
    assert export.verify_export(out, pairs, images)["conditions"] == sorted(CONDITIONS)
    with pytest.raises(study.StudyError, match="no export.json"):
        export.verify_export(tmp_path / "nowhere", pairs, images)
    image = images / "beta" / "img1.png"
    original = image.read_bytes()
    image.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    with pytest.raises(study.StudyError, match="img1.png changed"):
        export.verify_export(out, pairs, images)
    image.write_bytes(original)
    extra = "alpha,beta,img0,3,0.5,,0.5,alpha/img0.png,beta/img0.png\n"
    pairs.write_text(pairs.read_text() + extra)
    with pytest.raises(study.StudyError, match="other pairs"):
        export.verify_export(out, pairs, images)
