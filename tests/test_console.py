"""What a training run prints: the evaluation line and the closing lines per setting (hand values)."""
import json
import os

from jaxmtf.core import loop
from jaxmtf.runs import rundir
from jaxmtf.workflows import pipeline


def test_eval_line_counts_runs_and_diverged_ones():
    records = [{"undiscounted_return": 1.0, "diverged_at_step": None}, {"undiscounted_return": 2.0},
               {"undiscounted_return": None, "diverged_at_step": 5}]
    assert loop.eval_line(records) == "undiscounted_return 1.50 (1.00 to 2.00 over 2 runs), 1 diverged"


def test_closing_lines_per_setting(tmp_path):
    rows = [  # setting 0: seeds 0 and 1; setting 1: seed 1 diverged
        {"step": 10, "seed": 0, "hparam_index": 0, "undiscounted_return": 5.0},
        {"step": 10, "seed": 1, "hparam_index": 0, "undiscounted_return": 7.0},
        {"step": 20, "seed": 0, "hparam_index": 0, "undiscounted_return": 1.0},
        {"step": 20, "seed": 1, "hparam_index": 0, "undiscounted_return": 3.0},
        {"step": 20, "seed": 0, "hparam_index": 1, "undiscounted_return": 4.0},
        {"step": 20, "seed": 1, "hparam_index": 1, "undiscounted_return": None},
    ]
    with open(os.path.join(tmp_path, rundir.EVAL_FILE), "w") as f:
        f.write("".join(json.dumps(r) + "\n" for r in rows))
    summary = {"step": 20, "diverged_at_step": [
        {"seed": s, "hparam_index": h, "alpha": a, "diverged_at_step": 15 if (s, h) == (1, 1) else None}
        for s in (0, 1) for h, a in ((0, 2.5), (1, 5.0))]}
    lines = pipeline.closing_lines(summary, str(tmp_path))
    assert lines[0].startswith("finished at update 20; undiscounted_return per setting")
    # Final mean 2, std sqrt(2) over 2 seeds: t_{0.975, 1} * sqrt(2) / sqrt(2) = 12.71; best: update 10 (6.0).
    assert lines[1] == ("  setting 0 (alpha=2.5): final 2.00 ± 12.71 at update 20, best 6.00 at update 10, "
                        "0 diverged of 2 runs")
    assert lines[2] == ("  setting 1 (alpha=5.0): final 4.00 (one seed: no interval) at update 20, best 4.00 at "
                        "update 20, 1 diverged of 2 runs")
