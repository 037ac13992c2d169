"""Per-content SRCC of graded distortions with a bootstrap interval over contents."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dlmap.priors.evaluation import per_content_srcc


def graded(contents: int = 6, levels: int = 5, rng=None, noise: float = 0.0):
    """Scores that grow with the distortion level on top of a content offset (NIQE-like)."""
    rng = rng or np.random.default_rng(0)
    names, grades, scores = [], [], []
    for content in range(contents):
        offset = rng.uniform(0, 50)  # content shifts scores far more than one level does
        for level in range(1, levels + 1):
            names.append(f"photo{content}")
            grades.append(level)
            scores.append(offset + level + rng.normal(0, noise))
    return names, grades, scores


def test_a_prior_ranking_every_level_right_scores_one_where_a_pooled_srcc_does_not():
    from scipy import stats

    names, grades, scores = graded()
    summary = per_content_srcc(names, grades, scores, higher_is_better=False, resamples=200)
    assert summary["mean"] == summary["low"] == summary["high"] == pytest.approx(1.0)
    assert summary["count"] == 6
    assert list(summary["per_content"].values()) == pytest.approx([1.0] * 6)
    assert stats.spearmanr(grades, scores)[0] < 0.5  # content offsets swamp the pooled SRCC
    flipped = per_content_srcc(names, grades, scores, higher_is_better=True, resamples=200)
    assert flipped["mean"] == pytest.approx(-1.0)
    negated = per_content_srcc(names, grades, -np.asarray(scores), higher_is_better=True)
    assert negated["mean"] == pytest.approx(1.0)


def test_the_interval_brackets_the_mean_and_narrows_with_more_contents():
    rng = np.random.default_rng(1)
    few = per_content_srcc(*graded(6, rng=rng, noise=1.5), higher_is_better=False, resamples=2000)
    many = per_content_srcc(*graded(60, rng=rng, noise=1.5), higher_is_better=False, resamples=2000)
    for summary in (few, many):
        assert -1 <= summary["low"] < summary["mean"] < summary["high"] <= 1
    assert many["high"] - many["low"] < few["high"] - few["low"]
    again = per_content_srcc(
        *graded(6, rng=np.random.default_rng(1), noise=1.5), higher_is_better=False, resamples=2000
    )
    assert again == few  # seeded


def test_bad_inputs_get_one_clear_error():
    names, grades, scores = graded(2)
    with pytest.raises(ValueError, match="equal-length"):
        per_content_srcc(names, grades[:-1], scores)
    with pytest.raises(ValueError, match="not finite"):
        per_content_srcc(names, grades, [*scores[:-1], float("nan")])
    with pytest.raises(ValueError, match="photo0.*two distortion levels"):
        per_content_srcc(names, [1] * len(grades), scores)


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from("abc"), st.integers(0, 3), st.floats(-1e6, 1e6, allow_nan=False)),
        min_size=1,
        max_size=24,
    )
)
def test_any_rows_give_a_summary_in_range_or_one_value_error(rows):
    names, grades, scores = zip(*rows, strict=True)
    try:
        summary = per_content_srcc(names, grades, scores, resamples=50)
    except ValueError:
        return
    tolerance = 1e-12
    assert -1 - tolerance <= summary["low"] <= summary["high"] <= 1 + tolerance
    assert -1 - tolerance <= summary["mean"] <= 1 + tolerance
    assert summary["count"] == len(set(names))
