"""Roll a policy out over many users: vmap over users, lax.scan over requests.

Any simulator of `sim.envs` (the MTF sessions, the notification days): the
env params say which.

No auto-reset: once a user is done, later steps are computed (static shapes)
but masked out with ``valid`` and contribute no reward.
"""
import functools
from typing import Callable, Dict, Optional

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from jaxmtf.sim import registry

Array = jax.Array


@flax.struct.dataclass
class Trajectory:
    """Time-major arrays [T, U, ...]; fields after a user's done are masked by ``valid``."""

    observations: Array  # [T, U, obs]
    actions: Array  # [T, U, A] floats, or [T, U] int32 for a discrete simulator
    rewards: Array  # [T, U], zero where not valid
    next_observations: Array  # [T, U, obs]
    terminals: Array  # [T, U] bool, the user left at this step
    timeouts: Array  # [T, U] bool, the horizon was hit at this step
    valid: Array  # [T, U] bool, this step happened
    task_responses: Array  # [T, U, K] per-task counts over the slate, zero where not valid
    log_probs: Optional[Array] = None  # [T, U] behaviour log density, when log_prob_fn was given
    centres: Optional[Array] = None  # [T, U, A] the behaviour's exploration centre, when centre_fn was given
    infos: Optional[Dict[str, Array]] = None  # [T, U] extra diagnostics from env.step


def _user_keys(key: Array, num_users: int, block: int):
    """Per-user keys, padded to a whole number of blocks: [num_blocks, block, 2].

    User i's randomness depends only on (key, i), not on the blocking: its
    reset key and its step-t key are derived from its own key (fold_in t).
    """
    nb = -(-num_users // block)
    keys = jax.random.split(key, nb * block)
    return keys.reshape(nb, block, *keys.shape[1:])


def _run_block(user_keys, env_params, policy_fn, policy_params, T, log_prob_fn, lean, discount, centre_fn=None):
    """One block of users, vmapped, scanned over T requests."""
    env = registry.of(env_params)

    def reset_one(k):
        return env.reset(jax.random.fold_in(k, 0), env_params)

    def step_one(k, t, obs, state):
        k_pol, k_env = jax.random.split(jax.random.fold_in(k, t + 1))
        action = policy_fn(policy_params, obs, k_pol)
        next_obs, next_state, reward, done, info = env.step(k_env, state, action, env_params)
        lp = log_prob_fn(policy_params, obs, action) if log_prob_fn is not None else None
        centre = centre_fn(policy_params, obs) if centre_fn is not None else None
        return action, next_obs, next_state, reward, done, info, (lp, centre)

    obs, state = jax.vmap(reset_one)(user_keys)
    B = user_keys.shape[0]
    vstep = jax.vmap(step_one, in_axes=(0, None, 0, 0))

    def body(carry, t):
        obs, state, alive, acc = carry
        action, next_obs, next_state, reward, done, info, (lp, centre) = vstep(user_keys, t, obs, state)
        r = jnp.where(alive, reward, 0.0)
        if lean:
            acc = {"undiscounted": acc["undiscounted"] + r,
                   "discounted": acc["discounted"] + discount ** t.astype(jnp.float32) * r,
                   "length": acc["length"] + alive.astype(jnp.int32),
                   "first_reward": jnp.where(t == 0, r, acc["first_reward"])}
            out = None
        else:
            out = dict(
                observations=obs, actions=action, rewards=r, next_observations=next_obs,
                terminals=info["terminal"] & alive, timeouts=info["timeout"] & alive, valid=alive,
                task_responses=jnp.where(alive[:, None], info["task_responses"], 0.0),
                infos={k: v for k, v in info.items() if k not in ("task_responses", "terminal", "timeout")},
            )
            if lp is not None:
                out["log_probs"] = lp
            if centre is not None:
                out["centres"] = centre
        return (next_obs, next_state, alive & ~done, acc), out

    zeros = jnp.zeros((B,), jnp.float32)
    acc0 = {"undiscounted": zeros, "discounted": zeros, "length": jnp.zeros((B,), jnp.int32), "first_reward": zeros}
    (_, _, _, acc), out = jax.lax.scan(body, (obs, state, jnp.ones((B,), bool), acc0), jnp.arange(T))
    return acc if lean else out


def _blocks(key, env_params, policy_fn, policy_params, num_users, num_steps, log_prob_fn, lean, discount, block_size,
            centre_fn=None):
    T = env_params.max_steps if num_steps is None else num_steps
    block = min(block_size, num_users)
    keys = _user_keys(key, num_users, block)
    run = functools.partial(_run_block, env_params=env_params, policy_fn=policy_fn, policy_params=policy_params,
                            T=T, log_prob_fn=log_prob_fn, lean=lean, discount=discount, centre_fn=centre_fn)
    # blocks run one after another: a block's user states stay in cache for all T steps
    return jax.lax.map(lambda k: run(k), keys) if keys.shape[0] > 1 else jax.tree.map(lambda x: x[None], run(keys[0]))


@functools.partial(jax.jit, static_argnames=("policy_fn", "num_users", "num_steps", "log_prob_fn", "block_size",
                                             "centre_fn"))
def rollout(key: Array, env_params, policy_fn: Callable, policy_params,
            num_users: int, num_steps: Optional[int] = None,
            log_prob_fn: Optional[Callable] = None, block_size: int = 2048,
            centre_fn: Optional[Callable] = None) -> Trajectory:
    """Run ``num_users`` fresh users for ``num_steps`` (default max_steps) requests.

    ``policy_fn(params, obs, key) -> action`` acts on one observation (it is
    vmapped here); ``log_prob_fn(params, obs, action)`` likewise, and ``centre_fn(params, obs)``
    (the behaviour's exploration centre, logged as ``centres``). Users are
    simulated in blocks of ``block_size`` (a speed knob only: results do not
    depend on it).
    """
    out = _blocks(key, env_params, policy_fn, policy_params, num_users, num_steps, log_prob_fn, False, 1.0,
                  block_size, centre_fn)
    # [blocks, T, block, ...] -> [T, users, ...]
    def merge(x):
        x = jnp.moveaxis(x, 0, 1)
        return x.reshape(x.shape[0], -1, *x.shape[3:])[:, :num_users]
    return Trajectory(**jax.tree.map(merge, out))


def returns(traj: Trajectory, discount: float = 1.0) -> Dict[str, Array]:
    """Per-user discounted and undiscounted returns, and session lengths."""
    T = traj.rewards.shape[0]
    disc = discount ** jnp.arange(T, dtype=jnp.float32)
    return {
        "discounted": (traj.rewards * disc[:, None]).sum(0),
        "undiscounted": traj.rewards.sum(0),
        "length": traj.valid.sum(0),
    }


def logged_end_flags(left: Array, horizon: Array):
    """(terminals, timeouts) of logged transitions from the simulator's two ways a session ends.

    The session position t / max_steps is part of the observation, so the
    horizon belongs to the MDP: a session that reaches it ends for real, and
    its last transition is terminal like a departure (nothing to bootstrap
    from a state that never occurs as an observation). So simulator datasets
    have no timeouts; the field stays for truncations that are not terminal
    (imported datasets, types.Dataset).
    """
    return left | horizon, jnp.zeros_like(horizon)


def flatten_valid(traj: Trajectory) -> Dict[str, np.ndarray]:
    """Host-side: only the valid steps, in D4RL field names, ordered by episode then time."""
    valid = np.asarray(traj.valid).T  # [U, T]: user-major so episodes are contiguous
    def take(x):
        x = np.asarray(x)
        return np.swapaxes(x, 0, 1)[valid]
    U, T = valid.shape
    terminals, timeouts = logged_end_flags(traj.terminals, traj.timeouts)
    out = {
        "observations": take(traj.observations).astype(np.float32),
        # Discrete simulators log integer counts; they stay integers (the dataset's discrete format).
        "actions": take(traj.actions).astype(np.int32 if np.issubdtype(traj.actions.dtype, np.integer)
                                               else np.float32),
        "rewards": take(traj.rewards).astype(np.float32),
        "next_observations": take(traj.next_observations).astype(np.float32),
        "terminals": take(terminals).astype(np.float32),
        "timeouts": take(timeouts).astype(np.float32),
        "episode_ids": np.broadcast_to(np.arange(U)[:, None], (U, T))[valid].astype(np.int64),
        "task_responses": take(traj.task_responses).astype(np.float32),
    }
    if traj.log_probs is not None:
        out["behaviour_log_prob"] = take(traj.log_probs).astype(np.float32)
    if traj.centres is not None:
        out["behaviour_centre"] = take(traj.centres).astype(np.float32)
    return out


@functools.partial(jax.jit, static_argnames=("policy_fn", "num_users", "num_steps", "block_size"))
def evaluate(key: Array, env_params, policy_fn: Callable, policy_params,
             num_users: int, num_steps: Optional[int] = None, discount: float = 1.0,
             block_size: int = 2048) -> Dict[str, Array]:
    """Per-user returns without storing the trajectory (lean: for search and evaluation).

    Same users and keys as ``rollout``: ``evaluate(key, ...)`` and
    ``returns(rollout(key, ...))`` agree for the same arguments.
    Returns per-user ``undiscounted``, ``discounted``, ``length``, ``first_reward``.
    """
    acc = _blocks(key, env_params, policy_fn, policy_params, num_users, num_steps, None, True, discount, block_size)
    return jax.tree.map(lambda x: x.reshape(-1)[:num_users], acc)
