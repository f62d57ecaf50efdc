"""The compiled, seed- and hparam-vmapped training driver.

One program per (agent, dataset shape): the dataset lives on device, and
each call of the chunk function samples batches, runs `chunk_size` updates
with `lax.scan` and averages the metrics, for every seed and every hparam
setting at once (`vmap` over hparams inside `vmap` over seeds; on a CPU,
groups of seeds looped inside the program, see `make_chunk_fn`). The run
state is donated, so the chunk updates it in place. Between chunks the host
loop only logs, evaluates and checkpoints, and it logs a chunk while the
next one runs (`run_loop`). The runs are split over all devices, of every
process in a multi-host run (`run_sharding`).

`train` is `set_up` (validate, normalise, build the agent and its chunk,
lay out and restore the state), `run_loop` and `summarise_run`.

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

Failures (README "Resuming and failures"): `set_up` runs every check that
can refuse a start before it writes anything, and holds the workdir lock
(`workdir_lock`); the loop stops cleanly on SIGTERM / SIGINT after the
current chunk, with a checkpoint (`Preempted`); a run whose parameters or
optimiser states become non-finite is flagged inside the compiled chunk
(`RunState.diverged_at`), reported and left to itself, never stopping the
others.
"""
import functools
import hashlib
import os
import signal
import threading
import time
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from absl import logging as absl_logging

from jaxmtf import agents
from jaxmtf.agents import common, make_agent
from jaxmtf.core.run_config import (
    ConfigError,
    check_action_space,
    check_against_dataset,
    hparam_grid,
    seed_group_field,
    validate_config,
)
from jaxmtf.data import dataset as dataset_lib
from jaxmtf.runs import checkpoint as checkpoint_lib
from jaxmtf.runs import provenance, rundir, workdir_lock
from jaxmtf.types import Dataset, Transition

# Seeds vmapped together on a CPU when seed_group_size is None (see make_chunk_fn; measured in benchmarks/).
CPU_SEED_GROUP = 2


NOT_DIVERGED = -1  # RunState.diverged_at of a run whose state is still finite


@flax.struct.dataclass
class RunState:
    agent: Any  # the agent's state, [S, H, ...] per leaf except agent.step
    key: jax.Array  # [S, H, 2] raw PRNG keys of the batch sampling and update noise
    # [S, H] int32: the update after which the run's state first held a NaN or Inf, NOT_DIVERGED if never.
    diverged_at: Optional[jax.Array] = None


# What a start can be refused with: each message names the field (or file), the value and what was expected.
REFUSALS = (ConfigError, dataset_lib.DatasetError, checkpoint_lib.CheckpointError, rundir.RunDirError,
            workdir_lock.WorkdirLocked)


class Preempted(Exception):
    """train() stopped on SIGTERM or SIGINT after checkpointing; re-running the same call resumes."""

    def __init__(self, signum: int, step: int, workdir: str):
        self.signum, self.step, self.workdir = signum, step, workdir
        super().__init__(f"stopped by {signal.Signals(signum).name} at update {step}; checkpoint written in "
                         f"{workdir}; re-run the same command to resume")


# ----------------------------------------------------------------- compiled program


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


def all_finite(agent_state) -> jax.Array:
    """True when every float leaf of one run's state (params, targets, optimiser moments) is finite."""
    leaves = [x for x in jax.tree.leaves(agent_state.replace(step=None)) if jnp.issubdtype(x.dtype, jnp.inexact)]
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))


def _one_run_fn(agent: common.Agent, batch_size: int, chunk_size: int, per_seed_data: bool = False) -> Callable:
    """one_run(agent_state, key, diverged_at, data, hparams) -> the same, and the chunk's metrics: one
    run's scan of `chunk_size` updates, with its divergence check after every update."""

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
            newly = (diverged_at == NOT_DIVERGED) & ~all_finite(state)
            diverged_at = jnp.where(newly, state.step.astype(jnp.int32), diverged_at)
            return (state, key, diverged_at), metrics

        carry = (agent_state, key, diverged_at)
        (agent_state, key, diverged_at), metrics = jax.lax.scan(one_update, carry, None, length=chunk_size)
        # Metrics defined on some updates only (delayed actor steps) are NaN on the others.
        metrics = jax.tree.map(lambda m: jnp.nanmean(m, axis=0), metrics)
        return agent_state, key, diverged_at, {**metrics, "diverged_at_step": diverged_at}

    return one_run


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

    Divergence: after every update the run's state is checked for NaN and
    Inf inside the scan (one reduction over the parameters, no host round
    trip); the first update after which it is not finite is carried in
    `RunState.diverged_at` and reported as the metric `diverged_at_step`.
    A diverged run keeps computing (its numbers are NaN); the others, being
    separate lanes of the vmap, are untouched.
    """

    one_run = _one_run_fn(agent, batch_size, chunk_size, per_seed_data)

    def one_seed(agent_state, key, diverged_at, data, hparams):  # [H, ...] -> [H, ...]
        axes = common.agent_axes(agent_state)
        over_h = jax.vmap(one_run, in_axes=(axes, 0, 0, None, 0), out_axes=(axes, 0, 0, 0))
        return over_h(agent_state, key, diverged_at, data, hparams)

    data_axis = 0 if per_seed_data else None

    def chunk(run_state: RunState, data, hparams):
        num_seeds = run_state.key.shape[0]
        diverged_at = run_state.diverged_at
        if diverged_at is None:  # a RunState built by hand
            diverged_at = jnp.full(run_state.key.shape[:2], NOT_DIVERGED, jnp.int32)
        if not 0 < seed_group_size < num_seeds:
            axes = common.agent_axes(run_state.agent)
            over_seeds = jax.vmap(one_seed, in_axes=(axes, 0, 0, data_axis, None), out_axes=(axes, 0, 0, 0))
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
            batch_size=seed_group_size
        )
        return RunState(agent=agent_state.replace(step=steps[0]), key=key, diverged_at=diverged_at), metrics

    return jax.jit(chunk, donate_argnums=(0,))


# ----------------------------------------------------------------- devices and processes


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


def state_shardings(state: RunState, runs, replicated) -> RunState:
    """The sharding of every leaf of a run state: `runs` for [S, H, ...] leaves, the step replicated."""
    return RunState(agent=common.agent_axes(state.agent, runs).replace(step=replicated), key=runs,
                    diverged_at=None if state.diverged_at is None else runs)


def initial_run_state(agent: common.Agent, seeds: Sequence[int], num_hparams: int, runs, replicated) -> RunState:
    """`init_run_state` as one compiled program, its output laid out by `run_sharding`'s shardings
    (each process makes only its runs)."""
    init = functools.partial(init_run_state, agent, seeds, num_hparams)
    shardings = None if runs is None else state_shardings(jax.eval_shape(init), runs, replicated)
    return jax.jit(init, out_shardings=shardings)()


def seed_group_size(config, runs) -> int:
    """config.seed_group_size, or if it is None (auto) CPU_SEED_GROUP on a CPU and 0 (all seeds
    vmapped) elsewhere.

    Groups loop over the seed axis, so with the seeds split over several
    devices every seed is vmapped (a loop over a sharded axis would serialise
    the devices).
    """
    value = seed_group_field(config)
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


# ----------------------------------------------------------------- set-up


class RunSetup(NamedTuple):
    """What `set_up` builds for the loop: the program, its inputs on device, the run directory."""

    agent: common.Agent  # acts on raw observations (normalises them itself)
    chunk_fn: Callable  # the compiled chunk of the agent that trains on the (normalised) data
    state: RunState  # initial, or restored from the newest readable checkpoint
    step: int  # updates already done (0, or the checkpoint's step)
    data: Transition  # the training data, on device
    hparams: common.HParams  # leaves [H], on device
    run_labels: List[Dict[str, Any]]  # one per (seed, setting): {"seed", "hparam_index", swept values}
    held: np.ndarray  # [S, H] bool: the runs this process logs
    logger: rundir.RunLogger
    checkpointer: checkpoint_lib.Checkpointer
    meta: Dict[str, Any]  # the run record: what the checkpoints record and a resume must match
    lock: Optional[workdir_lock.WorkdirLock]  # held by process 0 until train() returns
    saved_summary: Optional[Dict[str, Any]]  # a finished run's summary.json: train() is then a no-op
    warned: set  # (seed, hparam_index) of the runs whose divergence this call has warned about


RECORD_FILE = "run_record.json"
NORMALIZATION_FILE = "normalization.json"
# What a force_new_run start deletes: everything the driver writes, and nothing else.
_RUN_FILES = ("config.json", RECORD_FILE, NORMALIZATION_FILE, "metrics*.jsonl", "eval*.jsonl", "summary*.json",
              "checkpoints", "checkpoints.corrupt", "tensorboard*")


def prepare_data(config, dataset: Dataset) -> Tuple[Dataset, Optional[Dict[str, np.ndarray]]]:
    """Normalises observations if the config asks (stats computed once, from the dataset)."""
    if not config.get("normalize_observations", False):
        return dataset, None
    stats = dataset_lib.normalization_stats(dataset.observations)
    return dataset_lib.normalize(dataset, stats), stats


def set_up(config, dataset: Dataset, workdir: str) -> RunSetup:
    """Validates, normalises, builds the agent and its chunk, lays the runs out, locks and restores.

    Every check that can refuse a start runs before anything is written:
    the config and the dataset before anything is built, then, under the
    workdir lock, the saved run record, the logs and the checkpoints. A
    refusal releases the lock and leaves the workdir as it was.
    """
    validate_config(config)
    check_against_dataset(config, dataset.size)
    check_action_space(config, dataset)
    agents.check_dataset(config, dataset, ConfigError)
    data, stats = prepare_data(config, dataset)
    raw_agent = make_agent(config, dataset.obs_dim, dataset.act_dim)
    agents.run_length_warnings(config)
    hparams, hparam_labels = hparam_grid(raw_agent.default_hparams, config.get("sweep", None))
    seeds = [int(config.seed) + i for i in range(int(config.num_seeds))]
    meta = run_record(config, dataset, stats, seeds, hparam_labels)
    transitions = data.as_transitions(**agents.transition_fields(config))
    return set_up_runs(config, workdir, raw_agent, stats, seeds, hparams, hparam_labels, transitions, meta)


def set_up_runs(config, workdir: str, raw_agent, stats, seeds, hparams, hparam_labels, data, meta,
                chunk_fn: Optional[Callable] = None, warm_start: Optional[Callable] = None) -> RunSetup:
    """The driver's half of `set_up`, for any agent-like (init, update) pair: FQE (jaxmtf.ope) uses it too.

    Lays the S x H runs out, locks the workdir, checks the saved run record
    `meta` and the logs, restores the newest readable checkpoint and opens the
    run directory. `data` is whatever the chunk samples batches from (a pytree
    of [N, ...] arrays with a `rewards` field); `config` needs the driver's
    fields (batch_size, chunk_size, num_updates, keep_checkpoints, ...).
    `chunk_fn`: a compiled chunk to reuse (progressive training keeps one
    across rounds); None builds `make_chunk_fn`'s for this layout.
    `warm_start(state) -> state` edits the fresh initial RunState (progressive
    rounds start from the deployed policy); a checkpoint, when there is one,
    replaces it as usual, so a resumed run continues exactly.
    """
    runs, replicated = _shardings(config, len(seeds), len(hparam_labels))
    agent = common.with_obs_normalization(raw_agent, stats)
    lock, checkpointer = _lock_workdir(workdir), None
    try:
        check_run_dir(config, workdir, meta)  # before compiling anything: a refusal here is instant
        checkpointer = _existing_checkpoints(config, workdir, meta)
        state = initial_run_state(agent, seeds, len(hparam_labels), runs, replicated)
        if warm_start is not None:
            state = warm_start(state)
        step, state = _restore(checkpointer, state, meta)
    except BaseException:
        if checkpointer is not None:
            checkpointer.close()
        if lock is not None:
            lock.release(restore=True)
        raise
    try:  # past the checks: a failure now must not leave the lock held (a notebook would lock itself out)
        saved_summary = _finished_summary(config, workdir, step)
        logger, checkpointer = _open_run_dir(config, workdir, stats, meta, step, checkpointer, saved_summary is None)
    except BaseException:
        if checkpointer is not None:
            checkpointer.close()
        if lock is not None:
            lock.release()
        raise
    return RunSetup(
        agent=agent,
        chunk_fn=chunk_fn or make_chunk_fn(raw_agent, int(config.batch_size), int(config.chunk_size),
                                           seed_group_size(config, runs)),
        state=state,
        step=step,
        data=jax.device_put(data, replicated),  # replicated None: the default device
        hparams=jax.device_put(hparams, replicated),
        run_labels=[{"seed": s, "hparam_index": h, **label} for s in seeds for h, label in enumerate(hparam_labels)],
        held=held_runs(len(seeds), len(hparam_labels), runs),
        logger=logger,
        checkpointer=checkpointer,
        meta=meta,
        lock=lock,
        saved_summary=saved_summary,
        warned=set(),
    )


def _shardings(config, num_seeds: int, num_hparams: int):
    """`run_sharding`'s layout, or (None, None) when config.shard_runs is off (one process only)."""
    if config.get("shard_runs", True):
        return run_sharding(num_seeds, num_hparams)
    if jax.process_count() > 1:
        raise ConfigError("config field 'shard_runs': got False, expected True in a run of several processes")
    return None, None


def _sha256(arrays) -> str:
    digest = hashlib.sha256()
    for name in sorted(arrays):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(arrays[name]).tobytes())
    return digest.hexdigest()


def run_record(config, dataset: Dataset, stats, seeds, hparam_labels) -> Dict[str, Any]:
    """Everything that changes what a run means; a resume with another value fails naming the field.

    (num_updates, eval_every, checkpoint_every may change between calls: they
    extend or re-time a run without changing its updates. dataset_path only
    warns: the same data moved elsewhere is the same run.)
    """
    from jaxmtf.types import to_numpy  # the dataset's arrays, absent optionals left out

    return {
        "algo": config.algo,
        "agent": config.agent.to_dict(),
        "obs_dim": dataset.obs_dim,
        "act_dim": dataset.act_dim,
        "num_transitions": dataset.size,
        "dataset_checksum": _sha256(to_numpy(dataset)),
        "dataset_path": config.get("dataset", ""),
        "normalize_observations": bool(config.get("normalize_observations", False)),
        "normalization_checksum": None if stats is None else _sha256(stats),
        "seeds": seeds,
        "hparam_settings": hparam_labels,
        "batch_size": int(config.batch_size),
        "chunk_size": int(config.chunk_size),
        "provenance": provenance.describe(config.get("dataset", "")),  # not compared on resume
    }


def _sync(name: str) -> None:
    """A barrier of every process (multi-host); nothing in a single process."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def _lock_workdir(workdir: str) -> Optional[workdir_lock.WorkdirLock]:
    """The workdir lock, taken by process 0 (None elsewhere); every process fails if process 0 could not."""
    lock = workdir_lock.WorkdirLock(workdir) if jax.process_index() == 0 else None
    error = None
    if lock is not None:
        try:
            lock.acquire()
        except workdir_lock.WorkdirLocked as e:
            lock, error = None, e
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        held = int(multihost_utils.broadcast_one_to_all(np.int32(error is None)))
        if not held and error is None:
            error = workdir_lock.WorkdirLocked(
                f"run directory '{workdir}': got a lock held by another launcher (process 0 names it), expected "
                "no other launcher on it"
            )
    if error is not None:
        raise error
    return lock


def clear_run(workdir: str) -> None:
    """force_new_run: deletes what the driver wrote in `workdir` (process 0), saying what went."""
    if jax.process_index() == 0 and os.path.isdir(workdir):
        rundir.force_new_run(workdir, _RUN_FILES)
    _sync("jaxmtf_clear_run")


def check_run_dir(config, workdir: str, meta) -> None:
    """The saved run record against this run's, and the logs' integrity; writes nothing but
    force_new_run's deletions."""
    if config.get("force_new_run", False):
        clear_run(workdir)
    record_path = os.path.join(workdir, RECORD_FILE)
    if os.path.exists(record_path):
        checkpoint_lib.check_record(rundir.read_json(record_path), meta, record_path)
    logged = 0
    for name in (rundir.METRICS_FILE, rundir.EVAL_FILE):
        for path in rundir.run_files(workdir, name):
            rows = rundir.read_jsonl(path)  # a damaged line before the last refuses here, before any truncation
            logged = max([logged] + [int(r.get("step", 0)) for r in rows])
    _check_logs_have_a_checkpoint(config, workdir, logged)


def _check_logs_have_a_checkpoint(config, workdir: str, logged: int) -> None:
    """Logs past the first checkpoint's update but no checkpoint at all (deleted): resuming would restart from
    update 0 and cut the logs, which the driver never does silently. (Logs short of the first checkpoint are a
    run killed before it: that one restarts, losing only those updates.)"""
    every = int(config.get("checkpoint_every", 0) or 0)
    directory = os.path.join(workdir, "checkpoints")
    has_checkpoint = os.path.isdir(directory) and any(name.isdigit() for name in os.listdir(directory))
    if every and logged >= every and not has_checkpoint:
        raise checkpoint_lib.CheckpointError(
            f"run directory '{workdir}': its logs reach update {logged} but it holds no checkpoint (one is written "
            f"every {every} updates: were checkpoints/ deleted?); it never restarts from scratch silently: set "
            "--config.force_new_run=True to start afresh (it deletes the logs too), or restore the checkpoints")


def _existing_checkpoints(config, workdir: str, meta) -> Optional[checkpoint_lib.Checkpointer]:
    """The run's checkpoints if it has any (None otherwise), the newest readable record checked against
    this run's before anything is compiled."""
    directory = os.path.join(workdir, "checkpoints")
    if not os.path.isdir(directory):
        return None
    checkpointer = checkpoint_lib.Checkpointer(directory, max_to_keep=config.get("keep_checkpoints", 3))
    try:
        checkpointer.check_latest_record(meta)
    except BaseException:
        checkpointer.close()
        raise
    return checkpointer


def _restore(checkpointer, state: RunState, meta) -> Tuple[int, RunState]:
    """(step, state) of the newest readable checkpoint, or (0, state) without one."""
    restored = None if checkpointer is None else checkpointer.restore_latest(state, meta)
    return (0, state) if restored is None else restored


def _finished_summary(config, workdir: str, step: int) -> Optional[Dict[str, Any]]:
    """The saved summary of a run that is already finished (re-running it is a no-op), else None."""
    if step < int(config.num_updates) or not rundir.run_files(workdir, rundir.SUMMARY_FILE):
        return None
    summary = rundir.read_summary(workdir)
    return summary if summary.get("finished") else None


def _open_run_dir(config, workdir, stats, meta, step, checkpointer, write: bool):
    """The first writes: config.json, the run record and the normalisation stats (process 0), the
    unreadable checkpoints moved aside, the logs cut back to the restored step; opens logs and checkpoints.
    `write` False (a finished run re-run): none of that, the directory stays as it is."""
    process, num_processes = jax.process_index(), jax.process_count()
    if write and process == 0:  # the same in every process of a multi-host run
        rundir.write_json(os.path.join(workdir, rundir.CONFIG_FILE), config.to_dict())
        rundir.write_json(os.path.join(workdir, RECORD_FILE), meta)
        if stats is not None:
            rundir.write_json(os.path.join(workdir, NORMALIZATION_FILE), stats)
    if write and checkpointer is not None and checkpointer.skipped:
        checkpointer.quarantine(checkpointer.skipped, process)
        _sync("jaxmtf_quarantine")  # moved by process 0 before any process re-lists the steps
        checkpointer.reload()
    logger = rundir.RunLogger(workdir, write and config.get("tensorboard", False), process, num_processes)
    if write:
        logger.truncate_after(step)
    if step:
        absl_logging.info("resumed from the checkpoint at update %d in %s", step, workdir)
    if checkpointer is None:
        checkpointer = checkpoint_lib.Checkpointer(
            os.path.join(workdir, "checkpoints"), max_to_keep=config.get("keep_checkpoints", 3)
        )
    return logger, checkpointer


# ----------------------------------------------------------------- host loop


class LoopResult(NamedTuple):
    state: RunState
    step: int
    final_records: List[dict]  # the log records of the last chunk this call ran ([] if it ran none)
    compile_seconds: Optional[float]  # compile + the first chunk of this call (None if it ran none)
    timed_updates: int  # updates per run after the first chunk of this call
    timed_seconds: float  # wall time of those updates, host work included
    stopped_by: Optional[int] = None  # the signal that pre-empted the loop (None: it ran to stop_at)


class _Clock:
    """Times a call's chunks: the first (compile included) apart from the rest."""

    def __init__(self, step: int):
        self.start, self.start_step, self.compile_seconds = time.time(), step, None

    def chunk_done(self, step: int) -> None:
        if self.compile_seconds is None:
            self.compile_seconds = time.time() - self.start
            self.start, self.start_step = time.time(), step

    def timed(self, step: int) -> Tuple[int, float]:
        return step - self.start_step, time.time() - self.start


class _StopSignals:
    """SIGTERM and SIGINT, while the loop runs, only ask it to stop after the current chunk.

    A second signal while stopping raises KeyboardInterrupt (the way out of a
    stuck save). Outside the main thread, where Python cannot install
    handlers, the signals keep their defaults. In a multi-host run the
    processes agree (one tiny all-gather per chunk), so that all of them
    stop after the same chunk and write one checkpoint together.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.signum, self._previous = None, {}

    def _handle(self, signum, frame):
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc):
        for s, handler in self._previous.items():
            signal.signal(s, handler)

    def requested(self) -> Optional[int]:
        """The signal received by this process (or, multi-host, by any process), else None."""
        if jax.process_count() == 1:
            return self.signum
        from jax.experimental import multihost_utils

        got = np.asarray(multihost_utils.process_allgather(np.int32(self.signum or 0)))
        return int(got.max()) or None


def run_loop(run: RunSetup, config, eval_fn: Optional[Callable], stop_at: int) -> LoopResult:
    """Chunks until `stop_at` updates; logs every chunk, evaluates and checkpoints when due.

    The host's logging overlaps the device's work: JAX dispatches a chunk
    asynchronously, so each chunk is dispatched before the previous chunk's
    metrics are pulled and written. A chunk donates the run state it is
    given, so a step that evaluates or checkpoints must use its state before
    the next chunk is dispatched: those steps are synchronous (log, evaluate,
    checkpoint, then dispatch), and so is the first chunk, timed apart with
    its compilation. The records are the same either way; only when they are
    written moves. On SIGTERM or SIGINT the chunk under way finishes, is
    logged and checkpointed, and the loop returns with `stopped_by` set.
    """
    chunk_size, num_updates = int(config.chunk_size), int(config.num_updates)
    eval_every = int(config.get("eval_every", 0) or 0) if eval_fn is not None else 0
    checkpoint_every = int(config.get("checkpoint_every", 0) or 0)
    state, step, records, clock = run.state, run.step, [], _Clock(run.step)
    pending = None  # (step, metrics on device) of the chunk dispatched last, not logged yet
    stopped_by = None
    if step < stop_at:  # the first line otherwise comes only after compilation and a whole chunk
        absl_logging.info("compiling the training program (%d runs, chunks of %d updates); the first progress "
                          "line follows the first chunk", len(run.run_labels), chunk_size)
    with _StopSignals() as stop:
        while step < stop_at:
            state, metrics = run.chunk_fn(state, run.data, run.hparams)  # returns at once; the device runs it
            step += chunk_size
            if pending is not None:
                records = _log_chunk(run, *pending, clock, num_updates)  # the previous chunk, during this one
            pending = (step, metrics)
            evaluates, checkpoints = _due(step, eval_every), _due(step, checkpoint_every) or step == num_updates
            if clock.compile_seconds is None or evaluates or checkpoints:
                records, pending = _log_chunk(run, *pending, clock, num_updates), None
            if evaluates:
                _evaluate(run, eval_fn, state, step)
            stopped_by = stop.requested()
            if stopped_by and pending is not None:
                records, pending = _log_chunk(run, *pending, clock, num_updates), None
            if checkpoints or stopped_by:
                _save(run, step, state)
            if stopped_by:
                absl_logging.warning("%s", Preempted(stopped_by, step, run.logger.workdir))
                break
    if pending is not None:
        records = _log_chunk(run, *pending, clock, num_updates)
    timed_updates, timed_seconds = clock.timed(step)
    return LoopResult(state, step, records, clock.compile_seconds, timed_updates, timed_seconds, stopped_by)


def _due(step: int, every: int) -> bool:
    return bool(every) and step % every == 0


def _save(run: RunSetup, step: int, state: RunState) -> None:
    """A checkpoint at `step`, after the logs up to it are on disk (a machine crash keeps them too)."""
    run.logger.sync()
    run.checkpointer.save(step, state, run.meta)


def _diverged_steps(run: RunSetup, state: RunState) -> np.ndarray:
    """[S, H] the update of each run's divergence, NOT_DIVERGED for healthy runs (NaN-free host copy)."""
    diverged = to_host(state.diverged_at)
    return np.where(np.isnan(diverged), NOT_DIVERGED, diverged).astype(np.int64)


def _evaluate(run: RunSetup, eval_fn: Callable, state: RunState, step: int) -> None:
    """Evaluates every run; a diverged run's results are marked diverged (null values), not scored."""
    results = to_host(eval_fn(run.agent, state.agent, step))
    diverged = _diverged_steps(run, state)
    records = list(rundir.per_run_records(step, results, run.run_labels, run.held))
    for record, at in zip(records, diverged.reshape(-1)[run.held.reshape(-1)]):
        record["diverged_at_step"] = int(at) if at != NOT_DIVERGED else None
        if at != NOT_DIVERGED:
            record.update({k: None for k in results})
    run.logger.log_eval(records)
    absl_logging.info("evaluation at update %d: %s", step, eval_line(records))


def eval_line(records: List[dict], metric: str = "undiscounted_return") -> str:
    """The mean of `metric` over the runs and its range ("undiscounted_return 271.2 (268.0 to 273.5 over 8
    runs)"), diverged runs left out and counted."""
    values = np.asarray([r[metric] for r in records if r.get(metric) is not None], np.float64)
    diverged = sum(r.get("diverged_at_step") is not None for r in records)
    if not values.size:
        return f"no {metric} ({diverged} diverged runs)"
    text = f"{metric} {values.mean():.2f} ({values.min():.2f} to {values.max():.2f} over {values.size} runs)"
    return text + (f", {diverged} diverged" if diverged else "")


def _log_chunk(run: RunSetup, step: int, metrics, clock: _Clock, num_updates: int) -> List[dict]:
    """Pulls one chunk's metrics (waiting for the chunk), writes the records of the runs this process
    holds and a progress line; warns once per run that diverged; returns the records."""
    metrics = to_host(metrics)
    clock.chunk_done(step)
    records = list(rundir.per_run_records(step, metrics, run.run_labels, run.held))
    for record in records:
        _mark_divergence(run, record)
    run.logger.log_metrics(records)
    _progress(step, num_updates, *clock.timed(step), int(run.held.sum()), _loss_text(records))
    return records


def _loss_text(records: List[dict]) -> str:
    """"  critic_loss 0.41  actor_loss -3.2": each loss's mean over the (finite) runs of the chunk."""
    names = sorted({k for r in records for k in r if k.endswith("_loss")})
    means = {n: np.nanmean([r[n] if r.get(n) is not None else np.nan for r in records]) for n in names}
    return "".join(f"  {n} {m:.3g}" for n, m in means.items() if np.isfinite(m))


def _mark_divergence(run: RunSetup, record: dict) -> None:
    """diverged_at_step -1 -> None; a warning the first time this call sees a run diverged."""
    at = record.get("diverged_at_step")
    if at is None or at == NOT_DIVERGED:
        record["diverged_at_step"] = None
        return
    record["diverged_at_step"] = int(at)
    if (record["seed"], record["hparam_index"]) not in run.warned:
        run.warned.add((record["seed"], record["hparam_index"]))
        absl_logging.warning(
            "run seed=%s hparam_index=%s diverged at update %d (non-finite parameters or optimiser state): its "
            "metrics are NaN from there and its evaluations are marked diverged; the other runs go on",
            record["seed"], record["hparam_index"], int(at))


def _progress(step, num_updates, done, elapsed, num_runs, losses: str = ""):
    """One log line: updates/s per run and in total over this process's runs, ETA, the chunk's losses."""
    if done <= 0 or elapsed <= 0:
        absl_logging.info("update %d/%d (compiled)%s", step, num_updates, losses)
        return
    rate = done / elapsed
    eta = (num_updates - step) / rate
    absl_logging.info(
        "update %d/%d  %.0f updates/s per run (%.0f total over %d runs)  ETA %.0fs%s",
        step, num_updates, rate, rate * num_runs, num_runs, eta, losses,
    )


# ----------------------------------------------------------------- the driver


def train(
    config,
    dataset: Dataset,
    workdir: str,
    eval_fn: Optional[Callable] = None,
    stop_after: Optional[int] = None,
) -> Dict[str, Any]:
    """Trains `config.num_seeds` seeds x the sweep grid on `dataset`; resumes from `workdir`.

    eval_fn(agent, agent_states, step) -> {name: [S, H] array} is called every
    `config.eval_every` updates (0 = never) with the obs-normalising agent.
    `stop_after` ends this call after that many updates in total (tests use
    it to interrupt a run); a later call on the same workdir resumes.
    Returns the summary also written to summary.json, plus "state" (the
    RunState) and "agent" (the agent that acts on raw observations).

    Multi-host: when `jax.distributed` is initialised, every process calls
    this with the same arguments; the runs are split over all processes'
    devices, each process logs the runs it holds (metrics.process{i}.jsonl),
    and orbax writes one checkpoint of the whole state, which any number of
    processes can resume.
    """
    return train_runs(config, set_up(config, dataset, workdir), workdir, eval_fn, stop_after)


def train_runs(config, run: RunSetup, workdir: str, eval_fn=None, stop_after: Optional[int] = None) -> Dict[str, Any]:
    """`train` after its set-up: the loop, the summary, and the workdir's release (whatever happens)."""
    num_updates = int(config.num_updates)
    try:
        if run.saved_summary is not None:  # finished already: a no-op that keeps its summary
            absl_logging.info("the run in %s is finished (update %d): nothing to do", workdir, run.step)
            return {**run.saved_summary, "state": run.state, "agent": run.agent}
        stop_at = min(num_updates, stop_after) if stop_after is not None else num_updates
        result = run_loop(run, config, eval_fn, stop_at)
        summary = summarise_run(config, run, result)
        run.logger.write_summary(summary)
    finally:
        run.checkpointer.close()
        run.logger.close()
        if run.lock is not None:
            run.lock.release()
    if result.stopped_by is not None:
        raise Preempted(result.stopped_by, result.step, workdir)
    summary["state"] = result.state
    summary["agent"] = run.agent  # acts on raw observations (normalises them itself)
    return summary


def summarise_run(config, run: RunSetup, result: LoopResult) -> Dict[str, Any]:
    """summary.json: where the run stands, this call's compile time and throughput, its last metrics,
    and each run's step of divergence (None for the runs that stayed finite)."""
    diverged = _diverged_steps(run, result.state).reshape(-1)
    return {
        "algo": config.get("algo", ""),
        "step": result.step,
        "finished": result.step >= int(config.num_updates),
        "num_runs": len(run.run_labels),
        "num_processes": jax.process_count(),
        "compile_and_first_chunk_seconds": result.compile_seconds,
        "updates_per_second_per_run": (
            result.timed_updates / result.timed_seconds if result.timed_updates and result.timed_seconds > 0 else None
        ),
        "final_metrics": result.final_records or _logged_records(run, result.step),
        "diverged_at_step": [
            {**label, "diverged_at_step": int(at) if at != NOT_DIVERGED else None}
            for label, at, held in zip(run.run_labels, diverged, run.held.reshape(-1)) if held
        ],
    }


def _logged_records(run: RunSetup, step: int) -> List[dict]:
    """The metrics records of `step` that this process logged before (a call that ran no chunk)."""
    path = os.path.join(run.logger.workdir, rundir.process_file(rundir.METRICS_FILE, jax.process_index(),
                                                                jax.process_count()))
    return [r for r in rundir.read_jsonl(path) if r["step"] == step]
