"""The one confidence-interval helper of the package (evaluation, analysis, demo and benchmarks use it).

95% intervals of a mean, mean +- q * std / sqrt(n) with std the sample standard
deviation (ddof=1), and q chosen by what the n samples are (`over`):

* ``over="seeds"`` (training seeds, a handful): Student-t, q = t_{0.975, n-1}
  (`t_halfwidth`): 12.71 for n = 2, 4.30 for n = 3, 3.18 for n = 4, 2.78 for
  n = 5, 2.26 for n = 10. The normal 1.96 would make the interval 1.4-2.2x
  too narrow at 3-5 seeds.
* ``over="users"`` or ``"episodes"`` (hundreds and more): the normal
  approximation, q = Z_95 = 1.96 (`normal_halfwidth`); t_{0.975, 999} is
  1.962, so the difference is below rounding there.

`ci95_halfwidth(std, count, over=...)` picks between the two; `over` has no
default, so every caller says what its sample is. `mean_ci95(values, over=...)`
does the same from the sample itself; `ci95_label(over, count)` is the text
that tables put in their headers ("95% CI (Student-t over 4 seeds)").

The rule for n < 2: the half-width is NaN (one seed or user says nothing
about the spread: no interval, rather than a zero one that claims
certainty, and no error, so that a one-seed run still tabulates).

The half-widths are written with `** 0.5` so that they work on numpy and jax
arrays and on pandas Series alike; `normal_halfwidth` also inside jit (a
concrete `count`); `t_halfwidth` takes its quantile from scipy, so its `count`
must be concrete (host values: seeds are counted outside jit).
`paired_difference` applies the normal interval to per-user differences
(host-side, numpy).
"""
import numpy as np
import scipy.stats

Z_95 = 1.959963984540054  # the 0.975 quantile of the standard normal

# What a sample can be over, and the interval each gets.
STUDENT_T, NORMAL = "Student-t", "normal"
OVER = {"seeds": STUDENT_T, "users": NORMAL, "episodes": NORMAL}


def _defined(count):
    """1 where count >= 2, NaN elsewhere (the n < 2 rule), shaped like `count`."""
    return np.where(np.asarray(count) >= 2, 1.0, np.nan)


def _sqrt_count(count):
    return np.maximum(np.asarray(count, np.float64), 1.0) ** 0.5  # count 0 gives NaN through _defined, not 1/0


def _factor(f):
    """A scalar factor as a Python float: weakly typed, so float32 jax arrays stay float32."""
    return float(f) if np.ndim(f) == 0 else f


def t_quantile_95(count):
    """t_{0.975, count-1}, the Student-t quantile of a 95% CI of a mean of `count` samples; NaN for count < 2."""
    df = np.asarray(count, np.float64) - 1.0
    return scipy.stats.t.ppf(0.975, np.where(df >= 1.0, df, np.nan))


def t_halfwidth(std, count):
    """Half-width of the Student-t 95% CI of a mean over `count` seeds: t_{0.975, count-1} * std / sqrt(count).

    `std` is the sample standard deviation (ddof=1). NaN where count < 2. `count` must be concrete (not traced).
    """
    return std * _factor(t_quantile_95(count) / _sqrt_count(count))


def normal_halfwidth(std, count):
    """Half-width of the normal-approximation 95% CI of a mean over `count` users or episodes (hundreds+):
    Z_95 * std / sqrt(count). `std` is the sample standard deviation (ddof=1). NaN where count < 2."""
    return std * _factor(Z_95 * _defined(count) / _sqrt_count(count))


def ci95_halfwidth(std, count, *, over: str):
    """95% CI half-width of a mean of `count` samples with sample std `std`: Student-t when `over` is "seeds",
    normal when it is "users" or "episodes" (module docstring). NaN where count < 2."""
    return t_halfwidth(std, count) if _kind(over) == STUDENT_T else normal_halfwidth(std, count)


def mean_ci95(values, *, over: str):
    """(mean, 95% CI half-width) of a 1-D sample, as floats; `over` as in `ci95_halfwidth`. NaN half-width for
    fewer than 2 values (and a NaN mean for none)."""
    x = np.asarray(values, np.float64).reshape(-1)
    if x.size == 0:
        return float("nan"), float("nan")
    std = x.std(ddof=1) if x.size > 1 else np.nan
    return float(x.mean()), float(ci95_halfwidth(std, x.size, over=over))


def ci95_label(over: str, count=None) -> str:
    """What a table's interval is: "95% CI (Student-t over 4 seeds)", "95% CI (normal over 2000 users)".

    `count` is one number, a collection of them (their range is shown when they differ), or None (no number).
    """
    kind = _kind(over)
    if count is None:
        n = ""
    else:
        counts = sorted({int(c) for c in np.atleast_1d(np.asarray(count))})
        n = f"{counts[0]} " if len(counts) == 1 else f"{counts[0]}-{counts[-1]} "
    return f"95% CI ({kind} over {n}{over})"


def _kind(over: str) -> str:
    if over not in OVER:
        raise ValueError(f"over={over!r}: expected one of {sorted(OVER)} (what the interval's samples are)")
    return OVER[over]


def paired_difference(x, y):
    """(mean, 95% CI half-width) of x - y over paired users, e.g. two policies' returns on the same users.

    Pairing removes what the samples share (which users were drawn), so the
    interval is that of the difference, not of either mean. Normal approximation (the pairs are users).
    """
    return mean_ci95(np.asarray(x, np.float64) - np.asarray(y, np.float64), over="users")


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
