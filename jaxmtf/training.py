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
of S seeds x H settings reproduces the S*H separate runs exactly (and the H
settings of a seed start from the same initial networks).
"""
import functools
import os
import time
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from absl import logging as absl_logging

from jaxmtf import agents
from jaxmtf import checkpoint as checkpoint_lib
from jaxmtf import rundir
from jaxmtf.agents import common, make_agent
from jaxmtf.data import dataset as dataset_lib
from jaxmtf.run_config import ConfigError, hparam_grid, seed_group_field, validate_config
from jaxmtf.types import Dataset, Transition


# Seeds vmapped together on a CPU when seed_group_size is None (see make_chunk_fn; measured in benchmarks/).
CPU_SEED_GROUP = 2


@flax.struct.dataclass
class RunState:
    agent: Any  # the agent's state, [S, H, ...] per leaf except agent.step
    key: jax.Array  # [S, H, 2] raw PRNG keys of the batch sampling and update noise


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
    return RunState(agent=agent_states, key=over_hparams(train_keys))


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
    """

    def one_run(agent_state, key, data, hparams):
        if per_seed_data:
            data, num_transitions = data.transitions, data.size
        else:
            num_transitions = data.rewards.shape[0]

        def one_update(carry, _):
            state, key = carry
            key, k_batch, k_update = jax.random.split(key, 3)
            # Uniform with replacement, as the references' replay buffers sample.
            idx = jax.random.randint(k_batch, (batch_size,), 0, num_transitions)
            batch = jax.tree.map(lambda x: x[idx], data)
            state, metrics = agent.update(state, batch, k_update, hparams)
            return (state, key), metrics

        (agent_state, key), metrics = jax.lax.scan(one_update, (agent_state, key), None, length=chunk_size)
        # Metrics defined on some updates only (delayed actor steps) are NaN on the others.
        return agent_state, key, jax.tree.map(lambda m: jnp.nanmean(m, axis=0), metrics)

    def one_seed(agent_state, key, data, hparams):  # [H, ...] -> [H, ...]
        axes = common.agent_axes(agent_state)
        return jax.vmap(one_run, in_axes=(axes, 0, None, 0), out_axes=(axes, 0, 0))(agent_state, key, data, hparams)

    data_axis = 0 if per_seed_data else None

    def chunk(run_state: RunState, data, hparams):
        num_seeds = run_state.key.shape[0]
        if not 0 < seed_group_size < num_seeds:
            axes = common.agent_axes(run_state.agent)
            over_seeds = jax.vmap(one_seed, in_axes=(axes, 0, data_axis, None), out_axes=(axes, 0, 0))
            agent_state, key, metrics = over_seeds(run_state.agent, run_state.key, data, hparams)
            return RunState(agent=agent_state, key=key), metrics
        step = run_state.agent.step  # shared by every seed: closed over, not mapped

        def seed(per_seed):
            agent_state, key, seed_data = per_seed
            seed_data = seed_data if per_seed_data else data
            agent_state, key, metrics = one_seed(agent_state.replace(step=step), key, seed_data, hparams)
            return (agent_state.replace(step=None), key), metrics, agent_state.step

        mapped_data = data if per_seed_data else jnp.zeros(num_seeds)  # a placeholder when the data is shared
        (agent_state, key), metrics, steps = jax.lax.map(
            seed, (run_state.agent.replace(step=None), run_state.key, mapped_data), batch_size=seed_group_size
        )
        return RunState(agent=agent_state.replace(step=steps[0]), key=key), metrics

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
            absl_logging.warning("%d seeds x %d settings do not divide over %d devices: using one", num_seeds, num_hparams, n)
        return None, None
    return jax.sharding.NamedSharding(mesh, spec), replicated


def state_shardings(state: RunState, runs, replicated) -> RunState:
    """The sharding of every leaf of a run state: `runs` for [S, H, ...] leaves, the step replicated."""
    return RunState(agent=common.agent_axes(state.agent, runs).replace(step=replicated), key=runs)


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
    state: RunState  # initial, or restored from the newest checkpoint
    step: int  # updates already done (0, or the checkpoint's step)
    data: Transition  # the training data, on device
    hparams: common.HParams  # leaves [H], on device
    run_labels: List[Dict[str, Any]]  # one per (seed, setting): {"seed", "hparam_index", swept values}
    held: np.ndarray  # [S, H] bool: the runs this process logs
    logger: rundir.RunLogger
    checkpointer: checkpoint_lib.Checkpointer
    meta: Dict[str, Any]  # what the checkpoints record and restoring checks


def prepare_data(config, dataset: Dataset) -> Tuple[Dataset, Optional[Dict[str, np.ndarray]]]:
    """Normalises observations if the config asks (stats computed once, from the dataset)."""
    if not config.get("normalize_observations", False):
        return dataset, None
    stats = dataset_lib.normalization_stats(dataset.observations)
    return dataset_lib.normalize(dataset, stats), stats


def set_up(config, dataset: Dataset, workdir: str) -> RunSetup:
    """Validates, normalises, builds the agent and its chunk, lays the runs out, restores."""
    validate_config(config)
    data, stats = prepare_data(config, dataset)
    raw_agent = make_agent(config, dataset.obs_dim, dataset.act_dim)
    agents.run_length_warnings(config)
    hparams, hparam_labels = hparam_grid(raw_agent.default_hparams, config.get("sweep", None))
    seeds = [int(config.seed) + i for i in range(int(config.num_seeds))]
    runs, replicated = _shardings(config, len(seeds), len(hparam_labels))
    agent = common.with_obs_normalization(raw_agent, stats)
    state = initial_run_state(agent, seeds, len(hparam_labels), runs, replicated)
    meta = _checkpoint_meta(config, dataset, seeds, hparam_labels)
    logger, checkpointer = _open_run_dir(config, workdir, stats)
    try:
        step, state = _restore(checkpointer, logger, state, meta)
    except Exception:
        checkpointer.close()
        logger.close()
        raise
    return RunSetup(
        agent=agent,
        chunk_fn=make_chunk_fn(raw_agent, int(config.batch_size), int(config.chunk_size), seed_group_size(config, runs)),
        state=state,
        step=step,
        # replicated None: the default device
        data=jax.device_put(data.as_transitions(next_actions=agents.needs_next_actions(config)), replicated),
        hparams=jax.device_put(hparams, replicated),
        run_labels=[{"seed": s, "hparam_index": h, **label} for s in seeds for h, label in enumerate(hparam_labels)],
        held=held_runs(len(seeds), len(hparam_labels), runs),
        logger=logger,
        checkpointer=checkpointer,
        meta=meta,
    )


def _shardings(config, num_seeds: int, num_hparams: int):
    """`run_sharding`'s layout, or (None, None) when config.shard_runs is off (one process only)."""
    if config.get("shard_runs", True):
        return run_sharding(num_seeds, num_hparams)
    if jax.process_count() > 1:
        raise ConfigError("config field 'shard_runs': must be True in a run of several processes")
    return None, None


def _checkpoint_meta(config, dataset: Dataset, seeds, hparam_labels) -> Dict[str, Any]:
    """What produced a checkpoint; a resume with another config fails naming the field that differs."""
    return {
        "algo": config.algo,
        "agent": config.agent.to_dict(),
        "obs_dim": dataset.obs_dim,
        "act_dim": dataset.act_dim,
        "num_transitions": dataset.size,
        "seeds": seeds,
        "hparam_settings": hparam_labels,
        "batch_size": int(config.batch_size),
        "chunk_size": int(config.chunk_size),
    }


def _open_run_dir(config, workdir: str, stats) -> Tuple[rundir.RunLogger, checkpoint_lib.Checkpointer]:
    """Writes config.json (and the normalisation stats); opens the logs and the checkpoints."""
    os.makedirs(workdir, exist_ok=True)
    process, num_processes = jax.process_index(), jax.process_count()
    if process == 0:  # the same in every process of a multi-host run
        rundir.write_json(os.path.join(workdir, rundir.CONFIG_FILE), config.to_dict())
        if stats is not None:
            rundir.write_json(os.path.join(workdir, "normalization.json"), stats)
    logger = rundir.RunLogger(workdir, config.get("tensorboard", False), process, num_processes)
    checkpointer = checkpoint_lib.Checkpointer(
        os.path.join(workdir, "checkpoints"), max_to_keep=config.get("keep_checkpoints", 3)
    )
    return logger, checkpointer


def _restore(checkpointer, logger, state: RunState, meta) -> Tuple[int, RunState]:
    """(step, state) of the newest checkpoint, dropping the log lines written after it; else (0, state)."""
    restored = checkpointer.restore_latest(state, meta)
    if restored is None:
        return 0, state
    step, state = restored
    logger.truncate_after(step)
    absl_logging.info("resumed from the checkpoint at update %d in %s", step, logger.workdir)
    return step, state


# ----------------------------------------------------------------- host loop


class LoopResult(NamedTuple):
    state: RunState
    step: int
    final_records: List[dict]  # the log records of the last chunk this call ran ([] if it ran none)
    compile_seconds: Optional[float]  # compile + the first chunk of this call (None if it ran none)
    timed_updates: int  # updates per run after the first chunk of this call
    timed_seconds: float  # wall time of those updates, host work included


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


def run_loop(run: RunSetup, config, eval_fn: Optional[Callable], stop_at: int) -> LoopResult:
    """Chunks until `stop_at` updates; logs every chunk, evaluates and checkpoints when due.

    The host's logging overlaps the device's work: JAX dispatches a chunk
    asynchronously, so each chunk is dispatched before the previous chunk's
    metrics are pulled and written. A chunk donates the run state it is
    given, so a step that evaluates or checkpoints must use its state before
    the next chunk is dispatched: those steps are synchronous (log, evaluate,
    checkpoint, then dispatch), and so is the first chunk, timed apart with
    its compilation. The records are the same either way; only when they are
    written moves.
    """
    chunk_size, num_updates = int(config.chunk_size), int(config.num_updates)
    eval_every = int(config.get("eval_every", 0) or 0) if eval_fn is not None else 0
    checkpoint_every = int(config.get("checkpoint_every", 0) or 0)
    state, step, records, clock = run.state, run.step, [], _Clock(run.step)
    pending = None  # (step, metrics on device) of the chunk dispatched last, not logged yet
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
        if checkpoints:
            run.checkpointer.save(step, state, run.meta)
    if pending is not None:
        records = _log_chunk(run, *pending, clock, num_updates)
    timed_updates, timed_seconds = clock.timed(step)
    return LoopResult(state, step, records, clock.compile_seconds, timed_updates, timed_seconds)


def _due(step: int, every: int) -> bool:
    return bool(every) and step % every == 0


def _evaluate(run: RunSetup, eval_fn: Callable, state: RunState, step: int) -> None:
    results = to_host(eval_fn(run.agent, state.agent, step))
    run.logger.log_eval(list(rundir.per_run_records(step, results, run.run_labels, run.held)))


def _log_chunk(run: RunSetup, step: int, metrics, clock: _Clock, num_updates: int) -> List[dict]:
    """Pulls one chunk's metrics (waiting for the chunk), writes the records of the runs this process
    holds and a progress line; returns the records."""
    metrics = to_host(metrics)
    clock.chunk_done(step)
    records = list(rundir.per_run_records(step, metrics, run.run_labels, run.held))
    run.logger.log_metrics(records)
    _progress(step, num_updates, *clock.timed(step), int(run.held.sum()))
    return records


def _progress(step, num_updates, done, elapsed, num_runs):
    """One log line: updates/s per run and in total over this process's runs, ETA."""
    if done <= 0 or elapsed <= 0:
        absl_logging.info("update %d/%d (compiled)", step, num_updates)
        return
    rate = done / elapsed
    eta = (num_updates - step) / rate
    absl_logging.info(
        "update %d/%d  %.0f updates/s per run (%.0f total over %d runs)  ETA %.0fs",
        step, num_updates, rate, rate * num_runs, num_runs, eta,
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
    run = set_up(config, dataset, workdir)
    num_updates = int(config.num_updates)
    try:
        result = run_loop(run, config, eval_fn, min(num_updates, stop_after) if stop_after is not None else num_updates)
    finally:
        run.checkpointer.close()
        run.logger.close()
    summary = summarise_run(config, run, result)
    run.logger.write_summary(summary)
    summary["state"] = result.state
    summary["agent"] = run.agent  # acts on raw observations (normalises them itself)
    return summary


def summarise_run(config, run: RunSetup, result: LoopResult) -> Dict[str, Any]:
    """summary.json: where the run stands, this call's compile time and throughput, its last metrics."""
    return {
        "algo": config.algo,
        "step": result.step,
        "finished": result.step >= int(config.num_updates),
        "num_runs": len(run.run_labels),
        "num_processes": jax.process_count(),
        "compile_and_first_chunk_seconds": result.compile_seconds,
        "updates_per_second_per_run": (
            result.timed_updates / result.timed_seconds if result.timed_updates and result.timed_seconds > 0 else None
        ),
        "final_metrics": result.final_records,
    }
