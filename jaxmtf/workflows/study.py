"""What the study notebooks run, at a SCALE: the algorithms x datasets sweep, OPE of its policies, and
the MTF methods' comparison. The notebooks hold calls and prose; the logic is here.

    SCALE=small (default) | full, read from the environment; JAXMTF_RUNS_DIR (default runs) is where
    everything goes: the study in RUNS/study (full) or RUNS/study_small, the quickstart beside it.
The configs are the package's (jaxmtf/configs), so this runs from anywhere.
"""
import os
from typing import Any, Dict, Optional

import pandas as pd

from jaxmtf.reporting import analysis
from jaxmtf.runs import rundir
from jaxmtf.workflows import pipeline, sweep

SCALES = ("small", "full")
# The study's dataset that OPE evaluates on: one with behaviour densities (so every estimator runs) over a
# wide support (mixed: half uniform, half around the expert); small scale has only random and expert.
OPE_DATASET = {"small": "random", "full": "mixed"}
MTF_RESULTS = "benchmarks/results/mtf_progressive.json"  # the full-scale run of benchmarks/mtf_progressive.py


def scale() -> str:
    """The SCALE environment variable: small (CI's, minutes) or full (the committed results)."""
    value = os.environ.get("SCALE", "small")
    if value not in SCALES:
        raise ValueError(f"environment variable SCALE: got {value!r}, expected one of {SCALES}")
    return value


def runs_dir() -> str:
    """The JAXMTF_RUNS_DIR environment variable (default: runs, relative to the repository root)."""
    return os.environ.get("JAXMTF_RUNS_DIR", "runs")


def study_dir(scale_name: str) -> str:
    """RUNS/study (full) or RUNS/study_small."""
    return os.path.join(runs_dir(), "study" if scale_name == "full" else f"study_{scale_name}")


def study_config(scale_name: str):
    from jaxmtf.configs.sweeps import batchrl_study

    return batchrl_study.get_config(scale_name)


def run_study(scale_name: str, workdir: Optional[str] = None) -> Dict[str, Any]:
    """Runs (or resumes, or just reads: finished cells are skipped) the BatchRL study at `scale_name`."""
    return sweep.run_sweep(study_config(scale_name), workdir or study_dir(scale_name))


def study_scores(workdir: str) -> Dict[str, Any]:
    """The sweep's logs, its references, and final normalised scores with their score matrices."""
    loaded = analysis.load_sweep(workdir)
    refs = analysis.reference_returns(workdir)
    scores = analysis.final_scores(loaded["eval"], low=refs["random"], high=refs["expert"])
    datasets = list(sweep.read_index(workdir)["datasets"])
    return {**loaded, "references": refs, "scores": scores, "datasets": datasets,
            "matrices": analysis.score_matrices(scores, datasets=datasets)}


def ope_config(scale_name: str, workdir: str, dataset: str):
    """jaxmtf/configs/ope.py for every run directory of the study trained on `dataset`, plus the named
    baselines; FQE cut at small scale."""
    from jaxmtf.configs import ope

    index = sweep.read_index(workdir)
    if dataset not in index["datasets"]:
        raise KeyError(f"the study in {workdir} has no dataset {dataset!r} (it has {sorted(index['datasets'])})")
    runs = [os.path.join(workdir, e["run_dir"]) for e in index["cells"].values()
            if e["dataset"] == dataset and e["status"] == sweep.DONE]
    config = ope.get_config()
    config.dataset = index["datasets"][dataset]
    config.policies = ",".join(runs + ["baseline", "random", "switch"])
    if scale_name == "small":
        config.fqe.num_updates, config.fqe.chunk_size, config.fqe.checkpoint_every = 200, 100, 100
        config.fqe.hidden_dims, config.fqe.num_seeds = (32, 32), 1
        config.eval_users, config.bootstrap_replicates, config.num_cells = 100, 100, 4
    else:  # benchmarks/ope_validation.py's sizes: one 128-128 FQE critic per policy, ~11 s each on a 2-core CPU
        config.fqe.num_seeds, config.fqe.hidden_dims, config.eval_users = 1, (128, 128), 1_000
    return config


def run_ope(scale_name: str, workdir: str, dataset: Optional[str] = None) -> Dict[str, Any]:
    """OPE of the study's policies on `dataset` into WORKDIR/ope-DATASET: {"rows" (per-policy estimates, mean
    over FQE seeds), "report"} (FQE resumes; the estimators rerun, seconds at full scale)."""
    dataset = dataset or OPE_DATASET[scale_name]
    out = os.path.join(workdir, f"ope-{dataset}")
    result = pipeline.ope_from_config(ope_config(scale_name, workdir, dataset), out)
    rows = pd.DataFrame(rundir.read_jsonl(os.path.join(out, "ope.jsonl")))
    rows = rows[rows["fqe_seed"].isna()] if "fqe_seed" in rows else rows  # the mean over FQE seeds
    return {"rows": rows.reset_index(drop=True), "report": result["report"]}


def mtf_methods(scale_name: str) -> Dict[str, Any]:
    """IntegratedRL-MTF's rounds against BatchRL-MTF, IQL, TD3+BC, CQL, static CEM and the baseline at equal
    session budgets (jaxmtf.workflows.mtf_comparison).

    Full scale reads the recorded run of benchmarks/mtf_progressive.py (MTF_RESULTS: over an hour of a 2-core
    CPU, too long to repeat inside a notebook); small scale runs every kind of row now at CI's sizes.
    """
    from jaxmtf.workflows import mtf_comparison

    if scale_name == "full":
        return rundir.read_json(MTF_RESULTS)
    return mtf_comparison.run(os.path.join(study_dir(scale_name), "mtf_progressive"), mtf_comparison.SMALL_SIZES)


def markdown_summary(workdir: str) -> str:
    """benchmarks/README.md's study tables: normalised scores per cell, the aggregates with their CIs,
    the final overestimation, and each cell's wall time and throughput."""
    result = study_scores(workdir)
    scores = analysis.score_table(result["scores"], with_ci=True)
    intervals = analysis.interval_table(result["matrices"])
    intervals["cell"] = [f"{e:.1f} [{lo:.1f}, {hi:.1f}]" for e, lo, hi in
                         zip(intervals["estimate"], intervals["ci_low"], intervals["ci_high"])]
    aggregates = intervals.pivot(index="variant", columns="aggregate", values="cell")
    over = analysis.aggregate(analysis.final(result["eval"]), "overestimation", by=["variant", "dataset"])
    over = over.pivot(index="variant", columns="dataset", values="mean").round(1)
    cells = result["index"][["cell", "seconds", "updates_per_second", "diverged_runs"]].set_index("cell")
    return "\n\n".join([
        f"Normalised true return ({scores.columns.name.removeprefix('dataset: ')}):\n\n" + markdown_table(scores),
        "Aggregates over datasets (stratified bootstrap 95% CIs):\n\n" + markdown_table(aggregates),
        "Q(s0, pi(s0)) minus the true discounted return at the last evaluation:\n\n" + markdown_table(over),
        "Cells (wall seconds, updates/s over all runs of the cell, runs diverged):\n\n" + markdown_table(cells),
    ])


def markdown_table(frame: pd.DataFrame) -> str:
    """A frame as a markdown table, its index as the first column (pandas' to_markdown needs tabulate)."""
    def text(value):
        return f"{value:.1f}" if isinstance(value, float) else str(value)

    header = [frame.index.name or ""] + [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join([str(i)] + [text(v) for v in row]) + " |"
              for i, row in zip(frame.index, frame.to_numpy())]
    return "\n".join(lines)
