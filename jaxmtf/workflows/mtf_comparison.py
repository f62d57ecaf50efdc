"""Does progressive training climb? IntegratedRL-MTF against BatchRL-MTF and the references at equal session
budgets, on the default simulator (issue 19): the rows of benchmarks/mtf_progressive.py (benchmarks/README.md)
and of notebooks/05_mtf_methods.ipynb.

    out = mtf_comparison.run("runs/mtf_progressive", mtf_comparison.SIZES)
    print(mtf_comparison.markdown(out))

For every budget N (sessions per seed, all rounds together) and seed (each seed its own chain):
- `integrated_rl`: the faithful method, R rounds of N / R sessions, each warm-started (a row per round);
- `integrated_rl:one_round`: the same method on one round of N sessions (the paper's "without progressive");
- `integrated_rl:<variant>`: one-at-a-time ablations back to the earlier choices (jaxmtf/configs/integrated_rl's
  VARIANTS), at one budget;
- `batchrl_mtf`: one round of N sessions of BatchRL-MTF's exploration, BCQ with its paper's settings;
- `iql`, `td3_bc`, `cql`: trained per seed on all of that seed's IntegratedRL-MTF data (R rounds), at the
  budgets in `offline_budgets`;
- `static_cem`: one fusion vector searched by CEM on the simulator from the baseline (its own sessions, stated);
- `baseline`: the production fusion vector.
The IntegratedRL-MTF rows run at every discount in `gammas` (the paper's 0.9 first) at the budgets in
`gamma_budgets`; the offline agents and the ablations use the first discount.

Every policy is scored on the same fresh evaluation users (progressive.eval_seed, common random numbers):
undiscounted return, session length, long views per user. Intervals: `return_ci95` is a Student-t 95%
half-width over seeds; `paired_vs_*` are [mean, low, high] of per-seed differences on the same users,
Student-t over seeds (BatchRL-MTF paired by seed index); the baseline's interval is normal over users.
Everything resumes: each chain is a progressive run directory, skipped when finished.
"""
import os
import time
from typing import Any, Dict, List

import jax
import numpy as np

from jaxmtf import stats
from jaxmtf.configs import batchrl_mtf, cql, integrated_rl, iql, search_static, td3_bc
from jaxmtf.core import evaluation
from jaxmtf.data import collect
from jaxmtf.sim import policies, registry
from jaxmtf.sim.mtf import env as sim_env
from jaxmtf.workflows import pipeline, progressive

OFFLINE_CONFIGS = {"iql": iql, "td3_bc": td3_bc, "cql": cql}
# The benchmark's sizes (benchmarks/README.md states the run's). The CEM: generations, population, elite,
# users per candidate, held-out users.
SIZES = dict(budgets=(1_000, 4_000, 16_000), num_seeds=5, rounds=5, num_updates=1_500, chunk_size=500,
             hidden=(64, 64), num_critics=5, eval_users=2_000, gammas=(0.9, 0.95, 0.99), gamma_budgets=(16_000,),
             ablations=("earlier", "quadratic_penalty", "smoothing", "wide_box"), ablation_budget=4_000,
             offline=("iql", "td3_bc", "cql"), offline_budgets=(1_000, 16_000),
             cem=(6, 32, 6, 200, 500))
# CI's sizes: every kind of row computed in a couple of minutes (the numbers mean nothing at this size).
SMALL_SIZES = dict(budgets=(40,), num_seeds=2, rounds=2, num_updates=50, chunk_size=25, hidden=(16, 16),
                   num_critics=2, eval_users=100, gammas=(0.9,), gamma_budgets=(40,), ablations=(),
                   ablation_budget=40, offline=("iql",), offline_budgets=(40,), cem=(2, 8, 2, 20, 20))
METRICS = {"return": "undiscounted_return", "session_length": "session_length", "long_views": "long_views"}


def sized(config, sizes, rounds: int, budget: int):
    """`config` cut to `sizes`: seeds, updates, widths; for a progressive config, R rounds sharing budget N."""
    config.num_seeds, config.num_updates = int(sizes["num_seeds"]), int(sizes["num_updates"])
    config.chunk_size = config.checkpoint_every = min(int(sizes["chunk_size"]), int(sizes["num_updates"]))
    for name in list(config.agent.keys()):
        if name.endswith("_hidden_dims"):
            config.agent[name] = tuple(sizes["hidden"])
    if "max_steps" in config.agent:  # IQL's cosine schedule spans the run
        config.agent.max_steps = int(sizes["num_updates"])
    if "progressive" in config:
        config.progressive.rounds, config.progressive.budget_sessions = rounds, budget
        config.progressive.eval_users = int(sizes["eval_users"])
    return config


def interval(diff) -> List[float]:
    """[mean, low, high]: a Student-t 95% interval over the seeds of per-seed values (NaN bounds for one)."""
    diff = np.asarray(diff, np.float64).reshape(-1)
    mean, half = stats.mean_ci95(diff, over="seeds")
    return [float(mean), float(mean - half), float(mean + half)]


def _with_long_views(values: Dict[str, Any], env_params) -> Dict[str, np.ndarray]:
    """Per-seed metrics plus long views per user: the long-view rate per item shown x items shown per user."""
    out = {k: np.asarray(v, np.float64).reshape(-1) for k, v in values.items()}
    per_step = float(registry.of(env_params).items_per_step(env_params))
    out["long_views"] = out["rate_long_view"] * out["session_length"] * per_step
    return out


def row(method: str, budget: int, rounds: int, round_index: int, gamma, values, reference, env_params,
        diagnostics=None) -> Dict[str, Any]:
    """One results row from per-seed metric values (evaluation's names); `reference` holds the baseline's
    scalar metrics and BatchRL-MTF's per-seed returns (None before it exists)."""
    values = _with_long_views(values, env_params)
    x = values["undiscounted_return"]
    out = {"method": method, "budget_sessions": budget, "rounds": rounds, "round": round_index, "gamma": gamma,
           "return_mean": float(x.mean()), "return_ci95": float(stats.mean_ci95(x, over="seeds")[1]),
           "per_seed": x.tolist(), "paired_vs_baseline": interval(x - reference["baseline"]["undiscounted_return"]),
           "paired_vs_batchrl": (interval(x - reference["batchrl_mtf"]) if reference.get("batchrl_mtf") is not None
                                 else None)}
    for name, key in METRICS.items():
        if name != "return":
            out[f"{name}_mean"], out[f"{name}_ci95"] = (float(v) for v in stats.mean_ci95(values[key], over="seeds"))
    diagnostics = diagnostics or {}
    for name in ("outside_box", "effective_discount"):
        out[name] = _mean_or_none(diagnostics.get(name, []))
    return out


def _mean_or_none(values):
    values = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(values)) if values else None


def _chain_rows(method, out, budget, gamma, reference, env_params, costs) -> List[Dict[str, Any]]:
    rows = []
    for record in out["rounds"]:
        rows.append(row(method, budget, len(out["rounds"]), record["round"], gamma, record["trained"], reference,
                        env_params, record.get("training")))
        costs.append({"method": method, "budget_sessions": budget, "gamma": gamma, "round": record["round"],
                      **dict(zip(("mean", "low", "high"), interval(record["exploration_cost"])))})
    return rows


# Trained one seed per program: on the XLA CPU backend (jax 0.10.2, 2 cores) IQL's initial run state for 3 or
# more seeds never becomes ready (the host waits on a buffer, every XLA thread idle; benchmarks/iql_hang.py
# reproduces it; one or two seeds run; the nets' inits alone do not hang). Until that is found, its seeds run
# one after the other (the same updates, more wall time). Restoring a finished IQL seed's checkpoint here hung
# too (in the checksum of the restored state), so the recorded IQL rows come from the runs that trained them.
ONE_SEED_AT_A_TIME = ("iql",)


def offline_on_chain_data(config, chain_dir: str, workdir: str, env_params, eval_users: int, rounds: int):
    """`config`'s agent trained per seed on all R rounds of that seed's chain data; per-seed metrics."""
    if config.algo in ONE_SEED_AT_A_TIME and int(config.num_seeds) > 1:
        parts = []
        for seed in progressive.seeds_of(config):
            one = config.copy_and_resolve_references()
            one.seed, one.num_seeds = seed, 1
            parts.append(offline_on_chain_data(one, chain_dir, os.path.join(workdir, f"seed_{seed}"), env_params,
                                               eval_users, rounds))
        return {m: np.concatenate([p[m] for p in parts]) for m in parts[0]}
    datasets = [[pipeline.load_dataset(os.path.join(chain_dir, f"round_{k}", "data", f"seed_{s}.npz"))
                 for k in range(1, rounds + 1)] for s in progressive.seeds_of(config)]
    summary = progressive.train_per_seed(config, datasets, workdir)
    evaluator = evaluation.make_agent_evaluator(summary["agent"], env_params, eval_users,
                                                float(config.eval_discount))
    stats_ = jax.device_get(evaluator(summary["state"].agent, eval_key()))
    return {m: np.asarray(v).reshape(-1) for m, v in stats_.items()}


def eval_key() -> jax.Array:
    """The evaluation users' key: progressive's eval_seed, the same for every row."""
    return jax.random.PRNGKey(int(integrated_rl.get_config().progressive.eval_seed))


def static_cem(env_params, sizes):
    """(action, sessions it used): the CEM-searched static fusion vector, started at the baseline."""
    config = search_static.get_config()
    (config.num_generations, config.population, config.num_elite, config.num_users,
     config.num_heldout_users) = sizes["cem"]
    config.eval_users = 0
    config.init_at_baseline = True
    action = np.asarray(pipeline.search_static(config)["action"], np.float32)
    generations, population, _, users, heldout = sizes["cem"]
    return action, int(generations * population * users + heldout)


def fixed_row(method: str, sessions: int, action, env_params, eval_users: int, base_users=None):
    """(row, per-user returns) of a fixed fusion vector on the evaluation users; its intervals are normal over
    the users, the paired one over the per-user differences to the baseline (`base_users`; none: itself)."""
    summary, users = evaluation.evaluate_policy_per_user(eval_key(), env_params, policies.fixed_policy().apply,
                                                         jax.numpy.asarray(action), eval_users, 0.99)
    diff = users - (users if base_users is None else base_users)
    mean, half = stats.mean_ci95(diff, over="users")
    values = {m: np.asarray([summary[m]]) for m in ("undiscounted_return", "session_length", "rate_long_view")}
    out = row(method, sessions, 0, 0, None, values, {"baseline": summary}, env_params)
    for name, key in METRICS.items():
        out[f"{name}_ci95" if name != "return" else "return_ci95"] = summary.get(f"{key}_ci95")
    out["paired_vs_baseline"] = [mean, mean - half, mean + half]
    return out, users


def _listed(sizes, name: str, budget: int) -> bool:
    """Whether `budget` is among the budgets of sizes[name] (every budget when the size is absent)."""
    return budget in [int(b) for b in sizes.get(name, [budget])]


def budget_rows(budget: int, workdir: str, sizes, reference, env_params, costs) -> List[Dict[str, Any]]:
    """Every learned row at one budget (chains run or resumed under `workdir`); sets reference["batchrl_mtf"]
    and appends the collectors' exploration costs to `costs`."""
    rounds, first_gamma = int(sizes["rounds"]), float(sizes["gammas"][0])
    brl = progressive.run_progressive(sized(batchrl_mtf.get_config(), sizes, 1, budget),
                                      os.path.join(workdir, "batchrl"))
    progressive.release_programs()
    reference["batchrl_mtf"] = np.asarray(brl["rounds"][0]["trained"]["undiscounted_return"], np.float64)
    rows = _chain_rows("batchrl_mtf", brl, budget, 0.95, reference, env_params, costs)
    gammas = sizes["gammas"] if _listed(sizes, "gamma_budgets", budget) else sizes["gammas"][:1]
    for gamma in (float(g) for g in gammas):
        for chain_rounds, method in ((rounds, "integrated_rl"), (1, "integrated_rl:one_round")):
            config = sized(integrated_rl.get_config(), sizes, chain_rounds, budget)
            config.agent.num_critics, config.agent.discount = int(sizes["num_critics"]), gamma
            out = progressive.run_progressive(config, os.path.join(workdir, f"{method.replace(':', '_')}_g{gamma}"))
            progressive.release_programs()
            rows += _chain_rows(method, out, budget, gamma, reference, env_params, costs)
    chain = os.path.join(workdir, f"integrated_rl_g{first_gamma}")
    for name in sizes["offline"] if _listed(sizes, "offline_budgets", budget) else ():
        config = sized(OFFLINE_CONFIGS[name].get_config(), sizes, 1, budget)
        config.agent.discount = first_gamma
        values = offline_on_chain_data(config, chain, os.path.join(workdir, name), env_params,
                                       int(sizes["eval_users"]), rounds)
        progressive.release_programs()
        rows.append(row(name, budget, rounds, rounds, first_gamma, values, reference, env_params))
    for variant in sizes["ablations"] if budget == int(sizes["ablation_budget"]) else ():
        config = sized(integrated_rl.get_config(variant), sizes, rounds, budget)
        config.agent.discount = first_gamma
        if variant not in ("small_ensemble", "earlier"):  # those two set the ensemble size themselves
            config.agent.num_critics = int(sizes["num_critics"])
        out = progressive.run_progressive(config, os.path.join(workdir, f"ablation_{variant}"))
        progressive.release_programs()
        rows += _chain_rows(f"integrated_rl:{variant}", out, budget, first_gamma, reference, env_params, costs)
    return rows


def run(workdir: str, sizes=None) -> Dict[str, Any]:
    """Every row (run or resumed in `workdir`): see the module docstring; the schema of
    benchmarks/results/mtf_progressive.json."""
    sizes = dict(SIZES if sizes is None else sizes)
    start, wall = time.time(), {}
    env_params = collect.env_params_from_config(integrated_rl.get_config().progressive)
    eval_users = int(sizes["eval_users"])
    baseline, base_users = fixed_row("baseline", 0, sim_env.baseline_action(env_params), env_params, eval_users)
    action, sessions = static_cem(env_params, sizes)
    rows = [baseline, fixed_row("static_cem", sessions, action, env_params, eval_users, base_users)[0]]
    reference = {"baseline": {"undiscounted_return": baseline["return_mean"]}, "batchrl_mtf": None}
    wall["static_cem"] = time.time() - start
    costs = []
    for budget in [int(b) for b in sizes["budgets"]]:
        t0 = time.time()
        rows += budget_rows(budget, os.path.join(workdir, f"N{budget}"), sizes, reference, env_params, costs)
        wall[f"N{budget}"] = time.time() - t0
    wall["total"] = time.time() - start
    return {"baseline_return": baseline["return_mean"], "baseline_ci95_over_users": baseline["return_ci95"],
            "sizes": {k: list(v) if isinstance(v, tuple) else v for k, v in sizes.items()},
            "rows": rows, "exploration_cost": costs, "static_action": action.tolist(),
            "intervals": "return_ci95: Student-t 95% over seeds (baseline, static_cem: normal over users); "
                         "paired_*: [mean, low, high], Student-t 95% over seeds of per-seed differences on the "
                         "same users (static_cem: normal over the users' differences); exploration_cost: "
                         "[mean, low, high], Student-t over seeds",
            "wall_seconds": wall, "backend": jax.default_backend()}


def _fmt(mean, half) -> str:
    return f"{mean:.1f}" if half is None or not np.isfinite(half) else f"{mean:.1f} ± {half:.1f}"


def _bracket(interval_) -> str:
    return "" if interval_ is None else "{:+.1f} [{:+.1f}, {:+.1f}]".format(*interval_)


def markdown(out) -> str:
    """The results table, after a line that says what its intervals are over."""
    seeds = out["sizes"]["num_seeds"]
    lines = [f"Baseline {out['baseline_return']:.1f} (± {out['baseline_ci95_over_users']:.1f}, "
             f"{stats.ci95_label('users', out['sizes']['eval_users'])}). Learned rows: mean ± "
             f"{stats.ci95_label('seeds', seeds)}; paired differences: mean [95% interval], Student-t over the "
             f"{seeds} seeds, on the same users.", "",
             "| method | N | gamma | round | return | session length | long views / user | vs baseline (paired) "
             "| vs BatchRL-MTF (paired) | outside box | eff. discount |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in out["rows"]:
        diag = [f"{r[k]:.2f}" if r.get(k) is not None else "" for k in ("outside_box", "effective_discount")]
        lines.append(f"| {r['method']} | {r['budget_sessions']} | {r['gamma'] or ''} | {r['round']} | "
                     f"{_fmt(r['return_mean'], r['return_ci95'])} | "
                     f"{_fmt(r['session_length_mean'], r['session_length_ci95'])} | "
                     f"{_fmt(r['long_views_mean'], r['long_views_ci95'])} | {_bracket(r['paired_vs_baseline'])} | "
                     f"{_bracket(r['paired_vs_batchrl'])} | {diag[0]} | {diag[1]} |")
    return "\n".join(lines)
