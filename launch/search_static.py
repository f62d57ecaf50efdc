"""Searches the best static fusion vector with CEM (vmapped over the population).

    python -m launch.search_static --config=launch/configs/search_static.py --workdir=runs/static

Writes WORKDIR/static_weights.json: the best action, its fusion powers, its
held-out score and its full evaluation, and the search history.
"""
import os

from absl import flags, logging
from ml_collections import config_flags

from jaxmtf.runs import rundir
from jaxmtf.workflows import pipeline
from launch import common

_CONFIG = config_flags.DEFINE_config_file("config", None, "Search config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for static_weights.json.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    del argv
    result = pipeline.search_static(_CONFIG.value)
    os.makedirs(_WORKDIR.value, exist_ok=True)
    rundir.write_json(os.path.join(_WORKDIR.value, "static_weights.json"), result)
    logging.info("best static action %s: held-out return %.3f", result["action"], result["heldout_return"])


if __name__ == "__main__":
    common.main(main)
