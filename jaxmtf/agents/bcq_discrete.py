"""Discrete BCQ (Fujimoto, Conti, Ghavamzadeh & Pineau 2019), following d3rlpy's DiscreteBCQ and sfujim/BCQ.

A Double DQN (dqn.py) whose greedy choice, in the target and when acting,
only considers actions the behaviour model finds likely enough:

    G(a|s)  = softmax(imitator(s))                         (behaviour cloning)
    keep(a) = G(a|s) / max_a' G(a'|s) > tau,               tau = 0.3
    a*(s)   = argmax_{a kept} mean_i Q_i(s, a)
    y       = r_t + gamma (1 - d_t) min_i Q'_i(s_t, a*(s_t))
    L       = sum_i mean huber(Q_i(s, a) - y) + NLL(G(.|s), a) + beta mean(imitator(s)^2)

Reference defaults (d3rlpy DiscreteBCQConfig): action_flexibility tau 0.3,
beta 0.5, and DoubleDQN's batch 32, Adam lr 6.25e-5 (one optimiser over
the critic and the imitator), gamma 0.99, hard target copy every 8000
updates, Huber loss. The filter is d3rlpy's and sfujim's: a log ratio to
the most likely action above log tau.

Deviations, each for its reason:
- The imitator is its own MLP (sfujim's FC_Q for vector states has
  separate i-layers); d3rlpy shares the critic's encoder (share_encoder
  True). Separate networks keep the critic ensemble a plain ensemble.
- beta is d3rlpy's 0.5; sfujim's discrete_BCQ weights the logits penalty
  1e-2. Both are the config's `beta` (sweepable).
- Masked actions get -inf before the argmax; d3rlpy shifts Q to be positive
  and multiplies by the mask, sfujim adds -1e8: the same choice.
"""
import chex
import jax
import jax.numpy as jnp

from jaxmtf import schema
from jaxmtf.agents import dqn, networks

DISCRETE = True
HPARAMS = ("discount", "threshold", "beta")
CONFIG_FIELDS = {
    **{k: v for k, v in dqn.CONFIG_FIELDS.items() if k != "double_q"},
    "imitator_hidden_dims": schema.widths(),
    "threshold": schema.real(0, 1),  # tau: 0 keeps every action (Double DQN), 1 only the most likely
    "beta": schema.real(0),
}


def action_mask(logits, threshold):
    """keep(a) = G(a|s) / max_a' G(a'|s) > tau, from the imitator's logits [..., n]."""
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    return log_probs - jnp.max(log_probs, axis=-1, keepdims=True) > jnp.log(threshold)


def filtered_greedy(q, logits, threshold):
    """argmax over the kept actions of the ensemble-mean Q: q [C, ..., n], logits [..., n] -> [...] int32."""
    chex.assert_equal_shape([q[0], logits])
    masked = jnp.where(action_mask(logits, threshold), jnp.mean(q, axis=0), -jnp.inf)
    return jnp.argmax(masked, axis=-1).astype(jnp.int32)


def imitation_loss(logits, actions, beta):
    """NLL of the logged actions under softmax(logits) + beta * mean(logits^2) (d3rlpy's discrete imitation loss)."""
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    nll = -jnp.mean(jnp.sum(log_probs * jax.nn.one_hot(actions, logits.shape[-1]), axis=-1))
    return nll + beta * jnp.mean(logits**2), nll


def make_agent(config, obs_dim: int, act_dim: int):
    imitator = networks.MLP(tuple(config.imitator_hidden_dims), act_dim)

    def select_fn(params, q, obs, hparams):
        return filtered_greedy(q, imitator.apply(params["imitator"], obs), hparams["threshold"])

    def penalty_fn(params, q_tm1_all, batch, hparams):
        del q_tm1_all
        loss, nll = imitation_loss(imitator.apply(params["imitator"], batch.observations), batch.actions,
                                   hparams["beta"])
        return loss, {"imitator_loss": loss, "imitator_nll": nll}

    return dqn.make_q_learning(config, obs_dim, act_dim, HPARAMS, double_q=True, penalty_fn=penalty_fn,
                               select_fn=select_fn, extra_nets={"imitator": imitator}, act_hparam_names=("threshold",))
