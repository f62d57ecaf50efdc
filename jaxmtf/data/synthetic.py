"""Small synthetic datasets whose right answer is known, for tests and smoke runs.

`one_step_dataset`: every episode is one step. The state s ~ N(0, I); the
optimal action is a*(s) = tanh(W s) for a fixed random W; the reward is
-||a - a*(s)||^2. Q*(s, a) is that reward, so an agent that learned it acts
a*(s). Behaviour actions are uniform on the box (what an untargeted logger
produces) or Gaussian around a*(s) (an expert logger).
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
    if behaviour_noise is None:
        actions = rng.uniform(-1.0, 1.0, size=(num_transitions, act_dim))
    else:
        actions = np.clip(best + behaviour_noise * rng.normal(size=best.shape), -1.0, 1.0)
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
        }
    )
