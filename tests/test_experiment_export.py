"""Exporting a 2AFC study (dlmap.experiment.export): counts that match the answers and that
``dlmap rank`` reads, one file per subject, one snapshot under load, and a refusal once the
pairs or an image changed."""

from __future__ import annotations

import csv
import io
import json
import threading
import urllib.request

import numpy as np
import pytest
from helpers import (
    CONDITIONS,
    add_subject,
    answer_all,
    cli_exit,
    one_line_error,
    stored_answers,
    subject_trials,
)

from dlmap.cli import main as cli
from dlmap.compare.counts import read_counts
from dlmap.experiment import export, study
from dlmap.testing.experiment import ServedStudy, answer_payload, write_fake_pairs


def test_export_counts_match_answers_and_rank_reads_them(client, db, tmp_path):
    # ann always prefers alpha > beta > gamma, bob the reverse; training is not counted.
    answer_all(client, add_subject(db, "ann")["token"], ["alpha", "beta", "gamma"])
    answer_all(client, add_subject(db, "<bob>")["token"], ["gamma", "beta", "alpha"])
    add_subject(db, "carl")  # no answer: no file
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


def test_export_gives_every_subject_its_own_file_even_when_cleaned_names_collide(
    client, db, tmp_path, capsys
):
    # "ann!" is cleaned to "ann" (taken), then "ann-3" (taken by the first subject)
    for name in ("ann-3", "ann", "ann!", "ANN"):
        answer_all(client, add_subject(db, name)["token"])
    out = tmp_path / "export"
    summary = export.export_study(db, out)
    files = summary["subject_files"]
    assert len(files) == 4 and len({f.lower() for f in files.values()}) == 4
    assert len(list((out / "subjects").glob("*.csv"))) == 4
    code, err = cli_exit(
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


def test_export_refuses_a_study_whose_image_or_pairs_changed(client, db, tmp_path, capsys):
    answer_all(client, add_subject(db, "ann")["token"])
    image = tmp_path / "images" / "beta" / "img1.png"
    original = image.read_bytes()
    image.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    out = tmp_path / "export"
    code, err = cli_exit(["experiment", "export", "--db", db, "--out", out], capsys)
    one_line_error(code, err, "beta/img1.png", "changed")
    assert not out.exists()
    image.write_bytes(original)
    pairs = tmp_path / "PAIRS.csv"
    pairs.write_text(pairs.read_text() + "alpha,beta,img0,9,0,,0,alpha/img0.png,beta/img0.png\n")
    code, err = cli_exit(["experiment", "export", "--db", db, "--out", out], capsys)
    one_line_error(code, err, "PAIRS.csv", "changed")
    pairs.unlink()
    code, err = cli_exit(["experiment", "export", "--db", db, "--out", out], capsys)
    one_line_error(code, err, "PAIRS.csv", "missing")
    assert not out.exists()


def test_an_answer_stored_while_exporting_is_in_all_of_the_export_or_none_of_it(
    client, db, tmp_path, monkeypatch
):
    token = add_subject(db, "ann")["token"]
    order = subject_trials(db, token)
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
    assert stored_answers(db) == 4


def test_an_export_under_load_is_one_snapshot(tmp_path):
    pairs = write_fake_pairs(tmp_path, ["a", "b", "c", "d"], k=20, size=(8, 8))
    db = tmp_path / "study.sqlite"
    study.create_study(db, pairs, tmp_path / "images", training=0, seed=1)
    tokens = [add_subject(db, f"s{i}")["token"] for i in range(6)]
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
