"""Trains an offline agent for several seeds (and a hparam grid) in one program.

    python -m launch.train --config=launch/configs/td3.py \
        --config.dataset=runs/data/mixed.npz --config.num_seeds=4 --workdir=runs/td3

Re-running the same command on the same workdir resumes from the newest
checkpoint; SIGTERM or SIGINT checkpoints after the current chunk and exits
with 128 + the signal's number (143, 130), and the same command resumes. Writes config.json, metrics.jsonl, eval.jsonl, checkpoints/ and
summary.json into --workdir. Multi-host: see launch/distributed.py.
"""
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from jaxmtf import pipeline, training
from launch import distributed, logs

_CONFIG = config_flags.DEFINE_config_file("config", None, "Training config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (created, or resumed if it exists).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    del argv
    distributed.initialize()
    logs.quiet_orbax_logs()
    try:
        summary = pipeline.train_from_config(_CONFIG.value, _WORKDIR.value)
    except training.Preempted as stopped:  # the loop has logged its one line
        sys.exit(128 + stopped.signum)
    except pipeline.REFUSALS as refused:  # a bad input: its one line, not a traceback
        logging.error("%s", refused)
        sys.exit(2)
    logging.info("finished at update %d; run directory %s", summary["step"], _WORKDIR.value)


if __name__ == "__main__":
    app.run(main)
