"""The one confidence-interval helper of the package (evaluation, analysis, demo and benchmarks use it).

Normal-approximation 95% intervals of a mean: mean +- Z_95 * std / sqrt(n).
Written with `** 0.5` so that it works on numpy and jax arrays (inside jit
too) and on pandas Series alike.
"""
Z_95 = 1.959963984540054  # the 0.975 quantile of the standard normal


def ci95_halfwidth(std, count):
    """Half-width of the normal-approximation 95% CI of a mean: Z_95 * std / sqrt(count)."""
    return Z_95 * std / count**0.5
