"""Online off-policy training in the simulator (TD3 / DDPG), all in one compiled loop.

This is how the BCQ paper and BatchRL-MTF make their behavioural agents:
an off-policy agent learns online with Gaussian exploration; its whole
replay buffer is the *final buffer* dataset, its greedy policy is the
*expert* (whose own noiseless transitions are the *imitation* dataset), and
a second learner trained on the same batches at the same time is the
*concurrent* learner.

Per iteration: `num_envs` users each take one request under the behaviour
policy, the transitions go into a circular buffer, users that left (or hit
the horizon) are replaced by fresh ones, and the agent(s) take
`updates_per_iteration` updates on uniform batches from the buffer.

Exploration: sfujim/TD3 adds N(0, 0.1) to the actor's action and clips. We
sample the same Gaussian truncated to [-1, 1] instead (sim.gaussian_policy),
so every logged action has an exact behaviour density; at sigma 0.1 the two
differ only within a few sigma of the box edge. The first `random_steps`
iterations act uniformly at random, as sfujim's start_timesteps.
"""
from typing import Any, Dict, NamedTuple, Optional

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from jaxmtf.agents import common
from jaxmtf.sim import policies
from jaxmtf.sim.mtf import env as sim_env
from jaxmtf.sim.rollout import logged_end_flags
from jaxmtf.types import Transition


@flax.struct.dataclass
class Buffer:
    """A circular replay buffer of the simulator's transitions (static capacity)."""

    observations: jax.Array
    actions: jax.Array
    rewards: jax.Array
    next_observations: jax.Array
    terminals: jax.Array
    timeouts: jax.Array
    episode_ids: jax.Array
    behaviour_log_prob: jax.Array
    task_responses: jax.Array
    size: jax.Array  # transitions stored (<= capacity)
    pointer: jax.Array  # next slot to write


def empty_buffer(capacity: int, obs_dim: int, act_dim: int, num_tasks: int) -> Buffer:
    z = lambda *shape: jnp.zeros((capacity,) + shape, jnp.float32)
    return Buffer(
        observations=z(obs_dim), actions=z(act_dim), rewards=z(), next_observations=z(obs_dim),
        terminals=z(), timeouts=z(), episode_ids=jnp.zeros((capacity,), jnp.int32),
        behaviour_log_prob=z(), task_responses=z(num_tasks),
        size=jnp.zeros((), jnp.int32), pointer=jnp.zeros((), jnp.int32),
    )


def add_batch(buffer: Buffer, rows: Dict[str, jax.Array]) -> Buffer:
    """Writes a batch of transitions at the pointer, wrapping around."""
    n = rows["rewards"].shape[0]
    capacity = buffer.rewards.shape[0]
    idx = (buffer.pointer + jnp.arange(n)) % capacity
    updated = {name: getattr(buffer, name).at[idx].set(value) for name, value in rows.items()}
    return buffer.replace(**updated, size=jnp.minimum(buffer.size + n, capacity),
                          pointer=(buffer.pointer + n) % capacity)


def sample(buffer: Buffer, key: jax.Array, batch_size: int) -> Transition:
    idx = jax.random.randint(key, (batch_size,), 0, jnp.maximum(buffer.size, 1))
    return Transition(
        observations=buffer.observations[idx], actions=buffer.actions[idx], rewards=buffer.rewards[idx],
        next_observations=buffer.next_observations[idx], terminals=buffer.terminals[idx],
    )


class OnlineState(NamedTuple):
    agent: Any
    learner: Any  # the concurrent learner's state (None when there is none)
    buffer: Buffer
    obs: jax.Array  # [num_envs, obs_dim]
    env_state: Any
    episode_ids: jax.Array  # [num_envs]
    next_episode_id: jax.Array
    key: jax.Array
    iteration: jax.Array
    episode_return: jax.Array  # [num_envs] running return of each user's session
    finished_returns: jax.Array  # sum of returns of sessions finished in this chunk
    finished_count: jax.Array


def behaviour_policy(agent: common.Agent) -> policies.Policy:
    """Truncated N(agent.act(s), sigma) around the agent's deterministic action."""
    greedy = policies.Policy(lambda state, obs, key: agent.act(state, obs[None], key)[0], None)
    return policies.gaussian_policy(greedy)


def init(key, agent, env_params, num_envs: int, capacity: int, learner: Optional[common.Agent] = None) -> OnlineState:
    k_agent, k_learner, k_env, key = jax.random.split(key, 4)
    obs, env_state = jax.vmap(sim_env.reset, in_axes=(0, None))(jax.random.split(k_env, num_envs), env_params)
    buffer = empty_buffer(capacity, obs.shape[-1], sim_env.act_dim(env_params), env_params.num_tasks)
    state = OnlineState(
        agent=agent.init(k_agent),
        learner=learner.init(k_learner) if learner is not None else None,
        buffer=buffer, obs=obs, env_state=env_state,
        episode_ids=jnp.arange(num_envs, dtype=jnp.int32), next_episode_id=jnp.asarray(num_envs, jnp.int32),
        key=key, iteration=jnp.zeros((), jnp.int32),
        episode_return=jnp.zeros((num_envs,)), finished_returns=jnp.zeros(()), finished_count=jnp.zeros(()),
    )
    # The chunk donates its input: every leaf needs a buffer of its own (an
    # agent's fresh target params are the very arrays of its params).
    return jax.tree.map(lambda x: jnp.array(x, copy=True), state)


def make_chunk_fn(
    agent: common.Agent,
    env_params: sim_env.EnvParams,
    num_envs: int,
    iterations: int,
    updates_per_iteration: int,
    batch_size: int,
    exploration_sigma: float,
    random_iterations: int,
    learner: Optional[common.Agent] = None,
):
    """jit(chunk)(state) -> state: `iterations` environment steps of all users, with updates."""
    act_dim = sim_env.act_dim(env_params)
    explore = behaviour_policy(agent)
    uniform = policies.uniform_policy(act_dim)
    env_step = jax.vmap(sim_env.step, in_axes=(0, 0, 0, None))
    env_reset = jax.vmap(sim_env.reset, in_axes=(0, None))

    def one_iteration(state: OnlineState, _):
        key, k_act, k_env, k_reset, k_upd = jax.random.split(state.key, 5)
        act_keys = jax.random.split(k_act, num_envs)
        params = {"base": state.agent, "sigma": jnp.float32(exploration_sigma)}
        is_random = state.iteration < random_iterations
        actions = jax.lax.cond(
            is_random,
            lambda: jax.vmap(uniform.apply, in_axes=(None, 0, 0))(None, state.obs, act_keys),
            lambda: jax.vmap(explore.apply, in_axes=(None, 0, 0))(params, state.obs, act_keys),
        )
        log_prob = jax.lax.cond(
            is_random,
            lambda: jax.vmap(uniform.log_prob, in_axes=(None, 0, 0))(None, state.obs, actions),
            lambda: jax.vmap(explore.log_prob, in_axes=(None, 0, 0))(params, state.obs, actions),
        )
        next_obs, env_state, reward, done, info = env_step(jax.random.split(k_env, num_envs), state.env_state, actions,
                                                           env_params)
        terminals, timeouts = logged_end_flags(info["terminal"], info["timeout"])  # the horizon ends for real
        buffer = add_batch(state.buffer, {
            "observations": state.obs, "actions": actions, "rewards": reward, "next_observations": next_obs,
            "terminals": terminals.astype(jnp.float32), "timeouts": timeouts.astype(jnp.float32),
            "episode_ids": state.episode_ids, "behaviour_log_prob": log_prob,
            "task_responses": info["task_responses"].astype(jnp.float32),
        })
        # Users that left or hit the horizon are replaced by fresh users.
        fresh_obs, fresh_state = env_reset(jax.random.split(k_reset, num_envs), env_params)
        where_done = lambda new, old: jnp.where(done.reshape(done.shape + (1,) * (old.ndim - 1)), new, old)
        obs = where_done(fresh_obs, next_obs)
        env_state = jax.tree.map(where_done, fresh_state, env_state)
        new_ids = state.next_episode_id + jnp.cumsum(done) - 1
        episode_return = state.episode_return + reward

        def updates(agents):
            def one_update(carry, k):
                agent_state, learner_state = carry
                k_batch, k_a, k_l = jax.random.split(k, 3)
                batch = sample(buffer, k_batch, batch_size)
                agent_state, _ = agent.update(agent_state, batch, k_a, agent.default_hparams)
                if learner is not None:  # trained on the very same batches (the concurrent setting)
                    learner_state, _ = learner.update(learner_state, batch, k_l, learner.default_hparams)
                return (agent_state, learner_state), None

            return jax.lax.scan(one_update, agents, jax.random.split(k_upd, updates_per_iteration))[0]

        agent_state, learner_state = jax.lax.cond(is_random, lambda a: a, updates, (state.agent, state.learner))
        return OnlineState(
            agent=agent_state, learner=learner_state, buffer=buffer, obs=obs, env_state=env_state,
            episode_ids=jnp.where(done, new_ids, state.episode_ids).astype(jnp.int32),
            next_episode_id=state.next_episode_id + jnp.sum(done).astype(jnp.int32),
            key=key, iteration=state.iteration + 1,
            episode_return=jnp.where(done, 0.0, episode_return),
            finished_returns=state.finished_returns + jnp.sum(jnp.where(done, episode_return, 0.0)),
            finished_count=state.finished_count + jnp.sum(done),
        ), None

    def chunk(state: OnlineState) -> OnlineState:
        state = state._replace(finished_returns=jnp.zeros(()), finished_count=jnp.zeros(()))
        return jax.lax.scan(one_iteration, state, None, length=iterations)[0]

    return jax.jit(chunk, donate_argnums=(0,))


def buffer_arrays(buffer: Buffer) -> Dict[str, Any]:
    """The filled part of the buffer as numpy arrays in dataset field names (oldest first)."""
    size, pointer = int(buffer.size), int(buffer.pointer)
    capacity = buffer.rewards.shape[0]
    order = np.arange(size) if size < capacity else (pointer + np.arange(capacity)) % capacity
    names = ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts",
             "episode_ids", "behaviour_log_prob", "task_responses")
    return {name: np.asarray(getattr(buffer, name))[order] for name in names}
