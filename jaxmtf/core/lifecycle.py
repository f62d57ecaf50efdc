"""A run directory's life around the loop: lock it, check it, restore from it, open its logs, release it.

Every check that can refuse a start runs before anything is written: the
saved run record, the logs and the checkpoints, under the workdir lock
(`workdir_lock`); a refusal releases the lock and leaves the directory as it
was. README "Resuming and failures" says what each refusal means.
"""
import os
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Tuple

import jax
import numpy as np
from absl import logging as absl_logging

from jaxmtf.agents import common
from jaxmtf.core import sharding
from jaxmtf.core.chunk import RunState, make_chunk_fn
from jaxmtf.core.run_config import ConfigError, Driver, RunGrid
from jaxmtf.data import dataset as dataset_lib
from jaxmtf.runs import checkpoint as checkpoint_lib
from jaxmtf.runs import rundir, workdir_lock
from jaxmtf.runs import writers as writers_lib
from jaxmtf.runs.record import NORMALIZATION_FILE, RECORD_FILE
from jaxmtf.types import Transition

# What a start can be refused with: each message names the field (or file), the value and what was expected.
REFUSALS = (ConfigError, dataset_lib.DatasetError, checkpoint_lib.CheckpointError, rundir.RunDirError,
            workdir_lock.WorkdirLocked)


class RunSetup(NamedTuple):
    """What `set_up_runs` builds for the loop: the program, its inputs on device, the run directory."""

    driver: Driver  # the config's driver fields, read once
    workdir: str
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
    record: Dict[str, Any]  # the run record (runs/record.py): what the checkpoints hold and a resume must match
    lock: Optional[workdir_lock.WorkdirLock]  # held by process 0 until train() returns
    saved_summary: Optional[Dict[str, Any]]  # a finished run's summary.json: train() is then a no-op
    warned: set  # (seed, hparam_index) of the runs whose divergence this call has warned about


# What a force_new_run start deletes: everything the driver writes, and nothing else.
_RUN_FILES = ("config.json", RECORD_FILE, NORMALIZATION_FILE, "metrics*.jsonl", "eval*.jsonl", "summary*.json",
              "checkpoints", "checkpoints.corrupt", "tensorboard*", "wandb")


def set_up_runs(config, workdir: str, raw_agent, grid: RunGrid, data, record: Dict[str, Any], stats=None,
                chunk_fn: Optional[Callable] = None, warm_start: Optional[Callable] = None) -> RunSetup:
    """The driver's half of `training.set_up`, for any agent-like (init, update) pair: FQE (jaxmtf.ope) uses it.

    Lays the S x H runs of `grid` out, locks the workdir, checks the saved run
    record against `record` and the logs, restores the newest readable
    checkpoint and opens the run directory. `data` is whatever the chunk
    samples batches from (a pytree of [N, ...] arrays with a `rewards`
    field); `config` needs the driver's fields (`Driver`) and is saved as
    config.json; `stats` are the observation normalisation's, if any.
    `chunk_fn`: a compiled chunk to reuse (progressive training keeps one
    across rounds); None builds `make_chunk_fn`'s for this layout.
    `warm_start(state) -> state` edits the fresh initial RunState (progressive
    rounds start from the deployed policy); a checkpoint, when there is one,
    replaces it as usual, so a resumed run continues exactly.
    """
    driver = Driver.of(config)
    seeds, num_settings = grid.seeds, len(grid.labels)
    runs, replicated = sharding.layout(driver, len(seeds), num_settings)
    agent = common.with_obs_normalization(raw_agent, stats)
    lock, checkpointer = lock_workdir(workdir), None
    try:
        check_run_dir(driver, workdir, record)  # before compiling anything: a refusal here is instant
        checkpointer = _existing_checkpoints(driver, workdir, record)
        state = sharding.init_on_devices(agent, seeds, num_settings, runs, replicated)
        if warm_start is not None:
            state = warm_start(state)
        step, state = _restore(checkpointer, state, record)
    except BaseException:
        _abandon(checkpointer, lock, refused=True)
        raise
    try:  # past the checks: a failure now must not leave the lock held (a notebook would lock itself out)
        saved_summary = _finished_summary(driver, workdir, step)
        logger, checkpointer = _open_run_dir(config, driver, workdir, stats, record, step, checkpointer,
                                             saved_summary is None)
        logger.label_keys = {name for label in grid.labels for name in label}
    except BaseException:
        _abandon(checkpointer, lock, refused=False)
        raise
    return RunSetup(
        driver=driver,
        workdir=workdir,
        agent=agent,
        chunk_fn=chunk_fn or make_chunk_fn(raw_agent, driver.batch_size, driver.chunk_size,
                                           sharding.seed_group_size(driver, runs)),
        state=state,
        step=step,
        data=jax.device_put(data, replicated),  # replicated None: the default device
        hparams=jax.device_put(grid.hparams, replicated),
        run_labels=[{"seed": s, "hparam_index": h, **label} for s in seeds for h, label in enumerate(grid.labels)],
        held=sharding.held_runs(len(seeds), num_settings, runs),
        logger=logger,
        checkpointer=checkpointer,
        record=record,
        lock=lock,
        saved_summary=saved_summary,
        warned=set(),
    )


def _abandon(checkpointer, lock, refused: bool) -> None:
    """Closes the checkpointer and frees the lock of a set-up that failed; a refused start (`refused`: before
    anything was written) puts the lock file back as it was, so it leaves no trace."""
    if checkpointer is not None:
        checkpointer.close()
    if lock is not None:
        lock.release(restore=refused)


def lock_workdir(workdir: str) -> Optional[workdir_lock.WorkdirLock]:
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
    sharding.sync("jaxmtf_clear_run")


def check_run_dir(driver: Driver, workdir: str, record: Dict[str, Any]) -> None:
    """The saved run record against this run's, and the logs' integrity; writes nothing but
    force_new_run's deletions."""
    if driver.force_new_run:
        clear_run(workdir)
    record_path = os.path.join(workdir, RECORD_FILE)
    if os.path.exists(record_path):
        checkpoint_lib.check_record(rundir.read_json(record_path), record, record_path)
    logged = 0
    for name in (rundir.METRICS_FILE, rundir.EVAL_FILE):
        for path in rundir.run_files(workdir, name):
            rows = rundir.read_jsonl(path)  # a damaged line before the last refuses here, before any truncation
            logged = max([logged] + [int(r.get("step", 0)) for r in rows])
    _check_logs_have_a_checkpoint(driver, workdir, logged)


def _check_logs_have_a_checkpoint(driver: Driver, workdir: str, logged: int) -> None:
    """Logs past the first checkpoint's update but no checkpoint at all (deleted): resuming would restart from
    update 0 and cut the logs, which the driver never does silently. (Logs short of the first checkpoint are a
    run killed before it: that one restarts, losing only those updates.)"""
    every = driver.checkpoint_every
    directory = os.path.join(workdir, "checkpoints")
    has_checkpoint = os.path.isdir(directory) and any(name.isdigit() for name in os.listdir(directory))
    if every and logged >= every and not has_checkpoint:
        raise checkpoint_lib.CheckpointError(
            f"run directory '{workdir}': its logs reach update {logged} but it holds no checkpoint (one is written "
            f"every {every} updates: were checkpoints/ deleted?); it never restarts from scratch silently: set "
            "--config.force_new_run=True to start afresh (it deletes the logs too), or restore the checkpoints")


def _existing_checkpoints(driver: Driver, workdir: str, record) -> Optional[checkpoint_lib.Checkpointer]:
    """The run's checkpoints if it has any (None otherwise), the newest readable record checked against
    this run's before anything is compiled."""
    directory = os.path.join(workdir, "checkpoints")
    if not os.path.isdir(directory):
        return None
    checkpointer = checkpoint_lib.Checkpointer(directory, max_to_keep=driver.keep_checkpoints)
    try:
        checkpointer.check_latest_record(record)
    except BaseException:
        checkpointer.close()
        raise
    return checkpointer


def _restore(checkpointer, state: RunState, record) -> Tuple[int, RunState]:
    """(step, state) of the newest readable checkpoint, or (0, state) without one."""
    restored = None if checkpointer is None else checkpointer.restore_latest(state, record)
    return (0, state) if restored is None else restored


def _finished_summary(driver: Driver, workdir: str, step: int) -> Optional[Dict[str, Any]]:
    """The saved summary of a run that is already finished (re-running it is a no-op), else None."""
    if step < driver.num_updates or not rundir.run_files(workdir, rundir.SUMMARY_FILE):
        return None
    summary = rundir.read_summary(workdir)
    return summary if summary.get("finished") else None


def _open_run_dir(config, driver: Driver, workdir, stats, record, step, checkpointer, write: bool):
    """The first writes: config.json, the run record and the normalisation stats (process 0), the
    unreadable checkpoints moved aside, the logs cut back to the restored step; opens logs and checkpoints.
    `write` False (a finished run re-run): none of that, the directory stays as it is."""
    process, num_processes = jax.process_index(), jax.process_count()
    if write and process == 0:  # the same in every process of a multi-host run
        rundir.write_json(os.path.join(workdir, rundir.CONFIG_FILE), config.to_dict())
        rundir.write_json(os.path.join(workdir, RECORD_FILE), record)
        if stats is not None:
            rundir.write_json(os.path.join(workdir, NORMALIZATION_FILE), stats)
    if write and checkpointer is not None and checkpointer.skipped:
        checkpointer.quarantine(checkpointer.skipped, process)
        sharding.sync("jaxmtf_quarantine")  # moved by process 0 before any process re-lists the steps
        checkpointer.reload()
    logger = rundir.RunLogger(workdir, process_index=process, process_count=num_processes,
                              writers=_open_writers(config, driver, workdir) if write and process == 0 else ())
    if write:
        logger.truncate_after(step)
    if step:
        absl_logging.info("resumed from the checkpoint at update %d in %s", step, workdir)
    if checkpointer is None:
        checkpointer = checkpoint_lib.Checkpointer(
            os.path.join(workdir, "checkpoints"), max_to_keep=driver.keep_checkpoints
        )
    return logger, checkpointer


def _open_writers(config, driver: Driver, workdir: str) -> List[writers_lib.MetricWriter]:
    """The metric writers of `writers` (and `tensorboard`), opened by the process that writes the run directory:
    every progress line's and evaluation's scalars go to them too (the JSONL files stay the record)."""
    names = writers_lib.parse_writers(driver.writers) + (["tensorboard"] if driver.tensorboard else [])
    if not names:
        return []
    return writers_lib.open_writers(names, workdir, wandb_project=driver.wandb_project, wandb_mode=driver.wandb_mode,
                                    config=config.to_dict() if hasattr(config, "to_dict") else dict(config))
