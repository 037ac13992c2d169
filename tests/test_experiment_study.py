"""The 2AFC study's database (dlmap.experiment.study): trials made from the selected pairs,
reproducible subject orders, and what creation and subject names refuse."""

from __future__ import annotations

import pytest
from helpers import (
    CONDITIONS,
    add_subject,
)

from dlmap.experiment import study
from dlmap.testing.experiment import write_fake_pairs


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
    ann, bob = add_subject(db, "ann"), add_subject(db, "bob")
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
    twin = add_subject(again, "ann")
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


@pytest.mark.parametrize(
    "name", ["", "   ", "a\x00b", "a\nb", "a\rb", "evil\u202egnp.exe", "x" * 101, "a\u2028b"]
)
def test_bad_subject_names_are_refused(db, name):
    with pytest.raises(study.StudyError):
        add_subject(db, name)


def test_subject_names_are_one_unicode_form(db):
    composed, decomposed = "Ren\u00e9", "Rene\u0301"
    assert add_subject(db, decomposed)["name"] == composed
    with pytest.raises(study.StudyError, match="exists already"):
        add_subject(db, composed)
