"""Orbax checkpoints of the whole training state of every seed, each with a checksum of its own.

A checkpoint holds the run state (params, target params, optimiser states,
step and RNG keys of all seeds x hparam settings) plus a small JSON record
of what produced it (algorithm, shapes, seeds, hparam grid, dataset) and a
checksum of the state (`state_checksum`). Restoring checks that record
against the current run first, so resuming a workdir with a different
config fails with a message naming the field, not with a shape error inside
orbax.

Integrity: `restore_latest` tries the checkpoints newest first. One that
orbax cannot read (truncated, missing files, damaged metadata) or whose
restored state does not match its checksum (flipped bytes) is skipped with a
warning, and the next older one is tried; if none is readable it raises
`CheckpointError` instead of silently starting from scratch. The skipped
ones are moved out of the way (`quarantine`), into `checkpoints.corrupt/`
beside the checkpoint directory, so that the resumed run can save those
steps again and the evidence is kept.
"""
import os
import shutil
import time
from typing import Any, Dict, List, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from absl import logging as absl_logging


class CheckpointError(ValueError):
    """A checkpoint does not match the run that tries to restore it, or none is readable."""


# ----------------------------------------------------------------- checksum


def _words(x: jax.Array) -> jax.Array:
    """The array's bits as uint32 words (8-byte types give two words per element, smaller ones one)."""
    if x.dtype == jnp.bool_:
        return x.astype(jnp.uint32)
    size = x.dtype.itemsize
    if size == 4:
        return jax.lax.bitcast_convert_type(x, jnp.uint32)
    if size == 8:
        return jax.lax.bitcast_convert_type(x, jnp.uint32)  # [..., 2]
    return jax.lax.bitcast_convert_type(x, {2: jnp.uint16, 1: jnp.uint8}[size]).astype(jnp.uint32)


def _leaf_checksum(x: jax.Array) -> jax.Array:
    """[2] uint32: the sum of the words and their sum weighted by odd position weights (mod 2^32).

    The plain sum catches any changed word; the weighted one also catches
    words that trade places. Positions come from broadcasted iotas, not a
    reshape, so a sharded leaf is summed where it lies.
    """
    words = _words(x)
    position = jnp.zeros(words.shape, jnp.uint32)
    stride = 1
    for axis in reversed(range(words.ndim)):
        position = position + jax.lax.broadcasted_iota(jnp.uint32, words.shape, axis) * jnp.uint32(stride % 2**32)
        stride *= words.shape[axis]
    weights = position * jnp.uint32(2) + jnp.uint32(1)
    return jnp.stack([jnp.sum(words, dtype=jnp.uint32), jnp.sum(words * weights, dtype=jnp.uint32)])


@jax.jit
def _checksums(leaves):
    return [_leaf_checksum(x) for x in leaves]


def state_checksum(state: Any) -> List[List[int]]:
    """A checksum of every leaf of a (possibly sharded) state, as JSON-ready ints: [[sum, weighted], ...]."""
    sums = jax.device_get(_checksums(jax.tree.leaves(state)))
    return [[int(v) for v in np.asarray(s)] for s in sums]


# ----------------------------------------------------------------- the manager


class Checkpointer:
    def __init__(self, directory: str, max_to_keep: int = 3):
        if int(max_to_keep) < 1:  # 0 would keep none: a finished run with nothing to resume
            raise CheckpointError(f"config field 'keep_checkpoints': got {max_to_keep}, expected an integer >= 1")
        self.directory = os.path.abspath(directory)
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
        )

    def latest_step(self) -> Optional[int]:
        return self._manager.latest_step()

    def save(self, step: int, state: Any, meta: Dict[str, Any]) -> None:
        meta = {**meta, "checksum": state_checksum(state)}
        self._manager.save(
            step,
            args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
            force=True,
        )
        # Block until written: the host loop may be killed right after this returns.
        self._manager.wait_until_finished()

    def restore_latest(self, like_state: Any, meta: Dict[str, Any]) -> Optional[Tuple[int, Any]]:
        """(step, state) of the newest readable checkpoint, or None if there is none at all.

        `like_state` gives the structure, shapes, dtypes and shardings to
        restore into. Unreadable or checksum-failing checkpoints are skipped
        with a warning and listed in `self.skipped` (for `quarantine`); a
        record that differs from `meta` raises CheckpointError at once.
        """
        self.skipped: List[int] = []
        steps = sorted(self._manager.all_steps(), reverse=True)
        reasons = []
        for step in steps:
            restored, reason = self._try_restore(step, like_state, meta)
            if restored is not None:
                return step, restored
            absl_logging.warning("checkpoint %d in %s is unreadable (%s): trying the previous one", step,
                                 self.directory, reason)
            self.skipped.append(step)
            reasons.append(f"{step}: {reason}")
        if steps:
            raise _none_readable(self.directory, reasons)
        return None

    def check_latest_record(self, meta: Dict[str, Any]) -> None:
        """The newest readable checkpoint's record against `meta`, before any state is built: a mismatch
        or no readable record at all raises CheckpointError (restore_latest then reads the states)."""
        reasons = []
        for step in sorted(self._manager.all_steps(), reverse=True):
            try:
                saved = self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
            except Exception as e:  # a damaged record: restore_latest will skip this one and warn
                reasons.append(f"{step}: its record does not load: {_first_line(e)}")
                continue
            check_record(saved, meta, self.directory)
            return
        if reasons:
            raise _none_readable(self.directory, reasons)

    def _try_restore(self, step: int, like_state: Any, meta: Dict[str, Any]) -> Tuple[Optional[Any], str]:
        """(state, "") if checkpoint `step` restores and checks out, else (None, why not)."""
        try:
            saved_meta = self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
        except Exception as e:  # orbax raises many types for damaged files; the reason is logged
            return None, f"its record does not load: {_first_line(e)}"
        check_record(saved_meta, meta, self.directory)
        # Restored straight into like_state's sharding (each process reads only its runs' shards).
        abstract = jax.tree.map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)), like_state
        )
        try:
            state = self._manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)))
        except Exception as e:
            return None, f"its state does not load: {_first_line(e)}"
        state = state["state"]
        problem = self._checksum_problem(step, state, saved_meta)
        return (None, problem) if problem else (state, "")

    def _checksum_problem(self, step: int, state: Any, saved_meta: Dict[str, Any]) -> str:
        """"" if `state` matches the checksum its record holds; a record without one is warned about, naming
        the checkpoint (it restores: older jaxmtf wrote none), since its bytes cannot be verified."""
        if "checksum" not in saved_meta:
            absl_logging.warning("checkpoint %d in %s has no checksum in its record: its state is restored "
                                 "unverified", step, self.directory)
            return ""
        return "" if state_checksum(state) == saved_meta["checksum"] else "its state does not match its checksum"

    def quarantine(self, steps: List[int], process_index: int = 0) -> None:
        """Moves the skipped checkpoints into `checkpoints.corrupt/` (process 0 only); then call `reload`."""
        if steps and process_index == 0:
            aside = self.directory.rstrip("/") + ".corrupt"
            os.makedirs(aside, exist_ok=True)
            for step in steps:
                target = os.path.join(aside, f"{step}.{time.strftime('%Y%m%dT%H%M%S')}")
                shutil.move(os.path.join(self.directory, str(step)), target)
                absl_logging.warning("moved the unreadable checkpoint %d to %s", step, target)

    def reload(self) -> None:
        """Re-lists the steps on disk (after `quarantine`)."""
        self._manager.reload()

    def all_steps(self):
        return list(self._manager.all_steps())

    def restore_for_evaluation(self, like_state: Any, step: Optional[int] = None) -> Tuple[int, Any]:
        """(step, state) of checkpoint `step` (default the newest), without the resume checks.

        For reading a trained policy (OPE, analysis), where the record of the
        run that wrote it is not this process's to match; `like_state` still
        fixes the structure, shapes and dtypes, so a wrong agent config fails.
        The state is verified against its checksum (CheckpointError if it fails).
        """
        steps = self.all_steps()
        if not steps:
            raise CheckpointError(f"no checkpoint in {self.directory}")
        step = max(steps) if step is None else int(step)
        if step not in steps:
            raise CheckpointError(f"no checkpoint at step {step} in {self.directory} (saved steps: {sorted(steps)})")
        abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), like_state)
        try:
            restored = self._manager.restore(step, args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
        except Exception as e:  # orbax raises many types for damaged files
            raise CheckpointError(f"checkpoint {step} in {self.directory}: does not load ({_first_line(e)})") from e
        problem = self._checksum_problem(step, restored["state"], restored["meta"])
        if problem:  # no silent fallback here: the caller asked for this checkpoint's policy
            raise CheckpointError(f"checkpoint {step} in {self.directory}: {problem} (damaged bytes); evaluate "
                                  f"another with RUN_DIR@STEP (saved steps: {sorted(steps)})")
        return step, restored["state"]

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()


def _none_readable(directory: str, reasons: List[str]) -> CheckpointError:
    return CheckpointError(
        f"checkpoint directory '{directory}': got no readable checkpoint ({'; '.join(reasons)}), expected at least "
        "one that restores and matches its checksum; set --config.force_new_run=True to start afresh (it deletes "
        "this run's checkpoints and logs)"
    )


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:200] if text else ''}"


# Record fields that only warn when they differ: the same data moved to another path is the same run.
WARN_ONLY_FIELDS = ("dataset_path",)


# Not what a run is: the checksum guards the record itself; provenance (versions, commit, device) may change
# between a run's starts.
NOT_COMPARED = ("checksum", "provenance")


def check_record(saved: Dict[str, Any], meta: Dict[str, Any], where: str) -> None:
    """Refuses a resume whose record differs from the saved one, naming the field and both values."""
    # In the record's own order: what a run is (algo, agent, data, normalisation) before what follows from it.
    for field in [f for f in list(meta) + [f for f in saved if f not in meta] if f not in NOT_COMPARED]:
        if saved.get(field) != _json_like(meta.get(field)):
            field, now, was = _first_difference(field, _json_like(meta.get(field)), saved.get(field))
            if field in WARN_ONLY_FIELDS:
                absl_logging.warning("%s: %s is %r, was %r (the data's checksum is unchanged)", where, field,
                                     meta.get(field), saved.get(field))
                continue
            raise CheckpointError(
                f"checkpoint field '{field}' in {where}: got {now!r} in this run, expected "
                f"the saved {was!r} (use a new --workdir, the original config, or "
                "--config.force_new_run=True to start afresh)"
            )


def _first_difference(field: str, now, was):
    """(dotted name, this run's value, the saved value) of the first leaf that differs inside two records'
    field: 'agent.alpha', 2.5, 5.0 rather than two whole agent dicts."""
    if isinstance(now, dict) and isinstance(was, dict):
        for key in list(now) + [k for k in was if k not in now]:
            if now.get(key) != was.get(key):
                return _first_difference(f"{field}.{key}", now.get(key), was.get(key))
    return field, now, was


def _json_like(value):
    """Tuples become lists after a JSON round trip; compare in that form."""
    if isinstance(value, tuple):
        return [_json_like(v) for v in value]
    if isinstance(value, list):
        return [_json_like(v) for v in value]
    if isinstance(value, dict):
        return {k: _json_like(v) for k, v in value.items()}
    return value
