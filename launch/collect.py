"""Collects a logged dataset in the simulator with a chosen behaviour policy.

    python -m launch.collect --config=launch/configs/collect/mixed.py --output=runs/data/mixed.npz

Writes OUTPUT (.npz) and its JSON sidecar (pipeline, behaviour policy,
simulator parameters, seed, the behaviour policy's true value).
"""
from absl import app, flags
from ml_collections import config_flags

from jaxmtf.data import collect

_CONFIG = config_flags.DEFINE_config_file("config", None, "Collection config file.", lock_config=True)
_OUTPUT = flags.DEFINE_string("output", None, "Path of the dataset to write (.npz).")
flags.mark_flags_as_required(["config", "output"])


def main(argv):
    del argv
    collect.collect_and_save(_CONFIG.value, _OUTPUT.value)


if __name__ == "__main__":
    app.run(main)
