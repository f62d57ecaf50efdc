"""Progressive training: a 2-round run on a tiny simulator, its run directory, a mid-round kill and resume."""
import os

import jax
import numpy as np
import pytest

from jaxmtf.configs import batchrl_mtf, integrated_rl
from jaxmtf.core.run_config import ConfigError
from jaxmtf.runs import rundir
from jaxmtf.workflows import progressive


def tiny_config(**progressive_fields):
    config = integrated_rl.get_config()
    config.agent.actor_hidden_dims = config.agent.critic_hidden_dims = (16, 16)
    config.agent.num_critics = 2
    config.num_seeds, config.num_updates, config.chunk_size, config.batch_size = 2, 20, 10, 16
    config.checkpoint_every = 10
    p = config.progressive
    p.rounds, p.budget_sessions, p.eval_users = 2, 16, 8
    p.env = {"max_steps": 6, "num_candidates": 10}
    for name, value in progressive_fields.items():
        p[name] = value
    return config


def _leaves(state):
    return [np.asarray(x) for x in jax.tree.leaves(state)]


def test_two_rounds_write_the_run_directory_and_resume_after_a_mid_round_kill(tmp_path):
    config = tiny_config()
    whole = progressive.run_progressive(config, str(tmp_path / "whole"))
    assert whole["finished"] and [r["round"] for r in whole["rounds"]] == [1, 2]
    for k in (1, 2):
        round_dir = tmp_path / "whole" / f"round_{k}"
        assert (round_dir / "data" / "seed_0.npz").exists() and (round_dir / "data" / "seed_1.json").exists()
        assert (round_dir / "train" / "checkpoints").is_dir() and (round_dir / "evaluation.json").exists()
        # 2 chunks x 2 seeds
        assert len(rundir.read_run_records(str(round_dir / "train"), rundir.METRICS_FILE)) == 2 * 2
    record = whole["rounds"][1]
    assert len(record["trained"]["undiscounted_return"]) == 2 and np.isfinite(record["exploration_cost"]).all()
    # "all": round 2 trains on both rounds' data; each seed collected around its own round-1 policy.
    assert record["trained_on"] == [a + b for a, b in zip(whole["rounds"][0]["num_transitions"],
                                                          record["num_transitions"])]
    assert (tmp_path / "whole" / "summary.json").exists() and (tmp_path / "whole" / "references.json").exists()

    # Killed in round 2's training after its first checkpoint, then resumed by the same call.
    part = progressive.run_progressive(config, str(tmp_path / "resumed"), stop_after=(2, 10))
    assert not part["finished"] and not (tmp_path / "resumed" / "round_2" / "evaluation.json").exists()
    resumed = progressive.run_progressive(config, str(tmp_path / "resumed"))
    assert resumed["finished"]
    assert resumed["rounds"] == whole["rounds"]
    for x, y in zip(_leaves(whole["state"].replace(step=None)), _leaves(resumed["state"].replace(step=None))):
        np.testing.assert_array_equal(x, y)
    a = rundir.read_run_records(str(tmp_path / "whole" / "round_2" / "train"), rundir.METRICS_FILE)
    b = rundir.read_run_records(str(tmp_path / "resumed" / "round_2" / "train"), rundir.METRICS_FILE)
    assert a == b  # the log has no duplicated or missing lines either

    # A round killed between collection and training: the data files exist, the round resumes from them.
    os.remove(tmp_path / "resumed" / "round_2" / "evaluation.json")
    again = progressive.run_progressive(config, str(tmp_path / "resumed"))
    assert again["rounds"] == whole["rounds"]


def test_batchrl_mtf_config_runs_one_round_of_mixed_data(tmp_path):
    config = batchrl_mtf.get_config()
    config.agent.vae_hidden_dims = config.agent.actor_hidden_dims = config.agent.critic_hidden_dims = (16, 16)
    config.agent.num_act_samples, config.agent.num_target_samples = 4, 2
    (config.num_seeds, config.num_updates, config.chunk_size, config.batch_size,
     config.checkpoint_every) = 2, 10, 10, 16, 10
    p = config.progressive
    p.budget_sessions, p.eval_users, p.env = 8, 8, {"max_steps": 6, "num_candidates": 10}
    result = progressive.run_progressive(config, str(tmp_path))
    (record,) = result["rounds"]
    assert record["collecting_policy"].startswith("0.5 uniform")
    # The mixture's true value is the references' BatchRL-MTF row (same users, same policy for every seed).
    np.testing.assert_allclose(record["collecting"]["undiscounted_return"][0],
                               result["references"]["BatchRL-MTF mixture"]["undiscounted_return"], rtol=1e-5)


@pytest.mark.parametrize("field,value", [
    ("rounds", 0), ("rounds", -2), ("exploration", "gaussian"), ("train_on", "last"), ("warm_start", "critic"),
    ("box_half_width", 0.3), ("box_half_width", -0.1), ("noise_sigma", -1.0), ("noise_sigma", 0.0),
    ("eval_users", 0), ("eval_users", 1), ("budget_sessions", 1), ("box_mode", "wrap"), ("eval_seed", -3),
    ("env", {"max_step": 6}), ("rouns", 3)])
def test_bad_progressive_config_names_the_field_and_writes_nothing(tmp_path, field, value):
    with pytest.raises(ConfigError, match=f"progressive.{field}") as err:
        progressive.run_progressive(tiny_config(**{field: value}), str(tmp_path / "chain"))
    assert "\n" not in str(err.value)
    assert not (tmp_path / "chain").exists()


def test_a_chain_keeps_a_record_and_refuses_another_config_before_writing(tmp_path, monkeypatch):
    workdir = str(tmp_path / "chain")
    progressive.open_chain(tiny_config(), workdir)  # what a first start records
    record_path = os.path.join(workdir, "run_record.json")
    before = open(record_path).read()
    for field, value in (("eval_users", 16), ("budget_sessions", 24), ("noise_sigma", 0.2)):
        with pytest.raises(Exception, match=f"'progressive.{field}' in .*run_record.json: "
                                            f"got {value!r} in this run, expected the saved"):
            progressive.open_chain(tiny_config(**{field: value}), workdir)
    changed = tiny_config()
    changed.num_seeds = 3
    with pytest.raises(Exception, match="'num_seeds' in .*: got 3 in this run, expected the saved 2"):
        progressive.open_chain(changed, workdir)
    assert open(record_path).read() == before
    os.makedirs(os.path.join(workdir, "round_1"))
    fresh = tiny_config(eval_users=16)
    fresh.force_new_run = True
    progressive.open_chain(fresh, workdir)  # starts afresh: the old rounds are gone, the new record is written
    assert not os.path.exists(os.path.join(workdir, "round_1"))
    assert rundir.read_json(record_path)["progressive"]["eval_users"] == 16


def test_warm_start_copies_the_deployed_actor_and_keeps_fresh_critics():
    from jaxmtf.agents import make_agent
    from jaxmtf.core import chunk

    config = tiny_config()
    config.agent.reward_groups = ()
    agent = make_agent(config, 3, 2)
    fresh = chunk.init_run_state(agent, [0, 1], 1)
    deployed = chunk.init_run_state(agent, [7, 8], 1).agent  # other seeds: other networks
    warmed = progressive.warm_start_fn(config, deployed)(fresh)
    for x, y in zip(_leaves(warmed.agent.actor), _leaves(deployed.actor)):
        np.testing.assert_array_equal(x, y)
    for x, y in zip(_leaves(warmed.agent.actor_target), _leaves(deployed.actor)):
        np.testing.assert_array_equal(x, y)
    for x, y in zip(_leaves(warmed.agent.critic), _leaves(fresh.agent.critic)):
        np.testing.assert_array_equal(x, y)
    config.progressive.warm_start = "actor_critic"
    both = progressive.warm_start_fn(config, deployed)(fresh)
    for x, y in zip(_leaves(both.agent.critic), _leaves(deployed.critic)):
        np.testing.assert_array_equal(x, y)
    config.progressive.warm_start = "none"
    assert progressive.warm_start_fn(config, deployed) is None


def test_budget_is_split_over_the_rounds(tmp_path):
    config = tiny_config(budget_sessions=17)
    assert progressive.sessions_per_round(config) == 8
    with pytest.raises(ConfigError, match="progressive.budget_sessions"):
        progressive.run_progressive(tiny_config(budget_sessions=1), str(tmp_path / "a"))
    legacy = tiny_config()
    legacy.progressive.num_users = 8
    with pytest.raises(ConfigError, match="progressive.num_users"):
        progressive.run_progressive(legacy, str(tmp_path / "b"))
