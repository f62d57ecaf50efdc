"""The training driver: `train` = `set_up`, the host loop, the summary.

`set_up` validates the config against the dataset, normalises, builds the
agent, its record and its grid of runs, and hands them to the run
directory's life (`lifecycle.set_up_runs`: lay out, lock, check, restore);
`train_runs` runs the host loop (`loop.run_loop`) over the compiled chunk
(`chunk.make_chunk_fn`) and writes the summary. The parts:

    chunk.py      the compiled program: a chunk of updates of every (seed, setting) run
    sharding.py   the runs laid over every device of every process, and back to the host
    lifecycle.py  the run directory around the loop: lock, record check, restore, logs, release
    loop.py       the host loop: dispatch, log, evaluate, checkpoint, pre-emption
    run_config.py the config's driver fields: validation, `Driver`, the seeds x hparams grid
"""
import os
from typing import Any, Callable, Dict, List, Optional, Tuple

import jax
import numpy as np
from absl import logging as absl_logging

from jaxmtf import agents
from jaxmtf.agents import make_agent
from jaxmtf.core import lifecycle
from jaxmtf.core.chunk import NOT_DIVERGED
from jaxmtf.core.lifecycle import RunSetup
from jaxmtf.core.loop import LoopResult, Preempted, diverged_steps, run_loop
from jaxmtf.core.run_config import ConfigError, check_action_space, check_against_dataset, run_grid, validate_config
from jaxmtf.data import dataset as dataset_lib
from jaxmtf.runs import record as record_lib
from jaxmtf.runs import rundir
from jaxmtf.types import Dataset, to_numpy


def train(
    config,
    dataset: Dataset,
    workdir: str,
    eval_fn: Optional[Callable] = None,
    stop_after: Optional[int] = None,
    config_checked: bool = False,
) -> Dict[str, Any]:
    """Trains `config.num_seeds` seeds x the sweep grid on `dataset`; resumes from `workdir`.

    eval_fn(agent, agent_states, step) -> {name: [S, H] array} is called every
    `config.eval_every` updates (0 = never) with the obs-normalising agent.
    `stop_after` ends this call after that many updates in total (tests use
    it to interrupt a run); a later call on the same workdir resumes.
    `config_checked`: the caller has run `validate_config` already (launchers check the config before they
    load the dataset), so it is not run twice.
    Returns the summary also written to summary.json, plus "state" (the
    RunState) and "agent" (the agent that acts on raw observations).

    Multi-host: when `jax.distributed` is initialised, every process calls
    this with the same arguments; the runs are split over all processes'
    devices, each process logs the runs it holds (metrics.process{i}.jsonl),
    and orbax writes one checkpoint of the whole state, which any number of
    processes can resume.
    """
    return train_runs(set_up(config, dataset, workdir, config_checked), eval_fn, stop_after)


def set_up(config, dataset: Dataset, workdir: str, config_checked: bool = False) -> RunSetup:
    """Validates, normalises, builds the agent and its chunk, lays the runs out, locks and restores.

    Every check that can refuse a start runs before anything is written:
    the config and the dataset before anything is built, then, under the
    workdir lock, the saved run record, the logs and the checkpoints. A
    refusal releases the lock and leaves the workdir as it was.
    """
    if not config_checked:
        validate_config(config)
    check_against_dataset(config, dataset.size)
    check_action_space(config, dataset)
    agents.check_dataset(config, dataset, ConfigError)
    data, stats = prepare_data(config, dataset)
    raw_agent = make_agent(config, dataset.obs_dim, dataset.act_dim)
    agents.run_length_warnings(config)
    grid = run_grid(config, raw_agent.default_hparams)
    run_record = record_lib.training_record(config, dataset.obs_dim, dataset.act_dim, dataset.size, grid.seeds,
                                        grid.labels, dataset_arrays=to_numpy(dataset), stats=stats)
    transitions = data.as_transitions(**agents.transition_fields(config))
    return lifecycle.set_up_runs(config, workdir, raw_agent, grid, transitions, run_record, stats)


def prepare_data(config, dataset: Dataset) -> Tuple[Dataset, Optional[Dict[str, np.ndarray]]]:
    """Normalises observations if the config asks (stats computed once, from the dataset)."""
    if not config.get("normalize_observations", False):
        return dataset, None
    stats = dataset_lib.normalization_stats(dataset.observations)
    return dataset_lib.normalize(dataset, stats), stats


def train_runs(run: RunSetup, eval_fn=None, stop_after: Optional[int] = None) -> Dict[str, Any]:
    """`train` after its set-up (`set_up`, or `lifecycle.set_up_runs` for other agent-like runs): the loop, the
    summary, and the workdir's release (whatever happens)."""
    num_updates, workdir = run.driver.num_updates, run.workdir
    try:
        if run.saved_summary is not None:  # finished already: a no-op that keeps its summary
            absl_logging.info("the run in %s is finished (update %d): nothing to do", workdir, run.step)
            return {**run.saved_summary, "state": run.state, "agent": run.agent}
        stop_at = min(num_updates, stop_after) if stop_after is not None else num_updates
        result = run_loop(run, eval_fn, stop_at)
        summary = summarise_run(run, result)
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


def summarise_run(run: RunSetup, result: LoopResult) -> Dict[str, Any]:
    """summary.json: where the run stands, this call's compile time and throughput, its last metrics,
    and each run's step of divergence (None for the runs that stayed finite)."""
    diverged = diverged_steps(result.state).reshape(-1)
    return {
        "algo": run.driver.algo,
        "step": result.step,
        "finished": result.step >= run.driver.num_updates,
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
    path = os.path.join(run.workdir, rundir.process_file(rundir.METRICS_FILE, jax.process_index(),
                                                                jax.process_count()))
    return [r for r in rundir.read_jsonl(path) if r["step"] == step]
