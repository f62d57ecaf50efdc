"""Fitted Q Evaluation (Le et al. 2019), with d3rlpy's defaults (its `FQEConfig`, as Paine et al. 2020 set it up).

FQE regresses a critic on the dataset with the TARGET policy's action at the
next state, against a target network:

    y_t  = r_t + gamma (1 - terminal_t) mean_k Q'(s_t, a_t^k),   a_t^k ~ pi_e(s_t)
    L    = mean_B (Q(s_tm1, a_tm1) - y_t)^2
    V^pi = mean_i mean_k Q(s_0^i, a_0^{i,k}),                     a_0^{i,k} ~ pi_e(s_0^i)

(discrete actions: the exact sum_a pi_e(a|s) Q(s, a) in place of mean_k)

d3rlpy's defaults: one critic MLP 256-256 (ReLU, torch init), Adam lr 1e-4,
batch 100, gamma 0.99, the target network copied (hard update) every 100
gradient steps, MSE loss for continuous actions. jaxmtf/configs/ope.py keeps
them but for the step size (3e-4) and the copy interval (20), which
converge within 10k updates on 100-step sessions where d3rlpy's had not
after 6k (the config says why).

How it runs: the training driver's compiled chunk (`chunk.make_chunk_fn`)
with FQE as its "agent", so FQE is one program vmapped over seeds AND target
policies: the policies are the driver's hparam axis. The target policy's
actions are precomputed once per policy (`next_actions` [N, K, A]: K draws
at every s_t of the dataset, with `next_weights` [N, K] = 1/K; for discrete
actions every action with its probability, so the expectation is exact) and
travel in the hparams; each batch carries its row numbers to index them.
The target is the policy OPE evaluates: a deterministic one smoothed as the
importance ratios smooth it (ope/targets.py `evaluated_group`), so that DR's
model and weights are of one policy. So any policy, of any network or none (a static vector), is
evaluated by the same program, and nothing of the policy runs in the loop.
K fixed draws per row make each regression target noisy, not biased: the
noise averages out over the rows of the regression.

Discrete actions (a dataset with `num_actions`): the critic is a discrete
head, one value per action (networks.EnsembleDiscreteCritic, d3rlpy's
DiscreteFQE), and the target reads Q'(s_t, .) at the target policy's
actions: y_t = r_t + gamma (1 - terminal_t) sum_a pi(a|s_t) Q'(s_t, a), the
exact sum over the n actions (next_actions [N, n] integers, next_weights
[N, n] their probabilities). d3rlpy's DiscreteFQE also regresses with the Huber loss
(its discrete Q-functions' default); the MSE is kept here for both, so the
two action spaces' estimates differ only by the critic's head.

Deviation: with `num_critics` > 1 the target and the estimate average the
critics (d3rlpy's default ensemble size is 1, where this is moot); FQE
estimates a value, so the pessimistic min of the control agents would
bias it downward.
"""
from functools import partial
from typing import Any, Callable, NamedTuple

import chex
import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import optax

from jaxmtf.agents import common, networks
from jaxmtf.agents.dqn import q_at


@flax.struct.dataclass
class FQEData:
    """The transitions the driver samples batches from, with their row numbers (to index the target's actions)."""

    observations: jax.Array  # [N, obs]
    actions: jax.Array  # [N, A], or [N] int32 for discrete actions
    rewards: jax.Array  # [N]
    next_observations: jax.Array  # [N, obs]
    terminals: jax.Array  # [N]
    rows: jax.Array  # [N] int32: 0..N-1


@flax.struct.dataclass
class FQEState:
    critic: Any
    critic_target: Any
    critic_opt: Any
    step: jax.Array


class FQE(NamedTuple):
    """What the driver needs of an agent (init, update) and what the estimators read (q_values)."""

    init: Callable
    update: Callable
    q_values: Callable  # (state, obs [B, obs], action [B, A]) -> [num_critics, B]
    default_hparams: dict


def fqe_data(dataset) -> FQEData:
    return FQEData(
        observations=dataset.observations, actions=dataset.actions, rewards=dataset.rewards,
        next_observations=dataset.next_observations, terminals=dataset.terminals,
        rows=jnp.arange(dataset.size, dtype=jnp.int32),
    )


def expected_q(q_fn, obs, actions, weights=None):
    """sum_k weights_k Q(s, a^k), averaged over critics: obs [B, obs], actions [B, K, A] (discrete: [B, K]
    integers), weights [B, K] (None: 1/K each, the mean over K samples) -> [B]."""
    chex.assert_equal_shape_prefix([obs, actions], 1)
    k = actions.shape[1]
    q = jnp.mean(q_fn(common.repeat_samples(obs, k), actions), axis=0)  # [B, K]
    if weights is None:
        return jnp.mean(q, axis=1)
    chex.assert_equal_shape([q, weights])
    return jnp.sum(weights * q, axis=1)


def fqe_target(critic_target_fn, batch: FQEData, next_actions, discount, next_weights=None):
    """y_t = r_t + gamma (1 - terminal_t) sum_k w_k Q'(s_t, a_t^k), the target policy's actions at s_t with
    their weights (1/K for K samples; pi(a|s_t) for every discrete action: the exact expectation)."""
    v_t = expected_q(critic_target_fn, batch.next_observations, next_actions, next_weights)
    return common.td_target(batch.rewards, discount, batch.terminals, v_t)


def make_fqe(config, obs_dim: int, act_dim: int, num_actions: int = 0) -> FQE:
    """config: hidden_dims, num_critics, learning_rate, target_update_interval. `num_actions` > 0: discrete."""
    if num_actions:
        critic_net = _DiscreteAsCritic(tuple(config.hidden_dims), num_actions, num_critics=int(config.num_critics))
    else:
        critic_net = networks.EnsembleCritic(tuple(config.hidden_dims), num_critics=int(config.num_critics))
    optimizer = optax.adam(float(config.learning_rate))
    interval = int(config.target_update_interval)

    def init(key):
        action = jnp.zeros((1,), jnp.int32) if num_actions else jnp.zeros((1, act_dim))
        critic = critic_net.init(key, jnp.zeros((1, obs_dim)), action)
        return FQEState(critic=critic, critic_target=critic, critic_opt=optimizer.init(critic),
                        step=jnp.zeros((), jnp.int32))

    def update(state: FQEState, batch: FQEData, key, hparams):
        del key  # FQE is deterministic given the batch
        # --- critic: regress on the target policy's bootstrapped value ---
        next_actions = hparams["next_actions"][batch.rows]  # [B, K, A]
        next_weights = hparams["next_weights"][batch.rows] if "next_weights" in hparams else None  # [B, K]
        y = fqe_target(partial(critic_net.apply, state.critic_target), batch, next_actions, hparams["discount"],
                       next_weights)
        critic, critic_opt, loss, q_tm1 = common.apply_gradients(
            optimizer, lambda c: common.critic_loss(partial(critic_net.apply, c), batch, y), state.critic,
            state.critic_opt,
        )
        # --- target: a hard copy every `interval` steps (d3rlpy counts grad steps from 0) ---
        target = jax.lax.cond(state.step % interval == 0, lambda: critic, lambda: state.critic_target)
        metrics = {"fqe_loss": loss, "q_mean": jnp.mean(q_tm1), "target_mean": jnp.mean(y)}
        return FQEState(critic=critic, critic_target=target, critic_opt=critic_opt, step=state.step + 1), metrics

    def q_values(state: FQEState, obs, action):
        return critic_net.apply(state.critic, obs, action)

    return FQE(init, update, q_values, {})


class _DiscreteAsCritic(networks.EnsembleDiscreteCritic):
    """The discrete critic seen as Q(s, a): its head read at the integer action a, [num_critics, ...]."""

    @nn.compact
    def __call__(self, obs, action):
        q = networks.EnsembleDiscreteCritic(self.hidden_dims, self.num_actions, num_critics=self.num_critics)(obs)
        return q_at(q, action)


def values(fqe: FQE, states, obs, actions, weights=None):
    """V(s) = sum_k w_k Q(s, a^k) of every (seed, policy) run: states [S, P], obs [M, obs], actions [P, M, K, A],
    weights [P, M, K] (None: the mean over K) -> [S, P, M]."""
    if weights is None:
        weights = jnp.full(actions.shape[:3], 1.0 / actions.shape[2], jnp.float32)

    def one(state, policy_actions, policy_weights):
        return expected_q(partial(fqe.q_values, state), obs, policy_actions, policy_weights)

    # One (seed, policy) at a time (lax.map, not vmap): each is already M x K critic rows, and vmapping all
    # S x P of them held S x P x M x K x width activations at once (5 seeds x 13 policies x 50k states x 8
    # draws: 24 GB, killed).
    per_run = states.replace(step=None)  # the runs' shared step (unread by q_values) is no mapped leaf
    over_policies = lambda seed_states: jax.lax.map(lambda x: one(*x), (seed_states, actions, weights))  # noqa: E731
    return jax.lax.map(over_policies, per_run)


def logged_q(fqe: FQE, states, obs, actions):
    """mean-over-critics Q(s, a) at the logged actions: obs [M, obs], actions [M, A] -> [S, P, M]."""
    axes = common.agent_axes(states)

    def one(state):
        return jnp.mean(fqe.q_values(state, obs, actions), axis=0)

    return jax.vmap(jax.vmap(one, in_axes=(axes,)), in_axes=(axes,))(states)
