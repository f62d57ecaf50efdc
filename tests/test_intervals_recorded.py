"""Intervals over seeds are Student-t, over users normal: the MTF comparison's table and the recorded results."""
import json
import os

import numpy as np
import pytest

from jaxmtf import stats
from jaxmtf.workflows import mtf_comparison

RESULTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks", "results")


def _load(name):
    with open(os.path.join(RESULTS, name)) as f:
        return json.load(f)


class _Params:  # the simulator's params as mtf_comparison.row reads them: one item per step
    pass


def test_mtf_comparison_rows_over_seeds_are_student_t_and_the_table_says_so(monkeypatch):
    monkeypatch.setattr(mtf_comparison.registry, "of", lambda params: type("E", (), {
        "items_per_step": staticmethod(lambda p: 2)}))
    # 4 seeds of 250, 252, 255, 259: mean 254, std (ddof=1) sqrt(46 / 3); t_{0.975, 3} = 3.182.
    values = {"undiscounted_return": [250.0, 252.0, 255.0, 259.0], "session_length": [10.0, 10.0, 12.0, 12.0],
              "rate_long_view": [0.5, 0.5, 0.25, 0.25]}
    reference = {"baseline": {"undiscounted_return": 253.0}, "batchrl_mtf": np.array([251.0, 251.0, 251.0, 251.0])}
    row = mtf_comparison.row("integrated_rl", 1000, 5, 1, 0.9, values, reference, _Params(),
                             {"outside_box": [0.25, 0.75], "effective_discount": []})
    half = 3.182446 * np.sqrt(46.0 / 3.0) / 2.0
    assert row["return_mean"] == 254.0 and row["per_seed"] == [250.0, 252.0, 255.0, 259.0]
    assert row["return_ci95"] == pytest.approx(half, rel=1e-6)
    assert row["paired_vs_baseline"] == pytest.approx([1.0, 1.0 - half, 1.0 + half], rel=1e-6)
    assert row["paired_vs_batchrl"] == pytest.approx([3.0, 3.0 - half, 3.0 + half], rel=1e-6)
    # long views per user: rate x session length x items per step = 10, 10, 6, 6
    assert row["long_views_mean"] == 8.0
    assert row["outside_box"] == 0.5 and row["effective_discount"] is None
    out = {"baseline_return": 253.0, "baseline_ci95_over_users": 1.5, "sizes": {"num_seeds": 4, "eval_users": 2000},
           "rows": [row]}
    text = mtf_comparison.markdown(out)
    assert text.splitlines()[0].startswith("Baseline 253.0 (± 1.5, 95% CI (normal over 2000 users)). Learned rows: "
                                           "mean ± 95% CI (Student-t over 4 seeds)")
    assert "| integrated_rl | 1000 | 0.9 | 1 | 254.0 ± 6.2 |" in text


def test_recorded_mtf_progressive_intervals_over_seeds_are_student_t():
    out = _load("mtf_progressive.json")
    learned = [r for r in out["rows"] if r["method"] not in ("baseline", "static_cem")]
    assert len(learned) >= 10
    for r in learned:
        x = np.asarray(r["per_seed"])
        assert r["return_ci95"] == pytest.approx(stats.t_quantile_95(x.size) * x.std(ddof=1) / np.sqrt(x.size),
                                                 abs=1e-6)
        diff = x - out["baseline_return"]
        half = stats.t_quantile_95(x.size) * diff.std(ddof=1) / np.sqrt(x.size)
        assert r["paired_vs_baseline"] == pytest.approx([diff.mean(), diff.mean() - half, diff.mean() + half],
                                                        abs=1e-6)


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
