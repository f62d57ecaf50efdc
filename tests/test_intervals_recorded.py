"""Intervals over seeds are Student-t, over users normal: the MTF comparison's table and the recorded results."""
import json
import os

import numpy as np
import pytest

from jaxmtf import mtf_comparison, stats

RESULTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks", "results")


def _load(name):
    with open(os.path.join(RESULTS, name)) as f:
        return json.load(f)


def test_mtf_comparison_rows_over_seeds_are_student_t_and_the_table_says_so():
    # 4 seeds of 250, 252, 255, 259: mean 254, std (ddof=1) sqrt(46 / 3); t_{0.975, 3} = 3.182.
    row = mtf_comparison._over_seeds([250.0, 252.0, 255.0, 259.0])
    assert row["mean"] == 254.0 and row["per_seed"] == [250.0, 252.0, 255.0, 259.0]
    assert row["ci95"] == pytest.approx(3.182446 * np.sqrt(46.0 / 3.0) / 2.0, rel=1e-6)
    assert np.isnan(mtf_comparison._over_seeds([250.0])["ci95"])  # one seed: no interval
    out = {"sizes": {"num_seeds": 4, "eval_users": 1000},
           "rows": {"baseline": {m: {"mean": 1.0, "ci95": 0.5} for m in mtf_comparison.METRICS},
                    "learned": {m: row for m in mtf_comparison.METRICS}},
           "exploration_cost": {"box round 1": row, "uniform random": {"mean": 6.8}}}
    text = mtf_comparison.markdown(out)
    assert text.splitlines()[0] == ("Learned rows and exploration costs: mean ± 95% CI (Student-t over 4 seeds); "
                                    "fixed rows (baseline, static weights): ± 95% CI (normal over 1000 users).")
    assert "| learned | 254.0 ± 6.2 |" in text
    assert "box rounds: ± 95% CI (Student-t over 4 seeds)) |" in text


def test_recorded_mtf_comparison_intervals_over_seeds_are_student_t():
    out = _load("mtf_comparison_cpu.json")
    entries = [m for row in out["rows"].values() for m in row.values()] + list(out["exploration_cost"].values())
    over_seeds = [e for e in entries if "per_seed" in e]
    assert len(over_seeds) >= 20
    for e in over_seeds:
        x = np.asarray(e["per_seed"])
        assert e["ci95"] == pytest.approx(stats.t_quantile_95(x.size) * x.std(ddof=1) / np.sqrt(x.size), abs=1e-9)


@pytest.mark.parametrize("name", ["quality_cpu.json", "quality_cpu_issue9.json"])
def test_recorded_quality_intervals_over_seeds_are_student_t(name):
    out = _load(name)
    low, high = (out["reference_returns"][k]["undiscounted_return"] for k in ("random", "expert"))
    for row in out["rows"]:
        score = 100.0 * (np.asarray(row["return_per_seed"], np.float64) - low) / (high - low)
        expected = stats.t_quantile_95(score.size) * score.std(ddof=1) / np.sqrt(score.size)
        assert row["score_ci95"] == pytest.approx(expected, rel=1e-5, abs=1e-5)  # the run's float32 rounding
        assert row["score_ci95_over"] == f"95% CI (Student-t over {score.size} seeds)"
