"""Fuzzing the experiment's parsers of outside input (hypothesis): an answer's body, a pairs
CSV and a subject name. Each input is either taken, meeting the parser's promises, or refused
with a 4xx / a one-line StudyError; never a 500, never a traceback."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import unicodedata

import helpers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dlmap.experiment import study
from dlmap.experiment.answers import ANSWER_FIELDS, PayloadError, parse_answer
from dlmap.experiment.app import create_app
from dlmap.testing.experiment import answer_payload, write_fake_pairs

FUZZ = settings(max_examples=150, **helpers.FUZZ)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
FIELD_VALUES = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    st.booleans(),
    st.none(),
    st.text(max_size=40),
    st.sampled_from(["left", "right", "key", "click", "2024-01-01T10:00:00.000Z", "=1+1", "-0"]),
)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A study with one subject and the test client of its app."""
    folder = tmp_path_factory.mktemp("fuzz")
    pairs = write_fake_pairs(folder, ["a", "b", "c"], k=2, size=(8, 8))
    db = folder / "study.sqlite"
    study.create_study(db, pairs, folder / "images", training=1, seed=0)
    connection = study.open_study(db)
    token = study.add_subject(connection, "ann")["token"]
    connection.close()
    return db, token, create_app(db, "admin").test_client()


def _post(served, body: bytes):
    db, token, client = served
    response = client.post(f"/s/{token}/answer", data=body, content_type="application/json")
    assert response.status_code < 500, response.get_data(as_text=True)
    assert response.is_json
    return response


@FUZZ
@given(payload=JSON)
def test_any_json_body_is_a_4xx_or_a_valid_answer(served, payload):
    response = _post(served, json.dumps(payload).encode())
    assert response.status_code in (400, 404, 409, 413)


@FUZZ
@given(body=st.binary(max_size=300))
def test_any_bytes_are_refused_with_a_4xx(served, body):
    assert _post(served, body).status_code in (400, 404, 409, 413)


@FUZZ
@given(changes=st.dictionaries(st.sampled_from(sorted(ANSWER_FIELDS)), FIELD_VALUES, max_size=4))
def test_each_field_is_checked_against_its_type_and_range(served, changes):
    db, token, client = served
    with sqlite3.connect(db) as connection:
        before = connection.execute("SELECT COUNT(*) FROM answers").fetchone()[0]
    trial = client.get(f"/s/{token}/state").get_json()["trial"]
    payload = {**answer_payload(trial["id"] if trial else 1), **changes}
    try:
        fields = parse_answer(payload)
    except PayloadError as error:
        assert "\n" not in str(error)
        fields = None
    response = _post(served, json.dumps(payload).encode())
    with sqlite3.connect(db) as connection:
        after = connection.execute("SELECT COUNT(*) FROM answers").fetchone()[0]
    if fields is None:
        assert response.status_code == 400 and after == before
    else:  # a valid answer: stored once in turn, else refused; its values stored as given
        assert response.status_code in (200, 404, 409)
        assert after == before + (response.get_json().get("status") == "stored")
        assert all(isinstance(fields[k], (int, float, str)) for k in fields)
        assert abs(fields["trial"]) < 2**63 and abs(fields["screen_width"]) < 2**63


CELL = st.text(alphabet=st.characters(codec="utf-8"), max_size=12) | st.sampled_from(
    ["a", "b", "a/img0.png", "b/img0.png", "c/img1.png", "../x.png", "/etc/passwd", "=x", ""]
)


@FUZZ
@given(
    header=st.lists(
        st.sampled_from(
            [
                "enhancer_i",
                "enhancer_j",
                "image",
                "file_i",
                "file_j",
                "order",
                "x",
                "\ufeffenhancer_i",
            ]
        ),
        min_size=0,
        max_size=7,
    ),
    rows=st.lists(st.lists(CELL, max_size=7), max_size=4),
    bom=st.booleans(),
)
def test_any_pairs_file_is_read_or_refused_in_one_line(served, tmp_path_factory, header, rows, bom):
    db, _, _ = served
    folder = db.parent
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows([header, *rows])
    text = buffer.getvalue()
    pairs = tmp_path_factory.mktemp("pairs") / "PAIRS.csv"
    pairs.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8", "surrogatepass"))
    try:
        read = study.read_pairs(pairs, (folder / "images").resolve())
    except study.StudyError as error:
        assert "\n" not in str(error).replace(str(pairs), "")
        return
    for row in read:
        assert row["enhancer_i"] != row["enhancer_j"] and row["path_i"] != row["path_j"]
        for path in (row["path_i"], row["path_j"]):
            assert path.is_file() and path.is_relative_to((folder / "images").resolve())
        for column in ("enhancer_i", "enhancer_j", "image"):
            assert study.text_problem(row[column]) is None


@FUZZ
@given(name=st.text(max_size=120))
def test_any_subject_name_is_stored_clean_or_refused(name):
    try:
        cleaned = study.subject_name(name)
    except study.StudyError as error:
        assert "\n" not in str(error)
        return
    assert cleaned == unicodedata.normalize("NFC", cleaned) == cleaned.strip()
    assert 0 < len(cleaned) <= study.MAX_NAME_LENGTH
    assert not cleaned.startswith(("=", "+", "-", "@"))
    assert all(unicodedata.category(c) not in ("Cc", "Cf", "Zl", "Zp") for c in cleaned)
