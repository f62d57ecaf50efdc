"""Load run directories into pandas and aggregate across seeds.

Reads only what the training driver writes (config.json, metrics.jsonl,
eval.jsonl, summary.json), so notebooks never depend on training code.

    runs = analysis.load_runs(["runs/td3_bc", "runs/cql"])
    curve = analysis.aggregate(runs["eval"], "undiscounted_return")
"""
import glob
import os
from typing import Dict, Iterable, List, Union

import numpy as np
import pandas as pd

from jaxmtf import rundir
from jaxmtf.stats import ci95_halfwidth

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


def aggregate(df: pd.DataFrame, metric: str, by=None) -> pd.DataFrame:
    """Mean, std, 95% CI (normal approx.) and count of `metric` over seeds, per step and setting."""
    if df.empty:
        raise ValueError("no rows to aggregate (did the run log any?)")
    if metric not in df:
        raise KeyError(f"metric '{metric}' not logged; available: {sorted(c for c in df.columns if c not in RUN_KEYS)}")
    by = list(by) if by is not None else ["run", "algo", "hparam_index", "step"] + hparam_columns(df)
    grouped = df.groupby(by, dropna=False)[metric]
    out = grouped.agg(["mean", "std", "count"]).reset_index()
    out["ci95"] = ci95_halfwidth(out["std"], out["count"].clip(lower=1))
    return out


def final(df: pd.DataFrame) -> pd.DataFrame:
    """The rows of the last logged step of every run and setting."""
    last = df.groupby(["run", "hparam_index"])["step"].transform("max")
    return df[df["step"] == last]
