"""The main job: collect a dataset, train an offline agent for several seeds, compare.

    python -m launch.demo --workdir=runs/demo

Collects a logged dataset in the simulator, finds the best static fusion
weights with CEM, trains the configured offline agent for several seeds in one
program, and scores everything on the same fresh users. Prints the table and
writes it to WORKDIR/results.md (and results.json), with the paired differences of
the learned seeds from the behaviour policy and from the best static weights.
"""
from absl import flags
from ml_collections import config_flags

from jaxmtf.workflows import demo
from launch import common, logs

_CONFIG = config_flags.DEFINE_config_file("config", "launch/configs/demo.py", "Demo config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory of the demo.")
flags.mark_flags_as_required(["workdir"])


def main(argv):
    del argv
    logs.quiet_orbax_logs()
    print(demo.run_demo(_CONFIG.value, _WORKDIR.value)["markdown"])


if __name__ == "__main__":
    common.main(main)
