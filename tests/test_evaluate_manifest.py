"""`dlmap evaluate` on a user's own manifest: only the image paths and the scores are needed;
the columns only the data-set pipeline writes are optional (``dlmap.data.manifests``)."""

import csv
import math

import pytest
from helpers import photo_png, run_cli

from dlmap.data import manifests as datasets
from dlmap.data.sources import DatasetError

PHOTOS = {"astronaut": 0.9, "coffee": 0.7, "chelsea": 0.5, "rocket": 0.4, "camera": 0.1}


@pytest.fixture()
def own_manifest(tmp_path):
    """photos/NAME.png for five photographs and photos/scores.csv: image,mos only (relative
    paths: taken from the manifest's folder)."""
    folder = tmp_path / "photos"
    for name in PHOTOS:
        photo_png(folder, name, size=48)
    manifest = folder / "scores.csv"
    manifest.write_text("image,mos\n" + "".join(f"{n}.png,{m}\n" for n, m in PHOTOS.items()))
    return manifest


def test_a_manifest_of_image_and_mos_reads_with_documented_defaults(own_manifest):
    entries = datasets.read_manifest_resolved(own_manifest)
    assert [entry.mos for entry in entries] == list(PHOTOS.values())
    first = entries[0]
    assert first.image == str(own_manifest.parent / "astronaut.png")
    assert first.dataset == "scores" and first.split == "" and first.mos_std is None
    assert first.reference == "" and first.mos_original == 0.9 and first.scale_original == ""
    assert set(datasets.OPTIONAL_DEFAULTS) == set(datasets.OPTIONAL_COLUMNS)


def test_evaluate_scores_a_manifest_of_only_the_required_columns(own_manifest, tmp_path, capsys):
    out = tmp_path / "results" / "own.csv"  # a new folder: made when the results are written
    argv = [
        "evaluate",
        "--prior",
        "colorfulness",
        "--manifest",
        own_manifest,
        "--out",
        out,
        "--quiet",
    ]
    code, stdout, err = run_cli(argv, capsys)
    assert code == 0, err
    (row,) = list(csv.DictReader(open(out)))
    assert row["dataset"] == "scores" and row["count"] == "5"
    assert row["split"] == "all"  # no split column: the whole manifest, not an empty test split
    assert -1 <= float(row["srcc"]) <= 1 and not math.isnan(float(row["plcc_raw"]))
    scores = list(csv.DictReader(open(tmp_path / "results" / "own.images.csv")))
    assert [float(r["mos"]) for r in scores] == list(PHOTOS.values())
    raw = {r["image"].rsplit("/", 1)[-1]: float(r["raw_score"]) for r in scores}
    assert raw["camera.png"] == pytest.approx(0, abs=1e-3)  # a grey photograph: no colour
    assert min(raw, key=raw.get) == "camera.png"
    assert "SRCC" in stdout and "(5 images, all)" in stdout


@pytest.mark.parametrize("header", ["image,score", "path,mos", "dataset,split,mos_std"])
def test_a_missing_required_column_exits_2_naming_the_required_columns(header, tmp_path, capsys):
    manifest = tmp_path / "scores.csv"
    manifest.write_text(header + "\n" + ",".join(["x"] * len(header.split(","))) + "\n")
    argv = [
        "evaluate",
        "--prior",
        "colorfulness",
        "--manifest",
        manifest,
        "--out",
        tmp_path / "o.csv",
    ]
    code, _, err = run_cli(argv, capsys)
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert "needs the columns image, mos" in err and "optional: dataset" in err
    missing = [c for c in ("image", "mos") if c not in header.split(",")]
    assert f"no column {', '.join(missing)};" in err
    assert not (tmp_path / "o.csv").exists()


def test_an_empty_manifest_without_required_columns_is_refused(tmp_path):
    manifest = tmp_path / "empty.csv"
    manifest.write_text("image,score\n")
    with pytest.raises(DatasetError, match="no column mos; a manifest needs the columns"):
        datasets.read_manifest(manifest)
