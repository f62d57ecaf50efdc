"""The importance-sampling family over episodes: trajectory IS, per-decision IS and their weighted forms.

With the per-step log ratio lr_t = log pi_e(a_t | s_t) - log pi_b(a_t | s_t)
and the cumulative weight w_{0:t} = exp(sum_{k <= t} lr_k) (Precup et al.
2000; SCOPE-RL's names in brackets):

    trajectory IS  [TIS]   (1/n) sum_i w^i_{0:T-1} G^i,          G^i = sum_t gamma^t r^i_t
    per-decision   [PDIS]  (1/n) sum_i sum_t gamma^t w^i_{0:t} r^i_t
    weighted IS    [SNTIS] sum_i w^i_{0:T-1} G^i / sum_i w^i_{0:T-1}
    weighted PDIS  [SNPDIS] sum_t gamma^t sum_i w^i_{0:t} r^i_t / sum_i w^i_{0:t}

Episodes of different lengths: after its last step an episode sits in an
absorbing state where every action is the same (ratio 1, reward 0), so its
weight stays at its last value. This is the convention under which the
weighted per-decision form of Thomas & Brunskill (2016) is defined for
variable lengths (every episode is in every step's normaliser).

Every estimator takes `counts` [E], the multiplicity of each episode: ones
for the estimate itself, multinomial counts for a bootstrap replicate (so
the bootstrap is a vmap over counts, with static shapes).

`max_weight` > 0 clips every cumulative weight at that value (truncated IS,
Ionides 2008): bias for variance. Weights are handled in log space and
shifted by their maximum, so the weighted forms never overflow; the
unweighted forms return inf when the weights truly exceed float range
(clip them, or read the weighted forms).
"""
from typing import Dict

import jax
import jax.numpy as jnp

from jaxmtf.ope.episodes import Episodes, discounts


def log_ratios(episodes: Episodes, target_log_prob) -> jax.Array:
    """[E, T] per-step log ratio, 0 on padding (the absorbing state's ratio is 1)."""
    lr = target_log_prob - episodes.behaviour_log_prob
    return jnp.where(episodes.mask > 0, lr, 0.0)


def log_cumulative_weights(log_ratio, max_weight=0.0) -> jax.Array:
    """[E, T] log w_{0:t}, clipped at log(max_weight) when max_weight > 0."""
    cum = jnp.cumsum(log_ratio, axis=1)
    return jnp.where(max_weight > 0, jnp.minimum(cum, jnp.log(jnp.maximum(max_weight, 1e-30))), cum)


def _shift(log_w, axis=None):
    """exp(log_w - m) and m (the max along `axis`, all entries if None): weights without overflow."""
    m = jax.lax.stop_gradient(jnp.max(log_w, axis=axis, keepdims=axis is not None))
    return jnp.exp(log_w - m), m


def trajectory_is(episodes: Episodes, log_w, gamma, counts) -> jax.Array:
    g = jnp.sum(episodes.rewards * discounts(episodes.horizon, gamma), axis=1)
    w, m = _shift(log_w[:, -1])
    return jnp.exp(m) * jnp.sum(counts * w * g) / jnp.sum(counts)


def per_decision_is(episodes: Episodes, log_w, gamma, counts) -> jax.Array:
    w, m = _shift(log_w)
    terms = jnp.sum(w * episodes.rewards * discounts(episodes.horizon, gamma), axis=1)
    return jnp.exp(m) * jnp.sum(counts * terms) / jnp.sum(counts)


def weighted_is(episodes: Episodes, log_w, gamma, counts) -> jax.Array:
    g = jnp.sum(episodes.rewards * discounts(episodes.horizon, gamma), axis=1)
    w, _ = _shift(log_w[:, -1])
    return jnp.sum(counts * w * g) / jnp.sum(counts * w)


def weighted_per_decision_is(episodes: Episodes, log_w, gamma, counts) -> jax.Array:
    w, _ = _shift(log_w, axis=0)  # one shift per step: it cancels in that step's ratio
    cw = counts[:, None] * w
    per_step = jnp.sum(cw * episodes.rewards, axis=0) / jnp.sum(cw, axis=0)
    return jnp.sum(discounts(episodes.horizon, gamma) * per_step)


def effective_sample_size(log_w, counts) -> jax.Array:
    """Kish's (sum w)^2 / sum w^2 of the trajectory weights: n when all are equal, 1 when one dominates."""
    w, _ = _shift(log_w[:, -1])
    return jnp.sum(counts * w) ** 2 / jnp.sum(counts * w**2)


ESTIMATORS = {
    "tis": trajectory_is,
    "pdis": per_decision_is,
    "wis": weighted_is,
    "wpdis": weighted_per_decision_is,
}


def estimate_all(episodes: Episodes, log_w, gamma, counts) -> Dict[str, jax.Array]:
    """Every estimator of the family on the same weights."""
    return {name: fn(episodes, log_w, gamma, counts) for name, fn in ESTIMATORS.items()}
