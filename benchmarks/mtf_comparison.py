"""IntegratedRL-MTF against BatchRL-MTF and the references, on the default simulator (benchmarks/README.md).

    python benchmarks/mtf_comparison.py --workdir=runs/mtf_comparison --out=benchmarks/results/mtf_comparison_cpu.json

The rows and their sizes are jaxmtf/mtf_comparison.py's (SIZES); this writes them and prints the tables.
"""
import json
import os
import sys

from absl import app, flags, logging

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jaxmtf import mtf_comparison  # noqa: E402

_WORKDIR = flags.DEFINE_string("workdir", "runs/mtf_comparison", "Where the runs go (resumed if present).")
_OUT = flags.DEFINE_string("out", "benchmarks/results/mtf_comparison_cpu.json", "Results JSON.")


def main(argv):
    del argv
    out = mtf_comparison.compare(_WORKDIR.value, mtf_comparison.SIZES)
    os.makedirs(os.path.dirname(os.path.abspath(_OUT.value)), exist_ok=True)
    with open(_OUT.value, "w") as f:
        json.dump(out, f, indent=2)
    print(mtf_comparison.markdown(out))


if __name__ == "__main__":
    logging.set_verbosity(logging.INFO)
    app.run(main)
