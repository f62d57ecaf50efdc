"""The compiled training program: one chunk of updates of every (seed, hparam setting) run.

One program per (agent, dataset shape): the dataset lives on device, and
each call of the chunk function samples batches, runs `chunk_size` updates
with `lax.scan` and averages the metrics, for every seed and every hparam
setting at once (`vmap` over hparams inside `vmap` over seeds; on a CPU,
groups of seeds looped inside the program, see `make_chunk_fn`). The run
state is donated, so the chunk updates it in place.

Axes: every array of a `RunState` and every metric has shape [S, H, ...]
(seeds first, then hparam settings), except the agent's `step`, which all
runs share. Run (s, h) uses the key of seed s whatever h is, so one program
of S seeds x H settings computes the same S*H runs as separate programs and
the H settings of a seed start from the same initial networks. The same
numbers, not the same bits: XLA fuses a program of other shapes differently,
so its float rounding differs. Measured on a CPU (TD3, 32x32 networks,
batch 16), a 2-setting program and the 1-setting run differ in their
parameters by at most relative 2e-7 (absolute 5e-7) after 20 updates and
relative 7e-6 after 100; the tests compare such runs after 20 updates at
rtol 1e-5, atol 1e-6. Over long runs the differences grow, as they do
between any two float evaluation orders of a chaotic optimisation.
The same program (same S, H and seed groups) is bit-exact, which is
what a resume relies on.

A run whose parameters or optimiser states become non-finite is flagged
inside the chunk (`RunState.diverged_at`), never stopping the others.
Axes of size 1 (one seed, one setting) are taken out of the program rather
than vmapped (`_vmap_unless_one`).
"""
import dataclasses
from typing import Any, Callable, Optional, Sequence

import flax.struct
import jax
import jax.numpy as jnp

from jaxmtf.agents import common
from jaxmtf.types import Transition

NOT_DIVERGED = -1  # RunState.diverged_at of a run whose state is still finite


@flax.struct.dataclass
class RunState:
    agent: Any  # the agent's state, [S, H, ...] per leaf except agent.step
    key: jax.Array  # [S, H, 2] raw PRNG keys of the batch sampling and update noise
    # [S, H] int32: the update after which the run's state first held a NaN or Inf, NOT_DIVERGED if never.
    diverged_at: Optional[jax.Array] = None



def init_run_state(agent: common.Agent, seeds: Sequence[int], num_hparams: int) -> RunState:
    """Initial state of every (seed, hparam setting): [S, H, ...]."""
    seed_keys = jax.vmap(jax.random.PRNGKey)(jnp.asarray(seeds, jnp.uint32))
    init_keys, train_keys = jnp.swapaxes(jax.vmap(jax.random.split)(seed_keys), 0, 1)
    axes = common.agent_axes(jax.eval_shape(agent.init, init_keys[0]))
    agent_states = jax.vmap(agent.init, out_axes=axes)(init_keys)

    def over_hparams(x):  # [S, ...] -> [S, H, ...]: every setting of a seed starts alike
        return jnp.broadcast_to(x[:, None], (x.shape[0], num_hparams) + x.shape[1:])

    agent_states = jax.tree.map(over_hparams, agent_states.replace(step=None)).replace(step=agent_states.step)
    diverged_at = jnp.full((len(seeds), num_hparams), NOT_DIVERGED, jnp.int32)
    return RunState(agent=agent_states, key=over_hparams(train_keys), diverged_at=diverged_at)


def floats_finite(tree) -> jax.Array:
    """True when every float leaf of `tree` is finite."""
    leaves = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)]
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))


def all_finite(agent_state) -> jax.Array:
    """True when every float leaf of one run's state (params, targets, optimiser moments) is finite."""
    return floats_finite(agent_state.replace(step=None))


def trained_parameters(agent_state) -> dict:
    """The fields of an agent state that its optimisers write: not the optimiser moments (`*opt`), not
    the targets (`*_target`, averages of the parameters), not `step`."""
    return {field.name: getattr(agent_state, field.name) for field in dataclasses.fields(agent_state)
            if not field.name.endswith(("opt", "_target")) and field.name != "step"}


def parameters_finite(agent_state) -> jax.Array:
    """The check after every update: the trained parameters only, a quarter of TD3's state.

    A NaN or Inf reaches them in the update that makes the gradients (hence the moments) non-finite,
    and the targets, averages of them, are finite while they are. In the recorded ladder run on a CPU
    (benchmarks/README.md) checking every leaf after every update cost 5% of TD3+BC's updates/s, this
    2% (both within the spread between runs, where the old check cost up to 10%)."""
    return floats_finite(trained_parameters(agent_state))


def mark_divergence(diverged_at, finite, step):
    """diverged_at with `step` written for a run not diverged before whose state is not `finite`."""
    return jnp.where((diverged_at == NOT_DIVERGED) & ~finite, step.astype(jnp.int32), diverged_at)


def _one_run_fn(agent: common.Agent, batch_size: int, chunk_size: int, per_seed_data: bool = False) -> Callable:
    """one_run(agent_state, key, diverged_at, data, hparams) -> the same, and the chunk's metrics: one
    run's scan of `chunk_size` updates, its trained parameters checked after every update and its whole
    state at the end (an optimiser moment that overflowed alone is dated at the chunk's last update)."""

    def one_run(agent_state, key, diverged_at, data, hparams):
        if per_seed_data:  # this seed's rows, padded: sample below its own size
            data, num_transitions = data.transitions, data.size
        else:
            num_transitions = data.rewards.shape[0]

        def one_update(carry, _):
            state, key, diverged_at = carry
            key, k_batch, k_update = jax.random.split(key, 3)
            # Uniform with replacement, as the references' replay buffers sample.
            idx = jax.random.randint(k_batch, (batch_size,), 0, num_transitions)
            batch = jax.tree.map(lambda x: x[idx], data)
            state, metrics = agent.update(state, batch, k_update, hparams)
            diverged_at = mark_divergence(diverged_at, parameters_finite(state), state.step)
            return (state, key, diverged_at), metrics

        carry = (agent_state, key, diverged_at)
        (agent_state, key, diverged_at), metrics = jax.lax.scan(one_update, carry, None, length=chunk_size)
        diverged_at = mark_divergence(diverged_at, all_finite(agent_state), agent_state.step)
        # Metrics defined on some updates only (delayed actor steps) are NaN on the others.
        metrics = jax.tree.map(lambda m: jnp.nanmean(m, axis=0), metrics)
        return agent_state, key, diverged_at, {**metrics, "diverged_at_step": diverged_at}

    return one_run


def _vmap_unless_one(fn: Callable, size: int, in_axes, out_axes) -> Callable:
    """jax.vmap(fn, in_axes, out_axes), or where the mapped axis has size 1, fn on the arrays with that
    axis taken out and put back: a vmap of size 1 compiles to batched matmuls with a unit batch
    dimension, which cost 4% of TD3+BC's updates/s in the recorded ladder run on a CPU
    (benchmarks/README.md, the rungs "vmapped ... of size 1" and "driver chunk").
    Axes are 0 or None (not mapped)."""
    if size != 1:
        return jax.vmap(fn, in_axes=in_axes, out_axes=out_axes)

    def over(axes, tree, op):
        return jax.tree.map(lambda ax, sub: sub if ax is None else jax.tree.map(op, sub), axes, tree,
                            is_leaf=lambda x: x is None)

    def call(*args):
        outputs = fn(*over(in_axes, args, lambda x: x[0]))
        return over(out_axes, outputs, lambda x: x[None])

    return call


@flax.struct.dataclass
class PerSeedData:
    """Every seed its own dataset (progressive training: each seed's chain logs its own data).

    `transitions` leaves are [S, N, ...], seed s's rows first and padded to the
    common N; `size` [S] counts each seed's rows (batches sample below it).
    """

    transitions: Transition
    size: jax.Array


def make_chunk_fn(agent: common.Agent, batch_size: int, chunk_size: int, seed_group_size: int = 0,
                  per_seed_data: bool = False) -> Callable:
    """jit(chunk)(run_state, data, hparams) -> (run_state, metrics [S, H]).

    `data` is one Transition shared by every seed, or with `per_seed_data` a
    `PerSeedData` (seed s samples only from its own rows).

    `seed_group_size` = 0 vmaps all seeds at once (what accelerators want).
    g > 0 vmaps g seeds at a time and loops over the groups inside the same
    compiled chunk (`lax.map`): on a CPU, where one seed already fills the
    cores, a small group keeps each seed's activations in cache and so keeps
    the total throughput of one seed (benchmarks/README.md measures it).
    The result is the same either way, up to float rounding.

    Divergence: the trained parameters are checked after every update, the
    whole state at the chunk's end (`parameters_finite`, in the program);
    the first update after which a run is not finite is carried in
    `RunState.diverged_at` and reported as the metric `diverged_at_step`.
    A diverged run keeps computing (its numbers are NaN); the others, being
    separate lanes of the vmap, are untouched.
    """

    one_run = _one_run_fn(agent, batch_size, chunk_size, per_seed_data)

    def one_seed(agent_state, key, diverged_at, data, hparams):  # [H, ...] -> [H, ...]
        axes = common.agent_axes(agent_state)
        over_h = _vmap_unless_one(one_run, key.shape[0], (axes, 0, 0, None, 0), (axes, 0, 0, 0))
        return over_h(agent_state, key, diverged_at, data, hparams)

    data_axis = 0 if per_seed_data else None

    def chunk(run_state: RunState, data, hparams):
        num_seeds = run_state.key.shape[0]
        diverged_at = run_state.diverged_at
        if diverged_at is None:  # a RunState built by hand
            diverged_at = jnp.full(run_state.key.shape[:2], NOT_DIVERGED, jnp.int32)
        if not 0 < seed_group_size < num_seeds:
            axes = common.agent_axes(run_state.agent)
            over_seeds = _vmap_unless_one(one_seed, num_seeds, (axes, 0, 0, data_axis, None), (axes, 0, 0, 0))
            agent_state, key, diverged_at, metrics = over_seeds(run_state.agent, run_state.key, diverged_at, data,
                                                                hparams)
            return RunState(agent=agent_state, key=key, diverged_at=diverged_at), metrics
        step = run_state.agent.step  # shared by every seed: closed over, not mapped

        def seed(per_seed):
            agent_state, key, diverged_at, seed_data = per_seed
            seed_data = seed_data if per_seed_data else data
            agent_state, key, diverged_at, metrics = one_seed(agent_state.replace(step=step), key, diverged_at,
                                                              seed_data, hparams)
            return (agent_state.replace(step=None), key, diverged_at), metrics, agent_state.step

        mapped_data = data if per_seed_data else jnp.zeros(num_seeds)  # a placeholder when the data is shared
        (agent_state, key, diverged_at), metrics, steps = jax.lax.map(
            seed, (run_state.agent.replace(step=None), run_state.key, diverged_at, mapped_data),
            # Groups of 1: a plain loop of the one-seed program (lax.map would vmap each over a unit axis).
            batch_size=seed_group_size if seed_group_size > 1 else None,
        )
        return RunState(agent=agent_state.replace(step=steps[0]), key=key, diverged_at=diverged_at), metrics

    return jax.jit(chunk, donate_argnums=(0,))
