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
