"""The static-weight baseline: CEM over one fusion vector for all users and steps.

Every candidate of a generation is scored on the SAME fresh users with the
SAME keys (common random numbers), so differences between candidates are not
drowned by user-sampling noise. Each generation draws new users (no
overfitting to one user set); the winner is picked by a re-evaluation of the
final CEM mean and of the best candidates seen, on held-out users.
"""
import functools
from typing import Dict, Tuple

import jax
import jax.numpy as jnp

from jaxmtf.sim.mtf import env as sim_env
from jaxmtf.sim.rollout import evaluate

Array = jax.Array


def _fixed(action, obs, key):
    return action


@functools.partial(jax.jit, static_argnames=("num_users", "num_steps"))
def score_actions(key: Array, env_params: sim_env.EnvParams, actions: Array, num_users: int,
                  num_steps=None, discount: float = 1.0) -> Array:
    """Per-user return [P, U] of each static action [P, A], all on the same users and keys."""
    def one(a):
        # with discount 1 the discounted return is the undiscounted one
        return evaluate(key, env_params, _fixed, a, num_users, num_steps, discount)["discounted"]
    return jax.lax.map(one, actions) if actions.shape[0] > 64 else jax.vmap(one)(actions)


@functools.partial(jax.jit, static_argnames=("population", "num_elite", "num_users", "num_steps"))
def cem_generation(key: Array, env_params: sim_env.EnvParams, mean: Array, std: Array, population: int,
                   num_elite: int, num_users: int, num_steps=None, min_std: float = 0.05):
    """One CEM generation: sample, score with common random numbers, refit to the elite."""
    k_pop, k_eval = jax.random.split(key)
    cand = jnp.clip(mean + std * jax.random.normal(k_pop, (population, mean.shape[0])), -1.0, 1.0)
    cand = cand.at[0].set(mean)  # always score the current mean too
    scores = score_actions(k_eval, env_params, cand, num_users, num_steps).mean(-1)
    _, elite_idx = jax.lax.top_k(scores, num_elite)
    elite = cand[elite_idx]
    new_mean = elite.mean(0)
    new_std = jnp.maximum(elite.std(0), min_std)
    return new_mean, new_std, cand[elite_idx[0]], scores[elite_idx[0]], scores[0]


def search_static_weights(key: Array, env_params: sim_env.EnvParams, num_generations: int = 10,
                          population: int = 64, num_elite: int = 8, num_users: int = 1000,
                          num_steps=None, init_std: float = 0.6, min_std: float = 0.05,
                          num_heldout_users: int = 4000, init_mean=None,
                          extra_finalists=None) -> Tuple[Array, Dict]:
    """CEM over static fusion vectors in [-1, 1]^A. Returns (best_action, history).

    history: per-generation ``mean``, ``std``, ``gen_best`` (action), ``gen_best_score``,
    ``mean_score`` (the mean scored on that generation's users), and the held-out
    ``heldout_scores`` of the ``finalists`` (final mean, each generation's best, then
    ``extra_finalists`` [E, A] if given, e.g. hand-made vectors the search must beat),
    ``best_score`` (held-out mean return of the winner), ``heldout_key``.
    """
    A = sim_env.act_dim(env_params)
    mean = jnp.zeros((A,)) if init_mean is None else jnp.asarray(init_mean, jnp.float32)
    std = jnp.full((A,), init_std)
    hist = {"mean": [], "std": [], "gen_best": [], "gen_best_score": [], "mean_score": []}
    k_gens, k_held = jax.random.split(key)
    for g, k in enumerate(jax.random.split(k_gens, num_generations)):
        mean, std, best, best_score, mean_score = cem_generation(
            k, env_params, mean, std, population, num_elite, num_users, num_steps, min_std)
        for name, v in zip(hist, (mean, std, best, best_score, mean_score)):
            hist[name].append(v)
    finalists = jnp.stack([mean] + hist["gen_best"])
    if extra_finalists is not None:
        finalists = jnp.concatenate([finalists, jnp.asarray(extra_finalists, jnp.float32).reshape(-1, A)])
    held = score_actions(k_held, env_params, finalists, num_heldout_users, num_steps).mean(-1)
    i = int(jnp.argmax(held))
    history = {k: jnp.stack(v) for k, v in hist.items()}
    history.update(heldout_scores=held, best_score=held[i], heldout_key=k_held, finalists=finalists)
    return finalists[i], history
