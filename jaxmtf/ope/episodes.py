"""A flat D4RL-shaped dataset seen as padded episodes: the layout every episode-wise estimator reads.

Importance sampling, doubly robust, marginalised IS and the bootstrap all
work per episode, so the transitions are laid out [E, T] (episode, step),
padded to the longest episode with `mask` 0. `rows[e, t]` is the index of
step t of episode e in the flat dataset (0 on padding, masked), so any
per-transition array computed once on the flat dataset (a log density, a
Q value) is brought into this layout by `gather`.

An episode is a maximal run of consecutive rows with the same episode id;
an id that appears in two separate runs is refused (`OPEDataError`), since
the order of steps would be ambiguous.
"""
from typing import Optional

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from jaxmtf.types import Dataset


class OPEDataError(ValueError):
    """A dataset cannot be evaluated by an estimator. The message names the field and what is missing."""


@flax.struct.dataclass
class Episodes:
    rows: jax.Array  # [E, T] int32: row of step t of episode e in the flat dataset (0 where padded)
    mask: jax.Array  # [E, T] float32: 1 where the step exists
    rewards: jax.Array  # [E, T] float32, 0 where padded
    behaviour_log_prob: Optional[jax.Array] = None  # [E, T] float32, 0 where padded

    @property
    def num_episodes(self) -> int:
        return int(self.rows.shape[0])

    @property
    def horizon(self) -> int:
        return int(self.rows.shape[1])

    @property
    def initial_rows(self) -> jax.Array:
        """[E]: the first transition of every episode (its s_0)."""
        return self.rows[:, 0]


def episode_starts(episode_ids: np.ndarray) -> np.ndarray:
    """Indices where a new run of equal ids begins; refuses an id that comes back after another."""
    ids = np.asarray(episode_ids)
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    run_ids = ids[starts]
    if len(np.unique(run_ids)) != len(run_ids):
        values, counts = np.unique(run_ids, return_counts=True)
        raise OPEDataError(
            f"dataset field 'episode_ids': episode {values[counts > 1][0]} is split into separate runs of rows; "
            "the steps of an episode must be consecutive rows, in order"
        )
    return starts


def episodes_from_dataset(dataset: Dataset) -> Episodes:
    """The padded [E, T] layout of `dataset` (host-side, once per dataset)."""
    n = dataset.size
    starts = episode_starts(np.asarray(dataset.episode_ids))
    lengths = np.diff(np.r_[starts, n])
    steps = np.arange(lengths.max())
    mask = steps[None, :] < lengths[:, None]
    rows = np.where(mask, starts[:, None] + steps[None, :], 0).astype(np.int32)
    episodes = Episodes(rows=jnp.asarray(rows), mask=jnp.asarray(mask, jnp.float32), rewards=jnp.zeros(rows.shape))
    log_prob = dataset.behaviour_log_prob
    return episodes.replace(
        rewards=gather(episodes, jnp.asarray(dataset.rewards)),
        behaviour_log_prob=None if log_prob is None else gather(episodes, jnp.asarray(log_prob)),
    )


def gather(episodes: Episodes, per_row: jax.Array) -> jax.Array:
    """[N, ...] per transition -> [E, T, ...], zero where padded."""
    out = per_row[episodes.rows]
    mask = episodes.mask.reshape(episodes.mask.shape + (1,) * (out.ndim - 2))
    return jnp.where(mask > 0, out, 0).astype(per_row.dtype)


def require_behaviour_log_prob(episodes: Episodes, estimator: str) -> jax.Array:
    """The behaviour log densities, or a clear refusal naming the estimator and the missing field."""
    if episodes.behaviour_log_prob is None:
        raise OPEDataError(
            f"estimator '{estimator}': dataset field 'behaviour_log_prob' is missing; importance sampling needs "
            "the behaviour policy's log density of every logged action (collect with a stochastic behaviour "
            "policy, e.g. the 'mixed' or 'exploration_box' pipelines); FQE needs no densities"
        )
    lp = episodes.behaviour_log_prob
    if not bool(jnp.all(jnp.isfinite(jnp.where(episodes.mask > 0, lp, 0.0)))):
        raise OPEDataError(
            f"estimator '{estimator}': dataset field 'behaviour_log_prob' is not finite on some logged steps "
            "(a deterministic or point-mass behaviour has no density to divide by)"
        )
    return lp


def discounts(horizon: int, gamma) -> jax.Array:
    """[T]: gamma^t."""
    return jnp.asarray(gamma, jnp.float32) ** jnp.arange(horizon, dtype=jnp.float32)
