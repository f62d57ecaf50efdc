"""The host loop: dispatch chunks, log them while the next one runs, evaluate and checkpoint when due.

Between chunks the host only logs, evaluates and checkpoints; the loop stops
cleanly on SIGTERM / SIGINT after the current chunk, with a checkpoint
(`Preempted`). A diverged run is reported once and left to itself.
"""
import signal
import sys
import threading
import time
from typing import Callable, List, NamedTuple, Optional, Tuple

import jax
import numpy as np
import tqdm
from absl import logging as absl_logging

from jaxmtf.core.chunk import NOT_DIVERGED, RunState
from jaxmtf.core.lifecycle import RunSetup
from jaxmtf.core.sharding import to_host
from jaxmtf.runs import rundir


class Preempted(Exception):
    """train() stopped on SIGTERM or SIGINT after checkpointing; re-running the same call resumes."""

    def __init__(self, signum: int, step: int, workdir: str):
        self.signum, self.step, self.workdir = signum, step, workdir
        super().__init__(f"stopped by {signal.Signals(signum).name} at update {step}; checkpoint written in "
                         f"{workdir}; re-run the same command to resume")


class LoopResult(NamedTuple):
    state: RunState
    step: int
    final_records: List[dict]  # the log records of the last chunk this call ran ([] if it ran none)
    compile_seconds: Optional[float]  # compile + the first chunk of this call (None if it ran none)
    timed_updates: int  # updates per run after the first chunk of this call
    timed_seconds: float  # wall time of those updates, host work included
    stopped_by: Optional[int] = None  # the signal that pre-empted the loop (None: it ran to stop_at)


class _Clock:
    """Times a call's chunks: the first (compile included) apart from the rest; on a terminal, draws a tqdm bar
    (rate, ETA, the chunk's losses) instead of the progress lines that logs and notebooks get."""

    def __init__(self, step: int, num_updates: int):
        self.start, self.start_step, self.compile_seconds = time.time(), step, None
        self.bar = None
        if sys.stderr.isatty() and jax.process_index() == 0:
            self.bar = tqdm.tqdm(total=num_updates, initial=step, unit="update", dynamic_ncols=True, file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

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


def run_loop(run: RunSetup, eval_fn: Optional[Callable], stop_at: int) -> LoopResult:
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
    chunk_size, num_updates = run.driver.chunk_size, run.driver.num_updates
    eval_every = run.driver.eval_every if eval_fn is not None else 0
    checkpoint_every = run.driver.checkpoint_every
    state, step, records, clock = run.state, run.step, [], _Clock(run.step, num_updates)
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
                absl_logging.warning("%s", Preempted(stopped_by, step, run.workdir))
                break
    if pending is not None:
        records = _log_chunk(run, *pending, clock, num_updates)
    clock.close()
    timed_updates, timed_seconds = clock.timed(step)
    return LoopResult(state, step, records, clock.compile_seconds, timed_updates, timed_seconds, stopped_by)


def _due(step: int, every: int) -> bool:
    return bool(every) and step % every == 0


def _save(run: RunSetup, step: int, state: RunState) -> None:
    """A checkpoint at `step`, after the logs up to it are on disk (a machine crash keeps them too)."""
    run.logger.sync()
    run.checkpointer.save(step, state, run.record)


def diverged_steps(state: RunState) -> np.ndarray:
    """[S, H] the update of each run's divergence, NOT_DIVERGED for healthy runs (NaN-free host copy)."""
    diverged = to_host(state.diverged_at)
    return np.where(np.isnan(diverged), NOT_DIVERGED, diverged).astype(np.int64)


def _evaluate(run: RunSetup, eval_fn: Callable, state: RunState, step: int) -> None:
    """Evaluates every run; a diverged run's results are marked diverged (null values), not scored."""
    results = to_host(eval_fn(run.agent, state.agent, step))
    diverged = diverged_steps(state)
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
    if clock.bar is not None:
        clock.bar.update(step - clock.bar.n)
        clock.bar.set_postfix_str(_loss_text(records).strip())
    else:
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
