"""Eq. 19 as pwcmp computes it (dlmap.compare.ranking), its bootstrap, significance, group letters
and
observer screening (dlmap.compare.significance), and ``dlmap rank`` (dlmap.compare.rank_files)."""

from __future__ import annotations

import argparse
import csv
import json
import runpy
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from scipy.optimize import check_grad
from scipy.special import ndtr, ndtri

from dlmap.cli.rank import add_rank_parser, rank_command
from dlmap.compare import ranking, significance
from dlmap.compare.counts import read_counts
from dlmap.errors import DlmapError

ONE_JOD = ranking.SIGMA_DIFFERENCE * ndtri(0.75)  # 0.9999985: pwcmp rounds sigma to 1.4826


def simulate(utilities, subjects: int, trials: int, seed: int) -> np.ndarray:
    """K x N x N counts of Thurstone Case V observers (each pair ``trials`` times)."""
    rng, utilities = np.random.default_rng(seed), np.asarray(utilities, dtype=np.float64)
    chance = ndtr((utilities[:, None] - utilities[None, :]) / ranking.SIGMA_DIFFERENCE)
    stack = np.zeros((subjects, len(utilities), len(utilities)), dtype=np.int64)
    for i, j in zip(*np.triu_indices(len(utilities), 1), strict=True):
        wins = rng.binomial(trials, chance[i, j], subjects)
        stack[:, i, j], stack[:, j, i] = wins, trials - wins
    return stack


def random_counts(rng, size: int, missing: float = 0.3) -> np.ndarray:
    counts = rng.integers(0, 8, (size, size)).astype(np.float64)
    counts[rng.random((size, size)) < missing] = 0  # incomplete, with unanimous pairs
    np.fill_diagonal(counts, 0)
    counts[1:, 0] += 1  # connected through condition 0
    return counts


def scale_quietly(counts, prior="gaussian") -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # these designs must not warn
        return ranking.thurstone_scale(counts, prior)


# --- Eq. 19 (pw_scale) --------------------------------------------------------------------


@pytest.mark.parametrize("prior", ["none", "gaussian"])
def test_75_25_split_between_two_conditions_is_one_jod(prior):
    jod = scale_quietly([[0, 75], [25, 0]], prior)
    assert jod[0] - jod[1] == pytest.approx(ONE_JOD, abs=1e-7)
    assert jod[0] - jod[1] == pytest.approx(1.0, abs=2e-6)  # 1.4826's rounding: 1.5e-6
    assert jod.sum() == pytest.approx(0.0, abs=1e-12)


# pw_scale.m of mantiuk/pwcmp (commit 07876b2) run in GNU Octave 7.3.0 with statistics 1.5.3,
# its optimoptions call shimmed to optimset('GradObj', 'on', 'TolFun', 1e-12, 'TolX', 1e-12).
# On 43 random designs (3-9 conditions, incomplete, unanimous pairs, 1-3 components) ours
# matched within 7.5e-6 JOD, our objective never higher: the gap is where fminunc stops.
PW_SCALE_OCTAVE = [  # (counts, rows split by ";"), scores
    ("0 25 0; 75 0 0; 0 40 0", "-2.541743016191258 -1.542985079174689 4.084728095365909"),
    (
        "0 9 0 0 2 8 11 0; 0 0 0 0 5 6 6 0; 0 11 0 0 0 1 5 6; 5 0 0 0 0 0 0 0; "
        "2 8 0 0 0 7 11 0; 5 0 0 0 0 0 0 9; 0 0 0 0 0 0 0 5; 7 2 10 9 7 3 4 0",
        "0.16641876323 -0.421535334329 0.918866435644 -0.084485745279 0.347521436625 "
        "-0.242782712507 -1.39799785458 0.713995011199",
    ),
    (  # three disconnected components
        "0 5 0 0 0 0; 0 0 0 0 0 0; 0 0 0 2 0 0; 0 0 7 0 0 0; 0 0 0 0 0 3; 0 0 0 0 3 0",
        "0.542716994415 -1.58695545473 -0.583910851804 0.542717066997 0.542716037745 "
        "0.542716207379",
    ),
]


@pytest.mark.parametrize(("counts", "expected"), PW_SCALE_OCTAVE)
def test_scores_match_pw_scale_run_in_octave(counts, expected):
    counts = np.array([row.split() for row in counts.split(";")], dtype=float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ranking.RankingWarning)  # the disconnected design
        jod = ranking.thurstone_scale(counts)
    np.testing.assert_allclose(jod, np.array(expected.split(), dtype=float), atol=1e-5)


@pytest.mark.parametrize("prior", ["none", "gaussian"])
def test_pwcmp_simple_example_scales_to_minus_one_zero_one(prior):
    # pwcmp's ex1_simple_scaling.m; at scores (-a, 0, a) its prior is 1 for every pair
    jod = scale_quietly([[0, 25, 0], [75, 0, 25], [0, 75, 0]], prior)
    np.testing.assert_allclose(jod, [-ONE_JOD, 0.0, ONE_JOD], atol=1e-7)


def test_unanimous_pair_among_three_conditions_is_finite_and_a_true_minimum():
    counts = np.array([[0, 25, 0], [75, 0, 0], [0, 40, 0]], dtype=float)  # c beat b 40-0
    fit = ranking.scale(counts)
    assert not fit.bounded and fit.converged and not fit.notes
    assert np.all(np.isfinite(fit.jod)) and fit.jod[2] > fit.jod[1] > fit.jod[0]
    assert fit.jod[1] - fit.jod[0] == pytest.approx(ONE_JOD, abs=0.05)
    design = ranking.build_design(counts)
    best = ranking.objective(fit.jod, design)[0]
    for stretch in (0.8, 1.2, 2.0, 4.0):  # moving c along the b-c axis only costs
        moved = fit.jod.copy()
        moved[2] = fit.jod[1] + stretch * (fit.jod[2] - fit.jod[1])
        assert ranking.objective(moved, design)[0] > best + 1e-6
    assert ranking.scale(counts, "none").bounded  # without the prior: no finite maximum


@pytest.mark.parametrize("count", [1, 5, 20])
def test_two_condition_unanimous_result_is_the_documented_bound_with_a_warning(count):
    with pytest.warns(ranking.RankingWarning, match="without a finite maximum"):
        jod = ranking.thurstone_scale([[0, count], [0, 0]])
    bound = ranking.SIGMA_DIFFERENCE * ndtri((count + 0.5) / (count + 1))
    np.testing.assert_allclose(jod, [bound / 2, -bound / 2], atol=1e-6)


def test_unanimous_chains_get_the_bound_and_pinned_unanimous_pairs_do_not():
    chain = np.array([[0, 5, 0], [0, 0, 5], [0, 0, 0]])  # a > b > c, a-c never compared
    transitive = np.array([[0, 5, 5], [0, 0, 5], [0, 0, 0]])  # all three pairs 5-0
    for counts in (chain, transitive):
        fit = ranking.scale(counts)
        assert fit.bounded and np.all(np.abs(fit.jod) < 5) and fit.jod[0] > fit.jod[1] > fit.jod[2]
    # a-c unanimous but pinned by the non-unanimous a-b and b-c: pw_scale's answer stands
    pinned = np.array([[0, 30, 9], [10, 0, 30], [0, 10, 0]])
    assert not ranking.scale(pinned).bounded


def test_permuting_the_conditions_permutes_the_scores():
    rng = np.random.default_rng(3)
    for _ in range(3):
        counts = random_counts(rng, 6)
        order = rng.permutation(6)
        jod = ranking.scale(counts).jod
        np.testing.assert_allclose(
            ranking.scale(counts[np.ix_(order, order)]).jod, jod[order], atol=1e-6
        )


@pytest.mark.parametrize("prior", ["gaussian", "none"])
def test_analytic_gradient_matches_finite_differences(prior):
    rng = np.random.default_rng(0)
    for _ in range(4):
        counts = random_counts(rng, 7)
        design = ranking.build_design(ranking.link_components(counts)[0])
        scores = rng.normal(0, 1.5, 7)
        value = lambda q, d=design: ranking.objective(q, d, prior)[0]  # noqa: E731
        grad = lambda q, d=design: ranking.objective(q, d, prior)[1]  # noqa: E731
        error = check_grad(value, grad, scores, epsilon=1e-6)
        assert error <= 1e-5 * max(1.0, np.linalg.norm(grad(scores))), error


def test_distance_prior_gradient_matches_finite_differences_in_distance():
    design = ranking.build_design(random_counts(np.random.default_rng(1), 5))
    distance = np.random.default_rng(2).normal(0, 2, len(design.winner))
    value = lambda d: ranking.log_distance_prior(d, design)[0]  # noqa: E731
    grad = lambda d: ranking.log_distance_prior(d, design)[1]  # noqa: E731
    assert check_grad(value, grad, distance, epsilon=1e-7) < 1e-5


def test_disconnected_design_warns_links_best_conditions_and_still_scales():
    counts = np.zeros((4, 4))
    counts[0, 1], counts[1, 0] = 75, 25  # component {0, 1}: 0 better
    counts[3, 2], counts[2, 3] = 75, 25  # component {2, 3}: 3 better
    with pytest.warns(ranking.RankingWarning, match="2 disconnected components"):
        jod = ranking.thurstone_scale(counts)
    assert np.all(np.isfinite(jod))
    assert jod[0] == pytest.approx(jod[3], abs=1e-6)  # the best of each, linked by a 1-1 tie
    assert jod[0] - jod[1] == pytest.approx(jod[3] - jod[2], abs=1e-6)
    assert jod[0] - jod[1] == pytest.approx(ONE_JOD, abs=0.05)


def test_bad_count_matrices_are_refused():
    for counts, message in (
        ([[0, 1, 2], [1, 0, 2]], "square"),
        ([[0, -1], [1, 0]], "non-negative integers"),
        ([[0, 1.5], [1, 0]], "non-negative integers"),
        ([[1, 1], [1, 0]], "diagonal"),
        ([[0, 0], [0, 0]], "no comparison"),
    ):
        with pytest.raises(ValueError, match=message):
            ranking.scale(counts)


# --- bootstrap, significance, letters, observers (pw_scale_bootstrp and friends) ------------


@pytest.fixture(scope="module")
def study():
    """6 conditions (a and b identical, f far ahead), 12 subjects, one who answers reversed."""
    stack = simulate([0.0, 0.0, 0.5, 1.0, 1.1, 3.0], subjects=12, trials=3, seed=0)
    stack[3] = stack[3].transpose()
    return stack


@pytest.fixture(scope="module")
def boot(study):
    return significance.bootstrap_scale(study, resamples=200, seed=7)


def test_bootstrap_intervals_contain_the_estimate_and_are_seeded(study, boot):
    jod = ranking.scale(study.sum(axis=0)).jod
    assert np.all(boot.ci_low <= jod) and np.all(jod <= boot.ci_high)
    assert np.all(boot.ci_high - boot.ci_low > 0)
    again = significance.bootstrap_scale(study, resamples=200, seed=7, start=jod)
    np.testing.assert_array_equal(again.replicates, boot.replicates)
    other = significance.bootstrap_scale(study, resamples=200, seed=8, start=jod)
    assert not np.allclose(other.replicates, boot.replicates)
    expected = np.percentile(boot.replicates, [2.5, 97.5], axis=0, method="hazen")
    np.testing.assert_allclose([boot.ci_low, boot.ci_high], expected)


def test_bootstrap_warm_start_gives_the_cold_start_scores(study):
    jod = ranking.scale(study.sum(axis=0)).jod
    rng = np.random.default_rng(0)
    for _ in range(5):
        counts = study[rng.integers(0, len(study), len(study))].sum(axis=0)
        np.testing.assert_allclose(
            ranking.scale(counts, start=jod).jod, ranking.scale(counts).jod, atol=1e-6
        )


def test_significance_separated_pair_differs_identical_pair_does_not(study, boot):
    jod = ranking.scale(study.sum(axis=0)).jod
    p = significance.significance_matrix(jod, boot.covariance)
    assert p[5, 0] < 0.025 and p[0, 5] == p[5, 0]  # f (3 JOD) against a (0 JOD)
    assert p[0, 1] > 0.025  # a and b have the same utility
    assert np.all(np.isnan(np.diag(p)))
    variance = np.diag(boot.covariance)
    z = (jod[5] - jod[0]) / np.sqrt(variance[5] + variance[0] - 2 * boot.covariance[5, 0])
    assert p[5, 0] == pytest.approx(ndtr(-abs(z)))
    identical = significance.significance_matrix([1.0, 1.0], np.ones((2, 2)))
    assert identical[0, 1] == 0.5  # no spread of the difference, no difference


def test_letters_of_a_non_transitive_pattern_overlap():
    different = np.zeros((3, 3), dtype=bool)
    different[0, 2] = different[2, 0] = True  # a-b and b-c indistinguishable, a-c not
    assert significance.compact_letters([2.0, 1.0, 0.0], different) == ["a", "ab", "b"]
    permuted = different[[2, 0, 1]][:, [2, 0, 1]]
    assert significance.compact_letters([0.0, 2.0, 1.0], permuted) == ["b", "a", "ab"]
    assert significance.compact_letters([3.0, 2.0, 1.0], np.zeros((3, 3), bool)) == ["a"] * 3


def test_letters_share_a_letter_exactly_when_not_different():
    rng = np.random.default_rng(5)
    for _ in range(200):
        size = int(rng.integers(2, 8))
        upper = np.triu(rng.random((size, size)) < rng.random(), 1)
        different = upper | upper.T
        letters = significance.compact_letters(rng.normal(size=size), different)
        assert all(letters)
        for i in range(size):
            for j in range(i + 1, size):
                assert bool(set(letters[i]) & set(letters[j])) != different[i, j]


def test_outlier_analysis_flags_the_reversed_subject_only(study):
    report = significance.outlier_analysis(study)
    # pw_outlier_analysis.m in Octave (as PW_SCALE_OCTAVE) on the same 12 subjects:
    octave = "-0.389964588341712 -0.517556761638419 -0.575459309324006 -1.556187330349988 "
    octave += "-0.373200984695752 -0.484725053536295 -0.464145380144580 -0.427955612619401 "
    octave += "-0.458009094665896 -0.460610161692528 -0.366381015431819 -0.481612013120168"
    np.testing.assert_allclose(report.log10_likelihood, np.array(octave.split(), float), atol=1e-6)
    np.testing.assert_allclose(report.distance[1:4], [0.1780832, 0.8062242, 11.445402], atol=1e-5)
    assert list(np.flatnonzero(report.flagged)) == [3]
    assert report.log10_likelihood[3] == report.log10_likelihood.min()
    assert np.all(report.distance >= 0) and np.all(report.log10_likelihood < 0)


# --- dlmap rank ---------------------------------------------------------------------------


def write_matrix(path: Path, names, matrix, label="condition") -> Path:
    rows = [[label, *names]] + [[n, *map(str, row)] for n, row in zip(names, matrix, strict=True)]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    return path


def main_rank(argv) -> tuple[int, str]:
    """``dlmap rank`` as the CLI runs it: exit code and the error line."""
    parser = argparse.ArgumentParser(prog="dlmap")
    add_rank_parser(parser.add_subparsers(dest="command"))
    try:
        return rank_command(parser.parse_args(["rank", *map(str, argv)])), ""
    except DlmapError as error:  # as dlmap.cli.main maps it
        return error.exit_code, str(error)


NAMES = ["a", "b", "c", "d", "e", "f"]


@pytest.fixture()
def files(tmp_path, study):
    counts = write_matrix(tmp_path / "counts.csv", NAMES, study.sum(axis=0), label="")
    for index, matrix in enumerate(study):
        write_matrix(tmp_path / "subjects" / f"s{index:02d}.csv", NAMES, matrix)
    return counts, tmp_path / "subjects"


def read_rows(path: Path) -> list[list[str]]:
    return list(csv.reader(path.read_text().splitlines()))


def test_rank_writes_scores_pvalues_outliers_and_record(files, tmp_path, capsys):
    counts, subjects = files
    out = tmp_path / "out" / "scores.csv"
    argv = [counts, "--per-subject", subjects, "--bootstrap", "50", "--seed", "3", "--out", out]
    assert main_rank(argv) == (0, "")
    rows = read_rows(out)
    assert rows[0] == ["condition", "jod", "ci_low", "ci_high", "group"]
    jods = [float(row[1]) for row in rows[1:]]
    assert jods == sorted(jods, reverse=True) and rows[1][0] == "f"
    assert abs(sum(jods)) < 1e-5 and all(row[4] for row in rows[1:])
    assert all(float(row[2]) <= float(row[1]) <= float(row[3]) for row in rows[1:])
    pvalues = read_rows(tmp_path / "out" / "scores.pvalues.csv")
    order = [row[0] for row in rows[1:]]
    assert pvalues[0] == ["condition", *order] and [row[0] for row in pvalues[1:]] == order
    assert all(pvalues[k][k] == "" for k in range(1, len(pvalues)))
    outliers = read_rows(tmp_path / "out" / "scores.outliers.csv")
    assert [row[0] for row in outliers[1:] if row[3] == "True"] == ["s03"]
    record = json.loads((tmp_path / "out" / "scores.json").read_text())
    assert record["bootstrap"] == {"resamples": 50, "seed": 3} and len(record["per_subject"]) == 12
    assert "s03" in capsys.readouterr().out
    assert main_rank(argv) == (0, "") and read_rows(out) == rows  # seeded: same output


def test_rank_without_per_subject_leaves_intervals_groups_and_pvalues_empty(files, tmp_path):
    out = tmp_path / "scores.csv"
    assert main_rank([files[0], "--out", out]) == (0, "")
    rows = read_rows(out)
    assert len(rows) == 7 and all(row[2:] == ["", "", ""] for row in rows[1:])
    pvalues = read_rows(tmp_path / "scores.pvalues.csv")
    assert all(cell == "" for row in pvalues[1:] for cell in row[1:])
    assert not (tmp_path / "scores.outliers.csv").exists()
    assert "no bootstrap" in json.loads((tmp_path / "scores.json").read_text())["warnings"][0]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "No such file"),
        ("", "empty matrix"),
        ("x,a,b\na,0,1\n", "not square"),
        ("x,a,b\na,0,1\nb,1\n", "not square"),
        ("x,a,b\na,0,1\nc,1,0\n", "named 'c'"),
        ("x,a,b\na,0,-1\nb,1,0\n", "not a count"),
        ("x,a,b\na,0,1.5\nb,1,0\n", "not a count"),
        ("x,a,b\na,0,lots\nb,1,0\n", "not a number"),
        ("x,a,b\na,2,1\nb,1,0\n", "diagonal"),
        ("x,a,b\na,0,0\nb,0,0\n", "no comparison"),
        ("x,a,a\na,0,1\na,1,0\n", "distinct"),
    ],
)
def test_rank_malformed_counts_exit_2_with_one_line_naming_the_file(tmp_path, content, message):
    path = tmp_path / "counts.csv"
    if content is not None:
        path.write_text(content)
    code, error = main_rank([path, "--out", tmp_path / "scores.csv"])
    assert code == 2 and message in error and str(path) in error and "\n" not in error
    assert not (tmp_path / "scores.csv").exists()


def test_rank_malformed_per_subject_data_and_options_exit_2(files, tmp_path):
    counts, subjects = files
    out = tmp_path / "scores.csv"
    one = write_matrix(tmp_path / "one" / "s.csv", NAMES, read_counts(counts)[1].astype(int))
    cases = [
        ([counts, "--per-subject", tmp_path / "none", "--out", out], "not a folder"),
        ([counts, "--per-subject", one.parent, "--out", out], "1 subject"),
        ([counts, "--bootstrap", "1", "--out", out], "--bootstrap"),
        ([counts, "--out", counts], "overwrite"),
    ]
    for argv, message in cases:
        code, error = main_rank(argv)
        assert code == 2 and message in error and "\n" not in error, error
    reordered = write_matrix(subjects / "s99.csv", NAMES[::-1], np.zeros((6, 6), int))
    code, error = main_rank([counts, "--per-subject", subjects, "--out", out])
    assert code == 2 and str(reordered) in error and "same order" in error
    write_matrix(reordered, NAMES, np.ones((6, 6), int) - np.eye(6, dtype=int))
    code, error = main_rank([counts, "--per-subject", subjects, "--out", out])
    assert code == 2 and "sum to" in error and str(subjects) in error
    assert not out.exists()


def test_bench_rank_prints_its_two_timing_lines(capsys, monkeypatch):
    argv = ["rank.py", "--conditions", "4", "--subjects", "3", "--trials", "2"]
    monkeypatch.setattr(sys, "argv", [*argv, "--resamples", "5"])
    with pytest.raises(SystemExit) as exit:
        runpy.run_path(str(Path(__file__).parents[1] / "bench" / "rank.py"), run_name="__main__")
    assert exit.value.code == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("one fit, 4 conditions: analytic gradient")
    assert lines[1].startswith("dlmap rank, 5 resamples, 4 conditions, 3 subjects")
