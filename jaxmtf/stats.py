"""The one confidence-interval helper of the package (evaluation, analysis, demo and benchmarks use it).

Normal-approximation 95% intervals of a mean: mean +- Z_95 * std / sqrt(n).
`ci95_halfwidth` is written with `** 0.5` so that it works on numpy and jax
arrays (inside jit too) and on pandas Series alike; `paired_difference`
applies it to per-sample differences (host-side, numpy).
"""
import numpy as np

Z_95 = 1.959963984540054  # the 0.975 quantile of the standard normal


def ci95_halfwidth(std, count):
    """Half-width of the normal-approximation 95% CI of a mean: Z_95 * std / sqrt(count)."""
    return Z_95 * std / count**0.5


def paired_difference(x, y):
    """(mean, 95% CI half-width) of x - y over paired samples, e.g. two policies' returns on the same users.

    Pairing removes what the samples share (which users were drawn), so the
    interval is that of the difference, not of either mean.
    """
    d = np.asarray(x, np.float64) - np.asarray(y, np.float64)
    return float(d.mean()), float(ci95_halfwidth(d.std(ddof=1), d.size))


# ------------------------------------------------------------------ aggregate metrics (Agarwal et al. 2021)
# Scores are matrices [runs, tasks] (tasks: datasets here), as in google-research/rliable, whose
# definitions these follow (rliable itself does not import next to pandas 3: its `arch` dependency
# fails). Every metric also takes a stack of matrices [..., runs, tasks] and reduces the last two
# axes, so the bootstrap below evaluates all its resamples in one call.


def iqm(scores):
    """Interquartile mean over all runs and tasks: the mean of the middle 50% (25% trimmed mean)."""
    scores = np.asarray(scores, np.float64)
    flat = np.sort(scores.reshape(*scores.shape[:-2], -1), axis=-1)
    cut = int(0.25 * flat.shape[-1])  # scipy.stats.trim_mean's rule (rliable's aggregate_iqm)
    return flat[..., cut:flat.shape[-1] - cut].mean(axis=-1)


def mean_score(scores):
    """Mean over tasks of the per-task mean over runs."""
    return np.asarray(scores, np.float64).mean(axis=(-2, -1))


def median_score(scores):
    """Median over tasks of the per-task mean over runs."""
    return np.median(np.asarray(scores, np.float64).mean(axis=-2), axis=-1)


def optimality_gap(scores, gamma: float = 100.0):
    """How far below `gamma` the scores fall on average (scores above gamma count as gamma)."""
    return gamma - np.minimum(np.asarray(scores, np.float64), gamma).mean(axis=(-2, -1))


AGGREGATES = {"IQM": iqm, "mean": mean_score, "median": median_score, "optimality gap": optimality_gap}


def probability_of_improvement(scores_x, scores_y):
    """P(X > Y): per task, the Mann-Whitney U of X's runs against Y's over n_x n_y (ties count one half),
    averaged over tasks."""
    x = np.asarray(scores_x, np.float64)[..., :, None, :]  # [..., n_x, 1, tasks]
    y = np.asarray(scores_y, np.float64)[..., None, :, :]  # [..., 1, n_y, tasks]
    wins = (x > y) + 0.5 * (x == y)
    return wins.mean(axis=(-3, -2)).mean(axis=-1)


def score_distribution(scores, taus):
    """Performance profile: the fraction of all runs (every task) whose score exceeds each tau. [..., len(taus)]"""
    scores = np.asarray(scores, np.float64)
    flat = scores.reshape(*scores.shape[:-2], 1, -1)
    return (flat > np.asarray(taus, np.float64)[:, None]).mean(axis=-1)


def stratified_resamples(scores, reps: int, rng: np.random.Generator):
    """`reps` stratified bootstrap resamples [reps, runs, tasks]: runs drawn with replacement within each task
    (rliable's StratifiedBootstrap, task_bootstrap=False: the uncertainty of re-running the seeds)."""
    scores = np.asarray(scores, np.float64)
    runs, tasks = scores.shape
    rows = rng.integers(0, runs, size=(reps, runs, tasks))
    return scores[rows, np.arange(tasks)]


def interval_estimate(metric, *score_matrices, reps: int = 2000, confidence: float = 0.95, seed: int = 0):
    """(point, lower, upper) of `metric(*score_matrices)` with a stratified bootstrap percentile interval.

    Several matrices (e.g. X and Y of the probability of improvement) are resampled independently
    (rliable's StratifiedIndependentBootstrap). Percentile intervals are rliable's default.
    """
    rng = np.random.default_rng(seed)
    point = np.asarray(metric(*score_matrices))
    resampled = [stratified_resamples(m, reps, rng) for m in score_matrices]
    values = np.asarray(metric(*resampled))
    alpha = (1.0 - confidence) / 2.0
    lower, upper = np.quantile(values, [alpha, 1.0 - alpha], axis=0)
    return point, lower, upper


def normalise(values, low: float, high: float):
    """100 (x - low) / (high - low): 0 = the `low` reference (random policy), 100 = the `high` one (expert)."""
    if not np.isfinite(low) or not np.isfinite(high) or high == low:
        raise ValueError(f"normalise: got low={low}, high={high}; expected two distinct finite reference values")
    return 100.0 * (np.asarray(values, np.float64) - low) / (high - low)
