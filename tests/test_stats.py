"""Aggregate statistics (Agarwal et al. 2021) on samples with known answers, and rliable's documented values."""
import numpy as np
import pytest
import scipy.stats

from jaxmtf import stats

# rliable's tests/rliable/metrics_test.py: score matrices [runs, tasks] and their documented aggregates.
RLIABLE_X = np.array([[1, 2], [2, 2], [1, 1], [2, 1]])
RLIABLE_Y = np.array([[1, 1], [2, 2], [3, 3]])


def test_aggregates_match_rliables_documented_values():
    assert stats.median_score(RLIABLE_X) == 1.5 and stats.mean_score(RLIABLE_X) == 1.5 and stats.iqm(RLIABLE_X) == 1.5
    assert stats.median_score(RLIABLE_Y) == 2 and stats.mean_score(RLIABLE_Y) == 2 and stats.iqm(RLIABLE_Y) == 2
    assert stats.probability_of_improvement(RLIABLE_X, RLIABLE_Y) == pytest.approx(1 / 3)


def test_iqm_of_a_known_sample_and_scipys_trimmed_mean():
    # 0..7 as [4 runs, 2 tasks]: the middle half is 2, 3, 4, 5.
    assert stats.iqm(np.arange(8.0).reshape(4, 2)) == 3.5
    # An outlier moves the mean, not the IQM.
    assert stats.iqm(np.array([[1.0], [2.0], [3.0], [1e6]])) == 2.5
    sample = np.random.default_rng(0).normal(size=(10, 3))
    assert stats.iqm(sample) == pytest.approx(scipy.stats.trim_mean(sample, 0.25, axis=None))
    # A stack of matrices is reduced matrix by matrix (what the bootstrap relies on).
    stack = np.random.default_rng(1).normal(size=(5, 6, 2))
    np.testing.assert_allclose(stats.iqm(stack), [stats.iqm(m) for m in stack])


def test_probability_of_improvement_by_hand():
    x, y = np.array([[3.0], [1.0]]), np.array([[2.0], [1.0]])
    # pairs: 3>2, 3>1, 1<2, 1=1 (one half): 2.5 / 4
    assert stats.probability_of_improvement(x, y) == 2.5 / 4
    assert stats.probability_of_improvement(y, y) == 0.5
    assert stats.probability_of_improvement(x, y) + stats.probability_of_improvement(y, x) == 1.0


def test_score_distribution_and_optimality_gap():
    scores = np.array([[10.0, 50.0], [90.0, 120.0]])
    np.testing.assert_allclose(stats.score_distribution(scores, [0, 50, 100]), [1.0, 0.5, 0.25])
    assert stats.optimality_gap(scores) == 100 - (10 + 50 + 90 + 100) / 4


def test_stratified_resamples_stay_within_their_task():
    scores = np.array([[0.0, 10.0], [1.0, 11.0], [2.0, 12.0]])
    resamples = stats.stratified_resamples(scores, 200, np.random.default_rng(0))
    assert resamples.shape == (200, 3, 2)
    assert set(np.unique(resamples[..., 0])) == {0.0, 1.0, 2.0} and set(np.unique(resamples[..., 1])) == {10.0, 11.0, 12.0}


def test_bootstrap_interval_covers_a_normal_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    trials, covered = 300, 0
    for trial in range(trials):
        sample = rng.normal(loc=5.0, scale=2.0, size=(40, 1))
        _, low, high = stats.interval_estimate(stats.mean_score, sample, reps=400, seed=trial)
        covered += low <= 5.0 <= high
    # Percentile intervals of a mean from n=40 under-cover slightly; 300 trials: binomial sd ~1.3%.
    assert 0.88 <= covered / trials <= 0.99


def test_probability_of_improvement_interval_resamples_both_sides():
    rng = np.random.default_rng(0)
    better, worse = rng.normal(1.0, 1.0, size=(30, 2)), rng.normal(0.0, 1.0, size=(30, 2))
    point, low, high = stats.interval_estimate(stats.probability_of_improvement, better, worse, reps=500)
    assert low < point < high and low > 0.5  # clearly better: the whole interval above one half
    # The true value is P(N(1,1) > N(0,1)) = Phi(1 / sqrt(2)) = 0.76.
    assert low < scipy.stats.norm.cdf(1 / np.sqrt(2)) < high


def test_normalise():
    np.testing.assert_allclose(stats.normalise([250.0, 300.0, 275.0], 250.0, 300.0), [0.0, 100.0, 50.0])
    with pytest.raises(ValueError, match="two distinct finite reference values"):
        stats.normalise([1.0], 3.0, 3.0)
