"""Multi-host flags for the launchers: one process per host, `jax.distributed` joins them.

    # each of N hosts (process ids 0..N-1), the same config and --workdir on a shared filesystem:
    python -m launch.train --config=... --workdir=/shared/runs/td3 \
        --coordinator_address=host0:12345 --num_processes=N --process_id=I

On a TPU pod slice or under Slurm, `--distributed` alone lets JAX read the
coordinator, process count and id from the environment. Without any of these
flags the launcher runs as a single process.
"""
import jax
from absl import flags, logging

_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False, "Join a multi-host run, reading coordinator/count/id from the cluster (TPU pod, Slurm)."
)
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "host:port of process 0 in a multi-host run.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Number of processes in a multi-host run.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's id in 0..num_processes-1.")


def initialize() -> None:
    """Calls jax.distributed.initialize if the flags ask for a multi-host run; otherwise nothing."""
    explicit = (_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
    if not _DISTRIBUTED.value and all(v is None for v in explicit):
        return
    if not _DISTRIBUTED.value and any(v is None for v in explicit):
        raise flags.ValidationError(
            "--coordinator_address, --num_processes and --process_id go together (or use --distributed)"
        )
    # CPU processes need a cross-process collectives backend (orbax synchronises the
    # processes around each checkpoint); GPUs and TPUs have their own and ignore this.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=_COORDINATOR.value, num_processes=_NUM_PROCESSES.value, process_id=_PROCESS_ID.value
    )
    logging.info("process %d of %d; %d local of %d devices", jax.process_index(), jax.process_count(),
                 jax.local_device_count(), jax.device_count())
