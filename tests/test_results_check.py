"""Finished outputs that rot: folder digests (SHA256SUMS), the check every workflow job runs on
its inputs, and ``dlmap check-results`` over a whole results tree."""

import json
import re
import shutil
import sqlite3
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from helpers import FUZZ
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from dlmap import files
from dlmap.cli.main import main
from dlmap.errors import InputError
from dlmap.workflow import results_check

ROOT = Path(__file__).resolve().parents[1]


def png(path: Path, seed: int = 0) -> Path:
    pixels = np.random.default_rng(seed).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def enhanced_folder(folder: Path) -> Path:
    """A folder as an enhancement job leaves it: PNGs, a JSON record, a subfolder, sealed."""
    for index in range(2):
        png(folder / f"{index:04d}.x.png", index)
        (folder / f"{index:04d}.json").write_text(json.dumps({"index": index}))
    png(folder / "references" / "0000.png", 7)
    files.write_manifest(folder)
    return folder


def test_the_manifest_is_what_sha256sum_reads_and_finds_each_damaged_file(tmp_path):
    folder = enhanced_folder(tmp_path / "c000")
    (folder / ".0001.x.png.1234.tmp").write_bytes(b"half")  # a killed writer's leftover
    listed = files.read_manifest(folder)
    assert sorted(listed) == [
        "0000.json",
        "0000.x.png",
        "0001.json",
        "0001.x.png",
        "references/0000.png",
    ]
    if shutil.which("sha256sum"):
        run = subprocess.run(["sha256sum", "--strict", "-c", files.MANIFEST], cwd=folder)
        assert run.returncode == 0
    assert files.manifest_problems(folder) == []
    assert files.manifest_problems(tmp_path) is None  # no manifest: nothing to say
    data = (folder / "0000.x.png").read_bytes()
    (folder / "0000.x.png").write_bytes(data[: len(data) // 2])
    (folder / "references" / "0000.png").unlink()
    problems = dict(files.manifest_problems(folder))
    assert problems == {
        folder / "0000.x.png": "changed since it was written (sha256 differs from SHA256SUMS)",
        folder / "references" / "0000.png": "missing",
    }


def test_adding_files_to_a_folder_keeps_the_other_entries(tmp_path):
    folder = enhanced_folder(tmp_path / "out")
    png(folder / "0002.x.png", 2)
    files.write_manifest(folder, ["0002.x.png"])
    assert "0002.x.png" in files.read_manifest(folder)
    assert len(files.read_manifest(folder)) == 6
    (folder / "0000.json").unlink()  # a file gone since: its entry goes with the next update
    files.write_manifest(folder, ["0002.x.png"])
    assert "0000.json" not in files.read_manifest(folder)


@pytest.mark.parametrize(
    "text, says",
    [
        ("abc  x.png\n", "line 1"),
        (f"{'0' * 64}  ../x.png\n", "line 1"),
        (f"{'0' * 64}  /etc/passwd\n", "line 1"),
        (f"{'0' * 64}  a\n{'1' * 64}  a\n", "line 2"),
        (f"{'0' * 64}  a", "cut short"),
        (f"{'0' * 64} a\n", "line 1"),
    ],
)
def test_a_damaged_manifest_is_named_in_one_line(tmp_path, text, says):
    (tmp_path / files.MANIFEST).write_text(text)
    with pytest.raises(InputError, match=re.escape(says)) as error:
        files.read_manifest(tmp_path)
    assert str(error.value).startswith(str(tmp_path / files.MANIFEST)) and "\n" not in str(
        error.value
    )
    problems = files.manifest_problems(tmp_path)
    assert len(problems) == 1 and problems[0][0] == tmp_path / files.MANIFEST


@settings(max_examples=200, **FUZZ)
@given(st.binary(max_size=400))
def test_any_bytes_as_a_manifest_read_or_are_refused_in_one_line(data):
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / files.MANIFEST).write_bytes(data)
        try:
            entries = files.read_manifest(folder)
        except InputError as error:
            assert "\n" not in str(error)
            return
        for name, digest in entries.items():
            assert re.fullmatch("[0-9a-f]{64}", digest)
            assert not name.startswith("/") and ".." not in name.split("/")


@settings(max_examples=60, **FUZZ)
@given(
    st.lists(
        st.text(st.characters(exclude_characters="/\0"), min_size=1, max_size=12),
        min_size=1,
        max_size=4,
        unique=True,
    )
)
def test_every_file_name_a_folder_can_hold_survives_the_manifest_or_is_left_out(names):
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        written = []
        for name in names:
            try:
                (Path(folder) / name).write_bytes(name.encode("utf-8", "surrogatepass"))
            except (OSError, ValueError, UnicodeError):
                continue  # a name this file system refuses
            written.append(name)
        files.write_manifest(folder)
        listed = files.read_manifest(folder)
        assert set(listed) <= set(written)
        assert files.manifest_problems(folder) == []


def results_tree(root: Path) -> Path:
    """A small workflow output: sealed folders, a Snakemake directory() output without a
    manifest, an inversion, tables, a record and an experiment database."""
    enhanced_folder(root / "enhanced" / "sharpness" / "c000")
    enhanced_folder(root / "enhanced" / "niqe" / "c000")
    old = root / "images" / "c000"
    png(old / "0000.png")
    (old / ".snakemake_timestamp").touch()
    (root / "inversions").mkdir()
    with zipfile.ZipFile(root / "inversions" / "c000.pt", "w") as archive:
        archive.writestr("archive/data/0", np.arange(4096, dtype=np.float32).tobytes())
    (root / "comparison").mkdir()
    (root / "comparison" / "pairs.csv").write_text("a,b,c\n1,2,3\n4,5,6\n")
    (root / "comparison" / "record.json").write_text('{"ok": true}')
    with sqlite3.connect(root / "comparison" / "study.sqlite") as db:
        db.execute("create table t (x)")
        db.executemany("insert into t values (?)", [(i,) for i in range(2000)])
    (root / "logs").mkdir()
    (root / "logs" / "job.log").write_text("anything\n")
    (root / ".snakemake").mkdir()
    (root / ".snakemake" / "broken.json").write_text("{")  # not a result: skipped
    return root


def test_a_sound_tree_is_checked_file_by_file(tmp_path):
    found = results_check.check_results(results_tree(tmp_path / "out"))
    assert found.damaged == [] and found.leftovers == []
    assert found.by_digest == 10  # two sealed folders of 5
    assert found.by_format == 5  # old PNG, .pt, .csv, .json, .sqlite
    assert found.unchecked == 1  # the log
    assert found.files == 16


def damage(root: Path) -> dict[Path, Path]:
    """Five kinds of damage; returns {damaged file: output to make again}."""
    sealed = root / "enhanced" / "sharpness" / "c000"
    data = (sealed / "0001.x.png").read_bytes()
    (sealed / "0001.x.png").write_bytes(data[:-100])
    (root / "images" / "c000" / "0000.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 30)
    inversion = root / "inversions" / "c000.pt"
    data = bytearray(inversion.read_bytes())
    data[100] ^= 0xFF  # a flipped bit inside the stored tensor
    inversion.write_bytes(bytes(data))
    (root / "comparison" / "pairs.csv").write_text("a,b,c\n1,2,3\n4,5")
    database = root / "comparison" / "study.sqlite"
    database.write_bytes(database.read_bytes()[:5000])
    return {
        sealed / "0001.x.png": sealed,
        root / "images" / "c000" / "0000.png": root / "images" / "c000",
        inversion: inversion,
        root / "comparison" / "pairs.csv": root / "comparison" / "pairs.csv",
        database: database,
    }


def test_each_kind_of_damage_is_found_with_the_output_to_make_again(tmp_path):
    root = results_tree(tmp_path / "out")
    expected = damage(root)
    (root / "enhanced" / ".c001.4242.part").mkdir()
    found = results_check.check_results(root)
    assert {item.file: item.remake for item in found.damaged} == expected
    assert found.remake() == sorted(expected.values())
    assert found.leftovers == [root / "enhanced" / ".c001.4242.part"]
    assert all(item.reason and "\n" not in item.reason for item in found.damaged)


def test_check_results_lists_what_to_make_again_and_removes_it_on_request(tmp_path, capsys):
    root = results_tree(tmp_path / "out")
    assert main(["check-results", str(root), "--quiet"]) == 0
    assert "no damaged file" in capsys.readouterr().out
    expected = damage(root)
    assert main(["check-results", str(root), "--quiet"]) == 1
    out = capsys.readouterr().out
    assert f"damaged: 5 files; to make again: {len(expected)}" in out
    assert all(f"  {output}\n" in out for output in expected.values())
    assert f"dlmap check-results {root} --remove" in out
    assert all(path.exists() for path in expected.values())  # nothing removed unasked
    assert main(["check-results", str(root), "--quiet", "--remove"]) == 0
    assert not any(path.exists() for path in expected.values())
    assert (root / "enhanced" / "niqe" / "c000" / "0000.x.png").is_file()  # the sound stay
    assert main(["check-results", str(root), "--quiet"]) == 0


def test_check_results_of_no_folder_is_one_line(tmp_path, capsys):
    assert main(["check-results", str(tmp_path / "nowhere")]) == 2
    assert capsys.readouterr().err == f"dlmap: error: {tmp_path / 'nowhere'}: no such folder\n"


def run_job_reading(inputs: list[Path], log: Path) -> subprocess.CompletedProcess:
    """A workflow job (workflow/scripts/_job.py) started alone on a saved job file."""
    saved = {
        key: {"items": [str(p) for p in items], "names": {}}
        for key, items in (("input", inputs), ("output", []), ("log", [log]))
    }
    saved.update(params={}, wildcards={}, threads=1)
    job_file = log.with_name(log.name + ".job.json")
    job_file.parent.mkdir(parents=True, exist_ok=True)
    job_file.write_text(json.dumps(saved))
    script = "import sys; sys.path.insert(0, 'workflow/scripts'); import _job; _job.job({})"
    return subprocess.run(
        [sys.executable, "-c", script, str(job_file)], cwd=ROOT, capture_output=True, text=True
    )


def test_a_job_refuses_a_damaged_input_in_one_line_and_removes_what_the_workflow_made(tmp_path):
    root = results_tree(tmp_path / "results")
    log = root / "logs" / "select_pairs.log"
    sealed = root / "enhanced" / "sharpness" / "c000"
    table = root / "comparison" / "pairs.csv"
    assert run_job_reading([sealed, table], log).returncode == 0
    (sealed / "0000.json").write_text('{"index": 1}')
    run = run_job_reading([sealed, table], log)
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert run.stderr.strip().splitlines()[-1] == (
        f"dlmap: error: {sealed / '0000.json'}: changed since it was written (sha256 differs "
        f"from SHA256SUMS); removed {sealed}: run the workflow again and it makes the folder anew"
    )
    assert not sealed.exists()
    table.write_text("a,b\n1\n")
    run = run_job_reading([table], log)
    assert run.stderr.strip().splitlines()[-1] == (
        f"dlmap: error: {table}: damaged (row 2 has 1 fields, its header 2); removed it: run "
        "the workflow again and it makes it anew"
    )
    assert not table.exists()


def test_a_damaged_input_the_workflow_did_not_make_is_named_not_removed(tmp_path):
    outside = png(tmp_path / "mine" / "photo.png")
    outside.write_bytes(outside.read_bytes()[:60])
    run = run_job_reading([outside], tmp_path / "results" / "logs" / "job.log")
    assert run.returncode == 1 and outside.exists()
    assert run.stderr.strip().endswith("replace it, then run the workflow again")


def test_every_job_that_makes_a_folder_seals_it():
    """Each rule with a directory() output run by a script calls seal_outputs; the shell
    rules' folders carry their own digests (train-vae) or are not results (data sets)."""
    rules = "".join(p.read_text() for p in sorted((ROOT / "workflow" / "rules").glob("*.smk")))
    blocks = re.split(r"^rule ", rules, flags=re.M)[1:]
    sealing = set()
    for block in blocks:
        output = re.search(r"\n    output:\n(.*?)\n    \w+:", block, re.S)
        script = re.search(r'script:\s*\n\s*"\.\./scripts/(\w+\.py)"', block)
        if output and "directory(" in output.group(1) and script:
            sealing.add(script.group(1))
    assert {"prepare_images.py", "enhance_chunk.py", "external_inputs.py"} <= sealing
    for name in sealing:
        assert "seal_outputs(smk)" in (ROOT / "workflow" / "scripts" / name).read_text(), name
