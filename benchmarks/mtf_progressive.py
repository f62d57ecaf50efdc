"""Does progressive training climb? IntegratedRL-MTF against BatchRL-MTF at equal session budgets (issue 19).

    python benchmarks/mtf_progressive.py --workdir=runs/mtf_progressive --out=benchmarks/results/mtf_progressive.json

The rows, their intervals and the default sizes are jaxmtf/workflows/mtf_comparison.py's (SIZES); a flag given here
overrides one size. Everything is resumable: re-running the command skips finished chains (each a
progressive run directory), so a run cut off by the session's end continues where it stopped.
"""
import json
import os
import platform
import sys
import time

import jax
from absl import app, flags, logging

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jaxmtf.workflows import mtf_comparison  # noqa: E402

_WORKDIR = flags.DEFINE_string("workdir", "runs/mtf_progressive", "Where the chains go (resumed if present).")
_OUT = flags.DEFINE_string("out", "benchmarks/results/mtf_progressive.json", "Results JSON.")
_SIZE_FLAGS = {
    "budgets": flags.DEFINE_list("budgets", None, "Session budgets N per seed (all rounds together)."),
    "num_seeds": flags.DEFINE_integer("num_seeds", None, "Seeds: independent chains."),
    "rounds": flags.DEFINE_integer("rounds", None, "Progressive rounds R."),
    "num_updates": flags.DEFINE_integer("num_updates", None, "Gradient updates per round (and of one-round runs)."),
    "hidden": flags.DEFINE_list("hidden", None, "Hidden widths of every network."),
    "num_critics": flags.DEFINE_integer("num_critics", None, "IntegratedRL-MTF critics per group."),
    "eval_users": flags.DEFINE_integer("eval_users", None, "Fresh evaluation users."),
    "gammas": flags.DEFINE_list("gammas", None, "Discounts of the IntegratedRL-MTF rows (the paper's 0.9 first)."),
    "gamma_budgets": flags.DEFINE_list("gamma_budgets", None, "Budgets that run every gamma (others: the first)."),
    "ablations": flags.DEFINE_list("ablations", None, "integrated_rl VARIANTS run at the ablation budget."),
    "ablation_budget": flags.DEFINE_integer("ablation_budget", None, "The budget of the ablations."),
    "offline_budgets": flags.DEFINE_list("offline_budgets", None, "Budgets at which the offline agents train."),
    "offline": flags.DEFINE_list("offline", None, "Agents trained on IntegratedRL-MTF's data (iql, td3_bc, cql)."),
}
_CASTS = {"budgets": int, "hidden": int, "gammas": float, "gamma_budgets": int, "offline_budgets": int}


def sizes_from_flags():
    sizes = dict(mtf_comparison.SIZES)
    for name, flag in _SIZE_FLAGS.items():
        if flag.value is not None:
            value = flag.value
            sizes[name] = tuple(_CASTS.get(name, str)(v) for v in value) if isinstance(value, list) else value
    return sizes


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def main(argv):
    del argv
    start = time.time()
    out = mtf_comparison.run(_WORKDIR.value, sizes_from_flags())
    oracle_path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "oracle_progressive_cpu.json")
    if os.path.exists(oracle_path):  # benchmarks/oracle_progressive.py's run: its own 2,000 users
        with open(oracle_path) as f:
            oracle = json.load(f)
        out["oracle_progressive"] = [max(r["switch"]["mean"], r["cma_linear"]["mean"]) for r in oracle["rounds"][1:]]
        out["oracle_baseline_return"] = oracle["baseline"]["mean"]
        out["oracle_note"] = ("the better oracle chain per round 1..R, scored on the oracle benchmark's own users "
                              "(compare gains over oracle_baseline_return, not levels)")
    out["machine"] = {"cpu": cpu_name(), "cores": os.cpu_count(), "backend": jax.default_backend(),
                      "load_average_at_end": os.getloadavg()}
    out["wall_seconds"]["this_invocation"] = time.time() - start  # a resumed run's earlier parts are not in it
    out["command"] = " ".join(sys.argv)
    os.makedirs(os.path.dirname(os.path.abspath(_OUT.value)), exist_ok=True)
    with open(_OUT.value, "w") as f:
        json.dump(out, f, indent=2)
    print(mtf_comparison.markdown(out))


if __name__ == "__main__":
    logging.set_verbosity(logging.INFO)
    app.run(main)
