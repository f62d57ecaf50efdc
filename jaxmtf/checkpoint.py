"""Orbax checkpoints of the whole training state of every seed.

A checkpoint holds the run state (params, target params, optimiser states,
step and RNG keys of all seeds x hparam settings) plus a small JSON record
of what produced it (algorithm, shapes, seeds, hparam grid). Restoring checks
that record against the current run first, so resuming a workdir with a
different config fails with a message naming the field, not with a shape
error inside orbax.
"""
import os
from typing import Any, Dict, Optional, Tuple

import jax
import orbax.checkpoint as ocp


class CheckpointError(ValueError):
    """A checkpoint does not match the run that tries to restore it."""


class Checkpointer:
    def __init__(self, directory: str, max_to_keep: int = 3):
        self.directory = os.path.abspath(directory)
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
        )

    def latest_step(self) -> Optional[int]:
        return self._manager.latest_step()

    def save(self, step: int, state: Any, meta: Dict[str, Any]) -> None:
        self._manager.save(
            step,
            args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
            force=True,
        )
        # Block until written: the host loop may be killed right after this returns.
        self._manager.wait_until_finished()

    def restore_latest(self, like_state: Any, meta: Dict[str, Any]) -> Optional[Tuple[int, Any]]:
        """(step, state) of the newest checkpoint, or None if there is none.

        `like_state` gives the structure, shapes and dtypes to restore into.
        """
        step = self._manager.latest_step()
        if step is None:
            return None
        saved_meta = self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
        for field in sorted(set(meta) | set(saved_meta)):
            if saved_meta.get(field) != _json_like(meta.get(field)):
                raise CheckpointError(
                    f"checkpoint field '{field}' in {self.directory}: saved {saved_meta.get(field)!r}, "
                    f"this run has {meta.get(field)!r}; use a new --workdir or the original config"
                )
        # Restored straight into like_state's sharding (each process reads only its runs' shards).
        abstract = jax.tree.map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)), like_state
        )
        restored = self._manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)))
        return step, restored["state"]

    def all_steps(self):
        return list(self._manager.all_steps())

    def restore_for_evaluation(self, like_state: Any, step: Optional[int] = None) -> Tuple[int, Any]:
        """(step, state) of checkpoint `step` (default the newest), without the resume checks.

        For reading a trained policy (OPE, analysis), where the record of the
        run that wrote it is not this process's to match; `like_state` still
        fixes the structure, shapes and dtypes, so a wrong agent config fails.
        """
        steps = self.all_steps()
        if not steps:
            raise CheckpointError(f"no checkpoint in {self.directory}")
        step = max(steps) if step is None else int(step)
        if step not in steps:
            raise CheckpointError(f"no checkpoint at step {step} in {self.directory} (saved steps: {sorted(steps)})")
        abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), like_state)
        restored = self._manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)))
        return step, restored["state"]

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()


def _json_like(value):
    """Tuples become lists after a JSON round trip; compare in that form."""
    if isinstance(value, tuple):
        return [_json_like(v) for v in value]
    if isinstance(value, list):
        return [_json_like(v) for v in value]
    if isinstance(value, dict):
        return {k: _json_like(v) for k, v in value.items()}
    return value
