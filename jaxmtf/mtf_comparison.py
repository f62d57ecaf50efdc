"""IntegratedRL-MTF against BatchRL-MTF and the references, on the default simulator: the rows of
benchmarks/mtf_comparison.py (benchmarks/README.md) and of notebooks/05_mtf_methods.ipynb.

    out = mtf_comparison.compare("runs/mtf_comparison", mtf_comparison.SIZES)

Rows, every policy scored on the same fresh users (progressive.eval_seed):
the production baseline; static weights from a small CEM started at the
baseline; BatchRL-MTF (one round of mixed data, BCQ); IntegratedRL-MTF after
each of its rounds; TD3+BC and CQL trained on all of IntegratedRL-MTF's data
(each seed on its own chain's data). Learned rows: mean over seeds with the
95% CI over seeds (Student-t: a handful of seeds); fixed rows: the CI over
users (normal approximation). Plus the exploration cost of every collecting
policy per round (its true return minus the baseline's; over seeds, Student-t).
The sizes (SIZES, the benchmark's) are cut to fit ~25 minutes of a shared
2-core CPU; the README states them. SMALL_SIZES is CI's (minutes).
"""
import os
import time

import jax
import numpy as np

from jaxmtf import evaluation, pipeline, progressive
from jaxmtf.data import collect
from jaxmtf.sim import policies
from jaxmtf.stats import ci95_label, mean_ci95
from launch.configs import batchrl_mtf, cql, integrated_rl, search_static, td3_bc

SIZES = dict(num_seeds=5, num_updates=3_000, chunk_size=500, checkpoint_every=1_500, hidden=(64, 64),
             users_per_round=200, rounds=5, eval_users=1_000, cem=(6, 32, 6, 200, 500))
# CI's sizes: every row computed, in minutes (the numbers mean nothing at this size).
SMALL_SIZES = dict(num_seeds=2, num_updates=100, chunk_size=50, checkpoint_every=50, hidden=(16, 16),
                   users_per_round=40, rounds=2, eval_users=100, cem=(2, 8, 2, 20, 20))
METRICS = ("undiscounted_return", "session_length", "rate_long_view")


def _shrink(config, sizes, rounds=None):
    config.num_seeds, config.num_updates = sizes["num_seeds"], sizes["num_updates"]
    config.chunk_size, config.checkpoint_every = sizes["chunk_size"], sizes["checkpoint_every"]
    for name in list(config.agent.keys()):
        if name.endswith("_hidden_dims"):
            config.agent[name] = sizes["hidden"]
    if "progressive" in config:
        config.progressive.rounds = rounds or sizes["rounds"]
        config.progressive.budget_sessions = sizes["users_per_round"] * config.progressive.rounds
        config.progressive.eval_users = sizes["eval_users"]
    return config


def _over_seeds(values):
    """Mean and Student-t 95% CI over the seeds (NaN for one seed)."""
    mean, half = mean_ci95(values, over="seeds")
    return {"mean": mean, "ci95": half, "per_seed": np.asarray(values, np.float64).reshape(-1).tolist()}


def _learned_row(stats):
    return {m: _over_seeds(stats[m]) for m in METRICS}


def _fixed_row(summary):
    """evaluation's summary: its `*_ci95` are normal intervals over the users."""
    return {m: {"mean": summary[m], "ci95": summary.get(f"{m}_ci95")} for m in METRICS}


def _offline_on_irl_data(name, config, irl_workdir, workdir, env_params, sizes):
    """`config` trained per seed on all of IntegratedRL-MTF's rounds (seed s on chain s's data)."""
    config = _shrink(config, sizes)
    config.agent.discount = 0.9  # the MTF horizon of the comparison (IntegratedRL-MTF's gamma)
    config.normalize_observations = False  # one normaliser over seeds' data is possible; kept off for parity
    seeds = progressive.seeds_of(config)
    datasets = [[pipeline.load_dataset(os.path.join(irl_workdir, f"round_{k}", "data", f"seed_{s}.npz"))
                 for k in range(1, sizes["rounds"] + 1)] for s in seeds]
    summary = progressive.train_per_seed(config, datasets, os.path.join(workdir, name))
    key = jax.random.PRNGKey(integrated_rl.progressive_config("box").eval_seed)
    evaluator = evaluation.make_agent_evaluator(summary["agent"], env_params, sizes["eval_users"], 0.99)
    stats = jax.device_get(evaluator(summary["state"].agent, key))
    return {m: np.asarray(v).reshape(-1).tolist() for m, v in stats.items()}


def _static_row(env_params, sizes):
    config = search_static.get_config()
    config.num_generations, config.population, config.num_elite, config.num_users, config.num_heldout_users = sizes["cem"]
    config.eval_users = 0
    config.init_at_baseline = True
    action = np.asarray(pipeline.search_static(config)["action"], np.float32)
    key = jax.random.PRNGKey(integrated_rl.progressive_config("box").eval_seed)
    return evaluation.evaluate_policy(key, env_params, policies.fixed_policy().apply, jax.numpy.asarray(action),
                                      sizes["eval_users"], 0.99), action.tolist()


def compare(workdir: str, sizes=None):
    """Every row (run or resumed in `workdir`): {"sizes", "rows", "exploration_cost", "static_action",
    "wall_seconds", "backend"}."""
    sizes = sizes or SIZES
    start, timings = time.time(), {}
    irl_dir = os.path.join(workdir, "integrated_rl")
    irl = progressive.run_progressive(_shrink(integrated_rl.get_config(), sizes), irl_dir)
    timings["integrated_rl"] = time.time() - start
    brl = progressive.run_progressive(_shrink(batchrl_mtf.get_config(), sizes, rounds=1), os.path.join(workdir, "batchrl_mtf"))
    timings["batchrl_mtf"] = time.time() - start - sum(timings.values())
    env_params = collect.env_params_from_config(integrated_rl.get_config().progressive)
    offline = {name: _offline_on_irl_data(name, cfg.get_config(), irl_dir, workdir, env_params, sizes)
               for name, cfg in (("td3_bc", td3_bc), ("cql", cql))}
    timings["td3_bc_and_cql"] = time.time() - start - sum(timings.values())
    static, static_action = _static_row(env_params, sizes)
    timings["static_cem"] = time.time() - start - sum(timings.values())

    refs = irl["references"]
    rows = {"production baseline": _fixed_row(refs["production baseline"]),
            "static weights (small CEM from the baseline)": _fixed_row(static),
            "BatchRL-MTF (1 round mixed data, BCQ)": _learned_row(brl["rounds"][0]["trained"])}
    for record in irl["rounds"]:
        rows[f"IntegratedRL-MTF after round {record['round']}"] = _learned_row(record["trained"])
    rows["TD3+BC on all IntegratedRL-MTF data"] = _learned_row(offline["td3_bc"])
    rows["CQL on all IntegratedRL-MTF data"] = _learned_row(offline["cql"])
    base = refs["production baseline"]["undiscounted_return"]
    cost = {f"box round {r['round']}": _over_seeds([base - v for v in r["collecting"]["undiscounted_return"]])
            for r in irl["rounds"]}
    cost["uniform random"] = {"mean": base - refs["uniform random"]["undiscounted_return"]}
    cost["BatchRL-MTF mixture"] = {"mean": base - refs["BatchRL-MTF mixture"]["undiscounted_return"]}
    timings["total"] = time.time() - start
    return {"sizes": sizes, "rows": rows, "exploration_cost": cost, "static_action": static_action,
            "wall_seconds": timings, "backend": jax.default_backend()}


def _cell(v):
    if v.get("ci95") is None:
        return f"{v['mean']:.3f}" if abs(v["mean"]) < 1 else f"{v['mean']:.1f}"
    fmt = "{:.3f} ± {:.3f}" if abs(v["mean"]) < 1 else "{:.1f} ± {:.1f}"
    return fmt.format(v["mean"], v["ci95"])


def interval_note(out) -> str:
    """What the ± of `markdown`'s tables are over, with their counts."""
    sizes = out["sizes"]
    return (f"Learned rows and exploration costs: mean ± {ci95_label('seeds', sizes['num_seeds'])}; "
            f"fixed rows (baseline, static weights): ± {ci95_label('users', sizes['eval_users'])}.")


def markdown(out) -> str:
    """The comparison's two tables, after a line that says what their intervals are over (`interval_note`)."""
    lines = [interval_note(out), "", "| policy | true return (± 95% CI) | session length | long-view rate |",
             "| --- | --- | --- | --- |"]
    for name, row in out["rows"].items():
        lines.append(f"| {name} | " + " | ".join(_cell(row[m]) for m in METRICS) + " |")
    lines += ["", f"| collecting policy | exploration cost (baseline return minus its return; box rounds: ± "
                  f"{ci95_label('seeds', out['sizes']['num_seeds'])}) |", "| --- | --- |"]
    for name, v in out["exploration_cost"].items():
        lines.append(f"| {name} | {_cell(v)} |")
    return "\n".join(lines)

