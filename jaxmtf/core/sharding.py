"""Where the runs live: the [S, H] runs laid over every device (of every process), and back to the host.

Runs are independent, so the compiled chunk needs no communication; each
process of a multi-host run holds a contiguous block of seeds and logs the
runs it holds.
"""
import functools
from typing import Sequence

import jax
import numpy as np
from absl import logging as absl_logging

from jaxmtf.agents import common
from jaxmtf.core.chunk import RunState, init_run_state
from jaxmtf.core.run_config import ConfigError, Driver

# Seeds vmapped together on a CPU when seed_group_size is None (see make_chunk_fn). 1: a loop of the one-seed
# program, which keeps the one-seed total at 8 seeds (TD3+BC 102%, BCQ 106%; groups of 2: 100% and 92%, in
# the same run, benchmarks/README.md) now that size-1 axes are taken out of the program.
CPU_SEED_GROUP = 1



def run_sharding(num_seeds: int, num_hparams: int, devices=None):
    """How to lay the [S, H] runs over the devices: (sharding of [S, H, ...], replicated).

    Runs are independent, so the seed axis (or, if it does not divide, the
    hparam axis) is split over every device, of this process and of the other
    processes in a multi-host run (`jax.devices()` lists all, grouped by
    process, so each process holds a contiguous block of seeds), and the
    compiled chunk needs no communication; the dataset and the shared step
    are replicated. One device (or no divisible axis in a single process):
    everything on the default device, (None, None).
    """
    devices = list(devices if devices is not None else jax.devices())
    n = len(devices)
    mesh = jax.sharding.Mesh(np.asarray(devices), ("runs",))
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    if n > 1 and num_seeds % n == 0:
        spec = jax.sharding.PartitionSpec("runs")
    elif n > 1 and num_hparams % n == 0:
        spec = jax.sharding.PartitionSpec(None, "runs")
    elif jax.process_count() > 1:
        raise ConfigError(
            f"config field 'num_seeds': {num_seeds} seeds x {num_hparams} settings do not divide over the "
            f"{n} devices of {jax.process_count()} processes; make num_seeds (or the grid) a multiple of {n}"
        )
    else:
        if n > 1:
            absl_logging.warning("%d seeds x %d settings do not divide over %d devices: using one", num_seeds,
                                 num_hparams, n)
        return None, None
    return jax.sharding.NamedSharding(mesh, spec), replicated


def layout(driver: Driver, num_seeds: int, num_hparams: int):
    """`run_sharding`'s layout, or (None, None) when config.shard_runs is off (one process only)."""
    if driver.shard_runs:
        return run_sharding(num_seeds, num_hparams)
    if jax.process_count() > 1:
        raise ConfigError("config field 'shard_runs': got False, expected True in a run of several processes")
    return None, None


def state_shardings(state: RunState, runs, replicated) -> RunState:
    """The sharding of every leaf of a run state: `runs` for [S, H, ...] leaves, the step replicated."""
    return RunState(agent=common.agent_axes(state.agent, runs).replace(step=replicated), key=runs,
                    diverged_at=None if state.diverged_at is None else runs)


def init_on_devices(agent: common.Agent, seeds: Sequence[int], num_hparams: int, runs, replicated) -> RunState:
    """`init_run_state` as one compiled program, its output laid out by `run_sharding`'s shardings
    (each process makes only its runs)."""
    init = functools.partial(init_run_state, agent, seeds, num_hparams)
    shardings = None if runs is None else state_shardings(jax.eval_shape(init), runs, replicated)
    return jax.jit(init, out_shardings=shardings)()


def seed_group_size(driver: Driver, runs) -> int:
    """driver.seed_group_size, or if it is None (auto) CPU_SEED_GROUP on a CPU and 0 (all seeds
    vmapped) elsewhere.

    Groups loop over the seed axis, so with the seeds split over several
    devices every seed is vmapped (a loop over a sharded axis would serialise
    the devices).
    """
    value = driver.seed_group_size
    if runs is not None:
        return 0
    if value is None:
        return CPU_SEED_GROUP if jax.default_backend() == "cpu" else 0
    return value


def held_runs(num_seeds: int, num_hparams: int, runs) -> np.ndarray:
    """[S, H] bool: the runs whose arrays this process holds (all of them in a single process)."""
    if runs is None or jax.process_count() == 1:
        return np.ones((num_seeds, num_hparams), bool)
    held = np.zeros((num_seeds, num_hparams), bool)
    for index in runs.addressable_devices_indices_map((num_seeds, num_hparams)).values():
        held[index] = True
    return held


def to_host(tree):
    """Arrays to numpy. Entries held only by other processes (multi-host) are NaN."""

    def one(x):
        if getattr(x, "is_fully_addressable", True):
            return np.asarray(jax.device_get(x))
        out = np.full(x.shape, np.nan, np.float64)
        for shard in x.addressable_shards:
            out[shard.index] = np.asarray(shard.data)
        return out

    return jax.tree.map(one, tree)


def sync(name: str) -> None:
    """A barrier of every process (multi-host); nothing in a single process."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)
