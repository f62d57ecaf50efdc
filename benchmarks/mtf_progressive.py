"""Does progressive training climb? IntegratedRL-MTF against BatchRL-MTF at equal session budgets (issue 19).

    python benchmarks/mtf_progressive.py --workdir=runs/mtf_progressive \
        --budgets=1000 --num_seeds=3 --out=benchmarks/results/mtf_progressive.json

For every budget N (sessions per seed, all rounds together) and seed (each its own chain):
- `integrated_rl`: the faithful method, R rounds of N / R sessions, warm-started (rows per round);
- `integrated_rl:one_round`: the same method, one round of N sessions (the paper's "without progressive");
- `integrated_rl:<variant>`: one-at-a-time ablations back to the earlier choices (--ablations);
- `batchrl_mtf`: one round of N sessions of BatchRL-MTF's exploration, BCQ with its paper's settings;
- `iql`, `td3_bc`: trained per seed on all of that seed's IntegratedRL-MTF data;
- `baseline`: the production fusion vector.
Every policy is scored on the same fresh evaluation users (progressive.eval_seed). Intervals are Student-t
95% intervals over seeds (jaxmtf.stats); the differences to the baseline and to BatchRL-MTF are paired: the
same users (common random numbers), and for BatchRL-MTF the same seed index; their intervals are over seeds.
Everything is resumable: re-running the command skips finished chains (each a progressive run directory).
"""
import json
import os
import platform
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags, logging

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from jaxmtf import evaluation, progressive, stats  # noqa: E402
from jaxmtf.data import collect  # noqa: E402
from jaxmtf.data import dataset as dataset_lib  # noqa: E402
from jaxmtf.sim import env as sim_env  # noqa: E402
from jaxmtf.sim import policies  # noqa: E402
from launch.configs import batchrl_mtf, integrated_rl, iql, td3_bc  # noqa: E402

_WORKDIR = flags.DEFINE_string("workdir", "runs/mtf_progressive", "Where the chains go (resumed if present).")
_OUT = flags.DEFINE_string("out", "benchmarks/results/mtf_progressive.json", "Results JSON.")
_BUDGETS = flags.DEFINE_list("budgets", ["1000"], "Session budgets N per seed (all rounds together).")
_SEEDS = flags.DEFINE_integer("num_seeds", 3, "Seeds: independent chains.")
_ROUNDS = flags.DEFINE_integer("rounds", 5, "Progressive rounds R.")
_UPDATES = flags.DEFINE_integer("num_updates", 1500, "Gradient updates per round (and of one-round runs).")
_HIDDEN = flags.DEFINE_list("hidden", ["64", "64"], "Hidden widths of every network.")
_CRITICS = flags.DEFINE_integer("num_critics", 5, "IntegratedRL-MTF critics per group (config: 10, paper: 24).")
_EVAL_USERS = flags.DEFINE_integer("eval_users", 1000, "Fresh evaluation users.")
_GAMMAS = flags.DEFINE_list("gammas", ["0.9"], "Discounts of the IntegratedRL-MTF rows (the paper's 0.9 first).")
_ABLATIONS = flags.DEFINE_list("ablations", ["earlier"], "integrated_rl VARIANTS run at the first budget.")
_OFFLINE = flags.DEFINE_list("offline", ["iql", "td3_bc"], "Agents trained on IntegratedRL-MTF's data.")

OFFLINE_CONFIGS = {"iql": iql, "td3_bc": td3_bc}


def _sized(config, rounds, budget):
    config.num_seeds, config.num_updates = _SEEDS.value, _UPDATES.value
    config.chunk_size = config.checkpoint_every = min(500, _UPDATES.value)
    hidden = tuple(int(h) for h in _HIDDEN.value)
    for name in list(config.agent.keys()):
        if name.endswith("_hidden_dims"):
            config.agent[name] = hidden
    if "max_steps" in config.agent:  # IQL's cosine schedule spans the run
        config.agent.max_steps = _UPDATES.value
    if "progressive" in config:
        config.progressive.rounds, config.progressive.budget_sessions = rounds, budget
        config.progressive.eval_users = _EVAL_USERS.value
    return config


def _row(method, budget, rounds, round_index, gamma, per_seed, base, brl=None, outside=None, discount=None):
    x = np.asarray(per_seed, np.float64)
    diff = x - base
    row = {"method": method, "budget_sessions": budget, "rounds": rounds, "round": round_index, "gamma": gamma,
           "return_mean": float(x.mean()), "return_ci95": float(stats.t_halfwidth(x.std(ddof=1), x.size)),
           "per_seed": x.tolist(), "paired_vs_baseline": _interval(diff),
           "paired_vs_batchrl": _interval(x - np.asarray(brl)) if brl is not None else None,
           "outside_box": outside, "effective_discount": discount}
    return row


def _interval(diff):
    diff = np.asarray(diff, np.float64)
    half = float(stats.t_halfwidth(diff.std(ddof=1), diff.size))
    return [float(diff.mean()), float(diff.mean() - half), float(diff.mean() + half)]


def _mean_or_none(values):
    values = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(values)) if values else None


def offline_on_chain_data(config, chain_dir, workdir, env_params, key):
    """config's agent trained per seed on all of that seed's chain data; per-seed true returns."""
    seeds = progressive.seeds_of(config)
    datasets = [[dataset_lib.load(os.path.join(chain_dir, f"round_{k}", "data", f"seed_{s}.npz"))
                 for k in range(1, _ROUNDS.value + 1)] for s in seeds]
    summary = progressive.train_per_seed(config, datasets, workdir)
    evaluator = evaluation.make_agent_evaluator(summary["agent"], env_params, _EVAL_USERS.value, 0.99)
    return np.asarray(jax.device_get(evaluator(summary["state"].agent, key))["undiscounted_return"]).reshape(-1)


def run_budget(budget, gamma, workdir, base, brl_final, rows, extra):
    """IntegratedRL-MTF's R-round and 1-round chains at one budget and gamma; rows appended."""
    for rounds, name in ((_ROUNDS.value, "integrated_rl"), (1, "integrated_rl:one_round")):
        config = _sized(integrated_rl.get_config(), rounds, budget)
        config.agent.num_critics, config.agent.discount = _CRITICS.value, gamma
        out = progressive.run_progressive(config, os.path.join(workdir, f"{name.replace(':', '_')}_g{gamma}"))
        for record in out["rounds"]:
            diag = record.get("training", {})
            rows.append(_row(name, budget, rounds, record["round"], gamma, record["trained"]["undiscounted_return"],
                             base, brl_final, _mean_or_none(diag.get("outside_box", [])),
                             _mean_or_none(diag.get("effective_discount", []))))
            extra.setdefault("exploration_cost", []).append(
                {"method": name, "budget_sessions": budget, "gamma": gamma, "round": record["round"],
                 "mean": float(np.mean(record["exploration_cost"]))})
    return os.path.join(workdir, f"integrated_rl_g{gamma}")


def main(argv):
    del argv
    start, wall = time.time(), {}
    env_params = collect.env_params_from_config(integrated_rl.get_config().progressive)
    key = jax.random.PRNGKey(int(integrated_rl.get_config().progressive.eval_seed))
    baseline_summary, _ = evaluation.evaluate_policy_per_user(
        key, env_params, policies.fixed_policy().apply, sim_env.baseline_action(env_params), _EVAL_USERS.value, 0.99)
    base = baseline_summary["undiscounted_return"]
    rows = [{"method": "baseline", "budget_sessions": 0, "rounds": 0, "round": 0, "gamma": None,
             "return_mean": base, "return_ci95": baseline_summary["undiscounted_return_ci95"], "per_seed": [base],
             "paired_vs_baseline": [0.0, 0.0, 0.0], "paired_vs_batchrl": None, "outside_box": None}]
    extra = {}
    budgets = [int(b) for b in _BUDGETS.value]
    for budget in budgets:
        workdir = os.path.join(_WORKDIR.value, f"N{budget}")
        t0 = time.time()
        brl = progressive.run_progressive(_sized(batchrl_mtf.get_config(), 1, budget), os.path.join(workdir, "batchrl"))
        brl_final = brl["rounds"][0]["trained"]["undiscounted_return"]
        rows.append(_row("batchrl_mtf", budget, 1, 1, 0.95, brl_final, base, brl_final))
        for gamma in [float(g) for g in _GAMMAS.value]:
            irl_dir = run_budget(budget, gamma, workdir, base, brl_final, rows, extra)
        first_gamma = float(_GAMMAS.value[0])
        irl_dir = os.path.join(workdir, f"integrated_rl_g{first_gamma}")
        for name in _OFFLINE.value:
            config = _sized(OFFLINE_CONFIGS[name].get_config(), 1, budget)
            config.agent.discount = first_gamma
            per_seed = offline_on_chain_data(config, irl_dir, os.path.join(workdir, name), env_params, key)
            rows.append(_row(name, budget, _ROUNDS.value, _ROUNDS.value, first_gamma, per_seed, base, brl_final))
        if budget == budgets[0]:
            for variant in _ABLATIONS.value:
                config = _sized(integrated_rl.get_config(variant), _ROUNDS.value, budget)
                config.agent.discount = first_gamma
                if variant != "small_ensemble" and variant != "earlier":
                    config.agent.num_critics = _CRITICS.value
                out = progressive.run_progressive(config, os.path.join(workdir, f"ablation_{variant}"))
                for record in out["rounds"]:
                    diag = record.get("training", {})
                    rows.append(_row(f"integrated_rl:{variant}", budget, _ROUNDS.value, record["round"], first_gamma,
                                     record["trained"]["undiscounted_return"], base, brl_final,
                                     _mean_or_none(diag.get("outside_box", []))))
        wall[f"N{budget}"] = time.time() - t0
    oracle_path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "oracle_progressive_cpu.json")
    oracle, oracle_baseline = [], None
    if os.path.exists(oracle_path):  # benchmarks/oracle_progressive.py's run: its own 2,000 users, not ours
        with open(oracle_path) as f:
            o = json.load(f)
        oracle = [max(r["switch"]["mean"], r["cma_linear"]["mean"]) for r in o["rounds"][1:]]
        oracle_baseline = o["baseline"]["mean"]
    result = {"baseline_return": base, "baseline_ci95_over_users": baseline_summary["undiscounted_return_ci95"],
              "sizes": {"budgets": budgets, "num_seeds": _SEEDS.value, "rounds": _ROUNDS.value,
                        "num_updates_per_round": _UPDATES.value, "hidden": _HIDDEN.value,
                        "num_critics_per_group": _CRITICS.value, "eval_users": _EVAL_USERS.value,
                        "gammas": _GAMMAS.value},
              "rows": rows, "oracle_progressive": oracle, "oracle_baseline_return": oracle_baseline,
              "oracle_note": "the better oracle chain per round 1..R, scored on the oracle benchmark's own users "
                             "(compare gains over oracle_baseline_return, not levels)", **extra,
              "intervals": "return_ci95: Student-t 95% over seeds (baseline: normal over users); paired_*: "
                           "[mean, low, high], Student-t over seeds of per-seed differences on the same users",
              "wall_seconds": {**wall, "total": time.time() - start},
              "machine": {"cpu": _cpu_name(), "cores": os.cpu_count(),
                          "backend": jax.default_backend()},
              "command": " ".join(sys.argv)}
    os.makedirs(os.path.dirname(os.path.abspath(_OUT.value)), exist_ok=True)
    with open(_OUT.value, "w") as f:
        json.dump(result, f, indent=2)
    print(markdown(result))


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def markdown(result) -> str:
    lines = [f"Baseline {result['baseline_return']:.1f} (± {result['baseline_ci95_over_users']:.1f} over users). "
             "± and brackets: Student-t 95% over seeds.", "",
             "| method | N | gamma | round | return | vs baseline (paired) | vs BatchRL-MTF (paired) | outside box |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in result["rows"][1:]:
        vs_b = "[{:+.1f}, {:+.1f}]".format(*r["paired_vs_baseline"][1:])
        vs_brl = "[{:+.1f}, {:+.1f}]".format(*r["paired_vs_batchrl"][1:]) if r["paired_vs_batchrl"] else ""
        out = f"{r['outside_box']:.2f}" if r.get("outside_box") is not None else ""
        lines.append(f"| {r['method']} | {r['budget_sessions']} | {r['gamma']} | {r['round']} | "
                     f"{r['return_mean']:.1f} ± {r['return_ci95']:.1f} | {vs_b} | {vs_brl} | {out} |")
    return "\n".join(lines)


if __name__ == "__main__":
    logging.set_verbosity(logging.INFO)
    app.run(main)
