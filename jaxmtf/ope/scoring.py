"""Scoring estimators against the truth (DOPE's metrics, Fu et al. 2021) and choosing a policy conservatively.

- relative error |V_hat - V| / |V|, averaged over policies;
- Spearman's rank correlation of the estimates with the true values;
- regret@k: (best true value - best true value among the k policies the
  estimator ranks highest) / |best true value|; 0 when the estimator's top k
  contain the best policy;
- coverage: the share of policies whose confidence interval contains V;
- SCOPE-RL's top-k metrics (Kiyohara et al. 2023, "best@k", "worst@k",
  "mean@k" of its `OffPolicySelection`): the best, worst and mean TRUE value
  of the k policies the estimator ranks highest (the ones it would deploy),
  and regret@k as above for that k. Deviation: SCOPE-RL also reports std@k
  and the safety-violation rate against a threshold; no threshold is
  configured here, so they are left out.

Selection (BatchRL-MTF picks candidates conservatively before an online
test): the policy with the highest point estimate and the one with the
highest lower confidence bound, both reported.
"""
from typing import Dict, Sequence

import numpy as np
import scipy.stats


def spearman(x, y) -> float:
    """scipy's Spearman rank correlation (ties share their mean rank); NaN when either side is constant or
    non-finite (scipy would warn and return NaN for the first, not check the second)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))) or len(x) < 2:
        return float("nan")
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(scipy.stats.spearmanr(x, y).statistic)


def top_k(estimates, k: int) -> np.ndarray:
    """Indices of the k highest estimates (a non-finite estimate ranks last; ties in the given order)."""
    scores = np.where(np.isfinite(estimates), np.asarray(estimates, np.float64), -np.inf)
    return np.argsort(-scores, kind="stable")[:k]


def regret_at_k(estimates, truths, k: int) -> float:
    truths = np.asarray(truths, np.float64)
    best = truths.max()
    return float((best - truths[top_k(estimates, k)].max()) / abs(best))


def top_k_scores(estimates, truths, k: int) -> Dict[str, float]:
    """best@k, worst@k, mean@k: the true values of the k policies the estimator would deploy; regret@k."""
    truths = np.asarray(truths, np.float64)
    k = min(int(k), len(truths))
    chosen = truths[top_k(estimates, k)]
    return {f"best@{k}": float(chosen.max()), f"worst@{k}": float(chosen.min()), f"mean@{k}": float(chosen.mean()),
            f"regret@{k}": regret_at_k(estimates, truths, k)}


def score_estimator(estimates, truths, lows=None, highs=None, k: int = 3) -> Dict[str, float]:
    """DOPE's metrics of one estimator over a set of policies, and SCOPE-RL's top-k ones for k (`top_k`)."""
    estimates, truths = np.asarray(estimates, np.float64), np.asarray(truths, np.float64)
    out = {
        "relative_error": float(np.mean(np.abs(estimates - truths) / np.abs(truths))),
        "spearman": spearman(estimates, truths),
        "regret@1": regret_at_k(estimates, truths, 1),
        "regret@3": regret_at_k(estimates, truths, min(3, len(truths))),
        "num_policies": int(len(truths)),
    }
    out.update(top_k_scores(estimates, truths, k))
    out["top_k"] = min(int(k), len(truths))
    if lows is not None:
        lows, highs = np.asarray(lows, np.float64), np.asarray(highs, np.float64)
        out["coverage"] = float(np.mean((lows <= truths) & (truths <= highs)))
    return out


def select(names: Sequence[str], estimates, lows) -> Dict[str, str]:
    """The policy of the best point estimate and that of the best lower confidence bound."""
    estimates = np.where(np.isfinite(estimates), estimates, -np.inf)
    lows = np.where(np.isfinite(lows), lows, -np.inf)
    return {"by_estimate": names[int(np.argmax(estimates))], "by_lower_bound": names[int(np.argmax(lows))]}
