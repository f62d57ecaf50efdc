"""Normalised capped importance sampling (NCIS) of the cumulative reward.

IntegratedRL-MTF / UnifiedRL (Liu et al., arXiv 2404.17589, Table 1)
compare MTF policies offline by NCIS of the session's cumulative reward;
the paper takes the estimator from offline A/B testing of recommenders
(Gilotte et al., WSDM 2018: "normalised capped importance sampling"). What
was followed (the paper's pages, as far as they could be read here, give
the name and the use, not a formula; this is Gilotte et al.'s form):

    w_i     = pi_e(tau_i) / pi_b(tau_i) = prod_t pi_e(a_t|s_t) / pi_b(a_t|s_t)      (the episode's ratio)
    wbar_i  = min(w_i, c)                                                          (capped at c = ncis_cap)
    V_NCIS  = sum_i wbar_i G_i / sum_i wbar_i,        G_i = sum_t gamma^t r^i_t      ("ncis")

and, per step (the same cap and normalisation on every prefix weight
w_{0:t}, the per-decision form; Gilotte et al. also apply it per display):

    V_NCIS-PD = sum_t gamma^t sum_i min(w^i_{0:t}, c) r^i_t / sum_i min(w^i_{0:t}, c)   ("ncis_pd")

Capping trades variance for a bias towards the behaviour's value (every
ratio above c counts as c); the normalisation removes the scale (the
estimate is a weighted mean of logged returns, so it always lies within
their range). With c = inf these are weighted IS and weighted PDIS
(`importance.weighted_is`, `weighted_per_decision_is`). The discounted
return G uses the OPE run's `discount` (the truth's), so the rows are
comparable with the other estimators; the paper's "cumulative reward" is
gamma = 1.

The inputs are the same per-step log ratios as the IS rows (run.py's
smoothed target log densities minus the logged behaviour's), `counts` the
episodes' multiplicities (the bootstrap's replicates). The weights are
handled in log space, shifted by their maximum (no overflow or underflow
of the normaliser).
"""
import jax
import jax.numpy as jnp

from jaxmtf.ope import importance
from jaxmtf.ope.episodes import Episodes, discounts

ESTIMATORS = ("ncis", "ncis_pd")


def capped_log_weights(log_w, cap: float):
    """log min(w, cap): the weights capped, in log space (cap > 0)."""
    return jnp.minimum(log_w, jnp.log(jnp.asarray(cap, jnp.float32)))


def _normalised(log_w, counts, axis=0):
    """counts * w / sum(counts * w) along `axis`, shifted by the max (the shift cancels)."""
    counts = counts.reshape(counts.shape + (1,) * (log_w.ndim - 1))
    w = jnp.exp(log_w - jax.lax.stop_gradient(jnp.max(log_w, axis=axis, keepdims=True)))
    cw = counts * w
    return cw / jnp.sum(cw, axis=axis, keepdims=True)


def ncis(episodes: Episodes, log_ratio, gamma, counts, cap: float) -> jax.Array:
    """Trajectory NCIS: log_ratio [E, T] per step (0 on padding), counts [E] -> scalar."""
    g = jnp.sum(episodes.rewards * discounts(episodes.horizon, gamma), axis=1)
    log_w = capped_log_weights(jnp.sum(log_ratio, axis=1), cap)
    return jnp.sum(_normalised(log_w, counts) * g)


def ncis_per_decision(episodes: Episodes, log_ratio, gamma, counts, cap: float) -> jax.Array:
    """Per-decision NCIS: every prefix weight w_{0:t} capped and normalised over the episodes at step t."""
    log_w = capped_log_weights(jnp.cumsum(log_ratio, axis=1), cap)  # [E, T]
    per_step = jnp.sum(_normalised(log_w, counts) * episodes.rewards, axis=0)  # [T]
    return jnp.sum(discounts(episodes.horizon, gamma) * per_step)


def effective_sample_size(log_ratio, cap: float) -> jax.Array:
    """Kish's (sum wbar)^2 / sum wbar^2 of the capped trajectory weights (log_ratio [E, T]): the episodes the
    estimate rests on (capping raises it above the uncapped weights' ESS)."""
    log_w = capped_log_weights(jnp.sum(log_ratio, axis=1), cap)
    return importance.effective_sample_size(log_w[:, None], jnp.ones(log_w.shape))


def estimate_all(episodes: Episodes, log_ratio, gamma, counts, cap: float):
    return {"ncis": ncis(episodes, log_ratio, gamma, counts, cap),
            "ncis_pd": ncis_per_decision(episodes, log_ratio, gamma, counts, cap)}
