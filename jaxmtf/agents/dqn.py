"""DQN (Mnih et al. 2015) and Double DQN (van Hasselt et al. 2016), offline, following d3rlpy's DQN / DoubleDQN.

Discrete actions: the critic maps s to one Q value per action, and

    DQN         y = r_t + gamma (1 - d_t) min_i Q'_i(s_t, argmax_a mean_i Q'_i(s_t, a))
    Double DQN  y = r_t + gamma (1 - d_t) min_i Q'_i(s_t, argmax_a mean_i Q_i(s_t, a))
    L           = sum_i mean_B huber(Q_i(s_tm1, a_tm1) - y),  huber with delta 1

the target network Q' a hard copy of Q every `target_update_interval`
updates. With d3rlpy's single critic the min and the mean are that critic;
for an ensemble they are d3rlpy's: the greedy action by the ensemble mean
(`compute_expected_q`), its value by the ensemble min (reduction "min"),
and the critics' losses summed.

Reference defaults (d3rlpy DQNConfig / DoubleDQNConfig, the Nature DQN's
loss and target network with Adam as in Dopamine): batch 32, Adam lr
6.25e-5, gamma 0.99, one critic, target copied every 8000 updates (d3rlpy
copies when grad_step % 8000 == 0, grad_step counted from 0, so also after
the first update), Huber loss, VectorEncoder 256-256 ReLU then a Linear head
(torch init). The configs keep them; a short run scales the interval to
its length (benchmarks/discrete.py says how).

`make_q_learning` is the family: CQL-DQN (cql_dqn.py) adds the conservative
penalty to the loss, discrete BCQ (bcq_discrete.py) an imitator network, its
loss, and an action filter in the greedy choice.
"""
from typing import Any, Callable, Dict, Optional

import chex
import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import optax

from jaxmtf import schema
from jaxmtf.agents import common, networks

DISCRETE = True  # trains on datasets of integer actions; act_dim is the number of actions
HPARAMS = ("discount",)
CONFIG_FIELDS = {
    "critic_hidden_dims": schema.widths(),
    "num_critics": schema.integer(1),
    "learning_rate": schema.LEARNING_RATE,
    "target_update_interval": schema.integer(1),
    "double_q": schema.boolean(),  # False: DQN, True: Double DQN
    "discount": schema.DISCOUNT,
}


@flax.struct.dataclass
class DQNState:
    params: Any  # {"q": critic ensemble, plus any extra networks of the family (BCQ's "imitator")}
    critic_target: Any  # Q', the target copy of params["q"] (params only)
    opt: Any  # one Adam over `params`
    act_hparams: Dict[str, jax.Array]  # the swept scalars act() needs (BCQ's threshold); written by update
    step: jax.Array  # number of updates taken


# ----------------------------------------------------------------- losses


def q_at(q, actions):
    """Q of the given actions: q [num_critics, ..., num_actions], actions [...] int -> [num_critics, ...]."""
    chex.assert_equal_shape_prefix([q[0], actions], actions.ndim)
    return jnp.sum(q * jax.nn.one_hot(actions, q.shape[-1], dtype=q.dtype), axis=-1)


def greedy_actions(q):
    """argmax_a of the ensemble mean: q [num_critics, ..., num_actions] -> [...] int32."""
    return jnp.argmax(jnp.mean(q, axis=0), axis=-1).astype(jnp.int32)


def dqn_target(q_t_target, a_t, r_t, discount, terminal_t):
    """y = r_t + gamma (1 - d_t) min_i Q'_i(s_t, a_t); a_t chosen by the caller (DQN: greedy in Q', Double: in Q)."""
    chex.assert_rank(q_t_target, 3)
    return common.td_target(r_t, discount, terminal_t, common.clipped_double_q(q_at(q_t_target, a_t)))


def ensemble_huber(q_tm1, y):
    """sum_i mean_B huber(Q_i(s, a) - y), delta 1 (d3rlpy's compute_huber_loss, the Nature DQN's clipped error)."""
    chex.assert_rank(q_tm1, 2)
    chex.assert_equal_shape([q_tm1[0], y])
    return jnp.sum(jnp.mean(optax.huber_loss(q_tm1, y[None], delta=1.0), axis=-1))


def no_penalty(params, q_tm1_all, batch, hparams):
    """DQN adds nothing to the TD loss."""
    del params, q_tm1_all, batch, hparams
    return 0.0, {}


def greedy_select(params, q, obs, hparams):
    """DQN's policy: argmax of the ensemble mean (the extra networks, obs and hparams unused)."""
    del params, obs, hparams
    return greedy_actions(q)


# ----------------------------------------------------------------- agent


def make_q_learning(config, obs_dim: int, num_actions: int, hparam_names, *, double_q: bool,
                    penalty_fn: Callable = no_penalty, select_fn: Callable = greedy_select,
                    extra_nets: Optional[Dict[str, nn.Module]] = None, act_hparam_names=()) -> common.Agent:
    """The DQN family: `penalty_fn(params, q_tm1 [C, B, n], batch, hparams) -> (loss, metrics)` is added to the
    TD loss; `select_fn(params, q [C, ..., n], obs, hparams) -> actions` is the greedy policy (act, and
    with `double_q` the target's action choice); `extra_nets` are trained with the critic by the same Adam."""
    q_net = networks.EnsembleDiscreteCritic(tuple(config.critic_hidden_dims), num_actions,
                                            num_critics=config.num_critics)
    extra_nets = dict(extra_nets or {})
    optimizer = optax.adam(config.learning_rate)
    interval = int(config.target_update_interval)
    default_hparams = common.hparams_from_config(config, hparam_names)

    def init(key):
        keys = jax.random.split(key, 1 + len(extra_nets))
        obs = jnp.zeros((1, obs_dim))
        params = {"q": q_net.init(keys[0], obs)}
        params.update({name: net.init(k, obs) for (name, net), k in zip(sorted(extra_nets.items()), keys[1:])})
        return DQNState(params=params, critic_target=params["q"], opt=optimizer.init(params),
                        act_hparams={n: default_hparams[n] for n in act_hparam_names}, step=jnp.zeros((), jnp.int32))

    def update(state: DQNState, batch, key, hparams):
        del key  # offline Q-learning on a given batch draws no noise
        # --- target: Double DQN picks a_t with the online critic (and the family's filter), DQN with Q' ---
        q_t_target = q_net.apply(state.critic_target, batch.next_observations)
        if double_q:
            a_t = select_fn(state.params, q_net.apply(state.params["q"], batch.next_observations),
                            batch.next_observations, hparams)
        else:
            a_t = greedy_actions(q_t_target)
        y = dqn_target(q_t_target, a_t, batch.rewards, hparams["discount"], batch.terminals)

        # --- critic (and the family's extra networks): Huber TD loss + penalty ---
        def loss_fn(params):
            q_tm1_all = q_net.apply(params["q"], batch.observations)  # [C, B, n]
            q_tm1 = q_at(q_tm1_all, batch.actions)
            td_loss = ensemble_huber(q_tm1, y)
            penalty, aux = penalty_fn(params, q_tm1_all, batch, hparams)
            return td_loss + penalty, (q_tm1, td_loss, aux)

        params, opt, loss, (q_tm1, td_loss, aux) = common.apply_gradients(optimizer, loss_fn, state.params, state.opt)

        # --- target network: a hard copy every `interval` updates, d3rlpy's grad_step % interval == 0 ---
        critic_target = jax.lax.cond(state.step % interval == 0, lambda: params["q"], lambda: state.critic_target)
        state = DQNState(params=params, critic_target=critic_target, opt=opt,
                         act_hparams={n: hparams[n] for n in act_hparam_names}, step=state.step + 1)
        metrics = {"loss": loss, "td_loss": td_loss, "q_mean": jnp.mean(q_tm1), "target_mean": jnp.mean(y), **aux}
        return state, metrics

    def act(state: DQNState, obs, key):
        del key  # greedy
        return select_fn(state.params, q_net.apply(state.params["q"], obs), obs, state.act_hparams)

    def q_values(state: DQNState, obs, action):
        return q_at(q_net.apply(state.params["q"], obs), action)

    return common.Agent(init, update, act, q_values, default_hparams)


def make_agent(config, obs_dim: int, act_dim: int) -> common.Agent:
    """DQN, or Double DQN with config.double_q; act_dim is the number of actions."""
    return make_q_learning(config, obs_dim, act_dim, HPARAMS, double_q=bool(config.double_q))
