"""Collection pipelines, the online loop's buffer, ground-truth evaluation, the launchers."""
import json
import os
import re
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import small_config

from jaxmtf import data
from jaxmtf.agents import make_agent
from jaxmtf.configs.collect import base
from jaxmtf.core import chunk, evaluation, online
from jaxmtf.data import collect
from jaxmtf.sim import policies
from jaxmtf.sim.mtf import env as sim_env
from jaxmtf.sim.rollout import rollout

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _collect_config(pipeline):
    config = base.get_base_config(pipeline)
    config.num_users = 24
    config.eval_users = 24
    config.online.num_envs = 8
    config.online.iterations = 20
    config.online.log_every = 10
    config.online.random_iterations = 10
    config.online.updates_per_iteration = 1
    config.online.batch_size = 16
    return config


@pytest.mark.parametrize("pipeline", collect.PIPELINES)
def test_every_pipeline_produces_a_valid_dataset(pipeline, tmp_path):
    config = _collect_config(pipeline)
    if pipeline in ("final_buffer", "concurrent", "imitation"):
        for name in ("algo", "learner_algo"):
            config.online[name] = "ddpg"  # the smallest agent keeps CI fast
    path, provenance = collect.collect_and_save(config, str(tmp_path / f"{pipeline}.npz"))
    dataset = data.load(path)  # validates every field
    sidecar = data.read_sidecar(path)
    env_params = sim_env.default_params()
    assert dataset.obs_dim == sim_env.obs_dim(env_params) and dataset.act_dim == sim_env.act_dim(env_params)
    assert dataset.task_names == env_params.task_names
    assert sidecar["provenance"]["pipeline"] == pipeline
    assert sidecar["provenance"]["seed"] == 0
    assert np.isfinite(sidecar["provenance"]["behaviour_value"]["undiscounted_return"])
    assert collect.env_params_from_dict(sidecar["provenance"]["env_params"]).slate_size == env_params.slate_size
    # Every episode ends in a terminal or a timeout, except sessions still running in a buffer.
    ends = np.asarray(dataset.terminals + dataset.timeouts)
    assert np.all(np.asarray(dataset.timeouts) == 0)  # the horizon ends a session for real (types.Dataset)
    if pipeline in ("final_buffer", "concurrent"):
        assert dataset.size == config.online.num_envs * config.online.iterations
        assert ends.sum() >= 1
    else:
        assert ends.sum() == config.num_users == len(np.unique(np.asarray(dataset.episode_ids)))
    has_density = pipeline not in ("baseline", "expert", "imitation")
    assert (dataset.behaviour_log_prob is not None) == has_density
    if has_density:
        assert np.all(np.isfinite(np.asarray(dataset.behaviour_log_prob)))
    if pipeline == "concurrent":
        assert np.isfinite(sidecar["provenance"]["concurrent_learner_value"]["undiscounted_return"])


def test_random_pipeline_logs_the_uniform_density(tmp_path):
    dataset, _ = collect.collect(_collect_config("random"))
    A = dataset.act_dim
    np.testing.assert_allclose(np.asarray(dataset.behaviour_log_prob), -A * np.log(2.0), rtol=1e-6)
    # Rewards re-scored from the per-task responses with the simulator's weights give the rewards back.
    weights = np.asarray(sim_env.default_params().reward_weights)
    np.testing.assert_allclose(np.asarray(dataset.task_responses) @ weights, np.asarray(dataset.rewards), rtol=1e-4,
                               atol=1e-4)


def test_env_params_json_round_trip():
    params = sim_env.default_params(slate_size=4)
    again = collect.env_params_from_dict(json.loads(json.dumps(collect.env_params_to_dict(params))))
    assert again.slate_size == 4 and again.task_names == params.task_names
    np.testing.assert_array_equal(np.asarray(again.reward_weights), np.asarray(params.reward_weights))
    with pytest.raises(ValueError, match="simulator parameter 'slate': unknown"):
        collect.env_params_from_dict({"slate": 3})


def test_buffer_wraps_around_and_keeps_the_newest():
    buffer = online.empty_buffer(capacity=5, obs_dim=1, act_dim=1, num_tasks=1)
    for start in (0, 3, 6):
        rows = {"rewards": jnp.arange(start, start + 3, dtype=jnp.float32), "episode_ids": jnp.arange(start, start + 3)}
        buffer = online.add_batch(buffer, rows)
    assert int(buffer.size) == 5 and int(buffer.pointer) == 4
    np.testing.assert_array_equal(online.buffer_arrays(buffer)["rewards"], [4, 5, 6, 7, 8])  # oldest first


def test_agent_evaluator_matches_policy_evaluation():
    """The [S, H] evaluator scores each agent like evaluate_policy on the same users."""
    env_params = sim_env.default_params()
    config = small_config("td3")
    agent = make_agent(config, sim_env.obs_dim(env_params), sim_env.act_dim(env_params))
    states = chunk.init_run_state(agent, [0, 1], 1).agent
    key = jax.random.PRNGKey(3)
    out = evaluation.make_agent_evaluator(agent, env_params, num_users=16, discount=0.9)(states, key)
    assert out["undiscounted_return"].shape == (2, 1)
    one = jax.tree.map(lambda x: x[1, 0], states.replace(step=None)).replace(step=states.step)
    direct = evaluation.evaluate_policy(key, env_params, evaluation.agent_policy_fn(agent), one, 16, 0.9)
    for name in ("undiscounted_return", "discounted_return", "session_length", "rate_click"):
        np.testing.assert_allclose(out[name][1, 0], direct[name], rtol=1e-5)
    # Q at the initial state vs the true discounted return from it.
    np.testing.assert_allclose(out["overestimation"], out["q_estimate_initial"] - out["true_discounted_initial"],
                               rtol=1e-5, atol=1e-5)


def test_per_item_rates_are_responses_per_item_shown():
    env_params = sim_env.default_params()
    key = jax.random.PRNGKey(0)
    stats = evaluation.evaluate_policy(key, env_params, policies.fixed_policy().apply,
                                       sim_env.baseline_action(env_params), 32)
    traj = jax.device_get(rollout(key, env_params, policies.fixed_policy().apply,
                                  sim_env.baseline_action(env_params), 32))
    shown = traj.valid.sum() * env_params.slate_size
    np.testing.assert_allclose(stats["rate_click"], traj.task_responses[..., 0].sum() / shown, rtol=1e-5)
    assert 0.0 < stats["rate_click"] < 1.0


def test_collect_then_train_launchers_write_eval(tmp_path):
    """launch.collect then launch.train on its output: eval.jsonl comes from the simulator,
    and the launcher compiles the training chunk and the evaluator once each (3 chunks, 3 evaluations)."""
    out = tmp_path / "random.npz"
    collect_cmd = [sys.executable, "-m", "launch.collect", "--config=launch/configs/collect/random.py",
                   "--config.num_users=16", "--config.eval_users=16", f"--output={out}"]
    done = subprocess.run(collect_cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    train_cmd = [sys.executable, "-m", "launch.train", "--config=launch/configs/td3_bc.py", f"--config.dataset={out}",
                 "--config.num_seeds=2", "--config.num_updates=30", "--config.chunk_size=10", "--config.eval_every=10",
                 "--config.eval_users=8", "--config.checkpoint_every=10", "--config.batch_size=16",
                 "--config.agent.actor_hidden_dims=(16,)", "--config.agent.critic_hidden_dims=(16,)",
                 f"--workdir={tmp_path / 'run'}"]
    env = {**os.environ, "JAX_LOG_COMPILES": "1"}  # jax logs "Compiling jit(NAME) ..." for every compilation
    done = subprocess.run(train_cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [json.loads(line) for line in open(tmp_path / "run" / "eval.jsonl")]
    assert [(r["step"], r["seed"]) for r in rows] == [(s, i) for s in (10, 20, 30) for i in (0, 1)]
    assert all(np.isfinite(r["undiscounted_return"]) and r["session_length"] >= 1 for r in rows)
    compiled = re.findall(r"Compiling jit\((\w+)\)", done.stderr)
    assert compiled.count("chunk") == 1 and compiled.count("evaluate") == 1, compiled
