"""Aggregate statistics (Agarwal et al. 2021) on samples with known answers, and rliable's documented values."""
import numpy as np
import pytest
import scipy.stats

from jaxmtf import stats

# ------------------------------------------------------- 95% CIs of a mean: Student-t over seeds, normal over users


# t_{0.975, n-1} from the tables (two-sided 95%, df = 2, 3, 4).
T_TABLE = {3: 4.303, 4: 3.182, 5: 2.776}


@pytest.mark.parametrize("n", [3, 4, 5])
def test_t_halfwidth_by_hand(n):
    sample = np.array([270.0, 274.0, 279.0, 281.5, 268.0])[:n]  # e.g. one policy's return per seed
    std = float(np.sqrt(((sample - sample.mean()) ** 2).sum() / (n - 1)))  # ddof=1, written out
    expected = T_TABLE[n] * std / np.sqrt(n)
    assert stats.t_quantile_95(n) == pytest.approx(T_TABLE[n], abs=5e-4)
    assert stats.t_halfwidth(std, n) == pytest.approx(expected, rel=2e-4)  # the table's 3 decimals
    assert stats.ci95_halfwidth(std, n, over="seeds") == pytest.approx(expected, rel=2e-4)
    mean, half = stats.mean_ci95(sample, over="seeds")
    assert mean == pytest.approx(sample.mean()) and half == pytest.approx(expected, rel=2e-4)
    # The normal interval over the same sample is narrower by 1.96 / t: 2.2x at n = 3, 1.4x at n = 5.
    assert stats.ci95_halfwidth(std, n, over="users") == pytest.approx(1.959964 * std / np.sqrt(n))
    assert half / stats.normal_halfwidth(std, n) == pytest.approx(T_TABLE[n] / 1.959964, rel=2e-4)


def test_concrete_sample_n3():
    # 1, 2, 6: mean 3, std (ddof=1) sqrt(((-2)^2 + (-1)^2 + 3^2) / 2) = sqrt(7); half-width 4.303 sqrt(7) / sqrt(3).
    mean, half = stats.mean_ci95([1.0, 2.0, 6.0], over="seeds")
    assert mean == 3.0 and half == pytest.approx(4.303 * np.sqrt(7.0) / np.sqrt(3.0), rel=2e-4)
    assert half == pytest.approx(6.572, abs=1e-3)


def test_normal_over_users_and_episodes_and_t_with_many_seeds():
    assert stats.ci95_halfwidth(10.0, 400, over="users") == pytest.approx(1.959964 * 10.0 / 20.0)
    assert stats.ci95_halfwidth(10.0, 400, over="episodes") == stats.ci95_halfwidth(10.0, 400, over="users")
    assert stats.t_quantile_95(1000) == pytest.approx(1.962, abs=1e-3)  # where users are counted, t ~ normal
    assert stats.t_quantile_95(np.array([2, 10])) == pytest.approx([12.706, 2.262], abs=1e-3)


def test_fewer_than_two_samples_give_nan_not_an_error():
    for over in ("seeds", "users"):
        assert np.isnan(stats.ci95_halfwidth(1.0, 1, over=over)) and np.isnan(stats.ci95_halfwidth(1.0, 0, over=over))
        mean, half = stats.mean_ci95([5.0], over=over)
        assert mean == 5.0 and np.isnan(half)
    assert all(np.isnan(stats.mean_ci95([], over="seeds")))
    assert np.isnan(stats.t_quantile_95(1))


def test_halfwidths_on_pandas_numpy_and_jax():
    import jax
    import jax.numpy as jnp
    import pandas as pd

    std, count = pd.Series([1.0, 2.0, 3.0]), pd.Series([1, 3, 4])
    out = stats.t_halfwidth(std, count)
    assert isinstance(out, pd.Series) and np.isnan(out[0])
    np.testing.assert_allclose(out[1:], [4.302653 * 2 / np.sqrt(3), 3.182446 * 3 / 2], rtol=1e-6)
    np.testing.assert_allclose(stats.t_halfwidth(np.array([1.0, 1.0]), np.array([3, 5])),
                               [4.302653 / np.sqrt(3), 2.776445 / np.sqrt(5)], rtol=1e-6)
    x = jnp.arange(4.0, dtype=jnp.float32)
    half = jax.jit(lambda x: stats.normal_halfwidth(jnp.std(x, ddof=1), x.shape[0]))(x)
    assert half.dtype == jnp.float32 and float(half) == pytest.approx(
        1.959964 * np.std([0, 1, 2, 3], ddof=1) / 2, rel=1e-6)


def test_over_is_required_and_checked():
    with pytest.raises(TypeError):
        stats.ci95_halfwidth(1.0, 3)  # no silent default: the caller says what the samples are
    with pytest.raises(ValueError, match="over='runs'"):
        stats.ci95_halfwidth(1.0, 3, over="runs")


def test_labels_say_what_the_interval_is_over():
    assert stats.ci95_label("seeds", 4) == "95% CI (Student-t over 4 seeds)"
    assert stats.ci95_label("seeds", [3, 3, 2]) == "95% CI (Student-t over 2-3 seeds)"
    assert stats.ci95_label("users", 2000) == "95% CI (normal over 2000 users)"
    assert stats.ci95_label("episodes") == "95% CI (normal over episodes)"


def test_paired_difference_is_normal_over_users():
    x, y = np.array([3.0, 5.0, 4.0, 8.0]), np.array([1.0, 2.0, 2.0, 3.0])
    d = x - y
    mean, half = stats.paired_difference(x, y)
    assert mean == d.mean() and half == pytest.approx(1.959964 * d.std(ddof=1) / 2.0)


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
    assert (set(np.unique(resamples[..., 0])) == {0.0, 1.0, 2.0}
            and set(np.unique(resamples[..., 1])) == {10.0, 11.0, 12.0})


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
