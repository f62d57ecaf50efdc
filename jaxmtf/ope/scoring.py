"""Scoring estimators against the truth (DOPE's metrics, Fu et al. 2021) and choosing a policy conservatively.

- relative error |V_hat - V| / |V|, averaged over policies;
- Spearman's rank correlation of the estimates with the true values;
- regret@k: (best true value - best true value among the k policies the
  estimator ranks highest) / |best true value|; 0 when the estimator's top k
  contain the best policy;
- coverage: the share of policies whose confidence interval contains V.

Selection (BatchRL-MTF picks candidates conservatively before an online
test): the policy with the highest point estimate and the one with the
highest lower confidence bound, both reported.
"""
from typing import Dict, Sequence

import numpy as np


def average_ranks(x) -> np.ndarray:
    """Ranks 0..n-1 of x, ties sharing their mean rank."""
    x = np.asarray(x, np.float64)
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(len(x))
    for value in np.unique(x):
        tied = x == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def spearman(x, y) -> float:
    """Pearson correlation of the average ranks; NaN when either side is constant or non-finite."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))) or len(x) < 2:
        return float("nan")
    rx, ry = average_ranks(x), average_ranks(y)
    if rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def regret_at_k(estimates, truths, k: int) -> float:
    estimates, truths = np.asarray(estimates, np.float64), np.asarray(truths, np.float64)
    scores = np.where(np.isfinite(estimates), estimates, -np.inf)  # a non-finite estimate ranks last
    top = np.argsort(-scores, kind="stable")[:k]
    best = truths.max()
    return float((best - truths[top].max()) / abs(best))


def score_estimator(estimates, truths, lows=None, highs=None) -> Dict[str, float]:
    """DOPE's metrics of one estimator over a set of policies."""
    estimates, truths = np.asarray(estimates, np.float64), np.asarray(truths, np.float64)
    out = {
        "relative_error": float(np.mean(np.abs(estimates - truths) / np.abs(truths))),
        "spearman": spearman(estimates, truths),
        "regret@1": regret_at_k(estimates, truths, 1),
        "regret@3": regret_at_k(estimates, truths, min(3, len(truths))),
        "num_policies": int(len(truths)),
    }
    if lows is not None:
        lows, highs = np.asarray(lows, np.float64), np.asarray(highs, np.float64)
        out["coverage"] = float(np.mean((lows <= truths) & (truths <= highs)))
    return out


def select(names: Sequence[str], estimates, lows) -> Dict[str, str]:
    """The policy of the best point estimate and that of the best lower confidence bound."""
    estimates = np.where(np.isfinite(estimates), estimates, -np.inf)
    lows = np.where(np.isfinite(lows), lows, -np.inf)
    return {"by_estimate": names[int(np.argmax(estimates))], "by_lower_bound": names[int(np.argmax(lows))]}
