"""Trains an offline agent for several seeds (and a hparam grid) in one program.

    python -m launch.train --config=launch/configs/td3.py \
        --config.dataset=runs/data/mixed.npz --config.num_seeds=4 --workdir=runs/td3

Re-running the same command on the same workdir resumes from the newest
checkpoint; SIGTERM or SIGINT checkpoints after the current chunk and exits
with 128 + the signal's number (143, 130), and the same command resumes.
Writes config.json, metrics.jsonl, eval.jsonl, checkpoints/ and
summary.json into --workdir. Multi-host: see launch/distributed.py.
"""
from absl import logging

from jaxmtf.workflows import pipeline
from launch import common, distributed

_CONFIG, _WORKDIR = common.define_config_and_workdir("Training config file.",
                                                     "Run directory (created, or resumed if it exists).")


def train() -> None:
    summary = pipeline.train_from_config(_CONFIG.value, _WORKDIR.value)
    for line in pipeline.closing_lines(summary, _WORKDIR.value):
        logging.info("%s", line)
    logging.info("run directory %s", _WORKDIR.value)


def main(argv):
    del argv
    distributed.initialize()
    common.run_job(train)


if __name__ == "__main__":
    common.main(main)
