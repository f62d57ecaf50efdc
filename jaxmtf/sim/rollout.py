"""Roll a policy out over many users: vmap over users, lax.scan over requests.

No auto-reset: once a user is done, later steps are computed (static shapes)
but masked out with ``valid`` and contribute no reward.
"""
import functools
from typing import Callable, Dict, Optional

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from jaxmtf.sim import env as sim_env

Array = jax.Array


@flax.struct.dataclass
class Trajectory:
    """Time-major arrays [T, U, ...]; fields after a user's done are masked by ``valid``."""

    observations: Array  # [T, U, obs]
    actions: Array  # [T, U, A]
    rewards: Array  # [T, U], zero where not valid
    next_observations: Array  # [T, U, obs]
    terminals: Array  # [T, U] bool, the user left at this step
    timeouts: Array  # [T, U] bool, the horizon was hit at this step
    valid: Array  # [T, U] bool, this step happened
    task_responses: Array  # [T, U, K] per-task counts over the slate, zero where not valid
    log_probs: Optional[Array] = None  # [T, U] behaviour log density, when log_prob_fn was given
    infos: Optional[Dict[str, Array]] = None  # [T, U] extra diagnostics from env.step


@functools.partial(jax.jit, static_argnames=("policy_fn", "num_users", "num_steps", "log_prob_fn"))
def rollout(key: Array, env_params: sim_env.EnvParams, policy_fn: Callable, policy_params,
            num_users: int, num_steps: Optional[int] = None,
            log_prob_fn: Optional[Callable] = None) -> Trajectory:
    """Run ``num_users`` fresh users for ``num_steps`` (default max_steps) requests.

    ``policy_fn(params, obs, key) -> action`` acts on one observation (it is
    vmapped here); ``log_prob_fn(params, obs, action)`` likewise.
    """
    T = env_params.max_steps if num_steps is None else num_steps
    k_reset, k_steps = jax.random.split(key)
    obs, state = jax.vmap(sim_env.reset, in_axes=(0, None))(jax.random.split(k_reset, num_users), env_params)
    act = jax.vmap(policy_fn, in_axes=(None, 0, 0))
    env_step = jax.vmap(sim_env.step, in_axes=(0, 0, 0, None))

    def body(carry, step_key):
        obs, state, alive = carry
        k_pol, k_env = jax.random.split(step_key)
        action = act(policy_params, obs, jax.random.split(k_pol, num_users))
        next_obs, next_state, reward, done, info = env_step(jax.random.split(k_env, num_users), state,
                                                            action, env_params)
        out = dict(
            observations=obs, actions=action, rewards=jnp.where(alive, reward, 0.0),
            next_observations=next_obs, terminals=info["terminal"] & alive, timeouts=info["timeout"] & alive,
            valid=alive, task_responses=jnp.where(alive[:, None], info["task_responses"], 0.0),
            infos={k: v for k, v in info.items() if k not in ("task_responses", "terminal", "timeout")},
        )
        if log_prob_fn is not None:
            out["log_probs"] = jax.vmap(log_prob_fn, in_axes=(None, 0, 0))(policy_params, obs, action)
        return (next_obs, next_state, alive & ~done), out

    alive0 = jnp.ones((num_users,), bool)
    _, out = jax.lax.scan(body, (obs, state, alive0), jax.random.split(k_steps, T))
    return Trajectory(**out)


def returns(traj: Trajectory, discount: float = 1.0) -> Dict[str, Array]:
    """Per-user discounted and undiscounted returns, and session lengths."""
    T = traj.rewards.shape[0]
    disc = discount ** jnp.arange(T, dtype=jnp.float32)
    return {
        "discounted": (traj.rewards * disc[:, None]).sum(0),
        "undiscounted": traj.rewards.sum(0),
        "length": traj.valid.sum(0),
    }


def flatten_valid(traj: Trajectory) -> Dict[str, np.ndarray]:
    """Host-side: only the valid steps, in D4RL field names, ordered by episode then time."""
    valid = np.asarray(traj.valid).T  # [U, T]: user-major so episodes are contiguous
    def take(x):
        x = np.asarray(x)
        return np.swapaxes(x, 0, 1)[valid]
    U, T = valid.shape
    out = {
        "observations": take(traj.observations).astype(np.float32),
        "actions": take(traj.actions).astype(np.float32),
        "rewards": take(traj.rewards).astype(np.float32),
        "next_observations": take(traj.next_observations).astype(np.float32),
        "terminals": take(traj.terminals).astype(np.float32),
        "timeouts": take(traj.timeouts).astype(np.float32),
        "episode_ids": np.broadcast_to(np.arange(U)[:, None], (U, T))[valid].astype(np.int64),
        "task_responses": take(traj.task_responses).astype(np.float32),
    }
    if traj.log_probs is not None:
        out["behaviour_log_prob"] = take(traj.log_probs).astype(np.float32)
    return out


@functools.partial(jax.jit, static_argnames=("policy_fn", "num_users", "num_steps"))
def evaluate(key: Array, env_params: sim_env.EnvParams, policy_fn: Callable, policy_params,
             num_users: int, num_steps: Optional[int] = None, discount: float = 1.0) -> Dict[str, Array]:
    """Per-user returns without storing the trajectory (lean: for search and evaluation).

    Uses the same key schedule as ``rollout``, so ``evaluate(key, ...)`` and
    ``returns(rollout(key, ...))`` agree for the same arguments.
    Returns per-user ``undiscounted``, ``discounted``, ``length``, ``first_reward``.
    """
    T = env_params.max_steps if num_steps is None else num_steps
    k_reset, k_steps = jax.random.split(key)
    obs, state = jax.vmap(sim_env.reset, in_axes=(0, None))(jax.random.split(k_reset, num_users), env_params)
    act = jax.vmap(policy_fn, in_axes=(None, 0, 0))
    env_step = jax.vmap(sim_env.step, in_axes=(0, 0, 0, None))

    def body(carry, step_key):
        obs, state, alive, acc, disc = carry
        k_pol, k_env = jax.random.split(step_key)
        action = act(policy_params, obs, jax.random.split(k_pol, num_users))
        obs, state, reward, done, _ = env_step(jax.random.split(k_env, num_users), state, action, env_params)
        r = jnp.where(alive, reward, 0.0)
        acc = {"undiscounted": acc["undiscounted"] + r, "discounted": acc["discounted"] + disc * r,
               "length": acc["length"] + alive,
               "first_reward": jnp.where(acc["length"] == 0, r, acc["first_reward"])}
        return (obs, state, alive & ~done, acc, disc * discount), None

    zeros = jnp.zeros((num_users,), jnp.float32)
    acc0 = {"undiscounted": zeros, "discounted": zeros, "length": jnp.zeros((num_users,), jnp.int32),
            "first_reward": zeros}
    carry0 = (obs, state, jnp.ones((num_users,), bool), acc0, jnp.ones((), jnp.float32))
    (_, _, _, acc, _), _ = jax.lax.scan(body, carry0, jax.random.split(k_steps, T))
    return acc
