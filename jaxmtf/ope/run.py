"""Every estimator on every policy in a few compiled programs: the OPE run behind `launch.ope`.

1. The target policies act once on the dataset's states (`targets`): their
   actions at s_t, at s_0 and at the logged states, and the log density of
   the logged actions. Nothing of a policy runs after this.
2. FQE trains for all policies x seeds in one driver program (`fit_fqe`),
   in `workdir/fqe`, a run directory that resumes like a training run.
3. The estimators and their bootstrap intervals run in one program over
   policies (`lax.map`), replicates (vmapped groups) and FQE seeds (vmapped).
4. Rows: one per (estimator, policy, FQE seed); the FQE-based rows also come
   averaged over the FQE seeds (`fqe_seed` None), the rows that selection
   and scoring use. With a simulator, each row carries the true value.
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
from jaxmtf.ope import bootstrap, doubly_robust, extra_rows, importance, marginal, scoring, targets
from jaxmtf.ope import fqe as fqe_lib
from jaxmtf.ope.config import validate_ope_config
from jaxmtf.ope.episodes import Episodes, episodes_from_dataset, gather, require_behaviour_log_prob
from jaxmtf.runs import record as record_lib
from jaxmtf.runs import rundir
from jaxmtf.types import Dataset

IS_ESTIMATORS = tuple(importance.ESTIMATORS) + ("mis",)
FQE_ESTIMATORS = ("fqe",) + tuple(doubly_robust.ESTIMATORS)


# ----------------------------------------------------------------- 1. the targets' actions


def target_inputs(groups, dataset: Dataset, episodes: Episodes, config, key) -> Dict[str, Any]:
    """Stacked over all policies P: actions at s_t [P, N, K, A], at the logged s [P, N, K, A], at s_0 [P, E, K, A];
    the logged actions' log density [P, N] (None without behaviour densities)."""
    k = int(config.fqe.num_action_samples)
    obs0 = dataset.observations[episodes.initial_rows]
    parts = {"next_actions": [], "state_actions": [], "initial_actions": [], "log_prob": []}
    for group, gkey in zip(groups, jax.random.split(key, len(groups))):
        k1, k2, k3 = jax.random.split(gkey, 3)
        parts["next_actions"].append(targets.sample_actions(group, dataset.next_observations, k1, k))
        parts["state_actions"].append(targets.sample_actions(group, dataset.observations, k2, k))
        parts["initial_actions"].append(targets.sample_actions(group, obs0, k3, k))
        if dataset.behaviour_log_prob is not None:
            parts["log_prob"].append(targets.target_log_prob(
                group, dataset.observations, dataset.actions, float(config.target_sigma), dataset.num_actions,
                float(config.get("target_epsilon", 0.1))))
    out = {name: jnp.concatenate(v) for name, v in parts.items() if v}
    out.setdefault("log_prob", None)
    return out


# ----------------------------------------------------------------- 2. FQE in the driver


def fit_fqe(config, dataset: Dataset, next_actions, labels: List[dict], workdir: str):
    """FQE states [S, P] after config.fqe.num_updates updates, trained (or resumed) in `workdir`.

    The training driver's own set-up and loop (`lifecycle.set_up_runs`, `training.train_runs`): the workdir is
    locked, its record checked before anything is written, checkpoints verified, SIGTERM saves.
    """
    fc = config.fqe
    fqe = fqe_lib.make_fqe(fc, dataset.obs_dim, dataset.act_dim, dataset.num_actions)
    num_policies = int(next_actions.shape[0])
    seeds = [int(fc.seed) + i for i in range(int(fc.num_seeds))]
    hparams = {"next_actions": next_actions, "discount": jnp.full((num_policies,), float(config.discount), jnp.float32)}
    meta = {
        "estimator": "fqe", "fqe": {k: v for k, v in fc.to_dict().items() if k not in _RETIMING_FIELDS},
        "discount": float(config.discount), "seeds": seeds, "policies": labels, "num_transitions": dataset.size,
        "data_fingerprint": record_lib.checksum({"observations": dataset.observations, "actions": dataset.actions,
                                                 "rewards": dataset.rewards, "next_actions": next_actions})[:16],
    }
    policy_labels = [{"policy": policy_key(label)} for label in labels]
    grid = RunGrid(seeds, hparams, policy_labels)
    run = lifecycle.set_up_runs(fc, workdir, fqe, grid, fqe_lib.fqe_data(dataset), meta)
    summary = training.train_runs(run)
    return fqe, summary["state"].agent


# Fields that re-time an FQE run without changing what it computes (a resume may change them).
_RETIMING_FIELDS = ("num_updates", "checkpoint_every", "keep_checkpoints", "eval_every", "seed_group_size",
                    "force_new_run")


def fqe_inputs(fqe, states, dataset: Dataset, episodes: Episodes, inputs) -> Dict[str, jax.Array]:
    """Per (FQE seed + the seed mean, policy): V(s_0) [S+1, P, E], Q at logged (s, a) and V(s) [S+1, P, E, T]."""
    obs0 = dataset.observations[episodes.initial_rows]
    v0 = fqe_lib.values(fqe, states, obs0, inputs["initial_actions"])
    v = fqe_lib.values(fqe, states, dataset.observations, inputs["state_actions"])
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
    per_step = jax.vmap(lambda lr: importance.effective_sample_size(lr[:, None], ones), in_axes=1)(log_ratio)
    return {"ess": importance.effective_sample_size(log_w, ones), "ess_per_step": jnp.mean(per_step)}


def estimate_all(config, episodes: Episodes, cells, per_policy: Dict[str, jax.Array], key) -> Dict[str, Any]:
    """{name: (estimate, low, high)} with leaves [P] or [P, S+1], plus the weights' ESS [P]."""
    has_is = "log_prob" in per_policy
    estimator = _policy_estimator(episodes, cells, config, int(config.num_cells), has_is)
    E, B, level = episodes.num_episodes, int(config.bootstrap_replicates), float(config.ci_level)

    def one_policy(args):
        p, pkey = args
        out = bootstrap.with_intervals(lambda counts: estimator(counts, p), pkey, E, B, level)
        return out, (_weight_diagnostics(episodes, config, p) if has_is else {})

    keys = jax.random.split(key, per_policy["v0"].shape[0])
    return jax.jit(lambda pp, ks: jax.lax.map(one_policy, (pp, ks)))(per_policy, keys)


# ----------------------------------------------------------------- 4. rows


def _rows(labels, estimates, diagnostics, truth, config, num_seeds) -> List[Dict[str, Any]]:
    rows = []
    common_fields = {"discount": float(config.discount), "ci_level": float(config.ci_level)}
    for p, label in enumerate(labels):
        for name, (value, low, high) in estimates.items():
            value, low, high = (np.asarray(x[p]) for x in (value, low, high))
            seeds = list(range(num_seeds)) + [None] if value.ndim else [None]
            for i, fqe_seed in enumerate(seeds):
                row = {"estimator": name, **label, "fqe_seed": fqe_seed, **common_fields,
                       "estimate": float(value.reshape(-1)[i]), "ci_low": float(low.reshape(-1)[i]),
                       "ci_high": float(high.reshape(-1)[i])}
                if name in IS_ESTIMATORS or name in doubly_robust.ESTIMATORS:
                    smoothing = "target_epsilon" if label.get("discrete") else "target_sigma"
                    row.update({smoothing: None if label.get("stochastic") else float(config.get(smoothing, 0.1))},
                               max_weight=float(config.max_weight))
                    row["ess"] = float(diagnostics["ess_per_step" if name == "mis" else "ess"][p])
                if truth is not None:
                    row.update({k: float(v[p]) for k, v in truth.items()})
                    row["abs_error"] = abs(row["estimate"] - row["true_discounted"])
                rows.append(row)
    return rows


def ope_report(rows: List[Dict[str, Any]]) -> Dict[str, Any]:
    """Per estimator (rows with fqe_seed None): conservative selection, and DOPE's metrics where the truth is known."""
    report = {}
    for name in sorted({r["estimator"] for r in rows}):
        chosen = [r for r in rows if r["estimator"] == name and r["fqe_seed"] is None]
        names = [policy_key(r) for r in chosen]
        est = np.array([r["estimate"] for r in chosen])
        entry = {"selection": scoring.select(names, est, np.array([r["ci_low"] for r in chosen]))}
        if "true_discounted" in chosen[0]:
            truths = np.array([r["true_discounted"] for r in chosen])
            entry["scores"] = scoring.score_estimator(
                est, truths, [r["ci_low"] for r in chosen], [r["ci_high"] for r in chosen]
            )
            entry["selection"]["true_value_by_estimate"] = float(truths[names.index(entry["selection"]["by_estimate"])])
            entry["selection"]["true_value_by_lower_bound"] = float(
                truths[names.index(entry["selection"]["by_lower_bound"])]
            )
            entry["selection"]["best_true_value"] = float(truths.max())
        report[name] = entry
    return report


def policy_key(row) -> str:
    """A policy's name in a report: its name, and seed/setting for one agent of a run directory."""
    if "seed" in row:
        return f"{row['policy']}/seed{row['seed']}/h{row['hparam_index']}"
    return row["policy"]


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
        fqe, states = fit_fqe(config, dataset, inputs["next_actions"], labels, os.path.join(workdir, "fqe"))
    with stage("estimators and bootstrap"):
        per_policy = {k: jnp.moveaxis(v, 0, 1) for k, v in fqe_inputs(fqe, states, dataset, episodes, inputs).items()}
        cells = None
        if has_is:
            per_policy["log_prob"] = jax.vmap(lambda lp: gather(episodes, lp))(inputs["log_prob"])
            cells = gather(episodes, marginal.state_cells(k_cells, dataset.observations, int(config.num_cells),
                                                          int(config.num_components)))
        estimates, diagnostics = jax.device_get(estimate_all(config, episodes, cells, per_policy, k_boot))
    with stage("true values in the simulator"):
        truth = _truth(groups, env_params, config, k_truth)
    rows = _rows(labels, estimates, diagnostics, truth, config, int(config.fqe.num_seeds))
    # ----- issue 20: NCIS, MTF-GAUC and model-based OPE rows (jaxmtf/ope/extra_rows.py) -----
    with stage("ncis, mtf-gauc, model-based"):
        rows += extra_rows.extra_rows(config, dataset, env_params, episodes, groups, labels, per_policy, rows,
                                      workdir, key)
    # ----- end of issue 20 -----
    _write_rows(os.path.join(workdir, "ope.jsonl"), rows)
    report = {"estimators": ope_report(rows), "seconds": stage.seconds}
    if not has_is:
        report["refused"] = {"estimators": list(IS_ESTIMATORS + tuple(doubly_robust.ESTIMATORS)),
                             "reason": _missing_density_message()}
    rundir.write_json(os.path.join(workdir, "ope_report.json"), report)
    return {"rows": rows, "report": report}


def _truth(groups, env_params, config, key) -> Optional[Dict[str, np.ndarray]]:
    if env_params is None or int(config.eval_users) <= 0:
        return None
    per_group = [targets.true_values(g, env_params, key, int(config.eval_users), float(config.discount))
                 for g in groups]
    return {k: np.concatenate([np.asarray(t[k]) for t in per_group]) for k in per_group[0]}


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
