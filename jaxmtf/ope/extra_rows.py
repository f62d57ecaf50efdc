"""The rows of NCIS, MTF-GAUC and model-based OPE (issue 20), appended to run.py's rows by one call.

Each row has the fields of run.py's rows (estimator, the policy's label,
fqe_seed None, discount, ci_level, estimate, ci_low, ci_high), so the
report (selection, DOPE's scores) and the results JSON pick them up; the
true values are copied from run.py's own rows of the same policy.

- `ncis`, `ncis_pd` (ncis.py): need the behaviour densities, reuse run.py's
  gathered target log densities (`per_policy["log_prob"]`), bootstrap
  intervals over episodes like the IS rows. Config: `ncis_cap`.
- `mtf_gauc` (gauc.py): needs the MTF simulator (continuous actions);
  bootstrap over the simulated users. Config: `gauc_users` (0 = off),
  `gauc_weight`.
- `model_based` (model_based.py): continuous actions; behind
  `model_based.enabled`. Config: the `model_based` block.
"""
import os
from typing import Any, Dict, List

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from jaxmtf.ope import bootstrap, gauc, importance, model_based, ncis, targets
from jaxmtf.sim.mtf import env as sim_env

DEFAULT_NCIS_CAP = 10.0
DEFAULT_GAUC_USERS = 200
DEFAULT_GAUC_WEIGHT = "impressions"


def _truth_of(rows: List[Dict[str, Any]]) -> Dict[str, Dict[str, Any]]:
    """Per policy key, from run.py's first row of that policy: the true_* fields, the evaluated policy and its
    outside-support fraction (the new rows estimate the same smoothed policy)."""
    out = {}
    for r in rows:
        out.setdefault(targets.policy_key(r), {k: v for k, v in r.items()
                                 if k.startswith("true_") or k in ("evaluated_policy", "outside_support")})
    return out


def _row(name, label, value, low, high, config, truth, **extra) -> Dict[str, Any]:
    row = {"estimator": name, **label, "fqe_seed": None, "discount": float(config.discount),
           "ci_level": float(config.ci_level), "estimate": float(value), "ci_low": float(low), "ci_high": float(high),
           **extra}
    row.update(truth.get(targets.policy_key(label), {}))
    if name == gauc.NAME:  # a GAUC is no value (no error against one), of the policy's own fused scores
        row["evaluated_policy"] = targets.policy_key(label)
    elif "true_discounted" in row:
        row["abs_error"] = abs(row["estimate"] - row["true_discounted"])
    return row


def ncis_estimates(config, episodes, log_prob, key):
    """{name: (estimate, low, high)} with leaves [P]: log_prob [P, E, T] the targets' gathered log densities."""
    gamma, cap = float(config.discount), float(config.get("ncis_cap", DEFAULT_NCIS_CAP))
    E, B, level = episodes.num_episodes, int(config.bootstrap_replicates), float(config.ci_level)

    def one(args):
        lp, k = args
        log_ratio = importance.log_ratios(episodes, lp)
        return bootstrap.with_intervals(lambda c: ncis.estimate_all(episodes, log_ratio, gamma, c, cap), k, E, B,
                                        level)

    keys = jax.random.split(key, log_prob.shape[0])
    return jax.device_get(jax.jit(lambda lps, ks: jax.lax.map(one, (lps, ks)))(log_prob, keys))


def extra_rows(config, dataset, env_params, episodes, groups, labels, per_policy, rows, workdir: str,
               key) -> List[Dict[str, Any]]:
    """The new estimators' rows for every policy (labels: run.py's, in the groups' order)."""
    k_ncis, k_gauc, k_gauc_boot, k_model = jax.random.split(jax.random.fold_in(key, 20), 4)
    truth, out = _truth_of(rows), []
    smoothing = "target_epsilon" if dataset.is_discrete else "target_sigma"
    if per_policy.get("log_prob") is None:
        logging.warning("NCIS rows (%s) refused: the dataset has no 'behaviour_log_prob'", ", ".join(ncis.ESTIMATORS))
    else:
        cap = float(config.get("ncis_cap", DEFAULT_NCIS_CAP))
        estimates = ncis_estimates(config, episodes, per_policy["log_prob"], k_ncis)
        # the capped trajectory weights' ESS, on both rows (the console warns below ~10 episodes)
        ess = np.asarray(jax.jit(jax.vmap(lambda lp: ncis.effective_sample_size(
            importance.log_ratios(episodes, lp), cap)))(per_policy["log_prob"]))
        for p, label in enumerate(labels):
            width = None if label.get("stochastic") else float(config.get(smoothing, 0.1))
            for name in ncis.ESTIMATORS:
                value, low, high = (np.asarray(x)[p] for x in estimates[name])
                out.append(_row(name, label, value, low, high, config, truth, ncis_cap=cap, ess=float(ess[p]),
                                **{smoothing: width}))
    continuous_mtf = isinstance(env_params, sim_env.EnvParams) and not dataset.is_discrete
    users, weight = int(config.get("gauc_users", DEFAULT_GAUC_USERS)), config.get("gauc_weight", DEFAULT_GAUC_WEIGHT)
    if continuous_mtf and users > 0:
        start = 0
        for group in groups:
            value, low, high = gauc.group_gauc(group, env_params, k_gauc, users, weight,
                                               int(config.bootstrap_replicates), float(config.ci_level), k_gauc_boot)
            for i, label in enumerate(labels[start:start + group.size]):
                out.append(_row(gauc.NAME, label, value[i], low[i], high[i], config, truth, gauc_users=users,
                                gauc_weight=weight))
            start += group.size
    mb = config.get("model_based", None)
    if mb is not None and bool(mb.get("enabled", False)):
        if dataset.is_discrete:
            logging.warning("model-based OPE: continuous actions only; no '%s' rows", model_based.NAME)
        else:
            out += model_rows(config, dataset, episodes, groups, labels, truth, workdir, k_model)
    return out


def model_rows(config, dataset, episodes, groups, labels, truth, workdir, key) -> List[Dict[str, Any]]:
    mb = config.model_based
    model, states = model_based.fit_models(mb, dataset, os.path.join(workdir, "model_based"))
    obs0 = jnp.asarray(dataset.observations)[episodes.initial_rows]
    horizon, coef, gamma = int(mb.horizon), float(mb.lcb_coef), float(config.discount)
    out, start = [], 0
    sigma, epsilon = float(config.target_sigma), float(config.get("target_epsilon", 0.1))
    # The evaluated (smoothed) policy, as every other row estimates (one policy throughout, issue 20).
    for group in [targets.evaluated_group(g, sigma, 0, epsilon) for g in groups]:
        def one(params, group=group):
            policy = lambda o, k: group.policy.apply(params, o, k)  # noqa: E731
            values = model_based.member_values(model, states, policy, obs0, key, horizon, gamma)
            return model_based.summarise(values, coef)

        mean, std, lower = jax.device_get(jax.jit(lambda ps: jax.lax.map(lambda p: one(p), ps))(group.params))
        for i, label in enumerate(labels[start:start + group.size]):
            out.append(_row(model_based.NAME, label, mean[i], lower[i], mean[i] + coef * std[i], config, truth,
                            member_std=float(std[i]), lower_bound=float(lower[i]), num_members=int(mb.num_members),
                            horizon=horizon, lcb_coef=coef))
        start += group.size
    return out
