"""Load run directories into pandas and aggregate across seeds.

Reads only what the training driver writes (config.json, metrics.jsonl,
eval.jsonl, summary.json), so notebooks never depend on training code.

    runs = analysis.load_runs(["runs/td3_bc", "runs/cql"])
    curve = analysis.aggregate(runs["eval"], "undiscounted_return")
"""
import glob
import os
import re
from typing import Dict, Iterable, List, Tuple, Union

import numpy as np
import pandas as pd

from jaxmtf import stats
from jaxmtf.runs import rundir

# Columns that identify one run inside a run directory.
RUN_KEYS = ("seed", "hparam_index")


def load_run(workdir: str) -> Dict[str, Union[pd.DataFrame, dict]]:
    """{"metrics", "eval"} DataFrames (one row per step, seed, setting) and the config and summary dicts."""
    if not os.path.exists(os.path.join(workdir, rundir.CONFIG_FILE)):
        raise FileNotFoundError(f"{workdir} is not a jaxmtf run directory (no {rundir.CONFIG_FILE})")
    config = rundir.load_config_json(workdir)
    summary = rundir.read_summary(workdir)
    frames = {}
    for name, filename in (("metrics", rundir.METRICS_FILE), ("eval", rundir.EVAL_FILE)):
        df = pd.DataFrame(rundir.read_run_records(workdir, filename))
        if not df.empty:
            df.insert(0, "algo", config.get("algo", ""))
            df.insert(0, "run", os.path.basename(os.path.normpath(workdir)))
        frames[name] = df
    return {**frames, "config": config, "summary": summary}


def load_runs(workdirs: Union[str, Iterable[str]]) -> Dict[str, pd.DataFrame]:
    """Concatenated metrics and eval of several run directories (a glob pattern works too)."""
    if isinstance(workdirs, str):
        workdirs = sorted(glob.glob(workdirs)) or [workdirs]
    runs = [load_run(w) for w in workdirs]
    return {name: pd.concat([r[name] for r in runs], ignore_index=True) for name in ("metrics", "eval")}


def hparam_columns(df: pd.DataFrame) -> List[str]:
    """The swept hyperparameter columns (those that vary between settings)."""
    known = {"run", "algo", "step", "diverged_at_step", *RUN_KEYS}  # divergence varies by setting but is no hparam
    numeric = [c for c in df.columns if c not in known]
    if "hparam_index" not in df:
        return []
    per_setting = df.groupby(["run", "hparam_index"])[numeric].nunique(dropna=False)
    constant_within = [c for c in numeric if (per_setting[c] <= 1).all()]
    return [c for c in constant_within if df.groupby("run")[c].nunique(dropna=False).max() > 1]


def aggregate(df: pd.DataFrame, metric: str, by=None, over: str = "seeds") -> pd.DataFrame:
    """Mean, std, 95% CI half-width (`ci95`) and count of `metric` over seeds, per step and setting.

    The rows that each group pools are seeds, a handful, so `ci95` is the Student-t interval
    (t_{0.975, count-1}; `stats.t_halfwidth`), NaN for a group of one. `over` says otherwise when the rows
    are users or episodes (normal approximation); `stats.ci95_label(over, out["count"])` is the header text.
    """
    if df.empty:
        raise ValueError("no rows to aggregate (did the run log any?)")
    if metric not in df:
        raise KeyError(f"metric '{metric}' not logged; available: {sorted(c for c in df.columns if c not in RUN_KEYS)}")
    by = list(by) if by is not None else ["run", "algo", "hparam_index", "step"] + hparam_columns(df)
    grouped = df.groupby(by, dropna=False)[metric]
    out = grouped.agg(["mean", "std", "count"]).reset_index()
    out["ci95"] = stats.ci95_halfwidth(out["std"], out["count"], over=over)
    if "variant" in by:  # variants in natural order (alpha=2.5 before alpha=10.0), not as strings sort
        rest = [c for c in by if c != "variant"]
        order = sorted(range(len(out)), key=lambda i: (natural_key(out["variant"].iat[i]),
                                                       *(str(out[c].iat[i]) if c == "dataset" else out[c].iat[i]
                                                         for c in rest)))
        out = out.iloc[order].reset_index(drop=True)
    return out


def natural_key(label) -> Tuple:
    """A sort key that reads the numbers in a label as numbers: "td3_bc[alpha=2.5]" < "td3_bc[alpha=10.0]"."""
    parts = re.split(r"(-?\d+(?:\.\d*)?(?:e-?\d+)?)", str(label))
    return tuple((0, float(p)) if i % 2 else (1, p) for i, p in enumerate(parts) if p != "")


def with_variant(df: pd.DataFrame) -> pd.DataFrame:
    """`df` with the `variant` and `dataset` columns the sweep loader adds; a single run's logs (load_run)
    get them from their algo and setting, and an empty dataset name."""
    if "variant" not in df:
        df = df.assign(variant=variant_labels(df))
    if "dataset" not in df:
        df = df.assign(dataset="")
    return df


def final(df: pd.DataFrame) -> pd.DataFrame:
    """The rows of the last logged step of every run and setting."""
    last = df.groupby(["run", "hparam_index"])["step"].transform("max")
    return df[df["step"] == last]


# ----------------------------------------------------------------------------- sweeps (jaxmtf.workflows.sweep)


def load_sweep(workdir: str) -> Dict[str, pd.DataFrame]:
    """{"index", "eval", "metrics"} of a sweep directory: the index as one row per cell, and every cell's
    logs with its `dataset` and `variant` (the algorithm, plus its setting where the cell has a grid).

    Cells not started yet are listed in the index only; a cell still running contributes what it logged.
    """
    from jaxmtf.workflows import sweep  # lazy: sweep imports the training stack

    path = os.path.join(workdir, sweep.INDEX_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{workdir} is not a jaxmtf sweep directory (no {sweep.INDEX_FILE})")
    index = sweep.read_index(workdir)
    table = pd.DataFrame([{"cell": name, **entry} for name, entry in index["cells"].items()])
    frames = {"eval": [], "metrics": []}
    for name, entry in index["cells"].items():
        cell_dir = os.path.join(workdir, entry["run_dir"])
        if not os.path.exists(os.path.join(cell_dir, rundir.CONFIG_FILE)):
            continue
        run = load_run(cell_dir)
        for kind in frames:
            df = run[kind]
            if not df.empty:
                df = df.assign(cell=name, dataset=entry["dataset"])
                df["variant"] = variant_labels(df)
                frames[kind].append(df)
    out = {kind: pd.concat(dfs, ignore_index=True) if dfs else pd.DataFrame() for kind, dfs in frames.items()}
    return {"index": table, **out}


def variant_labels(df: pd.DataFrame) -> pd.Series:
    """`algo`, or `algo[name=value,...]` when the run directory swept hparams (one label per setting)."""
    swept = hparam_columns(df)
    if not swept:
        return df["algo"].astype(str)
    settings = df[swept].astype(str).apply(lambda row: ",".join(f"{n}={v}" for n, v in zip(swept, row)), axis=1)
    return df["algo"].astype(str) + "[" + settings + "]"


def reference_returns(workdir: str, metric: str = "undiscounted_return") -> Dict[str, float]:
    """{"random", "expert"}: the behaviour values recorded in the sidecars of the sweep's datasets whose
    pipeline is `random` and `expert` (the 0 and 100 of normalised scores)."""
    from jaxmtf.data import dataset as dataset_lib
    from jaxmtf.workflows import sweep

    found = {}
    for path in sweep.read_index(workdir)["datasets"].values():
        provenance = dataset_lib.read_sidecar(path)["provenance"]
        if provenance["pipeline"] in ("random", "expert"):
            found[provenance["pipeline"]] = float(provenance["behaviour_value"][metric])
    missing = {"random", "expert"} - set(found)
    if missing:
        raise KeyError(f"sweep {workdir} has no dataset of pipeline {sorted(missing)}: its sidecar's behaviour value "
                       "is the reference of normalised scores")
    return found


def final_scores(evals: pd.DataFrame, metric: str = "undiscounted_return", low: float = None,
                 high: float = None) -> pd.DataFrame:
    """One row per (variant, dataset, seed): `metric` at each run's last evaluation, and with both references
    given, `score` normalised so that low -> 0 and high -> 100.

    A run that diverged (non-finite parameters: its evaluations are logged as null) has no value; its
    `diverged` flag is set, and its score is that of the `low` reference (0), as if the system fell back to
    random weights, so a method that diverges is charged for it rather than dropped from the aggregates.
    """
    last = final(evals)
    out = last[["variant", "algo", "dataset", "seed", "step", metric]].reset_index(drop=True)
    out["diverged"] = last["diverged_at_step"].notna().to_numpy() if "diverged_at_step" in last else False
    if low is not None and high is not None:
        out["score"] = np.where(out["diverged"], 0.0, stats.normalise(out[metric].astype(float), low, high))
    return out


def score_matrices(scores: pd.DataFrame, column: str = "score", datasets=None) -> Dict[str, np.ndarray]:
    """{variant: [seeds, datasets]} matrices for the aggregate metrics (datasets in a shared order; a variant
    that lacks a dataset or has fewer seeds on one is refused rather than silently aligned)."""
    datasets = list(datasets) if datasets is not None else sorted(scores["dataset"].unique())
    out = {}
    for variant, group in scores.groupby("variant", sort=False):
        table = group.pivot_table(index="seed", columns="dataset", values=column)
        missing = [d for d in datasets if d not in table]
        if missing or table[datasets].isna().any().any():
            raise ValueError(f"variant {variant!r}: no {column} for every seed on datasets {missing or datasets}")
        out[variant] = table[datasets].to_numpy()
    return out


def interval_table(matrices: Dict[str, np.ndarray], aggregates=None, reps: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Point estimate and stratified-bootstrap 95% CI of every aggregate (IQM, mean, median, optimality gap)."""
    aggregates = aggregates or stats.AGGREGATES
    rows = []
    for variant, matrix in _natural_items(matrices):
        for name, metric in aggregates.items():
            point, low, high = stats.interval_estimate(metric, matrix, reps=reps, seed=seed)
            rows.append({"variant": variant, "aggregate": name, "estimate": float(point),
                         "ci_low": float(low), "ci_high": float(high)})
    return pd.DataFrame(rows)


def _natural_items(matrices: Dict[str, np.ndarray]):
    return [(variant, matrices[variant]) for variant in sorted(matrices, key=natural_key)]


def improvement_table(matrices: Dict[str, np.ndarray], against: str, reps: int = 2000, seed: int = 0) -> pd.DataFrame:
    """P(variant > `against`) with its stratified-bootstrap 95% CI, for every other variant."""
    rows = []
    for variant, matrix in _natural_items(matrices):
        if variant != against:
            point, low, high = stats.interval_estimate(stats.probability_of_improvement, matrix, matrices[against],
                                                       reps=reps, seed=seed)
            rows.append({"variant": variant, "against": against, "probability": float(point),
                         "ci_low": float(low), "ci_high": float(high)})
    return pd.DataFrame(rows)


def performance_profiles(matrices: Dict[str, np.ndarray], taus, reps: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Score distributions (fraction of runs above tau) with stratified-bootstrap 95% bands."""
    rows = []
    for variant, matrix in matrices.items():
        point, low, high = stats.interval_estimate(lambda m: stats.score_distribution(m, taus), matrix,
                                                   reps=reps, seed=seed)
        rows += [{"variant": variant, "tau": float(t), "fraction": float(p), "ci_low": float(lo), "ci_high": float(hi)}
                 for t, p, lo, hi in zip(taus, point, low, high)]
    return pd.DataFrame(rows)


def learning_curves(evals: pd.DataFrame, metric: str = "undiscounted_return") -> pd.DataFrame:
    """Mean and 95% CI (Student-t) over seeds of `metric` per (variant, dataset, step); a sweep's logs or one
    run's (load_run)."""
    return aggregate(with_variant(evals), metric, by=["variant", "dataset", "step"])


def overestimation_curves(evals: pd.DataFrame) -> pd.DataFrame:
    """Q(s0, pi(s0)) against the true discounted return from s0, over training: mean and 95% CI (Student-t) over seeds
    of both (the driver's evaluation logs them as q_estimate_initial and true_discounted_initial)."""
    by, evals = ["variant", "dataset", "step"], with_variant(evals)
    estimate = aggregate(evals, "q_estimate_initial", by=by)
    truth = aggregate(evals, "true_discounted_initial", by=by)
    return estimate.merge(truth, on=by, suffixes=("_q", "_true"))


def score_table(scores: pd.DataFrame, column: str = "score", with_ci: bool = False) -> pd.DataFrame:
    """Variant x dataset: the mean of `column` over seeds, or "mean ± 95% CI" strings with `with_ci`: the
    Student-t interval over the seeds, which the header (the columns' name) states with their number, e.g.
    "dataset: mean ± 95% CI (Student-t over 3 seeds)"."""
    table = aggregate(scores, column, by=["variant", "dataset"])
    means = table.pivot(index="variant", columns="dataset", values="mean")
    means = means.reindex(sorted(means.index, key=natural_key))
    if not with_ci:
        return means
    ci = table.pivot(index="variant", columns="dataset", values="ci95").reindex(means.index)
    out = pd.DataFrame({d: [f"{m:.1f} ± {c:.1f}" for m, c in zip(means[d], ci[d])] for d in means},
                       index=means.index)
    out.columns.name = f"dataset: mean ± {stats.ci95_label('seeds', table['count'])}"
    return out


def ope_score_table(report: Dict) -> pd.DataFrame:
    """One row per OPE estimator: its scores against the truth and the true value of what it selects
    (ope_report.json's "estimators")."""
    rows = []
    for name, entry in report["estimators"].items():
        selection = entry.get("selection", {})
        rows.append({"estimator": name, **entry.get("scores", {}),
                     "picked": selection.get("by_estimate"),
                     "true_value_of_pick": selection.get("true_value_by_estimate"),
                     "best_true_value": selection.get("best_true_value")})
    return pd.DataFrame(rows).set_index("estimator")
