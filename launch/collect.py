"""Collects a logged dataset in the simulator with a chosen behaviour policy.

    python -m launch.collect --config=launch/configs/collect/mixed.py --output=runs/data/mixed.npz

Writes OUTPUT (.npz) and its JSON sidecar (pipeline, behaviour policy,
simulator parameters, seed, the behaviour policy's true value). The config and
the output are checked before anything is simulated: a bad field, an existing
dataset (without --overwrite) or an unwritable folder is one line and exit 2.
"""
from absl import flags
from ml_collections import config_flags

from jaxmtf.data import collect
from launch import common

_CONFIG = config_flags.DEFINE_config_file("config", None, "Collection config file.", lock_config=True)
_OUTPUT = flags.DEFINE_string("output", None, "Path of the dataset to write (.npz).")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace an existing dataset at --output.")
flags.mark_flags_as_required(["config", "output"])


def main(argv):
    del argv
    common.run_job(lambda: collect.collect_and_save(_CONFIG.value, _OUTPUT.value, overwrite=_OVERWRITE.value))


if __name__ == "__main__":
    common.main(main)
