"""The notebooks' figures, from jaxmtf.reporting.analysis frames (matplotlib only; every function draws on given axes).

    fig, ax = plt.subplots(); plots.intervals(ax, analysis.interval_table(matrices), "IQM")
"""
from typing import Optional, Sequence

import numpy as np
import pandas as pd


def intervals(ax, table: pd.DataFrame, aggregate: str, xlabel: str = "normalised score"):
    """One aggregate's point estimate and CI per variant, as horizontal bars (rliable's interval plot).

    Variants in natural order from the top (alpha 2.5 before 10.0), the same in every panel (panels side by side
    share their y axis)."""
    from jaxmtf.reporting.analysis import natural_key

    rows = table[table["aggregate"] == aggregate]
    rows = rows.sort_values("variant", key=lambda names: names.map(natural_key), ascending=False)
    y = np.arange(len(rows))
    ax.hlines(y, rows["ci_low"], rows["ci_high"], linewidth=6, alpha=0.5)
    ax.plot(rows["estimate"], y, "k|", markersize=14)
    ax.set_yticks(y, rows["variant"])
    ax.set_title(aggregate)
    ax.set_xlabel(xlabel)
    ax.grid(axis="x", alpha=0.3)


def heatmap(ax, frame: pd.DataFrame, fmt: str = "{:.0f}", cmap: str = "RdYlGn", center: Optional[float] = None):
    """A labelled heat map of a rows x columns frame, each cell printed (NaN cells left blank)."""
    values = frame.to_numpy(dtype=float)
    finite = values[np.isfinite(values)]
    low, high = (finite.min(), finite.max()) if finite.size else (0.0, 1.0)
    if center is not None:
        span = max(abs(low - center), abs(high - center)) or 1.0
        low, high = center - span, center + span
    image = ax.imshow(values, cmap=cmap, vmin=low, vmax=high, aspect="auto")
    ax.set_xticks(np.arange(frame.shape[1]), frame.columns, rotation=30, ha="right")
    ax.set_yticks(np.arange(frame.shape[0]), frame.index)
    for (i, j), value in np.ndenumerate(values):
        if np.isfinite(value):
            ax.text(j, i, fmt.format(value), ha="center", va="center", fontsize=8)
    return image


def curves(ax, table: pd.DataFrame, group: str, label_prefix: str = "", mean="mean", band="ci95", **style):
    """One line per value of `group` over `step`, with its CI band (mean +- half-width columns)."""
    for name, rows in table.groupby(group, sort=True):
        rows = rows.sort_values("step")
        (line,) = ax.plot(rows["step"], rows[mean], label=f"{label_prefix}{name}", **style)
        ax.fill_between(rows["step"], rows[mean] - rows[band], rows[mean] + rows[band], color=line.get_color(),
                        alpha=0.2)
    ax.set_xlabel("update")
    ax.grid(alpha=0.3)


def profiles(ax, table: pd.DataFrame):
    """Performance profiles (fraction of runs above tau) with their bootstrap bands."""
    for variant, rows in table.groupby("variant", sort=False):
        (line,) = ax.plot(rows["tau"], rows["fraction"], label=variant)
        ax.fill_between(rows["tau"], rows["ci_low"], rows["ci_high"], color=line.get_color(), alpha=0.15)
    ax.set_xlabel("normalised score tau")
    ax.set_ylabel("fraction of runs with score > tau")
    ax.grid(alpha=0.3)


def estimate_vs_truth(ax, rows: pd.DataFrame, estimate: str = "estimate", truth: str = "true_value",
                      group: str = "estimator", low: str = "ci_low", high: str = "ci_high", label: str = "policy"):
    """OPE scatter: estimated against true value, one colour per `group`, each point with its interval
    (columns `low`, `high` where present) and named by its `label` column (the policy), and the diagonal."""
    for name, sub in rows.groupby(group, sort=True):
        points = ax.scatter(sub[truth], sub[estimate], s=14, label=name, alpha=0.8)
        if low in sub and high in sub:  # the estimator's interval for each policy, in its points' colour
            ax.errorbar(sub[truth], sub[estimate], yerr=[sub[estimate] - sub[low], sub[high] - sub[estimate]],
                        fmt="none", alpha=0.4, capsize=2, ecolor=points.get_facecolor()[0])
        for _, row in sub.iterrows() if label and label in sub else ():  # which policy each point is
            ax.annotate(str(row[label]), (row[truth], row[estimate]), fontsize=6, alpha=0.7)
    both = np.concatenate([rows[truth].to_numpy(float), rows[estimate].to_numpy(float)])
    both = both[np.isfinite(both)]
    if both.size:
        lo, hi = both.min(), both.max()
        ax.plot([lo, hi], [lo, hi], "k--", linewidth=1, label="estimate = truth")
    ax.set_xlabel("true value (simulator)")
    ax.set_ylabel("estimate")
    ax.grid(alpha=0.3)


def bars(ax, labels: Sequence[str], means: Sequence[float], halfwidths: Sequence[Optional[float]], xlabel: str):
    """Horizontal bars with 95% CI whiskers (a None half-width draws no whisker)."""
    y = np.arange(len(labels))
    errors = [0.0 if h is None else h for h in halfwidths]
    ax.barh(y, means, xerr=errors, alpha=0.7, capsize=3)
    ax.set_yticks(y, labels)
    ax.set_xlabel(xlabel)
    ax.grid(axis="x", alpha=0.3)


def paired_dots(ax, labels: Sequence[str], intervals: Sequence[Sequence[float]], xlabel: str,
                limit: Optional[float] = None):
    """One dot per label at its paired mean difference, with its [low, high] interval, and the zero line: a
    difference read against zero, not bars against an axis that starts near the values. With `limit`, the
    axis spans [-limit, limit] and a dot beyond it sits at the edge with its value written beside it (so a
    collapse does not squash every other interval to a point)."""
    y = np.arange(len(labels))
    means = np.array([i[0] for i in intervals], float)
    lows, highs = np.array([i[1] for i in intervals], float), np.array([i[2] for i in intervals], float)
    ax.errorbar(means, y, xerr=[means - lows, highs - means], fmt="o", capsize=3)
    ax.axvline(0.0, color="k", linewidth=1)
    if limit is not None:
        ax.set_xlim(-limit, limit)
        for row, mean in zip(y, means):
            if abs(mean) > limit:
                edge = np.sign(mean) * limit
                ax.plot([edge], [row], marker="<" if mean < 0 else ">", color="C3")
                ax.annotate(f"{mean:+.1f}", (edge, row), xytext=(6 if mean < 0 else -30, -3),
                            textcoords="offset points", fontsize=7, color="C3")
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.grid(axis="x", alpha=0.3)


def facet_curves(table: pd.DataFrame, facet: str, group: str, ylabel: str, width: float = 4.5):
    """One panel per value of `facet` (e.g. dataset), one line with its CI band per `group` (e.g. variant)."""
    import matplotlib.pyplot as plt

    names = sorted(table[facet].unique())
    fig, axes = plt.subplots(1, len(names), figsize=(width * len(names), 3.5), squeeze=False, sharey=True)
    for ax, name in zip(axes[0], names):
        curves(ax, table[table[facet] == name], group)
        ax.set_title(f"{facet} = {name}")
    axes[0][0].set_ylabel(ylabel)
    axes[0][-1].legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig


_SYMLOG_TICKS = sorted({sign * v for sign in (-1, 1) for v in (0, 50, 100)}
                       | {sign * m * 10.0 ** k for sign in (-1, 1) for m in (1, 3) for k in range(2, 8)})


def overestimation_grid(table: pd.DataFrame, size: float = 2.6):
    """Rows: datasets; columns: variants; in each panel Q(s0, pi(s0)) and the true discounted return from s0
    over training, each with its CI band over seeds (symlog axis: a diverging critic spans decades)."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    from jaxmtf.reporting.analysis import natural_key

    datasets, variants = sorted(table["dataset"].unique()), sorted(table["variant"].unique(), key=natural_key)
    fig, axes = plt.subplots(len(datasets), len(variants), figsize=(size * len(variants), size * len(datasets)),
                             squeeze=False, sharex=True)
    for i, dataset in enumerate(datasets):
        for j, variant in enumerate(variants):
            ax = axes[i][j]
            rows = table[(table["dataset"] == dataset) & (table["variant"] == variant)].sort_values("step")
            for kind, label in (("q", "Q estimate"), ("true", "true return")):
                (line,) = ax.plot(rows["step"], rows[f"mean_{kind}"], label=label)
                ax.fill_between(rows["step"], rows[f"mean_{kind}"] - rows[f"ci95_{kind}"],
                                rows[f"mean_{kind}"] + rows[f"ci95_{kind}"], color=line.get_color(), alpha=0.2)
            ax.set_yscale("symlog", linthresh=100.0)
            # Labelled ticks through the linear part (|y| < 100) and at 1 and 3 x every decade above it, in plain
            # numbers: matplotlib's own symlog ticks label decades only, often one per panel.
            ax.yaxis.set_major_locator(FixedLocator(_SYMLOG_TICKS))
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.yaxis.set_minor_locator(NullLocator())
            ax.grid(alpha=0.3)
            if i == 0:
                ax.set_title(variant, fontsize=8)
            if j == 0:
                ax.set_ylabel(f"{dataset}\nQ(s0, pi(s0)) and true return", fontsize=8)
            if i == len(datasets) - 1:
                ax.set_xlabel("update")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return fig
