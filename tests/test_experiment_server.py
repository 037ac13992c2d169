"""The study served for real: parallel subjects on loopback, and a server killed mid-study."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from dlmap.experiment import study
from dlmap.testing.experiment import ServedStudy, answer_payload, write_fake_pairs

SUBJECTS = 20
TRIALS_EACH = 50


def _post(url: str, payload: dict) -> tuple[int, dict]:
    request = urllib.request.Request(
        url, json.dumps(payload).encode(), {"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def _study(tmp_path: Path, subjects: int) -> tuple[Path, list[str]]:
    # 4 conditions x 9 images = 54 pairs per subject, plus 2 training pairs
    pairs = write_fake_pairs(tmp_path, ["a", "b", "c", "d"], k=9, size=(8, 8))
    db = tmp_path / "study.sqlite"
    study.create_study(db, pairs, tmp_path / "images", training=2, seed=3)
    connection = study.open_study(db)
    tokens = [study.add_subject(connection, f"s{i:02d}")["token"] for i in range(subjects)]
    connection.close()
    return db, tokens


def test_twenty_parallel_subjects_every_answer_stored_exactly_once(tmp_path):
    db, tokens = _study(tmp_path, SUBJECTS)
    failures: list[str] = []
    answered: dict[str, list[int]] = {token: [] for token in tokens}

    def subject(url: str, token: str) -> None:
        state = _get(f"{url}/s/{token}/state")
        for n in range(TRIALS_EACH):
            trial = state["trial"]["id"]
            side = "left" if n % 2 else "right"
            status, body = _post(f"{url}/s/{token}/answer", answer_payload(trial, side))
            # every third answer is replayed, as a browser retrying after a lost reply would
            replay = (
                _post(f"{url}/s/{token}/answer", answer_payload(trial, side)) if n % 3 else None
            )
            if status != 200 or (replay and replay[1].get("status") != "duplicate"):
                failures.append(f"{token[:4]} trial {trial}: {status} {body} {replay}")
                return
            answered[token].append(trial)
            state = body["state"]

    with ServedStudy(db) as served:
        threads = [threading.Thread(target=subject, args=(served.url, t)) for t in tokens]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    assert not failures, failures[:3]
    connection = sqlite3.connect(db)
    stored = connection.execute(
        "SELECT s.token, a.trial FROM answers a JOIN trials t ON t.id = a.trial"
        " JOIN subjects s ON s.id = t.subject"
    ).fetchall()
    connection.close()
    assert len(stored) == SUBJECTS * TRIALS_EACH
    assert sorted(stored) == sorted((tok, trial) for tok, ids in answered.items() for trial in ids)


def _start_server(db: Path) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "dlmap.cli", "experiment", "serve", "--db", str(db), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    line = process.stdout.readline()
    assert line.startswith("experimenter page: http://"), line
    return process, line.split("/admin/")[0].split(": ", 1)[1]


def test_sigkilled_server_loses_no_acknowledged_answer(tmp_path):
    db, (token,) = _study(tmp_path, 1)
    acknowledged: list[int] = []
    refused: list[int] = []
    process, url = _start_server(db)
    stop = threading.Event()

    def answer_until_the_server_dies() -> None:
        state = _get(f"{url}/s/{token}/state")
        while not stop.is_set():
            try:
                status, body = _post(
                    f"{url}/s/{token}/answer", answer_payload(state["trial"]["id"])
                )
            except OSError:
                return  # the server is gone
            if status != 200:
                refused.append(status)
                return
            acknowledged.append(state["trial"]["id"])
            state = body["state"]

    client = threading.Thread(target=answer_until_the_server_dies)
    client.start()
    deadline = time.monotonic() + 10
    while len(acknowledged) < 10 and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)  # mid-request, most likely
    process.wait(timeout=10)
    stop.set()
    client.join(timeout=30)
    assert len(acknowledged) >= 10 and not refused

    process, url = _start_server(db)
    try:
        state = _get(f"{url}/s/{token}/state")
        # resumes after the last stored answer; at most the one in flight may be stored unacked
        assert state["training_answered"] + state["answered"] in (
            len(acknowledged),
            len(acknowledged) + 1,
        )
        status, body = _post(f"{url}/s/{token}/answer", answer_payload(state["trial"]["id"]))
        assert status == 200 and body["status"] == "stored"
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)
    connection = sqlite3.connect(db)
    stored = {row[0] for row in connection.execute("SELECT trial FROM answers")}
    connection.close()
    assert set(acknowledged) <= stored
