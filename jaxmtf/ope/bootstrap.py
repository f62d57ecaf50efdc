"""Bootstrap confidence intervals over episodes, as one vmapped program.

A replicate redraws the n episodes with replacement; every estimator of
this package takes the episodes' multiplicities `counts` [E] (ones for the
estimate itself), so a replicate is just another `counts` vector and B
replicates are a `vmap` (in groups, `lax.map(batch_size=...)`, to bound
memory) over a [B, E] matrix of multinomial counts. The interval is the
percentile interval of the replicates (Efron & Tibshirani 1993, ch. 13).

What it covers: the sampling of episodes. A model fitted on the data (FQE's
critic) is held fixed across replicates, so FQE's interval leaves out the
model's own error (refitting per replicate, Hao et al. 2021, costs B
trainings); say so wherever it is reported.
"""
from typing import Callable, Dict

import jax
import jax.numpy as jnp


def bootstrap_counts(key, num_episodes: int, num_replicates: int) -> jax.Array:
    """[B, E] float32: each row the multiplicities of one resample of the E episodes."""
    draws = jax.random.randint(key, (num_replicates, num_episodes), 0, num_episodes)
    return jax.vmap(lambda d: jnp.bincount(d, length=num_episodes))(draws).astype(jnp.float32)


def replicates(estimator: Callable, counts, group_size: int = 64):
    """estimator(counts [E]) -> pytree of scalars, for every row of counts [B, E]: pytree of [B]."""
    return jax.lax.map(estimator, counts, batch_size=min(group_size, counts.shape[0]))


def percentile_interval(samples, level: float = 0.95):
    """(low, high): the (1-level)/2 and (1+level)/2 quantiles of `samples` along axis 0, NaNs ignored."""
    tail = (1.0 - level) / 2.0
    return jnp.nanquantile(samples, tail, axis=0), jnp.nanquantile(samples, 1.0 - tail, axis=0)


def with_intervals(estimator: Callable, key, num_episodes: int, num_replicates: int, level: float = 0.95,
                   group_size: int = 64) -> Dict:
    """{name: (estimate, low, high)} for estimator(counts) -> {name: scalar}: the estimate on the data, its interval.
    `group_size`: replicates vmapped at once (memory grows with it)."""
    point = estimator(jnp.ones((num_episodes,), jnp.float32))
    samples = replicates(estimator, bootstrap_counts(key, num_episodes, num_replicates), group_size)
    return {name: (point[name], *percentile_interval(samples[name], level)) for name in point}
