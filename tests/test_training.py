"""The training driver: shapes, one compilation, vmap == separate runs, exact resume."""
import json
import os
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import small_config

from jaxmtf.agents import make_agent
from jaxmtf.core import chunk, run_config, sharding, training
from jaxmtf.core.run_config import Driver
from jaxmtf.runs import checkpoint, rundir


def _leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def _assert_trees_close(a, b, **kw):
    for x, y in zip(_leaves(a), _leaves(b), strict=True):
        np.testing.assert_allclose(x, y, **kw)


def test_metrics_have_seed_and_hparam_axes_and_are_finite(tiny_dataset, tmp_path):
    config = small_config("td3", num_seeds=3)
    config.sweep = "discount=0.9,0.99"
    summary = training.train(config, tiny_dataset, str(tmp_path))
    state = summary["state"]
    for leaf in jax.tree.leaves(state.agent.replace(step=None)):
        assert leaf.shape[:2] == (3, 2)
    assert state.key.shape[:2] == (3, 2) and int(state.agent.step) == 20
    rows = rundir.read_jsonl(os.path.join(tmp_path, "metrics.jsonl"))
    assert len(rows) == 2 * 3 * 2  # two chunks x 3 seeds x 2 settings
    assert {(r["seed"], r["discount"]) for r in rows} == {(s, d) for s in range(3) for d in (0.9, 0.99)}
    for r in rows:
        for name in ("critic_loss", "actor_loss", "q_mean", "target_mean"):
            assert np.isfinite(r[name]), (name, r)
    assert json.load(open(tmp_path / "summary.json"))["finished"]
    assert json.load(open(tmp_path / "config.json"))["algo"] == "td3"


def test_chunks_compile_once(tiny_dataset, tmp_path, monkeypatch):
    traces = []
    real_make_agent = training.make_agent

    def counting_make_agent(config, obs_dim, act_dim):
        agent = real_make_agent(config, obs_dim, act_dim)

        def update(*args):
            traces.append(1)  # runs only while tracing
            return agent.update(*args)

        return agent._replace(update=update)

    monkeypatch.setattr(training, "make_agent", counting_make_agent)
    config = small_config("td3", num_updates=50, checkpoint_every=0)
    training.train(config, tiny_dataset, str(tmp_path))
    assert len(traces) == 1  # five chunks, one trace


def _per_run_params(state, seed_index, hparam_index):
    return jax.tree.map(lambda x: x[seed_index, hparam_index], state.agent.replace(step=None))


def test_vmapped_seeds_equal_separate_runs(tiny_dataset, tmp_path):
    together = training.train(small_config("td3", num_seeds=3), tiny_dataset, str(tmp_path / "all"))["state"]
    alone = training.train(small_config("td3", num_seeds=1, seed=2), tiny_dataset, str(tmp_path / "one"))["state"]
    _assert_trees_close(_per_run_params(together, 2, 0), _per_run_params(alone, 0, 0), rtol=1e-5, atol=1e-6)
    # ... and the seeds really differ from each other.
    assert not np.allclose(_leaves(_per_run_params(together, 0, 0))[0], _leaves(_per_run_params(together, 1, 0))[0])


def _run_chunks(agent, seeds, hparams, data, num_chunks=2, chunk_fn=None):
    chunk_fn = chunk_fn or chunk.make_chunk_fn(agent, batch_size=16, chunk_size=10)
    state = chunk.init_run_state(agent, seeds, len(jax.tree.leaves(hparams)[0]))
    for _ in range(num_chunks):
        state, _ = chunk_fn(state, data, hparams)
    return state


@pytest.mark.parametrize("group", [1, 2])
def test_seed_groups_equal_one_vmap(tiny_dataset, group):
    """Looping over groups of seeds inside the chunk (3 seeds: 3 groups, or 2 with a remainder) == all vmapped."""
    config = small_config("td3")
    agent = make_agent(config, tiny_dataset.obs_dim, tiny_dataset.act_dim)
    data = tiny_dataset.as_transitions()
    hparams, _ = run_config.hparam_grid(agent.default_hparams, {"discount": [0.9, 0.99]})
    grouped_fn = chunk.make_chunk_fn(agent, batch_size=16, chunk_size=10, seed_group_size=group)
    grouped = _run_chunks(agent, [0, 1, 2], hparams, data, chunk_fn=grouped_fn)
    together = _run_chunks(agent, [0, 1, 2], hparams, data, chunk_fn=chunk.make_chunk_fn(agent, 16, 10, 0))
    _assert_trees_close(grouped, together, rtol=1e-5, atol=1e-6)
    assert int(grouped.agent.step) == 20


def test_seed_group_size_is_validated(tiny_dataset, tmp_path):
    with pytest.raises(run_config.ConfigError, match="seed_group_size"):
        training.train(small_config("td3", seed_group_size=-2), tiny_dataset, str(tmp_path))
    assert sharding.seed_group_size(Driver.of(small_config("td3", seed_group_size=1)), None) == 1
    assert sharding.seed_group_size(Driver.of(small_config("td3")), None) == sharding.CPU_SEED_GROUP  # auto, on a CPU


def test_hparam_grid_equals_separate_runs(tiny_dataset):
    """3 values x 2 seeds in one program == the six separate runs."""
    config = small_config("td3_bc")
    agent = make_agent(config, tiny_dataset.obs_dim, tiny_dataset.act_dim)
    data = tiny_dataset.as_transitions()
    alphas = [0.5, 2.5, 10.0]
    grid_hparams, labels = run_config.hparam_grid(agent.default_hparams, {"alpha": alphas})
    assert [label["alpha"] for label in labels] == alphas
    grid = _run_chunks(agent, [0, 1], grid_hparams, data)
    single_chunk_fn = chunk.make_chunk_fn(agent, batch_size=16, chunk_size=10)  # S = H = 1, compiled once
    for h, alpha in enumerate(alphas):
        for s in range(2):
            single_hparams, _ = run_config.hparam_grid(agent.default_hparams, {"alpha": [alpha]})
            alone = _run_chunks(agent, [s], single_hparams, data, chunk_fn=single_chunk_fn)
            _assert_trees_close(_per_run_params(grid, s, h), _per_run_params(alone, 0, 0), rtol=1e-5, atol=1e-6)
    # The settings really differ.
    assert not np.allclose(_leaves(_per_run_params(grid, 0, 0).actor)[0], _leaves(_per_run_params(grid, 0, 2).actor)[0])


def test_interrupted_and_resumed_run_is_identical(tiny_dataset, tmp_path):
    config = small_config("td3", num_updates=40, checkpoint_every=10)
    straight = training.train(config, tiny_dataset, str(tmp_path / "straight"))
    workdir = str(tmp_path / "resumed")
    first = training.train(config, tiny_dataset, workdir, stop_after=20)
    assert first["step"] == 20 and not first["finished"]
    # Simulate a kill after more work that was never checkpointed: lines past 20 must go.
    with open(os.path.join(workdir, "metrics.jsonl"), "a") as f:
        f.write(json.dumps({"step": 30, "seed": 0, "hparam_index": 0}) + "\n")
    resumed = training.train(config, tiny_dataset, workdir)
    assert resumed["finished"]
    _assert_trees_close(resumed["state"], straight["state"], rtol=0, atol=0)
    rows = lambda d: [(r["step"], r["seed"], r["critic_loss"])
                      for r in rundir.read_jsonl(os.path.join(d, "metrics.jsonl"))]
    assert rows(workdir) == rows(str(tmp_path / "straight"))


def test_checkpoint_round_trip(tiny_dataset, tmp_path):
    config = small_config("td3")
    agent = make_agent(config, tiny_dataset.obs_dim, tiny_dataset.act_dim)
    state = chunk.init_run_state(agent, [0, 1], 1)
    ckpt = checkpoint.Checkpointer(str(tmp_path), max_to_keep=2)
    for step in (10, 20, 30):
        ckpt.save(step, state, {"algo": "td3"})
    assert sorted(int(d) for d in os.listdir(tmp_path) if d.isdigit()) == [20, 30]  # keeps the last 2
    zeros = jax.tree.map(np.zeros_like, state)
    step, restored = ckpt.restore_latest(zeros, {"algo": "td3"})
    assert step == 30
    _assert_trees_close(restored, state, rtol=0, atol=0)
    assert type(restored) is type(state)
    with pytest.raises(checkpoint.CheckpointError, match="checkpoint field 'algo'"):
        ckpt.restore_latest(zeros, {"algo": "ddpg"})
    ckpt.close()


def test_resuming_with_another_config_names_the_field(tiny_dataset, tmp_path):
    training.train(small_config("td3", num_seeds=2), tiny_dataset, str(tmp_path))
    with pytest.raises(checkpoint.CheckpointError, match="checkpoint field 'seeds'"):
        training.train(small_config("td3", num_seeds=3), tiny_dataset, str(tmp_path))


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("num_updates", 25, "not a multiple of chunk_size"),
        ("checkpoint_every", 15, "not a multiple of chunk_size"),
        ("batch_size", 0, "expected an integer >= 1"),
    ],
)
def test_bad_config_fails_early(tiny_dataset, tmp_path, field, value, message):
    config = small_config("td3", **{field: value})
    with pytest.raises(run_config.ConfigError, match=f"'{field}': .*{message}"):
        training.train(config, tiny_dataset, str(tmp_path))


def test_unknown_sweep_name_fails_early(tiny_dataset, tmp_path):
    config = small_config("td3")
    config.sweep = "alpha=1.0"  # TD3+BC's, not TD3's
    with pytest.raises(run_config.ConfigError, match="'sweep.alpha': got 'alpha', expected a sweepable"):
        training.train(config, tiny_dataset, str(tmp_path))


def test_launcher_resumes_after_being_killed(tmp_path):
    """Kill the absl launcher after its first checkpoint; the same command finishes the run."""
    workdir = tmp_path / "run"
    command = [
        sys.executable, "-m", "launch.train", "--config=launch/configs/td3.py",
        "--config.dataset=synthetic:one_step", "--config.num_seeds=2", "--config.num_updates=4000",
        "--config.chunk_size=100", "--config.checkpoint_every=100", "--config.eval_every=0",
        "--config.batch_size=32", "--config.agent.actor_hidden_dims=(32,32)",
        "--config.agent.critic_hidden_dims=(32,32)", f"--workdir={workdir}",
    ]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.Popen(command, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        ckpts = ([d for d in os.listdir(workdir / "checkpoints") if d.isdigit()]
                 if (workdir / "checkpoints").exists() else [])
        if ckpts:
            break
        time.sleep(0.2)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = max(int(r["step"]) for r in rundir.read_jsonl(workdir / "metrics.jsonl"))
    assert killed_at < 4000
    done = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "resumed from the checkpoint" in done.stderr
    rows = rundir.read_jsonl(workdir / "metrics.jsonl")
    steps = sorted({r["step"] for r in rows})
    assert steps == list(range(100, 4001, 100))  # every chunk logged once, none twice
    assert len(rows) == 2 * len(steps)
    for name in ("config.json", "summary.json"):
        assert (workdir / name).exists()
    assert json.load(open(workdir / "summary.json"))["finished"]


def test_sweep_string_form():
    assert run_config.parse_sweep("alpha=1,2.5 ; discount=0.9,0.99") == {"alpha": [1.0, 2.5], "discount": [0.9, 0.99]}
    assert run_config.parse_sweep("") == {}
    with pytest.raises(run_config.ConfigError, match="'sweep': cannot parse 'alpha'"):
        run_config.parse_sweep("alpha")
    with pytest.raises(run_config.ConfigError, match="cannot parse"):
        run_config.parse_sweep("alpha=x")


def test_tensorboard_writer_is_optional(tiny_dataset, tmp_path):
    config = small_config("td3", tensorboard=True)
    training.train(config, tiny_dataset, str(tmp_path))
    events = [f for _, _, files in os.walk(tmp_path / "tensorboard") for f in files if f.startswith("events.out")]
    assert events, "no TensorBoard event file written"
    assert os.path.getsize(os.path.join(tmp_path, "metrics.jsonl")) > 0  # JSONL is written regardless


def _final_metrics_are_the_last_chunk(summary, workdir, num_updates, num_runs):
    final = summary["final_metrics"]
    assert len(final) == num_runs and {r["step"] for r in final} == {num_updates}
    logged = [r for r in rundir.read_jsonl(os.path.join(workdir, "metrics.jsonl")) if r["step"] == num_updates]
    assert final == json.loads(json.dumps(logged))  # the very records of metrics.jsonl
    assert json.load(open(os.path.join(workdir, "summary.json")))["final_metrics"] == logged


def test_a_run_of_one_chunk_reports_its_final_metrics(tiny_dataset, tmp_path):
    config = small_config("td3", num_seeds=2, num_updates=10, chunk_size=10)
    config.sweep = "discount=0.9,0.99"
    summary = training.train(config, tiny_dataset, str(tmp_path))
    _final_metrics_are_the_last_chunk(summary, str(tmp_path), 10, num_runs=2 * 2)
    assert summary["compile_and_first_chunk_seconds"] > 0
    assert summary["updates_per_second_per_run"] is None  # no chunk after the first to time


def test_a_resume_with_one_chunk_left_reports_its_final_metrics(tiny_dataset, tmp_path):
    config = small_config("td3", num_seeds=2, num_updates=30, checkpoint_every=10)
    first = training.train(config, tiny_dataset, str(tmp_path), stop_after=20)
    assert first["updates_per_second_per_run"] > 0  # two chunks: the second is timed
    _final_metrics_are_the_last_chunk(first, str(tmp_path), 20, num_runs=2)
    resumed = training.train(config, tiny_dataset, str(tmp_path))
    assert resumed["finished"] and resumed["step"] == 30
    _final_metrics_are_the_last_chunk(resumed, str(tmp_path), 30, num_runs=2)
    # Re-running a finished run is a no-op that keeps its summary (and writes nothing).
    before = open(tmp_path / "summary.json").read()
    again = training.train(config, tiny_dataset, str(tmp_path))
    assert again["step"] == 30 and again["final_metrics"] == json.loads(json.dumps(resumed["final_metrics"]))
    assert open(tmp_path / "summary.json").read() == before


def _params_norm_eval(agent, agent_states, step):
    """A stand-in evaluation: [S, H] sums of |actor params| (it reads the state that the next chunk donates)."""
    del agent, step
    return {"actor_abs": sum(jnp.abs(x).sum(axis=tuple(range(2, x.ndim))) for x in jax.tree.leaves(agent_states.actor))}


def test_overlapped_loop_logs_what_chunk_by_chunk_training_logs(tiny_dataset, tmp_path):
    """One call logs each chunk while the next one runs (evaluating at 20 in between); calls of one
    chunk each (resuming from a checkpoint every chunk) log every chunk before going on: same files."""
    one_call, by_chunk = str(tmp_path / "one_call"), str(tmp_path / "by_chunk")
    config = small_config("td3", num_updates=50, checkpoint_every=0, eval_every=20)
    straight = training.train(config, tiny_dataset, one_call, eval_fn=_params_norm_eval)
    config.checkpoint_every = 10
    for stop in (10, 20, 30, 40, 50):
        last = training.train(config, tiny_dataset, by_chunk, eval_fn=_params_norm_eval, stop_after=stop)
        assert last["step"] == stop
    for name in ("metrics.jsonl", "eval.jsonl"):
        assert rundir.read_jsonl(os.path.join(one_call, name)) == rundir.read_jsonl(os.path.join(by_chunk, name))
    assert [r["step"] for r in rundir.read_jsonl(os.path.join(one_call, "eval.jsonl"))] == [20, 20, 40, 40]
    assert len(rundir.read_jsonl(os.path.join(one_call, "metrics.jsonl"))) == 5 * 2
    _assert_trees_close(straight["state"], last["state"], rtol=0, atol=0)
    assert straight["final_metrics"] == last["final_metrics"]
