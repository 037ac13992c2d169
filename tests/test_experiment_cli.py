"""The ``dlmap experiment`` commands (dlmap.cli.experiment): each mistake refused in one line
with exit code 2, nothing half-written."""

from __future__ import annotations

import argparse
import os

import pytest
from helpers import (
    CONDITIONS,
    add_subject,
    answer_all,
    cli_exit,
    one_line_error,
)

from dlmap.cli import main as cli
from dlmap.cli.experiment import experiment_command, serve
from dlmap.errors import UsageError
from dlmap.experiment import study
from dlmap.testing.experiment import write_fake_pairs


def _create(tmp_path, capsys, pairs, db=None):
    db = db or tmp_path / "new.sqlite"
    return cli_exit(
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


def test_export_out_that_cannot_be_a_folder(client, db, tmp_path, capsys):
    answer_all(client, add_subject(db, "ann")["token"])
    afile = tmp_path / "afile"
    afile.write_text("x")
    for out in (afile, afile / "sub"):
        code, err = cli_exit(["experiment", "export", "--db", db, "--out", out], capsys)
        one_line_error(code, err, str(afile))
    os.symlink("loop-b", tmp_path / "loop-a")
    os.symlink("loop-a", tmp_path / "loop-b")
    code, err = cli_exit(["experiment", "export", "--db", db, "--out", tmp_path / "loop-a"], capsys)
    one_line_error(code, err, "loop-a")


@pytest.mark.parametrize("content", [b"", b"not a database at all", b"SQLite format 3\x00junk"])
@pytest.mark.parametrize("command", ["export", "serve"])
def test_a_file_that_is_not_a_study_is_refused_and_left_alone(tmp_path, capsys, content, command):
    fake = tmp_path / "fake.sqlite"
    fake.write_bytes(content)
    extra = ["--out", tmp_path / "out"] if command == "export" else ["--port", "0"]
    code, err = cli_exit(["experiment", command, "--db", fake, *extra], capsys)
    one_line_error(code, err, str(fake))
    assert fake.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fake.sqlite"]


@pytest.mark.parametrize("port", ["-1", "70000", "http"])
def test_serve_refuses_a_port_outside_0_65535(db, capsys, port):
    code, err = cli_exit(["experiment", "serve", "--db", db, "--port", port], capsys)
    one_line_error(code, err, port)


def test_serve_refuses_a_public_url_that_is_not_a_root(db, capsys):
    for url in ("ftp://x", "http://", "https://lab.example/study", "http://a b"):
        code, err = cli_exit(["experiment", "serve", "--db", db, "--public-url", url], capsys)
        one_line_error(code, err, "--public-url")


def test_create_refuses_bad_databases_images_and_pairs_in_one_line(tmp_path, capsys):
    pairs = write_fake_pairs(tmp_path, CONDITIONS, k=1)
    header = pairs.read_text().splitlines()[0]
    code, err = _create(tmp_path, capsys, pairs, tmp_path / "missing" / "x.sqlite")
    one_line_error(code, err, "missing")
    assert not (tmp_path / "missing").exists()
    (tmp_path / "images" / "alpha" / "fake.png").write_text("not an image")
    bad = tmp_path / "bad.csv"
    bad.write_text(f"{header}\nalpha,beta,img0,1,0,,0,alpha/fake.png,beta/img0.png\n")
    one_line_error(*_create(tmp_path, capsys, bad), "fake.png", "not a readable image")
    os.symlink("loop2.png", tmp_path / "images" / "alpha" / "loop1.png")
    os.symlink("loop1.png", tmp_path / "images" / "alpha" / "loop2.png")
    bad.write_text(f"{header}\nalpha,beta,img0,1,0,,0,alpha/loop1.png,beta/img0.png\n")
    one_line_error(*_create(tmp_path, capsys, bad), "loop1.png")
    bad.write_text(f"{header}\nalpha,beta,img0,1,0,,0,alpha/img0.png,alpha/img0.png\n")
    one_line_error(*_create(tmp_path, capsys, bad), "same image")
    bad.write_text(f"{header}\nalpha,beta,img0,1,0,,0,alpha/img0.png,alpha/../alpha/img0.png\n")
    one_line_error(*_create(tmp_path, capsys, bad), "same image")
    bad.write_text(f"{header}\n=evil,beta,img0,1,0,,0,alpha/img0.png,beta/img0.png\n")
    one_line_error(*_create(tmp_path, capsys, bad), "formula")
    bad.write_text(f"{header}\nalpha,beta,img0\n")
    one_line_error(*_create(tmp_path, capsys, bad), "cells")
    assert not (tmp_path / "new.sqlite").exists()


def test_a_pairs_file_saved_with_a_byte_order_mark_is_read(tmp_path, capsys):
    pairs = write_fake_pairs(tmp_path, CONDITIONS, k=1)
    pairs.write_bytes(b"\xef\xbb\xbf" + pairs.read_bytes())
    code, err = _create(tmp_path, capsys, pairs)
    assert code == 0, err
