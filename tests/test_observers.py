"""Simulated observers, and the ranking report (figure, tables, Table I's rank columns)."""

import csv
import json

import numpy as np
import pytest
from scipy import stats

from dlmap.compare import observers, reports


def test_simulated_preferences_follow_thurstone_case_v_in_jod():
    trials = [("a", "b", "x")] * 4000
    utility = observers.table_utility({"a": 1.0, "b": 0.0})  # a gap of 1 JOD
    counts = observers.simulate_counts(trials, utility, ["a", "b"], subjects=5, seed=1)
    assert counts.shape == (5, 2, 2) and (counts.sum(axis=(1, 2)) == 4000).all()
    share = counts[:, 0, 1].sum() / counts.sum()
    assert share == pytest.approx(0.75, abs=3 * np.sqrt(0.75 * 0.25 / 20000))
    again = observers.simulate_counts(trials, utility, ["a", "b"], subjects=5, seed=1)
    np.testing.assert_array_equal(counts, again)
    with pytest.raises(ValueError, match="not in the list: b"):
        observers.simulate_counts(trials, utility, ["a"], subjects=1)


def test_fidelity_utility_prefers_the_output_closer_to_the_reference(tmp_path):
    from PIL import Image

    from dlmap.data import degradations, synthetic_iqa

    clean = synthetic_iqa.photograph("coffee", 192)
    for folder, level in (("references", 0), ("mild", 1), ("strong", 4)):
        (tmp_path / folder).mkdir()
        pixels = degradations.degrade(clean, "blur", level) if level else clean
        Image.fromarray(np.round(pixels * 255).astype(np.uint8)).save(tmp_path / folder / "c.png")
    enhanced = {name: tmp_path / name for name in ("mild", "strong")}
    for metric in ("psnr", "ms-ssim"):
        utility = observers.fidelity_utility(enhanced, tmp_path / "references", metric)
        assert utility("mild", "c.png") > utility("strong", "c.png")
    small = tmp_path / "small"
    small.mkdir()
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(small / "c.png")
    utility = observers.fidelity_utility({"s": small}, small, "ms-ssim")
    with pytest.raises(ValueError, match="ms-ssim needs images of at least 176 px"):
        utility("s", "c.png")


def test_every_simulated_output_says_so(tmp_path):
    counts = np.array([[[0, 3], [1, 0]], [[0, 2], [2, 0]]])
    folder = observers.write_study(counts, ["a", "b"], tmp_path, {"sigma": 1.0484})
    files = sorted(path.name for path in folder.iterdir())
    assert files == ["sim-subject-01.csv", "sim-subject-02.csv"]
    rows = list(csv.reader(open(tmp_path / "sim-total.csv")))
    assert rows == [["simulated", "a", "b"], ["a", "0", "5"], ["b", "3", "0"]]
    assert json.loads((tmp_path / "simulation.json").read_text())["simulated"] is True


SCORES = [
    {"condition": "liqe-mix", "jod": "1.2", "ci_low": "0.9", "ci_high": "1.5", "group": "a"},
    {"condition": "musiq", "jod": "0.9", "ci_low": "0.5", "ci_high": "1.2", "group": "ab"},
    {"condition": "clipiqa+", "jod": "-0.6", "ci_low": "-0.9", "ci_high": "-0.2", "group": "b"},
    {"condition": "niqe", "jod": "-1.5", "ci_low": "-1.9", "ci_high": "-1.1", "group": "c"},
    {"condition": "external-sr", "jod": "0.0", "ci_low": "", "ci_high": "", "group": ""},
]
SRCC = [
    {"prior": "liqe-mix", "dataset": "spaq", "srcc": "0.881"},
    {"prior": "musiq", "dataset": "spaq", "srcc": "0.853"},
    {"prior": "clipiqa+", "dataset": "spaq", "srcc": "0.855"},
    {"prior": "niqe", "dataset": "spaq", "srcc": "0.706"},
    {"prior": "liqe-mix", "dataset": "koniq10k", "srcc": "0.1"},  # another data set: ignored
]


def test_table_one_ranks_and_delta_ranks_follow_the_paper():
    rows = {row["model"].split(" (")[0]: row for row in reports.table_one(SCORES, SRCC)}
    assert set(rows) == {"LIQE", "MUSIQ", "CLIPIQA+", "NIQE"}  # external enhancers: not in I
    assert (rows["CLIPIQA+"]["srcc_rank"], rows["CLIPIQA+"]["map_rank"]) == (2, 3)
    assert rows["CLIPIQA+"]["delta_rank"] == -1 and rows["MUSIQ"]["delta_rank"] == 1
    assert rows["LIQE"]["delta_rank"] == 0 and rows["LIQE"]["params_millions"] == "151.277"
    markdown = reports.table_one_markdown(reports.table_one(SCORES, SRCC))
    assert "| LIQE | Multiple | 151.277 | 1 (0.881) | 1 | 0 |" in markdown
    with pytest.raises(ValueError, match="evaluated on 'spaq'"):
        reports.table_one(SCORES, [{"prior": "dbcnn", "dataset": "spaq", "srcc": "0.8"}])
    named = [
        {**row, "model": "NIQE (custom: /x.mat)"} if row["prior"] == "niqe" else row for row in SRCC
    ]
    models = [row["model"] for row in reports.table_one(SCORES, named)]
    assert "NIQE (custom: /x.mat)" in models and "LIQE" in models  # as evaluated, else registry


def test_report_command_writes_the_figure_and_tables_and_labels_simulations(tmp_path, capsys):
    from dlmap.cli import main as cli

    scores = tmp_path / "scores.csv"
    with open(scores, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(SCORES[0]))
        writer.writeheader()
        writer.writerows(SCORES)
    (tmp_path / "scores.json").write_text('{"simulated": true}')  # dlmap rank's record
    srcc = tmp_path / "srcc.csv"
    with open(srcc, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["prior", "dataset", "srcc"])
        writer.writeheader()
        writer.writerows(SRCC)
    out = tmp_path / "fig5"
    assert cli.main(["report", str(scores), "--srcc", str(srcc), "--out", str(out)]) == 0
    assert (tmp_path / "fig5.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "fig5.pdf").read_bytes()[:4] == b"%PDF"
    markdown = (tmp_path / "fig5.md").read_text()
    assert markdown.startswith("*Simulated observers") and "| 1 | liqe-mix | 1.20 |" in markdown
    assert "Delta rank" in (tmp_path / "fig5.table1.md").read_text()
    assert cli.main(["report", str(srcc), "--out", str(out)]) == 2  # not a SCORES.csv
    assert "needs a header with columns ci_high" in capsys.readouterr().err


def test_ranks_share_ties():
    assert reports.ranks({"a": 0.9, "b": 0.9, "c": 0.1}) == {"a": 1, "b": 1, "c": 3}
    assert stats.kendalltau([1, 2, 3], [1, 2, 3])[0] == 1


def test_ranking_simulated_observers_recovers_the_true_order():
    import itertools

    from dlmap.compare import ranking

    truth = {"a": -1.4, "b": -0.6, "c": 0.0, "d": 0.5, "e": 1.3}  # JOD
    names = list(truth)
    trials = [(i, j, str(t)) for i, j in itertools.combinations(names, 2) for t in range(20)]
    utility = observers.table_utility(truth)
    for seed in range(3):
        counts = observers.simulate_counts(trials, utility, names, subjects=25, seed=seed)
        jod = ranking.scale(counts.sum(axis=0).astype(float)).jod
        assert list(np.argsort(jod)) == list(range(len(names)))  # Kendall tau = 1
        assert stats.kendalltau(jod, list(truth.values()))[0] == pytest.approx(1.0)
        centred = np.array(list(truth.values())) - np.mean(list(truth.values()))
        np.testing.assert_allclose(jod, centred, atol=0.25)
