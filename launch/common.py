"""What every run launcher shares: the --config/--workdir flags, and how a run ends.

A launcher's job runs under `run_job`: orbax's INFO lines hidden; SIGTERM/SIGINT (the driver checkpoints
after the current chunk and raises Preempted) exit 128 + the signal's number, so the same command resumes;
a refused input (a bad config, dataset, checkpoint: one line naming the field) logs that line and exits 2
rather than printing a traceback.
"""
import sys
from typing import Callable, Tuple

from absl import flags, logging
from ml_collections import config_flags

from jaxmtf import pipeline, training
from launch import logs


def define_config_and_workdir(config_help: str, workdir_help: str) -> Tuple:
    """The required --config (a get_config() file, locked) and --workdir flags."""
    config = config_flags.DEFINE_config_file("config", None, config_help, lock_config=True)
    workdir = flags.DEFINE_string("workdir", None, workdir_help)
    flags.mark_flags_as_required(["config", "workdir"])
    return config, workdir


def run_job(job: Callable[[], None], refusals: Tuple[type, ...] = ()) -> None:
    """Runs `job()`; pre-emption exits 128 + signum, a refusal (pipeline.REFUSALS + `refusals`) exits 2."""
    logs.quiet_orbax_logs()
    try:
        job()
    except training.Preempted as stopped:  # the loop has logged its one line
        sys.exit(128 + stopped.signum)
    except (*pipeline.REFUSALS, *refusals) as refused:  # a bad input: its one line, not a traceback
        logging.error("%s", refused)
        sys.exit(2)
