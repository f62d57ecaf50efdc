"""Runs a study: every (algorithm, dataset) cell of a sweep config, one compiled program per cell.

    python -m launch.sweep --config=launch/configs/sweeps/batchrl_study.py --workdir=runs/study

Datasets named `collect:PIPELINE` are collected into WORKDIR/data first and
reused; each cell trains in WORKDIR/runs/ALGO-DATASET (a standard run
directory); WORKDIR/sweep.json indexes them. Re-running the same command
skips finished cells and resumes the others exactly; SIGTERM/SIGINT stop
after the current chunk of the current cell (exit 143/130). Exit 2 if a cell
was refused (its message is in the log and in sweep.json).
"""
from absl import logging

from jaxmtf.workflows import sweep
from launch import common

_CONFIG, _WORKDIR = common.define_config_and_workdir("Sweep config file (launch/configs/sweeps/).",
                                                     "Sweep directory (created, or resumed if it exists).")


def run() -> None:
    index = sweep.run_sweep(_CONFIG.value, _WORKDIR.value)
    logging.info("sweep finished: %d cells in %s", len(index["cells"]), _WORKDIR.value)


def main(argv):
    del argv
    common.run_job(run, refusals=(sweep.SweepFailed,))


if __name__ == "__main__":
    common.main(main)
