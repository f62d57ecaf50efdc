"""CQL for discrete actions (Kumar et al. 2020, "CQL(H)" on a Double DQN), following d3rlpy's DiscreteCQL.

The Double DQN of dqn.py with, for each critic i, the conservative penalty

    alpha * mean_B [ log sum_a exp Q_i(s_tm1, a) - Q_i(s_tm1, a_tm1) ]

added to its TD loss: it pushes down the soft maximum of Q over all actions
and up the logged action's value, so actions the data never took are not
overestimated. Discrete actions need no sampling: the logsumexp is exact.

Reference defaults (d3rlpy DiscreteCQLConfig): alpha 1.0, and DoubleDQN's:
batch 32, Adam lr 6.25e-5, gamma 0.99, one critic, hard target copy every
8000 updates, Huber TD loss, 256-256 encoder. The paper's Atari runs use
QR-DQN heads; d3rlpy's default (and this module) the mean Q head.

With an ensemble each critic gets its own penalty, summed (as jaxmtf's
continuous CQL); with d3rlpy's single critic the two readings agree.
"""
import chex
import jax
import jax.numpy as jnp

from jaxmtf import schema
from jaxmtf.agents import dqn

DISCRETE = True
HPARAMS = ("discount", "alpha")
CONFIG_FIELDS = {
    **{k: v for k, v in dqn.CONFIG_FIELDS.items() if k != "double_q"},  # always Double DQN, as d3rlpy's
    "alpha": schema.real(0),
}


def conservative_penalty(q_tm1_all, actions, alpha):
    """alpha * mean_B (logsumexp_a Q_i(s, a) - Q_i(s, a_data)) per critic: q [C, B, n], actions [B] -> [C]."""
    chex.assert_rank(q_tm1_all, 3)
    logsumexp = jax.scipy.special.logsumexp(q_tm1_all, axis=-1)  # [C, B]
    return alpha * jnp.mean(logsumexp - dqn.q_at(q_tm1_all, actions), axis=-1)


def make_agent(config, obs_dim: int, act_dim: int):
    def penalty_fn(params, q_tm1_all, batch, hparams):
        del params
        penalty = conservative_penalty(q_tm1_all, batch.actions, hparams["alpha"])
        return jnp.sum(penalty), {"cql_penalty": jnp.mean(penalty)}

    return dqn.make_q_learning(config, obs_dim, act_dim, HPARAMS, double_q=True, penalty_fn=penalty_fn)
