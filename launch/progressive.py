"""Progressive training: rounds of explore in the simulator, train offline, evaluate, redeploy.

    python -m launch.progressive --config=launch/configs/integrated_rl.py --workdir=runs/integrated_rl
    python -m launch.progressive --config=launch/configs/batchrl_mtf.py --workdir=runs/batchrl_mtf

Re-running the same command on the same workdir resumes where it stopped
(mid-round included). The run directory: see jaxmtf/workflows/progressive.py.
"""
from absl import logging

from jaxmtf.workflows import progressive
from launch import common

_CONFIG, _WORKDIR = common.define_config_and_workdir("Progressive training config file.",
                                                     "Run directory (created, or resumed if it exists).")


def run() -> None:
    result = progressive.run_progressive(_CONFIG.value, _WORKDIR.value)
    for record in result["rounds"]:
        logging.info("round %d: trained mean return %.2f, collecting %.2f", record["round"],
                     sum(record["trained"]["undiscounted_return"]) / len(record["seeds"]),
                     sum(record["collecting"]["undiscounted_return"]) / len(record["seeds"]))
    logging.info("finished; run directory %s", _WORKDIR.value)


def main(argv):
    del argv
    common.run_job(run)


if __name__ == "__main__":
    common.main(main)
