"""The README's main job: collect a dataset, search the static weights, train, compare.

Collects a logged dataset in the simulator, finds the best static fusion
weights with CEM, trains the configured offline agent for several seeds in
one program, and scores every policy on the same fresh users with the same
keys (common random numbers). Two tables: each policy's mean return with its
95% CI over users (normal approximation; the seeds' mean row: Student-t over
the seeds, a handful), and, because every row met the same users, the paired
differences of each learned seed (and of their mean) from the behaviour
policy and from the static weights (and of the CEM winner from the baseline
it starts at): the per-user difference cancels what the rows share (which
users were drawn), so its CI is far tighter than the rows' own.
"""
import os
from typing import Any, Dict, List, Tuple

import jax
import ml_collections
import numpy as np
from absl import logging

from jaxmtf.core import evaluation
from jaxmtf.data import collect
from jaxmtf.runs import rundir
from jaxmtf.sim import policies
from jaxmtf.sim.mtf import env as sim_env
from jaxmtf.sim.mtf import policies as mtf_policies
from jaxmtf.stats import ci95_label, mean_ci95, paired_difference
from jaxmtf.workflows import pipeline

BASELINE_ROW = "production baseline weights"
# The search's winner: at least the baseline on the search's held-out users,
# not necessarily beyond noise on the table's.
STATIC_ROW = "static weights (CEM, started at the baseline)"
OVER_SEEDS = " (CI over seeds)"  # the seeds' mean row of the results table; its paired CIs are over users
PAIRED_KEY = "paired_differences"  # results.json: {compared row: {baseline row: difference and CI}}

Row = Tuple[str, Dict[str, float], np.ndarray]  # (name, summary, per-user undiscounted returns [U])


def run_demo(config, workdir: str) -> Dict[str, str]:
    """Runs the job; returns {"table", "paired_table", "markdown"}; markdown is what results.md holds.

    Also writes results.json: every row's summary, and PAIRED_KEY's differences.
    """
    os.makedirs(workdir, exist_ok=True)
    collect_config = _unlocked(config.collect)
    collect_config.seed = config.seed
    data_path, env_params = _collect(collect_config, workdir)
    static = _search_static(config, collect_config, workdir)
    train_config = _unlocked(config.train)
    train_config.dataset, train_config.seed = data_path, config.seed
    logging.info("3/4 training %s for %d seeds x %d updates", train_config.algo, train_config.num_seeds,
                 train_config.num_updates)
    summary = pipeline.train_from_config(train_config, os.path.join(workdir, "train"))

    logging.info("4/4 scoring every policy on the same %d fresh users", config.eval_users)
    key = jax.random.PRNGKey(config.seed + 2)
    fixed_rows = _score_policies(config, key, collect_config, env_params, static)
    learned_rows = _score_learned(config, key, train_config, summary, env_params)
    # Learned rows against the logger and both static rows; the CEM row against the other two shows
    # whether the search beat the baseline it starts from.
    baselines = [fixed_rows[0], _row(fixed_rows, BASELINE_ROW), _row(fixed_rows, STATIC_ROW)]
    paired = paired_differences(learned_rows + [_row(fixed_rows, STATIC_ROW)], baselines)
    out = {"table": results_table(fixed_rows + learned_rows, env_params.task_names[:2], train_config.num_seeds),
           "paired_table": paired_table(paired, config.eval_users)}
    out["markdown"] = out["table"] + "\n\n" + out["paired_table"]
    with open(os.path.join(workdir, "results.md"), "w") as f:
        f.write(out["markdown"] + "\n")
    results = {name: values for name, values, _ in fixed_rows + learned_rows}
    rundir.write_json(os.path.join(workdir, "results.json"), {**results, PAIRED_KEY: paired})
    return out


def _unlocked(config) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(config.to_dict())


def _collect(collect_config, workdir: str):
    logging.info("1/4 collecting the %s dataset (%d sessions)", collect_config.pipeline, collect_config.num_users)
    path = os.path.join(workdir, "data", f"{collect_config.pipeline}.npz")
    data_path, provenance = collect.collect_and_save(collect_config, path)
    return data_path, collect.env_params_from_dict(provenance["env_params"])


def _search_static(config, collect_config, workdir: str) -> Dict[str, Any]:
    logging.info("2/4 searching the best static fusion weights (CEM)")
    static_config = _unlocked(config.static)
    static_config.seed, static_config.env = config.seed + 1, dict(collect_config.env)
    static_config.eval_users = 0  # the winner is scored with the other rows, on the table's users
    static = pipeline.search_static(static_config)
    rundir.write_json(os.path.join(workdir, "static_weights.json"), static)
    return static


def _score_policies(config, key, collect_config, env_params, static) -> List[Row]:
    """The behaviour policy (first), the static weights and the hand-written rule, on the table's users."""
    fixed = policies.fixed_policy().apply
    behaviour_policy, behaviour_params, _ = collect.behaviour(collect_config, env_params,
                                                              jax.random.PRNGKey(config.seed))
    named = [
        (f"behaviour ({collect_config.pipeline}, logged the data)", behaviour_policy.apply, behaviour_params),
        (BASELINE_ROW, fixed, sim_env.baseline_action(env_params)),
        (STATIC_ROW, fixed, np.asarray(static["action"], np.float32)),
        ("hand-written state-dependent (switch)", mtf_policies.bounce_switch_policy(env_params).apply,
         mtf_policies.default_switch_params(env_params)),
    ]
    return [
        (name, *evaluation.evaluate_policy_per_user(key, env_params, policy, params, config.eval_users,
                                                    config.eval_discount))
        for name, policy, params in named
    ]


def _score_learned(config, key, train_config, summary, env_params) -> List[Row]:
    """One row per trained seed, then their mean (the table's row has the Student-t CI over seeds; NaN for one)."""
    evaluator = evaluation.make_agent_evaluator(
        summary["agent"], env_params, config.eval_users, config.eval_discount, with_user_returns=True
    )
    stats, user_returns = jax.device_get(evaluator(summary["state"].agent, key))
    stats, user_returns = {k: np.asarray(v)[:, 0] for k, v in stats.items()}, np.asarray(user_returns)[:, 0]
    seeds = [train_config.seed + i for i in range(train_config.num_seeds)]
    rows = [(f"{train_config.algo} seed {seed}", {k: float(v[i]) for k, v in stats.items()}, user_returns[i])
            for i, seed in enumerate(seeds)]
    across = {k: float(np.mean(v)) for k, v in stats.items()}
    returns = stats["undiscounted_return"]
    across["undiscounted_return_ci95"] = mean_ci95(returns, over="seeds")[1]
    rows.append((f"{train_config.algo} mean over {len(seeds)} seeds{OVER_SEEDS}", across, user_returns.mean(0)))
    return rows


def _row(rows: List[Row], name: str) -> Row:
    return next(row for row in rows if row[0] == name)


def paired_differences(rows: List[Row], baselines: List[Row]) -> Dict[str, Dict[str, Dict[str, float]]]:
    """{row: {baseline row: {difference, ci95, low, high}}}: the per-user difference in undiscounted
    return (row minus baseline), its mean and 95% CI over the users (normal approximation); a row is not
    compared with itself."""
    out = {}
    for name, _, returns in rows:
        against = out.setdefault(name.removesuffix(OVER_SEEDS), {})
        for base_name, _, base_returns in baselines:
            if base_name == name:
                continue
            mean, half = paired_difference(returns, base_returns)
            against[base_name] = {"difference": mean, "ci95": half, "low": mean - half, "high": mean + half}
    return out


def paired_table(paired, num_users: int) -> str:
    """The paired differences as markdown: one row per compared policy, one column per baseline."""
    baselines = list(dict.fromkeys(base for against in paired.values() for base in against))
    lines = [
        f"Paired on the same {num_users} users: row minus column, undiscounted return, mean and "
        f"{ci95_label('users', num_users)} (the seeds' mean: each user's return averaged over the seeds).",
        "",
        "| policy | " + " | ".join(f"vs {b}" for b in baselines) + " |",
        "|" + " --- |" * (1 + len(baselines)),
    ]
    for name, against in paired.items():
        cells = [_paired_cell(against.get(base)) for base in baselines]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _paired_cell(d) -> str:
    return "—" if d is None else f"{d['difference']:+.1f} ({d['low']:.1f} .. {d['high']:.1f})"


def results_table(rows: List[Row], tasks, num_seeds: int = 0) -> str:
    """Each policy's return with its 95% CI, as markdown: normal over the users; the seeds' mean row (its name
    ends with OVER_SEEDS): Student-t over the `num_seeds` seeds. The CI column's header says both."""
    ci = ci95_label("users", len(rows[0][2]))
    if any(name.endswith(OVER_SEEDS) for name, _, _ in rows):
        ci += f"; seeds' mean: {ci95_label('seeds', num_seeds or None)}"
    header = (f"| policy | return (undiscounted) | ± {ci} | discounted return | session length | "
              + " | ".join(f"{t} rate" for t in tasks) + " |")
    lines = [header, "|" + " --- |" * (5 + len(tasks))]
    for name, v, _ in rows:
        cells = [f"{v['undiscounted_return']:.1f}", f"± {v['undiscounted_return_ci95']:.1f}",
                 f"{v['discounted_return']:.1f}",
                 f"{v['session_length']:.1f}"] + [f"{v[f'rate_{t}']:.3f}" for t in tasks]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
