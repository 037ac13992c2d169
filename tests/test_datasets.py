"""dlmap.data.manifests, dataset_sources, dataset_readers and ``dlmap data``, on fake copies of the
seven official layouts (tests/fake_iqa_layouts.py). Nothing here reaches the network."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import fake_iqa_layouts as fake
import numpy as np
import pytest
from PIL import Image
from scipy.io import savemat

from dlmap.cli.main import build_parser
from dlmap.data import manifests as datasets
from dlmap.data import sources
from dlmap.errors import UsageError

ALL = list(sources.SETS)
SYNTHETIC = ["live", "csiq", "kadid10k"]


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a test tried to reach the network")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)


@pytest.fixture(autouse=True)
def fake_facts(monkeypatch):
    """The table with the fake layouts' sizes (everything else as for the real sets)."""
    for name, facts in fake.FAKE_FACTS.items():
        monkeypatch.setitem(sources.SETS, name, dataclasses.replace(sources.SETS[name], **facts))


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    root = tmp_path_factory.mktemp("pristine")
    for name in ALL:
        fake.write_layout(name, root)
    return root


@pytest.fixture
def root(pristine, tmp_path):
    """A fresh copy of all seven fake layouts that a test may damage."""
    copy = tmp_path / "data"
    shutil.copytree(pristine, copy)
    return copy


def by_image(entries):
    return {entry.image: entry for entry in entries}


def run_data(*argv) -> int:
    parser, handlers = build_parser("data")  # the command's parser, as `dlmap` builds it
    return handlers["data"](parser.parse_args(["data", *argv]))


# --- loaders ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_each_set_loads_from_its_official_layout_with_scores_in_unit_range(name, root):
    entries = datasets.load(name, root)
    assert len(entries) == fake.FAKE_FACTS[name]["count"]
    for entry in entries:
        assert entry.dataset == name and (root / entry.image).is_file()
        assert 0.0 <= entry.mos <= 1.0
        assert entry.scale_original == sources.SETS[name].scale
        assert entry.mos == pytest.approx(sources.SETS[name].normalise(entry.mos_original))
        assert (entry.reference != "") == (sources.SETS[name].split_by == "reference")


def test_live_higher_dmos_gives_lower_mos_and_reference_copies_are_excluded(root):
    entries = by_image(datasets.load("live", root))
    better, worse = entries["live/jp2k/img1.bmp"], entries["live/jp2k/img2.bmp"]
    assert better.mos_original < worse.mos_original and better.mos > worse.mos
    assert better.mos == pytest.approx(1 - better.mos_original / 100)
    assert better.mos_std is None and better.reference == "bikes.bmp"
    copies = {f"live/{part}/img{count}.bmp" for part, count in fake.LIVE_PARTS}
    assert not copies & set(entries)  # orgs == 1 marks them
    assert "DMOS 0-100, lower is better" == better.scale_original


def test_csiq_dmos_is_flipped_and_images_follow_the_distortion_folders(root):
    entries = by_image(datasets.load("csiq", root))
    noise = entries["csiq/dst_imgs/awgn/1600.AWGN.1.png"]
    jp2k = entries["csiq/dst_imgs/jpeg2000/1600.jpeg2000.2.png"]
    assert noise.reference == "1600" and noise.mos == pytest.approx(1 - noise.mos_original)
    assert noise.mos_original < jp2k.mos_original and noise.mos > jp2k.mos
    assert noise.mos_std == pytest.approx(0.05)
    assert "csiq/dst_imgs/blur/shroom.BLUR.4.png" in entries


def test_kadid_higher_dmos_gives_higher_mos_and_var_is_a_standard_deviation(root):
    entries = by_image(datasets.load("kadid10k", root))
    mild = entries["kadid10k/images/I01_01_01.png"]
    strong = entries["kadid10k/images/I01_01_03.png"]
    assert mild.mos_original > strong.mos_original and mild.mos > strong.mos
    assert mild.mos == pytest.approx((mild.mos_original - 1) / 4)
    assert mild.mos_std == pytest.approx(0.496 / 4)
    assert mild.reference == "I01.png"


def test_koniq_reads_mos_and_sd_on_the_five_point_scale(root):
    entry = by_image(datasets.load("koniq10k", root))["koniq10k/1024x768/10004473376.jpg"]
    assert entry.mos_original == pytest.approx(4.2)
    assert entry.mos == pytest.approx(3.2 / 4) and entry.mos_std == pytest.approx(0.5 / 4)


def test_live_challenge_drops_its_seven_training_images_and_keeps_std(root):
    entries = datasets.load("clive", root)
    assert [e.image for e in entries] == [f"clive/Images/{n}" for n in fake.CLIVE_TEST]
    assert entries[0].mos == pytest.approx(0.8) and entries[0].mos_std == pytest.approx(0.15)


@pytest.mark.parametrize(
    "name, image, expected",
    [
        ("bid", "bid/ImageDatabase/DatabaseImage0004.JPG", 4.5 / 5),
        ("spaq", "spaq/TestImage/00001.jpg", 0.7725),
    ],
)
def test_authentic_mos_is_divided_by_its_range(name, image, expected, root):
    entry = by_image(datasets.load(name, root))[image]
    assert entry.mos == pytest.approx(expected) and entry.mos_std is None


def test_csiq_header_may_sit_below_a_title_row(root):
    from openpyxl import load_workbook

    path = root / "csiq/csiq.DMOS.xlsx"
    book = load_workbook(path)
    book["all_by_image"].insert_rows(1)
    book["all_by_image"]["A1"] = "CSIQ DMOS, all by image"
    book.save(path)
    assert len(datasets.load("csiq", root)) == fake.FAKE_FACTS["csiq"]["count"]


def test_bid_grades_may_sit_inside_the_image_folder(root):
    (root / "bid" / "DatabaseGrades.xlsx").rename(root / "bid/ImageDatabase/DatabaseGrades.xlsx")
    assert len(datasets.load("bid", root)) == fake.FAKE_FACTS["bid"]["count"]


# --- one-line errors for bad input ------------------------------------------------------------


def _drop_sd_column(root):
    path = root / "koniq10k/koniq10k_scores_and_distributions.csv"
    lines = path.read_text().replace('"SD"', '"SDev"')
    path.write_text(lines)


def _short_dmos(root):
    savemat(root / "live/dmos.mat", {"dmos": np.zeros((1, 5)), "orgs": np.zeros((1, 5))})


def _not_a_spreadsheet(root):
    (root / "spaq/Annotations/MOS and Image attribute scores.xlsx").write_text("MOS\n1\n")


def _unknown_csiq_type(root):
    from openpyxl import load_workbook

    path = root / "csiq/csiq.DMOS.xlsx"
    book = load_workbook(path)
    book["all_by_image"]["C2"] = "sharpen"
    book.save(path)


@pytest.mark.parametrize(
    "name, damage, expected",
    [
        ("kadid10k", lambda r: (r / "kadid10k/dmos.csv").unlink(), "missing score file"),
        ("koniq10k", _drop_sd_column, "no column SD"),
        ("bid", lambda r: (r / "bid/ImageDatabase/DatabaseImage0007.JPG").unlink(), "absent"),
        ("live", _short_dmos, "5 entries, expected 13"),
        ("clive", lambda r: (r / "clive/Data/AllMOS_release.mat").write_bytes(b"x"), "MATLAB"),
        ("spaq", _not_a_spreadsheet, "not a readable .xlsx"),
        ("csiq", _unknown_csiq_type, "dst_type 'sharpen'"),
    ],
)
def test_bad_input_raises_one_line_naming_the_problem(name, damage, expected, root):
    damage(root)
    with pytest.raises(sources.DatasetError) as caught:
        datasets.load(name, root)
    message = str(caught.value)
    assert expected in message and "\n" not in message
    assert str(root / name) in message


def test_unknown_set_name_says_did_you_mean():
    with pytest.raises(sources.UnknownDatasetError, match="did you mean 'koniq10k'"):
        sources.spec("koniq")


# --- splits and the manifest -----------------------------------------------------------------


@pytest.mark.parametrize("name", SYNTHETIC)
@pytest.mark.parametrize("seed", [0, 1, 7])
def test_no_reference_appears_in_two_splits(name, seed, root):
    entries = datasets.assign_splits(datasets.load(name, root), seed, 0.25, 0.25)
    splits_of = {}
    for entry in entries:
        splits_of.setdefault(entry.reference, set()).add(entry.split)
    assert all(len(splits) == 1 for splits in splits_of.values())
    assert {entry.split for entry in entries} == set(datasets.SPLITS)


def test_authentic_sets_split_by_image_in_the_requested_fractions(root):
    entries = datasets.assign_splits(datasets.load("koniq10k", root), 3, 0.25, 0.25)
    assert sorted(entry.split for entry in entries) == ["test", "train", "train", "val"]


def test_splits_are_deterministic_per_seed(root):
    entries = datasets.load("kadid10k", root) + datasets.load("koniq10k", root)
    first = datasets.assign_splits(entries, seed=5)
    assert first == datasets.assign_splits(list(reversed(entries)), seed=5)[::-1]
    others = [datasets.assign_splits(entries, seed=s) for s in range(6, 12)]
    assert any(other != first for other in others)


def test_manifest_round_trip_and_settings_sidecar(root, tmp_path):
    out = tmp_path / "manifest.csv"
    written = datasets.build_manifest(ALL, out, root, seed=2, spaq_short_side=16)
    assert datasets.read_manifest(out) == written
    header = out.read_text().splitlines()[0].split(",")
    assert tuple(header) == datasets.COLUMNS
    settings = json.loads((tmp_path / "manifest.csv.json").read_text())
    assert settings["spaq_short_side"] == 16 and settings["seed"] == 2
    assert settings["data_root"] == str(root.resolve())
    assert settings["datasets"]["live"]["entries"] == fake.FAKE_FACTS["live"]["count"]


def test_manifest_rejects_a_file_with_other_columns(tmp_path):
    path = tmp_path / "other.csv"
    path.write_text("image,score\na.png,1\n")
    with pytest.raises(sources.DatasetError, match="no column mos; a manifest needs"):
        datasets.read_manifest(path)


def test_spaq_shorter_side_is_resized_once_by_its_protocol(root):
    entries = datasets.spaq_resized(datasets.load("spaq", root), root, short_side=16)
    sizes = {Path(e.image).name: Image.open(root / e.image).size for e in entries}
    assert sizes == {"00001.png": (21, 16), "00002.png": (16, 21), "00003.png": (12, 9)}
    assert all(e.image.startswith("spaq-short16/") for e in entries)
    stamp = (root / entries[0].image).stat().st_mtime_ns
    datasets.spaq_resized(datasets.load("spaq", root), root, short_side=16)
    assert (root / entries[0].image).stat().st_mtime_ns == stamp


# --- dlmap data check / fetch / manifest -------------------------------------------------------


def test_data_check_passes_on_the_fake_layouts(root, capsys):
    assert run_data("check", "--root", str(root)) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(ALL) and all(": OK: " in line for line in lines)


def test_data_check_fails_naming_what_is_missing(root, capsys):
    shutil.rmtree(root / "live" / "refimgs")
    (root / "kadid10k/images/I02_12_05.png").unlink()
    assert run_data("check", "live", "kadid10k", "csiq", "--root", str(root)) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("live: MISSING: missing refimgs/bikes.bmp")
    assert lines[1].startswith("kadid10k: MALFORMED:") and "I02_12_05.png" in lines[1]
    assert lines[2].startswith("csiq: OK")


def test_data_check_rejects_a_set_of_the_wrong_size(root, monkeypatch, capsys):
    monkeypatch.setitem(sources.SETS, "bid", dataclasses.replace(sources.SETS["bid"], count=586))
    assert run_data("check", "bid", "--root", str(root)) == 1
    assert "6 scored images" in capsys.readouterr().out


def test_data_fetch_prints_the_manual_steps_and_exits_1(tmp_path, capsys):
    assert run_data("fetch", "live", "--root", str(tmp_path)) == 1
    out = capsys.readouterr().out
    assert out.startswith("live: MANUAL STEP:") and out.count("\n") == 1
    assert f"Target folder: {tmp_path / 'live'}" in out
    assert "dmos.mat" in out and "refnames_all.mat" in out and sources.SETS["live"].page in out


def test_data_fetch_of_a_manual_set_already_in_place_reports_it_ready(root, capsys):
    assert run_data("fetch", "bid", "--root", str(root)) == 0
    assert capsys.readouterr().out.startswith("bid: ready: 6 scored images")


def test_a_failed_download_is_a_one_line_error(monkeypatch, tmp_path):
    def unreachable(url, timeout):
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(urllib.request, "urlopen", unreachable)
    with pytest.raises(sources.DatasetError, match="download of https://x/a.zip failed"):
        sources._download("https://x/a.zip", tmp_path / "a.zip")
    assert list(tmp_path.iterdir()) == []


def _serve(archive_root: Path, calls: list):
    """A download function that serves the fake layouts as the official archives."""

    def download(url, path):
        calls.append(url)
        name = Path(url).name
        if name == "kadid10k.zip":
            _zip(path, archive_root / "kadid10k", "kadid10k")
        elif name == "src_imgs.zip":
            _zip(path, archive_root / "csiq/src_imgs", "src_imgs")
        elif name == "dst_imgs.zip":
            _zip(path, archive_root / "csiq/dst_imgs", "")  # no top folder
        else:
            shutil.copy(archive_root / "csiq" / name, path)

    return download


def _zip(path: Path, folder: Path, top: str) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        for file in sorted(folder.rglob("*")):
            archive.write(file, str(Path(top) / file.relative_to(folder)))


def test_data_fetch_downloads_unpacks_and_records_sha256(pristine, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(sources, "_download", _serve(pristine, calls))
    assert run_data("fetch", "kadid10k", "csiq", "--root", str(tmp_path)) == 0
    assert len(calls) == 4
    assert datasets.load("csiq", tmp_path) == datasets.load("csiq", pristine)
    assert (tmp_path / "kadid10k/images/I01.png").is_file()
    records = json.loads((tmp_path / "sha256-manifest.json").read_text())
    assert str((tmp_path / "downloads/kadid10k.zip").resolve()) in records
    assert not (tmp_path / "downloads/kadid10k.zip").exists()  # unpacked, then deleted
    assert run_data("fetch", "kadid10k", "--root", str(tmp_path)) == 0
    assert len(calls) == 4  # in place: nothing downloaded again


def test_data_fetch_refuses_an_archive_that_changed(pristine, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sources, "_download", _serve(pristine, []))
    assert run_data("fetch", "kadid10k", "--root", str(tmp_path)) == 0
    shutil.rmtree(tmp_path / "kadid10k")
    changed = tmp_path / "changed"
    shutil.copytree(pristine / "kadid10k", changed / "kadid10k")
    (changed / "kadid10k/dmos.csv").write_text("dist_img,ref_img,dmos,var\n")
    monkeypatch.setattr(sources, "_download", _serve(changed, []))
    assert run_data("fetch", "kadid10k", "--root", str(tmp_path)) == 1
    assert "kadid10k: FAILED:" in capsys.readouterr().out.splitlines()[-1]


def test_data_manifest_command_writes_the_csv(root, tmp_path, capsys):
    out = tmp_path / "m.csv"
    argv = ["manifest", "live", "koniq10k", "--out", str(out), "--root", str(root)]
    assert run_data(*argv, "--seed", "4") == 0
    count = fake.FAKE_FACTS["live"]["count"] + fake.FAKE_FACTS["koniq10k"]["count"]
    assert f"wrote {count} entries (train " in capsys.readouterr().out
    assert {e.dataset for e in datasets.read_manifest(out)} == {"live", "koniq10k"}


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["check", "kadid"], "did you mean 'kadid10k'"),
        (["manifest", "live", "--out", "m.csv", "--test-fraction", "0.95"], "sum below 1"),
        (["manifest", "spaq", "--out", "m.csv", "--spaq-short-side", "-1"], ">= 0"),
    ],
)
def test_bad_arguments_are_usage_errors(argv, expected, tmp_path):
    with pytest.raises(UsageError, match=expected):
        run_data(*argv, "--root", str(tmp_path))


def test_default_data_root_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(sources.DATA_ENV, str(tmp_path))
    assert sources.data_root() == tmp_path and sources.data_root("/x") == Path("/x")
    monkeypatch.delenv(sources.DATA_ENV)
    assert sources.data_root() == Path.home() / ".cache/dlmap/data"


def test_normalisation_is_monotone_in_each_sets_direction():
    for facts in sources.SETS.values():
        low, high = facts.normalise(facts.low), facts.normalise(facts.high)
        assert {low, high} == {0.0, 1.0} and (high > low) == facts.higher_is_better
        assert math.isclose(facts.normalise_std(facts.high - facts.low), 1.0)
