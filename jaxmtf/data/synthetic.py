"""Small synthetic datasets whose right answer is known, for tests and smoke runs.

`one_step_dataset`: every episode is one step. The state s ~ N(0, I); the
optimal action is a*(s) = tanh(W s) for a fixed random W; the reward is
-||a - a*(s)||^2. Q*(s, a) is that reward, so an agent that learned it acts
a*(s). Behaviour actions are uniform on the box (what an untargeted logger
produces) or Gaussian around a*(s) (an expert logger).

`discrete_one_step_dataset`: the same with n discrete actions, reward 1 for
a*(s) = argmax (W s) and 0 otherwise, uniform behaviour.
"""
from typing import Optional

import numpy as np

from jaxmtf.data.dataset import from_arrays
from jaxmtf.types import Dataset


def optimal_action(observations: np.ndarray, act_dim: int, seed: int = 0) -> np.ndarray:
    """a*(s) = tanh(W s), with W drawn from `seed` (fixed per task, not per dataset)."""
    obs_dim = observations.shape[-1]
    w = np.random.default_rng(seed + 10_007).normal(size=(obs_dim, act_dim)) / np.sqrt(obs_dim)
    return np.tanh(1.5 * observations @ w).astype(np.float32)


def one_step_dataset(
    num_transitions: int = 10_000,
    obs_dim: int = 4,
    act_dim: int = 2,
    seed: int = 0,
    behaviour_noise: Optional[float] = None,
) -> Dataset:
    """One-step task: reward -||a - a*(s)||^2, actions uniform (or a* + noise)."""
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(num_transitions, obs_dim)).astype(np.float32)
    best = optimal_action(obs, act_dim, seed=0)
    # The behaviour's centre (Dataset.behaviour_centre): 0 for the uniform box, a*(s) for the Gaussian.
    if behaviour_noise is None:
        actions = rng.uniform(-1.0, 1.0, size=(num_transitions, act_dim))
        centre = np.zeros((num_transitions, act_dim), np.float32)
    else:
        actions = np.clip(best + behaviour_noise * rng.normal(size=best.shape), -1.0, 1.0)
        centre = best
    actions = actions.astype(np.float32)
    rewards = -np.sum((actions - best) ** 2, axis=-1)
    ones = np.ones(num_transitions, np.float32)
    return from_arrays(
        {
            "observations": obs,
            "actions": actions,
            "rewards": rewards.astype(np.float32),
            # The next state is never bootstrapped (terminal), so any value works.
            "next_observations": np.zeros_like(obs),
            "terminals": ones,
            "timeouts": np.zeros_like(ones),
            "episode_ids": np.arange(num_transitions, dtype=np.int32),
            "behaviour_centre": centre,
        }
    )


def optimal_discrete_action(observations: np.ndarray, num_actions: int) -> np.ndarray:
    """a*(s) = argmax_a (W s)_a, with W fixed per task (seed 0)."""
    obs_dim = observations.shape[-1]
    w = np.random.default_rng(20_011).normal(size=(obs_dim, num_actions))
    return np.argmax(observations @ w, axis=-1).astype(np.int32)


def discrete_one_step_dataset(num_transitions: int = 10_000, obs_dim: int = 4, num_actions: int = 3,
                              seed: int = 0) -> Dataset:
    """The discrete one-step task: reward 1 for a*(s) (`optimal_discrete_action`), 0 otherwise; actions
    uniform, with their behaviour log probability log(1 / n). Q*(s, a) is the reward, so the optimal
    policy is a*(s)."""
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(num_transitions, obs_dim)).astype(np.float32)
    actions = rng.integers(0, num_actions, size=num_transitions).astype(np.int32)
    rewards = (actions == optimal_discrete_action(obs, num_actions)).astype(np.float32)
    ones = np.ones(num_transitions, np.float32)
    return from_arrays(
        {
            "observations": obs,
            "actions": actions,
            "rewards": rewards,
            "next_observations": np.zeros_like(obs),  # never bootstrapped (terminal)
            "terminals": ones,
            "timeouts": np.zeros_like(ones),
            "episode_ids": np.arange(num_transitions, dtype=np.int32),
            "behaviour_log_prob": np.full(num_transitions, -np.log(num_actions), np.float32),
        },
        num_actions=num_actions,
    )
