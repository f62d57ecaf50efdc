"""How much of a target's action mass falls outside the behaviour's support: where IS has no data.

An importance ratio needs pi_b(a|s) > 0 wherever pi_e(a|s) > 0; where the
behaviour never acts, IS and DR are biased (the missing mass is silently
dropped) and FQE extrapolates. Per policy, `outside_support` is the share of
its action mass (over the logged states) that the behaviour does not cover:

- a dataset with `behaviour_centre` (a box or Gaussian explored around a
  logged centre): the target's actions (of the evaluated policy, as every
  row estimates it) outside the logged box centre(s) +- w, w per dimension the
  largest |a - centre| the data logs. Exact, no estimation.
- otherwise, from the logged densities: the support is where the behaviour's
  density is at least `support_threshold` times the uniform density of the
  action space (1/2^A on [-1, 1]^A, 1/n for n discrete actions). The target's
  mass there is E_b[rho 1{pi_b(a|s) >= threshold}] (an IS estimate over the
  logged rows, rho = pi_e / pi_b), so outside_support = 1 - that, clipped to
  [0, 1]. Deviation: a behaviour density at the target's own actions would be
  exact but needs the behaviour policy, which a dataset does not carry; this
  needs only its logged densities, and is noisy when the ratios are.
"""
import numpy as np


def logged_box_half_width(actions, centres) -> np.ndarray:
    """[A]: per dimension the largest |a - centre| of the logged rows: the half width of the logged box."""
    return np.max(np.abs(np.asarray(actions, np.float64) - np.asarray(centres, np.float64)), axis=0)


def outside_box(actions, weights, centres, half_width, tolerance: float = 1e-6) -> np.ndarray:
    """[P]: the target's action mass outside centre(s) +- half_width, averaged over the logged states.
    actions [P, N, K, A], weights [P, N, K] (sum to 1 over K), centres [N, A], half_width [A]."""
    gap = np.abs(np.asarray(actions, np.float64) - np.asarray(centres, np.float64)[None, :, None, :])
    outside = np.any(gap > np.asarray(half_width)[None, None, None, :] + tolerance, axis=-1)  # [P, N, K]
    return np.mean(np.sum(np.asarray(weights, np.float64) * outside, axis=-1), axis=-1)


def log_threshold(support_threshold: float, act_dim: int, num_actions: int = 0) -> float:
    """log of `support_threshold` times the uniform density (discrete: probability) of the action space."""
    log_uniform = -np.log(num_actions) if num_actions else -act_dim * np.log(2.0)
    return float(np.log(support_threshold) + log_uniform)


def outside_density(target_log_prob, behaviour_log_prob, threshold_log: float) -> np.ndarray:
    """[P]: 1 - mean over logged rows of rho 1{log pi_b >= threshold}, clipped to [0, 1].
    target_log_prob [P, N] (the evaluated policy at the logged actions), behaviour_log_prob [N]."""
    lp_e, lp_b = np.asarray(target_log_prob, np.float64), np.asarray(behaviour_log_prob, np.float64)[None]
    rho = np.exp(np.minimum(lp_e - lp_b, 700.0))  # no overflow to inf (it would read as full coverage)
    covered = np.mean(np.where(lp_b >= threshold_log, rho, 0.0), axis=-1)
    return np.clip(1.0 - covered, 0.0, 1.0)
