"""Doubly robust estimators with a Q model (FQE's): DR of Jiang & Li (2016), weighted DR of Thomas & Brunskill (2016).

With w_{0:t} the cumulative importance weight (importance.py), Q the model
at the logged action and V(s) = E_{a ~ pi_e} Q(s, a):

    DR  = (1/n) sum_i sum_t gamma^t [ w^i_{0:t} (r^i_t - Q(s^i_t, a^i_t)) + w^i_{0:t-1} V(s^i_t) ]
    WDR = sum_i sum_t gamma^t [ v^i_{0:t} (r^i_t - Q(s^i_t, a^i_t)) + v^i_{0:t-1} V(s^i_t) ],
          v^i_{0:t} = w^i_{0:t} / sum_j w^j_{0:t},  v^i_{0:-1} = 1/n

Each step uses the model as a control variate: with an exact Q (and exact
V) on a deterministic MDP the bracket telescopes to V(s_0) per episode, so
DR is exact whatever the weights; with zero Q it is per-decision IS.
Padding: after its end an episode is absorbing (ratio 1, reward, Q and V 0).
"""
import jax.numpy as jnp

from jaxmtf.ope.episodes import Episodes, discounts


def _previous(log_w):
    """log w_{0:t-1}: 0 (weight 1) before the first step."""
    return jnp.concatenate([jnp.zeros_like(log_w[:, :1]), log_w[:, :-1]], axis=1)


def _corrections(episodes: Episodes, q_logged, v):
    """(r_t - Q(s_t, a_t), V(s_t)) masked to the logged steps."""
    return (episodes.rewards - q_logged) * episodes.mask, v * episodes.mask


def doubly_robust(episodes: Episodes, log_w, q_logged, v, gamma, counts):
    residual, value = _corrections(episodes, q_logged, v)
    log_prev = _previous(log_w)
    m = jnp.maximum(jnp.max(log_w), jnp.max(log_prev))  # one shift for both weights, undone at the end
    terms = jnp.exp(log_w - m) * residual + jnp.exp(log_prev - m) * value
    per_episode = jnp.sum(discounts(episodes.horizon, gamma) * terms, axis=1)
    return jnp.exp(m) * jnp.sum(counts * per_episode) / jnp.sum(counts)


def _normalised(log_w, counts):
    """v_{0:t} = c_i w_{0:t} / sum_j c_j w_{0:t}, per step (the shift cancels)."""
    w = counts[:, None] * jnp.exp(log_w - jnp.max(log_w, axis=0, keepdims=True))
    return w / jnp.sum(w, axis=0, keepdims=True)


def weighted_doubly_robust(episodes: Episodes, log_w, q_logged, v, gamma, counts):
    residual, value = _corrections(episodes, q_logged, v)
    terms = _normalised(log_w, counts) * residual + _normalised(_previous(log_w), counts) * value
    return jnp.sum(discounts(episodes.horizon, gamma) * jnp.sum(terms, axis=0))


ESTIMATORS = {"dr": doubly_robust, "wdr": weighted_doubly_robust}
