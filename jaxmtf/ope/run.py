"""Every estimator on every policy in a few compiled programs: the OPE run behind `launch.ope`.

1. The evaluated policies (a deterministic target smoothed,
   `targets.evaluated_group`) act once on the dataset's states: their
   actions with weights at s_t, at s_0 and at the logged states (K draws,
   or every discrete action with its probability), and the log density of
   the logged actions. Nothing of a policy runs after this.
2. FQE trains for all policies x seeds in one driver program (`fit_fqe`),
   in `workdir/fqe`, a run directory that resumes like a training run.
3. The estimators and their bootstrap intervals run in one program over
   policies (`lax.map`), replicates (vmapped groups) and FQE seeds (vmapped).
4. Rows: one per (estimator, policy, FQE seed); the FQE-based rows also come
   averaged over the FQE seeds (`fqe_seed` None), the rows that selection
   and scoring use. With a simulator, each row carries the true value of
   the policy it estimates (and a deterministic target's unsmoothed one);
   each row also says which policy it estimates and how much of that
   policy's action mass lies outside the data's support (`support`).
"""
import contextlib
import os
import time
from typing import Any, Dict, List, Optional

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from jaxmtf.core import lifecycle, training
from jaxmtf.core.run_config import RunGrid
from jaxmtf.ope import bootstrap, doubly_robust, extra_rows, importance, marginal, scoring, summary, support, targets
from jaxmtf.ope import fqe as fqe_lib
from jaxmtf.ope.config import validate_ope_config
from jaxmtf.ope.episodes import Episodes, episodes_from_dataset, gather, require_behaviour_log_prob
from jaxmtf.ope.targets import policy_key  # a report's policy names (run.policy_key to callers)
from jaxmtf.runs import record as record_lib
from jaxmtf.runs import rundir
from jaxmtf.types import Dataset

IS_ESTIMATORS = tuple(importance.ESTIMATORS) + ("mis",)
FQE_ESTIMATORS = ("fqe",) + tuple(doubly_robust.ESTIMATORS)


# ----------------------------------------------------------------- 1. the targets' actions


def evaluated_groups(groups, config, num_actions: int):
    """The policies the estimators estimate (`targets.evaluated_group`): point masses smoothed, one policy for
    the ratios, FQE, V and the truth."""
    return [targets.evaluated_group(g, float(config.target_sigma), num_actions, float(config.get("target_epsilon",
                                                                                                    0.1)))
            for g in groups]


def target_inputs(groups, dataset: Dataset, episodes: Episodes, config, key) -> Dict[str, Any]:
    """Stacked over all policies P, of the evaluated (smoothed) policies (`evaluated_groups`): actions and their
    weights at s_t, at the logged s and at s_0 ("next_actions"/"next_weights" [P, N, K(, A)], "state_*",
    "initial_*" [P, E, K(, A)]; discrete: every action with its probability, K = n); the logged actions' log
    density [P, N] (None without behaviour densities)."""
    k = int(config.fqe.num_action_samples)
    obs0 = dataset.observations[episodes.initial_rows]
    evaluated = evaluated_groups(groups, config, dataset.num_actions)
    names = ("next_actions", "next_weights", "state_actions", "state_weights", "initial_actions",
             "initial_weights", "log_prob")
    parts = {name: [] for name in names}
    for group, gkey in zip(evaluated, jax.random.split(key, len(groups))):
        keys = jax.random.split(gkey, 3)
        for (where, obs), k_obs in zip((("next", dataset.next_observations), ("state", dataset.observations),
                                         ("initial", obs0)), keys):
            actions, weights = targets.action_weights(group, obs, k_obs, k, dataset.num_actions)
            parts[f"{where}_actions"].append(actions)
            parts[f"{where}_weights"].append(weights)
        if dataset.behaviour_log_prob is not None:
            parts["log_prob"].append(targets.target_log_prob(
                group, dataset.observations, dataset.actions, float(config.target_sigma), dataset.num_actions,
                float(config.get("target_epsilon", 0.1))))
    out = {name: jnp.concatenate(v) for name, v in parts.items() if v}
    out.setdefault("log_prob", None)
    return out


# ----------------------------------------------------------------- 2. FQE in the driver


def fit_fqe(config, dataset: Dataset, next_actions, next_weights, labels: List[dict], workdir: str):
    """FQE states [S, P] after config.fqe.num_updates updates, trained (or resumed) in `workdir`.

    The training driver's own set-up and loop (`lifecycle.set_up_runs`, `training.train_runs`): the workdir is
    locked, its record checked before anything is written, checkpoints verified, SIGTERM saves.
    """
    fc = config.fqe
    fqe = fqe_lib.make_fqe(fc, dataset.obs_dim, dataset.act_dim, dataset.num_actions)
    num_policies = int(next_actions.shape[0])
    seeds = [int(fc.seed) + i for i in range(int(fc.num_seeds))]
    hparams = {"next_actions": next_actions, "next_weights": next_weights,
               "discount": jnp.full((num_policies,), float(config.discount), jnp.float32)}
    meta = {
        "estimator": "fqe", "fqe": {k: v for k, v in fc.to_dict().items() if k not in _RETIMING_FIELDS},
        "discount": float(config.discount), "seeds": seeds, "policies": labels, "num_transitions": dataset.size,
        "data_fingerprint": record_lib.checksum({"observations": dataset.observations, "actions": dataset.actions,
                                                 "rewards": dataset.rewards, "next_actions": next_actions,
                                                 "next_weights": next_weights})[:16],
    }
    policy_labels = [{"policy": policy_key(label)} for label in labels]
    grid = RunGrid(seeds, hparams, policy_labels)
    # The driver logs its progress ("update i/n ... ETA", a bar on a terminal) through absl: the console's.
    logging.info("FQE: %d policies x %d seeds, %d updates each, in %s", num_policies, len(seeds),
                 int(fc.num_updates), workdir)
    run = lifecycle.set_up_runs(fc, workdir, fqe, grid, fqe_lib.fqe_data(dataset), meta)
    trained = training.train_runs(run)
    return fqe, trained["state"].agent


# Fields that re-time an FQE run without changing what it computes (a resume may change them).
_RETIMING_FIELDS = ("num_updates", "checkpoint_every", "keep_checkpoints", "eval_every", "seed_group_size",
                    "force_new_run")


def fqe_inputs(fqe, states, dataset: Dataset, episodes: Episodes, inputs) -> Dict[str, jax.Array]:
    """Per (FQE seed + the seed mean, policy): V(s_0) [S+1, P, E], Q at logged (s, a) and V(s) [S+1, P, E, T]."""
    obs0 = dataset.observations[episodes.initial_rows]
    v0 = fqe_lib.values(fqe, states, obs0, inputs["initial_actions"], inputs["initial_weights"])
    v = fqe_lib.values(fqe, states, dataset.observations, inputs["state_actions"], inputs["state_weights"])
    q = fqe_lib.logged_q(fqe, states, dataset.observations, dataset.actions)
    with_mean = lambda x: jnp.concatenate([x, x.mean(0, keepdims=True)])  # noqa: E731
    per_step = jax.vmap(jax.vmap(lambda x: gather(episodes, x)))
    return {"v0": with_mean(v0), "q": with_mean(per_step(q)), "v": with_mean(per_step(v))}


# ----------------------------------------------------------------- 3. estimators and intervals


def _policy_estimator(episodes: Episodes, cells, config, num_cells: int, has_is: bool):
    """estimator(counts, per-policy inputs) -> {name: scalar or [S+1]}."""
    gamma, max_weight = float(config.discount), float(config.max_weight)

    def estimate(counts, p):
        out = {"fqe": jax.vmap(lambda v0: jnp.sum(counts * v0) / jnp.sum(counts))(p["v0"])}
        if not has_is:
            return out
        log_ratio = importance.log_ratios(episodes, p["log_prob"])
        log_w = importance.log_cumulative_weights(log_ratio, max_weight)
        out.update(importance.estimate_all(episodes, log_w, gamma, counts))
        step_ratio = jnp.where(max_weight > 0, jnp.minimum(log_ratio, np.log(max(max_weight, 1e-30))), log_ratio)
        out["mis"] = marginal.marginalized_is(episodes, cells, step_ratio, gamma, counts, num_cells)
        for name, fn in doubly_robust.ESTIMATORS.items():
            out[name] = jax.vmap(lambda q, v: fn(episodes, log_w, q, v, gamma, counts))(p["q"], p["v"])
        return out

    return estimate


def _weight_diagnostics(episodes: Episodes, config, p):
    log_ratio = importance.log_ratios(episodes, p["log_prob"])
    ones = jnp.ones((episodes.num_episodes,))
    log_w = importance.log_cumulative_weights(log_ratio, float(config.max_weight))
    return {"ess": importance.effective_sample_size(log_w, ones),
            "ess_per_step": marginal.per_step_effective_sample_size(episodes, log_ratio)}


def estimate_all(config, episodes: Episodes, cells, per_policy: Dict[str, jax.Array], key) -> Dict[str, Any]:
    """{name: (estimate, low, high)} with leaves [P] or [P, S+1], plus the weights' ESS [P]."""
    has_is = "log_prob" in per_policy
    estimator = _policy_estimator(episodes, cells, config, int(config.num_cells), has_is)
    E, B, level = episodes.num_episodes, int(config.bootstrap_replicates), float(config.ci_level)
    # Replicates vmapped at once, fewer with more FQE seeds: every replicate runs DR and WDR on each seed's
    # [E, T] values, so the program's memory grows with group x (seeds + 1) (5 seeds in groups of 64 took
    # 24 GB and were killed; 128 / (seeds + 1) keeps one seed's group of 64).
    group = max(4, 128 // int(per_policy["v0"].shape[1]))

    def one_policy(args):
        p, pkey = args
        out = bootstrap.with_intervals(lambda counts: estimator(counts, p), pkey, E, B, level, group)
        return out, (_weight_diagnostics(episodes, config, p) if has_is else {})

    keys = jax.random.split(key, per_policy["v0"].shape[0])
    return jax.jit(lambda pp, ks: jax.lax.map(one_policy, (pp, ks)))(per_policy, keys)


# ----------------------------------------------------------------- 4. rows


def _rows(labels, estimates, diagnostics, truth, config, num_seeds) -> List[Dict[str, Any]]:
    rows = []
    common_fields = {"discount": float(config.discount), "ci_level": float(config.ci_level)}
    sigma, epsilon = float(config.target_sigma), float(config.get("target_epsilon", 0.1))
    lcb_coef = float(config.get("fqe", {}).get("lcb_coef", 1.0))
    for p, label in enumerate(labels):
        smoothing = "target_epsilon" if label.get("discrete") else "target_sigma"
        # Every row estimates the same policy: the smoothed one of a deterministic target (FQE included).
        evaluated = targets.evaluated_name(policy_key(label), label.get("stochastic", False), sigma,
                                           1 if label.get("discrete") else 0, epsilon)
        for name, (value, low, high) in estimates.items():
            value, low, high = (np.asarray(x[p]) for x in (value, low, high))
            seeds = list(range(num_seeds)) + [None] if value.ndim else [None]
            # FQE's critics (and DR on each) as an ensemble: the spread of the seeds' estimates, and a lower bound
            # that adds it to the episodes' bootstrap (issue 20: conservative selection on both uncertainties).
            member_std = float(np.std(value.reshape(-1)[:num_seeds], ddof=1)) if value.ndim and num_seeds > 1 else 0.0
            for i, fqe_seed in enumerate(seeds):
                row = {"estimator": name, **label, "evaluated_policy": evaluated, "fqe_seed": fqe_seed,
                       **common_fields, "estimate": float(value.reshape(-1)[i]), "ci_low": float(low.reshape(-1)[i]),
                       "ci_high": float(high.reshape(-1)[i]),
                       smoothing: None if label.get("stochastic") else (epsilon if label.get("discrete") else sigma)}
                if value.ndim and fqe_seed is None:
                    row["member_std"] = member_std
                    row["lower_bound"] = row["ci_low"] - lcb_coef * member_std
                if name in IS_ESTIMATORS or name in doubly_robust.ESTIMATORS:
                    row["max_weight"] = float(config.max_weight)
                    row["ess"] = float(diagnostics["ess_per_step" if name == "mis" else "ess"][p])
                if "outside_support" in diagnostics:
                    row["outside_support"] = float(diagnostics["outside_support"][p])
                if truth is not None:
                    row.update({k: float(v[p]) for k, v in truth.items()
                                if not (k.endswith("_unsmoothed") and label.get("stochastic"))})
                    # scored against the truth of the policy the row estimates (the smoothed one)
                    row["abs_error"] = abs(row["estimate"] - row["true_discounted"])
                rows.append(row)
    return rows


def ope_report(rows: List[Dict[str, Any]], top_k: int = 3) -> Dict[str, Any]:
    """Per estimator (rows with fqe_seed None): conservative selection (by `lower_bound` where a row has one),
    and DOPE's and SCOPE-RL's top-`top_k`
    metrics where the truth is known (the truth of the policy each row estimates)."""
    report = {}
    for name in sorted({r["estimator"] for r in rows}):
        chosen = [r for r in rows if r["estimator"] == name and r["fqe_seed"] is None]
        names = [policy_key(r) for r in chosen]
        est = np.array([r["estimate"] for r in chosen])
        # the lower bound: an ensemble's (episodes' bootstrap and members' spread) where a row has one
        lows = np.array([r.get("lower_bound", r["ci_low"]) for r in chosen])
        entry = {"selection": scoring.select(names, est, lows)}
        if "true_discounted" in chosen[0]:
            truths = np.array([r["true_discounted"] for r in chosen])
            entry["scores"] = scoring.score_estimator(
                est, truths, [r["ci_low"] for r in chosen], [r["ci_high"] for r in chosen], top_k
            )
            entry["selection"]["true_value_by_estimate"] = float(truths[names.index(entry["selection"]["by_estimate"])])
            entry["selection"]["true_value_by_lower_bound"] = float(
                truths[names.index(entry["selection"]["by_lower_bound"])]
            )
            entry["selection"]["best_true_value"] = float(truths.max())
        report[name] = entry
    return report


# ----------------------------------------------------------------- the run


class _Stages:
    """Wall time of each stage of a run, logged as it ends and kept for the report."""

    def __init__(self):
        self.seconds: Dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str):
        start = time.time()
        yield
        self.seconds[name] = round(time.time() - start, 2)
        logging.info("OPE %s: %.1fs", name, self.seconds[name])


def evaluate(config, dataset: Dataset, env_params, workdir: str) -> Dict[str, Any]:
    """Runs every estimator on every policy of config.policies; writes ope.jsonl and ope_report.json.

    Returns {"rows", "report"}; the report holds "estimators" (per estimator: "selection" and, with a
    simulator, "scores"), "seconds" (per stage) and, without behaviour densities, "refused".
    """
    validate_ope_config(config)
    key = jax.random.PRNGKey(int(config.seed))
    k_targets, k_cells, k_boot, k_truth = jax.random.split(key, 4)
    stage = _Stages()
    episodes = episodes_from_dataset(dataset)
    groups = targets.load_policies(config.policies, env_params, config, dataset.obs_dim, dataset.act_dim,
                                   dataset.num_actions)
    labels = [dict(label, stochastic=g.stochastic, **({"discrete": True} if dataset.is_discrete else {}))
              for g in groups for label in g.labels]
    has_is = dataset.behaviour_log_prob is not None
    if has_is:
        require_behaviour_log_prob(episodes, "importance sampling")
    else:
        logging.warning("%s", _missing_density_message())
    with stage("targets act on the dataset"):
        inputs = jax.block_until_ready(target_inputs(groups, dataset, episodes, config, k_targets))
    with stage("fqe"):
        fqe, states = fit_fqe(config, dataset, inputs["next_actions"], inputs["next_weights"], labels,
                              os.path.join(workdir, "fqe"))
    with stage("estimators and bootstrap"):
        per_policy = {k: jnp.moveaxis(v, 0, 1) for k, v in fqe_inputs(fqe, states, dataset, episodes, inputs).items()}
        cells = None
        if has_is:
            per_policy["log_prob"] = jax.vmap(lambda lp: gather(episodes, lp))(inputs["log_prob"])
            cells = gather(episodes, marginal.state_cells(k_cells, dataset.observations, int(config.num_cells),
                                                          int(config.num_components)))
        estimates, diagnostics = jax.device_get(estimate_all(config, episodes, cells, per_policy, k_boot))
    diagnostics = dict(diagnostics)
    outside = outside_support(dataset, inputs, config)
    if outside is not None:
        diagnostics["outside_support"] = outside
    with stage("true values in the simulator"):
        truth = _truth(groups, env_params, config, k_truth, dataset.num_actions)
    rows = _rows(labels, estimates, diagnostics, truth, config, int(config.fqe.num_seeds))
    # ----- issue 20: NCIS, MTF-GAUC and model-based OPE rows (jaxmtf/ope/extra_rows.py) -----
    with stage("ncis, mtf-gauc, model-based"):
        rows += extra_rows.extra_rows(config, dataset, env_params, episodes, groups, labels, per_policy, rows,
                                      workdir, key)
    # ----- end of issue 20 -----
    _write_rows(os.path.join(workdir, "ope.jsonl"), rows)
    report = {"estimators": ope_report(rows, int(config.get("top_k", 3))), "seconds": stage.seconds,
              "warnings": summary.warnings(rows)}  # launch.ope prints them under its table
    if not has_is:
        report["refused"] = {"estimators": list(IS_ESTIMATORS + tuple(doubly_robust.ESTIMATORS)),
                             "reason": _missing_density_message()}
    rundir.write_json(os.path.join(workdir, "ope_report.json"), report)
    return {"rows": rows, "report": report}


def _truth(groups, env_params, config, key, num_actions: int = 0) -> Optional[Dict[str, np.ndarray]]:
    """[P] per field: the truth of the policy the rows estimate ("true_discounted", ...: the smoothed policy of a
    deterministic target) and, where it differs, of the unsmoothed one ("true_discounted_unsmoothed", ...:
    NaN for stochastic targets, whose rows carry no such field). Both on the same users and keys."""
    if env_params is None or int(config.eval_users) <= 0:
        return None
    users, gamma = int(config.eval_users), float(config.discount)
    per_group = []
    for group, evaluated in zip(groups, evaluated_groups(groups, config, num_actions)):
        truth = dict(targets.true_values(evaluated, env_params, key, users, gamma))
        if not group.stochastic:
            unsmoothed = targets.true_values(group, env_params, key, users, gamma)
            truth.update({f"{k}_unsmoothed": v for k, v in unsmoothed.items()})
        else:
            truth.update({f"{k}_unsmoothed": np.full(group.size, np.nan) for k in truth})
        per_group.append(truth)
    return {k: np.concatenate([np.asarray(t[k]) for t in per_group]) for k in per_group[0]}


def outside_support(dataset: Dataset, inputs, config) -> Optional[np.ndarray]:
    """[P] share of each evaluated policy's action mass outside the behaviour's support (ope/support.py): outside
    the logged box where the dataset has `behaviour_centre`, else from the logged densities; None without
    either."""
    if dataset.behaviour_centre is not None:
        centres = np.asarray(dataset.behaviour_centre)
        half_width = support.logged_box_half_width(dataset.actions, centres)
        return np.array([support.outside_box(a[None], w[None], centres, half_width)[0]
                         for a, w in zip(inputs["state_actions"], inputs["state_weights"])])
    if dataset.behaviour_log_prob is None:
        return None
    threshold = support.log_threshold(float(config.get("support_threshold", 0.1)), dataset.act_dim,
                                      dataset.num_actions)
    return support.outside_density(inputs["log_prob"], dataset.behaviour_log_prob, threshold)


def _missing_density_message() -> str:
    names = ", ".join(IS_ESTIMATORS + tuple(doubly_robust.ESTIMATORS))
    return (f"dataset field 'behaviour_log_prob' is missing: the importance-sampling rows ({names}) are refused; "
            "only FQE is estimated")


def _write_rows(path: str, rows) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        for row in rows:
            f.write(rundir.json_line(row))
    os.replace(tmp, path)
