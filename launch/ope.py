"""Off-policy evaluation: FQE, IS, weighted IS, DR and marginalised IS of trained policies on a dataset.

    python -m launch.ope --config=launch/configs/ope.py --config.dataset=runs/data/mixed.npz \
        --config.policies=runs/td3_bc,baseline --workdir=runs/ope

Writes ope.jsonl, ope_report.json and the FQE run directory fqe/ into --workdir.
"""
from absl import logging

from jaxmtf.ope.episodes import OPEDataError
from jaxmtf.ope.targets import PolicySpecError
from jaxmtf.workflows import pipeline
from launch import common

_CONFIG, _WORKDIR = common.define_config_and_workdir("OPE config file.",
                                                     "Output directory (the FQE run inside it resumes).")


def evaluate() -> None:
    result = pipeline.ope_from_config(_CONFIG.value, _WORKDIR.value)
    for name, entry in result["report"]["estimators"].items():
        logging.info("%s: picks %s (by estimate), %s (by lower bound)", name,
                     entry["selection"]["by_estimate"], entry["selection"]["by_lower_bound"])


def main(argv):
    del argv
    common.run_job(evaluate, refusals=(OPEDataError, PolicySpecError))


if __name__ == "__main__":
    common.main(main)
