"""The README's main job, on tiny settings: collect, search, train, score, table, paired differences."""
import json

import numpy as np

from jaxmtf.configs import demo as demo_config
from jaxmtf.workflows import demo


def test_demo_writes_the_results_table(tmp_path):
    config = demo_config.get_config()
    config.eval_users = 16
    config.collect.num_users, config.collect.eval_users = 16, 16
    config.static.num_generations, config.static.population, config.static.num_elite = 1, 4, 2
    config.static.num_users, config.static.num_heldout_users = 8, 8
    config.train.num_seeds, config.train.num_updates, config.train.chunk_size = 2, 20, 10
    config.train.eval_every = config.train.checkpoint_every = 20
    config.train.eval_users, config.train.batch_size = 8, 16
    config.train.agent.actor_hidden_dims = config.train.agent.critic_hidden_dims = (16,)
    out = demo.run_demo(config, str(tmp_path))
    table = out["table"]
    lines = table.splitlines()
    assert lines[0].startswith("| policy | return (undiscounted)")
    names = [line.split("|")[1].strip() for line in lines[2:]]
    assert names[:4] == ["behaviour (mixed, logged the data)", "production baseline weights",
                         "static weights (CEM, started at the baseline)", "hand-written state-dependent (switch)"]
    assert names[4:] == ["td3_bc seed 0", "td3_bc seed 1", "td3_bc mean over 2 seeds (CI over seeds)"]
    results = json.load(open(tmp_path / "results.json"))
    assert all(results[name]["session_length"] >= 1 for name in names)
    # Rows' CIs are over the 16 users (normal); the seeds' mean row's over the 2 seeds (Student-t, df 1: 12.706).
    assert "| ± 95% CI (normal over 16 users); seeds' mean: 95% CI (Student-t over 2 seeds) |" in lines[0]
    per_seed = [results[name]["undiscounted_return"] for name in names[4:6]]
    np.testing.assert_allclose(results[names[6]]["undiscounted_return_ci95"],
                               12.706205 * np.std(per_seed, ddof=1) / np.sqrt(2), rtol=1e-4)
    assert (tmp_path / "results.md").read_text().strip() == out["markdown"]
    assert out["markdown"] == table + "\n\n" + out["paired_table"]
    assert (tmp_path / "train" / "eval.jsonl").exists() and (tmp_path / "data" / "mixed.json").exists()
    _check_paired(results, out["paired_table"], names)


def _check_paired(results, paired_table, names):
    """Each learned row (and the CEM row) against the behaviour and the static rows, paired on the same users."""
    paired = results[demo.PAIRED_KEY]
    learned = names[4:6] + ["td3_bc mean over 2 seeds"]  # the seeds' mean, without "(CI over seeds)"
    baselines = [names[0], names[1], names[2]]  # behaviour, production baseline, CEM
    assert sorted(paired) == sorted(learned + [names[2]])  # results.json sorts its keys
    for name, table_name in zip(learned + [names[2]], names[4:] + [names[2]]):
        assert sorted(paired[name]) == sorted(b for b in baselines if b != name)
        for base, d in paired[name].items():
            # Every row met the same users: the mean of the per-user differences is the difference of the means.
            by_rows = results[table_name]["undiscounted_return"] - results[base]["undiscounted_return"]
            np.testing.assert_allclose(d["difference"], by_rows, rtol=1e-4, atol=1e-3)
            # (the CEM winner may be the baseline vector it starts at: then it equals that row, CI 0)
            assert np.isfinite(d["ci95"]) and (d["ci95"] > 0 if name in learned else d["ci95"] >= 0)
            np.testing.assert_allclose([d["low"], d["high"]],
                                       [d["difference"] - d["ci95"], d["difference"] + d["ci95"]])
    rows = paired_table.splitlines()
    assert rows[2] == "| policy | " + " | ".join(f"vs {b}" for b in baselines) + " |"
    assert [row.split("|")[1].strip() for row in rows[4:]] == learned + [names[2]]
    assert f"{paired[learned[0]][baselines[0]]['difference']:+.1f}" in rows[4]
    assert rows[-1].endswith("| — |")  # the CEM row is not compared with itself
