"""The reachable-headroom curve: oracle progressive chains around the baseline (jaxmtf/sim/mtf/oracle.py).

    python benchmarks/oracle_progressive.py --out=benchmarks/results/oracle_progressive_cpu.json

For every round k = 1..R, the best a method that follows IntegratedRL-MTF's box
(half-width w around the previous round's policy, round 0 = the production
baseline) could reach, with two oracle targets: the hand-written switch rule
(untuned) and a linear tanh policy re-tuned per round by CMA-ES on training
users. Everything is scored on the same fresh evaluation users. Intervals are
Student-t 95% intervals over evaluation users (the users are the sample; the
CMA-ES run is one run, its own seed-to-seed spread is not in them); the
differences to the baseline are paired over the same users.
"""
import json
import os
import platform
import sys
import time

import jax
import numpy as np
from absl import app, flags, logging
from scipy import stats as scipy_stats

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jaxmtf.sim.mtf import env as sim_env  # noqa: E402
from jaxmtf.sim.mtf import oracle  # noqa: E402

_ROUNDS = flags.DEFINE_integer("rounds", 5, "Progressive rounds R.")
_HALF_WIDTH = flags.DEFINE_float("half_width", 0.15, "Half-width w of the trusted box around the previous policy.")
_EVAL_USERS = flags.DEFINE_integer("eval_users", 2000, "Fresh evaluation users (the same for every policy).")
_TRAIN_USERS = flags.DEFINE_integer("train_users", 500, "CMA-ES training users per generation (new each generation).")
_GENERATIONS = flags.DEFINE_integer("generations", 30, "CMA-ES generations per round.")
_POPSIZE = flags.DEFINE_integer("popsize", 0, "CMA-ES population (0: Hansen's default 4 + 3 ln n).")
_SIGMA0 = flags.DEFINE_float("sigma0", 0.5, "CMA-ES initial step size, every round.")
_DIAGONAL = flags.DEFINE_bool("diagonal", True, "sep-CMA-ES (diagonal covariance) instead of full CMA-ES.")
_STATS_USERS = flags.DEFINE_integer("stats_users", 500, "Baseline sessions for the observation statistics.")
_MAX_STEPS = flags.DEFINE_integer("max_steps", 100, "Session horizon of the simulator.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed: split into the tuning key and the evaluation users' key.")
_OUT = flags.DEFINE_string("out", "benchmarks/results/oracle_progressive_cpu.json", "Results JSON.")


def cpu_model() -> str:
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    return value.strip()
    return platform.processor() or platform.machine()


def t_interval(x) -> dict:
    """Mean and Student-t 95% interval of the mean of x (over its entries: here evaluation users)."""
    x = np.asarray(x, np.float64)
    n = x.size
    half = float(scipy_stats.t.ppf(0.975, n - 1) * x.std(ddof=1) / np.sqrt(n))
    m = float(x.mean())
    return {"mean": m, "ci95_low": m - half, "ci95_high": m + half, "ci95_halfwidth": half,
            "std": float(x.std(ddof=1)), "n": n}


def summarise(out: dict) -> dict:
    base = out["baseline"]
    rows = [{"round": 0, "switch": t_interval(base), "cma_linear": t_interval(base)}]
    for k in range(out["switch"].shape[0]):
        row = {"round": k + 1}
        for name in ("switch", "cma_linear"):
            row[name] = t_interval(out[name][k])
            row[f"{name}_minus_baseline"] = t_interval(out[name][k] - base)
            row[f"{name}_relative_to_baseline"] = float(out[name][k].mean() / base.mean() - 1)
        rows.append(row)
    return {"baseline": t_interval(base), "switch_unconstrained": t_interval(out["switch_unconstrained"]),
            "switch_unconstrained_minus_baseline": t_interval(out["switch_unconstrained"] - base),
            "rounds": rows,
            "cma_training": {name: np.round(out[name], 4).tolist()
                             for name in ("cma_train_mean", "cma_train_best", "cma_sigma")}}


def markdown(summary: dict) -> str:
    def fmt(s):
        return f"{s['mean']:.2f} [{s['ci95_low']:.2f}, {s['ci95_high']:.2f}]"
    lines = ["| round | switch-rule chain | vs baseline | CMA-linear chain | vs baseline |",
             "| --- | --- | --- | --- | --- |"]
    for row in summary["rounds"]:
        if row["round"] == 0:
            lines.append(f"| 0 (baseline) | {fmt(row['switch'])} | | {fmt(row['cma_linear'])} | |")
            continue
        lines.append(f"| {row['round']} | {fmt(row['switch'])} | {row['switch_relative_to_baseline']:+.1%} | "
                     f"{fmt(row['cma_linear'])} | {row['cma_linear_relative_to_baseline']:+.1%} |")
    su = summary["switch_unconstrained"]
    lines.append(f"\nswitch rule without a box: {fmt(su)} "
                 f"({su['mean'] / summary['baseline']['mean'] - 1:+.1%} vs baseline)")
    return "\n".join(lines)


def main(argv):
    del argv
    env_params = sim_env.default_params(max_steps=_MAX_STEPS.value)
    key, eval_key = jax.random.split(jax.random.PRNGKey(_SEED.value))
    start = time.time()
    out = oracle.oracle_chain(
        env_params, key, eval_key, rounds=_ROUNDS.value, half_width=_HALF_WIDTH.value,
        eval_users=_EVAL_USERS.value, train_users=_TRAIN_USERS.value, generations=_GENERATIONS.value,
        popsize=_POPSIZE.value or None, sigma0=_SIGMA0.value, diagonal=_DIAGONAL.value,
        stats_users=_STATS_USERS.value, log_fn=logging.info)
    wall = time.time() - start
    summary = summarise(out)
    result = {
        "args": {name: flags.FLAGS[name].value for name in (
            "rounds", "half_width", "eval_users", "train_users", "generations", "popsize", "sigma0", "diagonal",
            "stats_users", "max_steps", "seed")},
        "command": " ".join(["python"] + sys.argv),
        "interval": "Student-t 95% interval of the mean undiscounted return over evaluation users (n = eval_users); "
                    "*_minus_baseline: paired over the same users; one CMA-ES run (no seed spread)",
        "cma_popsize": oracle.cma_es(oracle.linear_num_params(sim_env.obs_dim(env_params),
                                                              sim_env.act_dim(env_params)),
                                     _POPSIZE.value or None).popsize,
        "wall_seconds": round(wall, 1), "cpu": cpu_model(), "cpu_count": os.cpu_count(),
        "backend": jax.default_backend(), "jax": jax.__version__,
        **summary,
    }
    os.makedirs(os.path.dirname(os.path.abspath(_OUT.value)), exist_ok=True)
    with open(_OUT.value, "w") as f:
        json.dump(result, f, indent=2)
    print(markdown(summary))
    print(f"wall time {wall:.1f} s on {result['cpu']} ({result['cpu_count']} cores, {result['backend']})")


if __name__ == "__main__":
    logging.set_verbosity(logging.INFO)
    app.run(main)
