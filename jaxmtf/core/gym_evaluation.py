"""Evaluation of trained agents in a Gymnasium environment: a `minari:` dataset's, from `recover_environment()`.

The training driver's hook for Minari datasets (`pipeline.eval_fn_for` picks
it, as it picks the simulator's evaluation for jaxmtf's own datasets): every
`eval_every` updates each run's policy plays `eval_episodes` episodes in the
dataset's environment (its evaluation environment when the dataset names
one), host-side, with the actions of all S x H runs computed by one jitted,
vmapped call per step. Every run meets the same episodes (reset seeds
``seed, seed + 1, ...``: common random numbers, as the simulator's fixed
users). Actions leave the agent in [-1, 1] and are mapped back to the
environment's Box, the inverse of `data.from_minari`'s rescale.

Reported per run (eval.jsonl): ``undiscounted_return``, ``discounted_return``
(``eval_discount``), ``episode_length`` (means over the episodes), and with
reference scores ``normalized_score = 100 (return - ref_min_score) /
(ref_max_score - ref_min_score)`` (D4RL's normalised score). The reference
scores are the config's ``ref_min_score`` / ``ref_max_score``, else the
dataset's own (Minari records them in its metadata when it has them).
"""
from typing import Callable, Dict, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxmtf.agents import common


def _batched_act(agent: common.Agent) -> Callable:
    """jit(act)(agent_states [S, H], obs [S, H, obs_dim]) -> actions [S, H, act_dim], deterministic."""
    key = jax.random.PRNGKey(0)

    def act(agent_states, obs):
        axes = common.agent_axes(agent_states)

        def one(state, o):
            return agent.act(state, o[None], key)[0]

        return jax.vmap(jax.vmap(one, in_axes=(axes, 0)), in_axes=(axes, 0))(agent_states, obs)

    return jax.jit(act)


def _num_runs(agent_states) -> Tuple[int, int]:
    leaves = jax.tree.leaves(agent_states.replace(step=None))
    return tuple(int(d) for d in leaves[0].shape[:2])


def evaluate_in_env(make_env: Callable, act: Callable, agent_states, num_episodes: int, discount: float,
                    seed: int, action_low: np.ndarray, action_high: np.ndarray) -> Dict[str, np.ndarray]:
    """Mean return, discounted return and length over `num_episodes` episodes of every run [S, H]."""
    S, H = _num_runs(agent_states)
    envs = [make_env() for _ in range(S * H)]
    try:
        returns = np.zeros((num_episodes, S * H))
        discounted = np.zeros((num_episodes, S * H))
        lengths = np.zeros((num_episodes, S * H))
        for episode in range(num_episodes):
            obs = np.stack([np.asarray(env.reset(seed=seed + episode)[0], np.float32).reshape(-1) for env in envs])
            alive = np.ones(S * H, bool)
            t = 0
            while alive.any():
                actions = np.asarray(act(agent_states, jnp.asarray(obs.reshape(S, H, -1)))).reshape(S * H, -1)
                actions = np.where(np.isfinite(actions), actions, 0.0)  # a diverged run: scored, then marked
                scaled = action_low + (np.clip(actions, -1.0, 1.0) + 1.0) / 2.0 * (action_high - action_low)
                for i in np.flatnonzero(alive):
                    next_obs, reward, terminated, truncated, _ = envs[i].step(scaled[i].astype(np.float32))
                    returns[episode, i] += float(reward)
                    discounted[episode, i] += discount ** t * float(reward)
                    lengths[episode, i] += 1
                    obs[i] = np.asarray(next_obs, np.float32).reshape(-1)
                    alive[i] = not (terminated or truncated)
                t += 1
    finally:
        for env in envs:
            env.close()
    shape = (S, H)
    return {"undiscounted_return": returns.mean(0).reshape(shape),
            "discounted_return": discounted.mean(0).reshape(shape),
            "episode_length": lengths.mean(0).reshape(shape)}


def normalized_score(returns, ref_min: float, ref_max: float):
    """D4RL's normalised score: 100 (return - ref_min) / (ref_max - ref_min)."""
    return 100.0 * (np.asarray(returns, np.float64) - ref_min) / (ref_max - ref_min)


def dataset_reference_scores(source) -> Optional[Tuple[float, float]]:
    """(ref_min_score, ref_max_score) from a Minari dataset's metadata, None unless it records both."""
    metadata = getattr(getattr(source, "storage", None), "metadata", None) or {}
    lo, hi = metadata.get("ref_min_score"), metadata.get("ref_max_score")
    if lo is None or hi is None or not float(hi) > float(lo):
        return None
    return float(lo), float(hi)


def make_minari_eval_fn(dataset_id: str, num_episodes: int, discount: float,
                        reference_scores: Optional[Tuple[float, float]] = None, seed: int = 12345) -> Callable:
    """The training driver's hook for a Minari dataset (an id or a data directory):
    eval_fn(agent, agent_states, step) -> {metric: [S, H]} in the dataset's recovered environment.
    `reference_scores` None: the dataset's own, if it records them."""
    import gymnasium as gym

    from jaxmtf.data.minari_import import _open

    source = _open(dataset_id)
    space = source.action_space
    if not isinstance(space, gym.spaces.Box):
        raise ValueError(f"Minari dataset {dataset_id!r}: its action space {space} is not a Box")
    low = np.asarray(space.low, np.float64).reshape(-1)
    high = np.asarray(space.high, np.float64).reshape(-1)
    make_env = lambda: source.recover_environment(eval_env=True)  # noqa: E731
    if reference_scores is None:
        reference_scores = dataset_reference_scores(source)
    cache: Dict[int, Callable] = {}

    def eval_fn(agent, agent_states, step):
        del step
        act = cache.setdefault(id(agent), _batched_act(agent))
        out = evaluate_in_env(make_env, act, agent_states, num_episodes, discount, seed, low, high)
        if reference_scores is not None:
            out["normalized_score"] = normalized_score(out["undiscounted_return"], *reference_scores)
        return out

    return eval_fn
