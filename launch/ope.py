"""Off-policy evaluation: FQE, IS, weighted IS, DR and marginalised IS of trained policies on a dataset.

    python -m launch.ope --config=launch/configs/ope.py --config.dataset=runs/data/mixed.npz \
        --config.policies=runs/td3_bc,baseline --workdir=runs/ope

Writes ope.jsonl, ope_report.json and the FQE run directory fqe/ into --workdir.
"""
from absl import app, flags, logging
from ml_collections import config_flags

from jaxmtf import pipeline
from launch import logs

_CONFIG = config_flags.DEFINE_config_file("config", None, "OPE config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory (the FQE run inside it resumes).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    del argv
    logs.quiet_orbax_logs()
    result = pipeline.ope_from_config(_CONFIG.value, _WORKDIR.value)
    for name, entry in result["report"]["estimators"].items():
        logging.info("%s: picks %s (by estimate), %s (by lower bound)", name,
                         entry["selection"]["by_estimate"], entry["selection"]["by_lower_bound"])


if __name__ == "__main__":
    app.run(main)
