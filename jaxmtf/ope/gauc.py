"""MTF-GAUC: the per-user AUC of a policy's fused ranking score against valid consumption.

IntegratedRL-MTF / UnifiedRL (Liu et al., arXiv 2404.17589, Table 2)
score an MTF policy offline by GAUC: for every user, the AUC of the fused
ranking score of the items against whether the item was validly consumed
(the positives), then the users' AUCs averaged with a weight per user (the
number of the user's impressions, as the paper says; here the reward is
the alternative, `gauc_weight`):

    AUC_u   = P(score of a positive > score of a negative)  (ties count 1/2; the Mann-Whitney U / (n+ n-))
    GAUC    = sum_u w_u AUC_u / sum_u w_u   over the users with at least one positive and one negative

The paper computes it on logged impressions. The logged datasets here
keep only summary statistics of a request's candidates in the observation,
so the candidates are regenerated in the simulator that logged the data:
each target policy is rolled out on the same simulated users (common
random numbers), and at every request ALL N candidates are scored by the
policy's fusion (`env.candidate_outcomes`) and labelled by a draw of valid
consumption (a click followed by a long view, from the TRUE probabilities,
so the MTL's prediction errors show). A user's AUC pools the candidates of
all the user's requests; the user's impressions are the items shown
(slate size x requests). It is a ranking-quality metric, not a value: its
rows' "estimate" is a GAUC in [0, 1], so Spearman and regret (scale-free)
are the scores to read, not relative error.
"""
from typing import Dict

import jax
import jax.numpy as jnp

from jaxmtf.ope import bootstrap
from jaxmtf.sim.mtf import env as sim_env

NAME = "mtf_gauc"
WEIGHTS = ("impressions", "reward", "uniform")


def auc(scores, labels, valid) -> jax.Array:
    """AUC of `scores` [M] against binary `labels` [M] over the entries where `valid` [M]; ties count 1/2.

    Mann-Whitney: (sum of the positives' ranks - n+(n+ + 1)/2) / (n+ n-), ranks averaged over ties.
    NaN when there is no positive or no negative.
    """
    valid = valid > 0
    pos = (labels > 0) & valid
    neg = (labels <= 0) & valid
    s = jnp.where(valid, scores, jnp.inf)  # invalid entries rank above every valid one: they change no rank
    ordered = jnp.sort(s)
    below = jnp.searchsorted(ordered, s, side="left").astype(jnp.float32)
    up_to = jnp.searchsorted(ordered, s, side="right").astype(jnp.float32)
    rank = below + (up_to - below + 1.0) / 2.0  # 1-based, ties averaged
    n_pos, n_neg = jnp.sum(pos), jnp.sum(neg)
    u = jnp.sum(jnp.where(pos, rank, 0.0)) - n_pos * (n_pos + 1.0) / 2.0
    return jnp.where((n_pos > 0) & (n_neg > 0), u / jnp.maximum(n_pos * n_neg, 1.0), jnp.nan)


def gauc(scores, labels, valid, weights, counts=None) -> jax.Array:
    """Weighted mean over users of their AUC: scores, labels, valid [U, M]; weights [U]; counts [U] the users'
    multiplicities (a bootstrap replicate; None = ones). Users without both classes are left out."""
    return weighted_mean(jax.vmap(auc)(scores, labels, valid), weights, counts)


def weighted_mean(per_user, weights, counts=None) -> jax.Array:
    """sum_u c_u w_u AUC_u / sum_u c_u w_u over the users whose AUC is defined (finite)."""
    counts = jnp.ones_like(weights) if counts is None else counts
    w = jnp.where(jnp.isfinite(per_user), counts * weights, 0.0)
    return jnp.sum(w * jnp.nan_to_num(per_user)) / jnp.sum(w)


def session_outcomes(key, env_params: sim_env.EnvParams, policy_fn, policy_params, num_users: int):
    """Roll `policy_fn` out for num_users users: per user the fused scores [U, T*N] of every request's candidates,
    their consumption draws [U, T*N], which requests happened [U, T*N], the impressions [U] and reward [U]."""
    T, N, L = env_params.max_steps, env_params.num_candidates, env_params.slate_size

    def one_user(k):
        obs, state = sim_env.reset(jax.random.fold_in(k, 0), env_params)

        def body(carry, t):
            obs, state, alive = carry
            k_pol, k_env, k_lab = jax.random.split(jax.random.fold_in(k, t + 1), 3)
            action = policy_fn(policy_params, obs, k_pol)
            scores, consumed = sim_env.candidate_outcomes(k_lab, state, action, env_params)
            obs, state, reward, done, _ = sim_env.step(k_env, state, action, env_params)
            out = (scores, consumed, jnp.broadcast_to(alive, (N,)), jnp.where(alive, reward, 0.0), alive)
            return (obs, state, alive & ~done), out

        _, (scores, consumed, valid, rewards, alive) = jax.lax.scan(body, (obs, state, jnp.bool_(True)),
                                                                    jnp.arange(T))
        return (scores.reshape(-1), consumed.reshape(-1), valid.reshape(-1),
                L * jnp.sum(alive).astype(jnp.float32), jnp.sum(rewards))

    scores, consumed, valid, impressions, reward = jax.vmap(one_user)(jax.random.split(key, num_users))
    return {"scores": scores, "consumed": consumed, "valid": valid, "impressions": impressions, "reward": reward}


def user_weights(outcomes, weight: str):
    if weight == "impressions":
        return outcomes["impressions"]
    if weight == "reward":
        return outcomes["reward"]
    return jnp.ones_like(outcomes["reward"])


def group_gauc(group, env_params, key, num_users: int, weight: str, replicates: int, level: float,
               boot_key) -> Dict[str, jax.Array]:
    """(estimate, low, high) [G] of every policy of a targets.PolicyGroup, on the same users (same key) and the
    same bootstrap resamples of the users; the interval is the percentile bootstrap over users."""

    def one(params):
        out = session_outcomes(key, env_params, group.policy.apply, params, num_users)
        w = user_weights(out, weight)
        per_user = jax.vmap(auc)(out["scores"], out["consumed"], out["valid"])  # once: a replicate reweights users

        def estimator(counts):
            return {NAME: weighted_mean(per_user, w, counts)}

        return bootstrap.with_intervals(estimator, boot_key, num_users, replicates, level)[NAME]

    return jax.device_get(jax.jit(lambda ps: jax.lax.map(one, ps))(group.params))
