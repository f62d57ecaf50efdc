"""Off-policy evaluation: FQE, IS, weighted IS, DR and marginalised IS of trained policies on a dataset.

    python -m launch.ope --config=launch/configs/ope.py --config.dataset=runs/data/mixed.npz \
        --config.policies=runs/td3_bc,baseline --workdir=runs/ope

Writes ope.jsonl, ope_report.json and the FQE run directory fqe/ into --workdir.
"""
from jaxmtf.ope import summary
from jaxmtf.ope.episodes import OPEDataError
from jaxmtf.ope.targets import PolicySpecError
from jaxmtf.workflows import pipeline
from launch import common

_CONFIG, _WORKDIR = common.define_config_and_workdir("OPE config file.",
                                                     "Output directory (the FQE run inside it resumes).")


def evaluate() -> None:
    """Runs OPE (FQE's progress lines come from the training driver on the console) and prints the table of
    estimates, the picks and the warnings (jaxmtf.ope.summary)."""
    result = pipeline.ope_from_config(_CONFIG.value, _WORKDIR.value)
    summary.print_summary(result)


def main(argv):
    del argv
    common.run_job(evaluate, refusals=(OPEDataError, PolicySpecError))


if __name__ == "__main__":
    common.main(main)
