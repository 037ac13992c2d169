"""The workflow's job functions: chunks, digests, stored inversions and chunk enhancement."""

import csv
import json

import pytest
import torch
from helpers import photo, photo_png

from dlmap import files, images
from dlmap.diffusion import build
from dlmap.enhance import pipeline, records, solver
from dlmap.files import sha256_file
from dlmap.inversion.config import InversionConfig
from dlmap.priors.registry import create_prior
from dlmap.settings import RunSettings, SolverConfig
from dlmap.workflow import chunks, jobs


def test_chunks_are_fixed_by_position_and_cover_every_id_once():
    parts = chunks.chunks(7, 3)
    assert parts == [["0000", "0001", "0002"], ["0003", "0004", "0005"], ["0006"]]
    assert chunks.chunks(7, 3) == parts and chunks.chunks(8, 3)[:2] == parts[:2]
    with pytest.raises(ValueError, match="chunk_size"):
        chunks.chunks(7, 0)
    with pytest.raises(ValueError, match="test images"):
        chunks.image_ids(0)


def test_source_digest_covers_every_module_of_the_inversion_packages(tmp_path, monkeypatch):
    for name in ("stage/a.py", "stage/deep/b.py", "top.py", "other/c.py"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(f"x = '{name}'\n")
    monkeypatch.setattr(chunks, "SRC", tmp_path)
    before = chunks.source_digest(("stage",), ("top",))
    assert [
        p.relative_to(tmp_path).as_posix() for p in chunks.source_files(("stage",), ("top",))
    ] == ["stage/a.py", "stage/deep/b.py", "top.py"]
    (tmp_path / "other" / "c.py").write_text("x = 'changed'\n")  # outside: no change
    assert chunks.source_digest(("stage",), ("top",)) == before
    (tmp_path / "stage" / "deep" / "b.py").write_text("x = 'changed'\n")
    assert chunks.source_digest(("stage",), ("top",)) != before
    (tmp_path / "stage" / "new.py").write_text("")  # a module added to a package counts
    changed = chunks.source_digest(("stage",), ("top",))
    (tmp_path / "stage" / "new.py").unlink()
    assert changed != chunks.source_digest(("stage",), ("top",))
    with pytest.raises(FileNotFoundError, match="missing"):
        chunks.source_digest(("stage",), ("gone",))
    monkeypatch.undo()
    assert len(chunks.source_digest()) == 64  # the real inversion packages exist
    names = {p.relative_to(chunks.SRC).as_posix() for p in chunks.source_files()}
    assert {"diffusion/seesr.py", "inversion/edict.py", "enhance/solver.py", "images.py"} <= names


def test_folder_digest_sees_added_and_rewritten_images(tmp_path):
    assert chunks.folder_digest(tmp_path / "missing") == "missing"
    (tmp_path / "0000.png").write_bytes(b"x")
    first = chunks.folder_digest(tmp_path)
    (tmp_path / "notes.txt").write_text("not an image")
    assert chunks.folder_digest(tmp_path) == first
    (tmp_path / "0001.png").write_bytes(b"y")
    assert chunks.folder_digest(tmp_path) != first


@pytest.fixture(scope="module")
def chunk(tmp_path_factory):
    folder = tmp_path_factory.mktemp("chunk")
    paths = []
    for index, name in enumerate(("astronaut", "coffee")):
        path = folder / f"{index:04d}.png"
        images.save_png_atomic(photo(64, name).float(), path)
        paths.append(path)
    return paths


TINY = {"name": "tiny-seesr", "device": "cpu"}
EDICT = {"steps": 3}
SOLVER = {"iters": 2, "seed": 4}
RUN = RunSettings.from_job_params(TINY, SOLVER, EDICT, 64)


def test_a_chunk_job_from_the_stored_inversion_equals_a_solve_of_its_own(chunk, tmp_path):
    store = tmp_path / "inversion.pt"
    jobs.invert_chunk(chunk, RUN, seed=4, out=store)
    prior = create_prior("sharpness")
    written = jobs.enhance_chunk(chunk, tmp_path / "out", prior, RUN, inversion=store, batch_size=2)
    assert [r["config"]["inversion"] for r in written] == [str(store)] * 2
    batch = jobs.load_batch(chunk, 64, "cpu", "float32")
    alone = solver.map_solve(
        build.load_backbone(RUN.backbone),
        prior,
        batch,
        SolverConfig(**SOLVER),
        InversionConfig(**EDICT),
        seeds=[4, 4],
        quiet=True,
    )
    for index, path in enumerate(chunk):
        ours = images.load_image(tmp_path / "out" / f"{path.stem}.x.png", size=None)
        reference = torch.from_numpy(images.to_uint8(alone.x[index])).permute(2, 0, 1) / 255
        assert torch.equal(ours, reference.float())
        record = json.loads((tmp_path / "out" / f"{path.stem}.json").read_text())
        assert record["final"]["x"]["score"] == pytest.approx(alone.final["x"]["score"][index])
    with open(tmp_path / "out" / "summary.csv", newline="") as handle:
        summary = list(csv.DictReader(handle))  # one row per image, from its record
    assert [row["output"] for row in summary] == [f"{p.stem}.x.png" for p in chunk]
    for row, record in zip(summary, written, strict=True):
        assert list(row) == list(records.SUMMARY_COLUMNS) and row["prior"] == "sharpness"
        assert float(row["final_score"]) == pytest.approx(record["final"]["x"]["score"])
        assert float(row["initial_raw_score"]) == pytest.approx(record["history"][0]["raw_score"])
        assert int(row["iterations"]) == SOLVER["iters"] and row["early_stop"] == ""
    listed = files.read_manifest(tmp_path / "out")  # every file written, with its digest
    expected = [p.name for p in (tmp_path / "out").glob("0*")] + ["summary.csv"]
    assert sorted(listed) == sorted(expected)
    assert files.manifest_problems(tmp_path / "out") == []


def summary_record(name: str, score: float) -> dict:
    return {
        "input": f"in/{name}.png",
        "outputs": {"x": f"{name}.x.png"},
        "prior": {"name": "sharpness"},
        "config": {"solver": {"lam": 0.01}},
        "history": [{"score": 1.0, "raw_score": 2.0, "active": True}],
        "final": {"x": {"score": score, "raw_score": 3.0, "fidelity": 0.5}},
        "early_stop": {"applied": True, "iteration": 0},
        "seconds": 1.23456,
    }


def test_a_second_run_into_the_folder_adds_its_rows_and_replaces_its_images_rows(tmp_path):
    records.write_summary(tmp_path, [summary_record("a", 10.0), summary_record("b", 20.0)])
    records.write_summary(tmp_path, [summary_record("b", 30.0), summary_record("c", 40.0)])
    with open(tmp_path / "summary.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["output"], r["final_score"]) for r in rows] == [
        ("a.x.png", "10.0"),
        ("b.x.png", "30.0"),
        ("c.x.png", "40.0"),
    ]
    assert rows[0]["early_stop"] == "0" and rows[0]["seconds"] == "1.235"
    (tmp_path / "summary.csv").write_bytes(b"\xff\xfe not a table")  # damaged: written anew
    records.write_summary(tmp_path, [summary_record("d", 1.0)])
    assert (tmp_path / "summary.csv").read_text().count("\n") == 2


def test_an_inversion_of_another_image_is_refused(chunk, tmp_path):
    store = tmp_path / "inversion.pt"
    jobs.invert_chunk(chunk[:1], RUN, seed=0, out=store)
    with pytest.raises(ValueError, match="holds no inversion of 0001"):
        pipeline.load_inversion(store, chunk)
    images.save_png_atomic(photo(64, "chelsea").float(), tmp_path / "0000.png")
    with pytest.raises(ValueError, match="made from another image"):
        pipeline.load_inversion([store], [tmp_path / "0000.png"])


def test_the_workflow_calibration_replaces_the_shipped_constants(tmp_path):
    fit = {
        "xi3": 1.5,
        "xi4": 0.25,
        "count": 9,
        "srcc": 0.8,
        "plcc_raw": 0.7,
        "plcc_calibrated": 0.75,
        "source": "calibration.csv",
    }
    (tmp_path / "fit.json").write_text(json.dumps(fit))
    prior = jobs.build_prior("sharpness", calibration=tmp_path / "fit.json")
    assert (prior.info.xi3, prior.info.xi4) == (1.5, 0.25)
    assert "fitted by the workflow" in prior.info.calibration_source


@pytest.mark.parametrize("damage", ["truncated", "overwritten", "not an inversion"])
def test_a_damaged_inversion_is_named_and_removed_so_the_next_run_makes_it_again(tmp_path, damage):
    from dlmap.enhance import pipeline
    from dlmap.errors import InputError

    image = photo_png(tmp_path, "coffee", size=32)
    state = {
        "ids": ["coffee"],
        "input_sha256": [sha256_file(image)],
        "x_T": torch.zeros(1, 4, 4, 4),
        "y_T": torch.zeros(1, 4, 4, 4),
    }
    path = tmp_path / "c000.pt"
    torch.save(state, path)
    assert pipeline.load_inversion(path, [image])[0].shape == (1, 4, 4, 4)
    data = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "overwritten":
        path.write_bytes(b"\0" * len(data))
    else:
        torch.save({"ids": ["coffee"]}, path)
    with pytest.raises(InputError) as raised:
        pipeline.load_inversion(path, [image])
    message = str(raised.value)
    assert message.startswith(f"{path}: a damaged inversion") and "\n" not in message
    assert "run the workflow again" in message and not path.exists()
