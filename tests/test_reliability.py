"""Reliability: every bad input gets one line and changes nothing; corrupt checkpoints, partial log lines,
stale locks, pre-emption and divergence are survived and reported."""
import glob
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from typing import Any, Callable, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from conftest import small_config

from jaxmtf.core import evaluation, loop, training
from jaxmtf.core.evaluation import EvaluationError
from jaxmtf.core.run_config import ConfigError
from jaxmtf.data import DatasetError, discrete_one_step_dataset, from_arrays, load, one_step_dataset, save
from jaxmtf.reporting import analysis
from jaxmtf.runs import checkpoint, rundir, workdir_lock
from jaxmtf.runs import record as record_lib
from jaxmtf.sim.mtf import env as sim_env
from jaxmtf.types import to_numpy
from jaxmtf.workflows import pipeline

TINY = one_step_dataset(num_transitions=256, obs_dim=3, act_dim=2, seed=0)
DISCRETE = discrete_one_step_dataset(num_transitions=64, obs_dim=3, num_actions=3, seed=0)
# The run the run-directory cases resume (and the divergence test's clean twin): TD3+BC, 1 seed x 2 settings,
# checkpoints at 10, 20, 30.
BASE = dict(num_seeds=1, num_updates=30, checkpoint_every=10, sweep="alpha=2.5,5.0")


def _config(module="td3_bc", agent=None, **driver):
    """small_config with overrides; rebuilt from a dict so that any type can be set (ConfigDict is type-safe)."""
    config = small_config(module, **BASE).to_dict()
    config.update(driver)
    config["agent"] = {**config["agent"], **(agent or {})}
    return ml_collections.ConfigDict(config)


def _train(module="td3_bc", agent=None, dataset=None, **driver) -> Callable[[str], Any]:
    return lambda workdir: training.train(_config(module, agent, **driver), dataset or TINY, workdir)


def _episodes(**changes) -> dict:
    """10 transitions in two episodes of 5 (ids 0, 1), continuous, each ending in a terminal."""
    obs = np.arange(33, dtype=np.float32).reshape(11, 3) / 33
    arrays = {
        "observations": obs[:10], "next_observations": obs[1:], "actions": np.zeros((10, 2), np.float32),
        "rewards": np.zeros(10, np.float32), "terminals": np.isin(np.arange(10), (4, 9)).astype(np.float32),
        "timeouts": np.zeros(10, np.float32), "episode_ids": np.repeat([0, 1], 5).astype(np.int32),
    }
    for name, change in changes.items():
        arrays[name] = change(arrays[name]) if callable(change) else change
    return arrays


def _set(values: dict) -> Callable[[np.ndarray], np.ndarray]:
    def change(a):
        a = a.copy()
        for row, value in values.items():
            a[row] = value
        return a

    return change


def _bad_data(**changes) -> Callable[[str], Any]:
    return lambda workdir: training.train(_config(batch_size=4), from_arrays(_episodes(**changes)), workdir)


def _int_actions(values: dict) -> Callable[[np.ndarray], np.ndarray]:
    """Discrete actions [10] (all 0 but `values`), in place of the continuous ones."""
    return lambda a: _set(values)(np.zeros(10, np.int32))


def _restarted() -> dict:
    """Two copies of the same episodes, concatenated without renumbering: ids 0, 1, 0, 1."""
    one = _episodes()
    return {k: np.concatenate([v, v]) for k, v in one.items()}


def _tampered_file(workdir: str) -> None:
    """A dataset file whose rewards changed after its sidecar was written (saved beside the workdir)."""
    path = save(workdir + "_data/d.npz", TINY, {})
    np.savez(path, **{**to_numpy(TINY), "rewards": np.asarray(TINY.rewards) + 1})
    load(path)


# ----------------------------------------------------------------- run-directory set-ups


def _base_copy(workdir: str, base: str) -> None:
    shutil.copytree(base, workdir)


def _damage_line(workdir: str) -> None:
    path = os.path.join(workdir, "metrics.jsonl")
    lines = open(path).read().splitlines(keepends=True)
    open(path, "w").write('{"step": 10, "se\n' + "".join(lines[1:]))


def _damage_record(workdir: str) -> None:
    open(os.path.join(workdir, record_lib.RECORD_FILE), "w").write('{"algo": "td3", ')


def _data_files(workdir: str, step: int):
    return sorted(glob.glob(os.path.join(workdir, "checkpoints", str(step), "state", "**", "d", "*"), recursive=True),
                  key=os.path.getsize)


def _damage_checkpoint_records(workdir: str) -> None:
    for step in (10, 20, 30):
        open(os.path.join(workdir, "checkpoints", str(step), "meta", "metadata"), "w").write('{"algo": ')


def _without_record(workdir: str) -> None:
    os.remove(os.path.join(workdir, record_lib.RECORD_FILE))


class _HeldLock:
    """Set-up: the workdir locked by this process, as a live launcher would hold it."""

    def __init__(self):
        self.lock = None

    def __call__(self, workdir: str) -> None:
        self.lock = workdir_lock.WorkdirLock(workdir)
        self.lock.acquire()

    def done(self) -> None:
        self.lock.release()


def _a_file(workdir: str) -> None:
    open(workdir, "w").write("not a directory")


# ----------------------------------------------------------------- evaluation inputs

ENV = sim_env.default_params()
ACT_DIM = sim_env.act_dim(ENV)


def _evaluate(policy=lambda params, obs, key: jnp.zeros(ACT_DIM), num_users=4, discount=0.99):
    return lambda workdir: evaluation.evaluate_policy(jax.random.PRNGKey(0), ENV, policy, None, num_users, discount)


class Bad(NamedTuple):
    name: str
    act: Callable[[str], Any]  # act(workdir) must raise `error`
    error: type
    needles: Tuple[str, str, str]  # the field, the value, what was expected: each must be in the message
    setup: Optional[Callable[[str], None]] = None  # prepares the workdir (then it is snapshotted)
    uses_base: bool = False  # setup gets the base run directory too


D = ConfigError
CASES = [
    # --- driver fields
    Bad("unknown driver field", _train(num_seed=3), D, ("'num_seed'", "got 3", "did you mean 'num_seeds'")),
    Bad("negative seed", _train(seed=-1), D, ("'seed'", "got -1", "an integer in [0, 4294967295]")),
    Bad("seed past uint32", _train(seed=2**32 - 1, num_seeds=2), D,
        ("'seed'", "4294967295", "seed + num_seeds - 1 <=")),
    Bad("zero seeds", _train(num_seeds=0), D, ("'num_seeds'", "got 0", "an integer >= 1")),
    Bad("zero updates", _train(num_updates=0), D, ("'num_updates'", "got 0", "an integer >= 1")),
    Bad("float updates", _train(num_updates=30.0), D, ("'num_updates'", "got 30.0", "an integer >= 1")),
    Bad("zero chunk", _train(chunk_size=0), D, ("'chunk_size'", "got 0", "an integer >= 1")),
    Bad("updates not chunks", _train(num_updates=25), D, ("'num_updates'", "got 25", "a multiple of chunk_size=10")),
    Bad("batch over dataset", _train(batch_size=300), D, ("'batch_size'", "got 300", "at most the dataset's 256")),
    Bad("negative eval_every", _train(eval_every=-10), D, ("'eval_every'", "got -10", "an integer >= 0")),
    Bad("checkpoint not chunks", _train(checkpoint_every=15), D, ("'checkpoint_every'", "15", "a multiple of chunk")),
    Bad("zero eval users", _train(eval_users=0), D, ("'eval_users'", "got 0", "an integer >= 1")),
    Bad("eval discount", _train(eval_discount=1.5), D, ("'eval_discount'", "got 1.5", "in [0, 1]")),
    Bad("keep no checkpoint", _train(keep_checkpoints=0), D, ("'keep_checkpoints'", "got 0", "an integer >= 1")),
    Bad("unknown algo", _train(algo="td4"), D, ("'algo'", "'td4'", "one of [")),
    Bad("string bool", _train(normalize_observations="yes"), D, ("'normalize_observations'", "'yes'", "True or False")),
    Bad("int bool", _train(force_new_run=1), D, ("'force_new_run'", "got 1", "True or False")),
    Bad("negative group", _train(seed_group_size=-1), D, ("'seed_group_size'", "got -1", "None or an integer >= 0")),
    # --- the sweep
    Bad("hparam twice", _train(sweep="discount=0.9;discount=0.99"), D,
        ("'sweep'", "'discount=0.9;discount=0.99'", "each hparam named once")),
    Bad("value twice", _train(sweep="discount=0.9,0.9"), D, ("'sweep.discount'", "[0.9, 0.9]", "distinct values")),
    Bad("swept out of range", _train(sweep="discount=1.5"), D, ("'sweep.discount'", "got 1.5", "in [0, 1]")),
    Bad("not sweepable", _train(sweep="beta=1"), D, ("'sweep.beta'", "'beta'", "a sweepable hyperparameter")),
    Bad("sweep unparsable", _train(sweep="discount"), D, ("'sweep'", "'discount'", "expected name=v1,v2")),
    Bad("sweep empty list", _train(sweep="discount="), D, ("'sweep.discount'", "got []", "a non-empty list")),
    # --- agent fields
    Bad("unknown agent field", _train(agent={"num_critic": 3}), D,
        ("'agent.num_critic'", "got 3", "did you mean 'num_critics'")),
    Bad("zero critics", _train(agent={"num_critics": 0}), D, ("'agent.num_critics'", "got 0", "an integer >= 1")),
    Bad("float critics", _train(agent={"num_critics": 2.0}), D, ("'agent.num_critics'", "got 2.0", "an integer")),
    Bad("zero-width layer", _train(agent={"actor_hidden_dims": (32, 0)}), D,
        ("'agent.actor_hidden_dims'", "(32, 0)", "each an integer >= 1")),
    Bad("no layers", _train(agent={"critic_hidden_dims": ()}), D,
        ("'agent.critic_hidden_dims'", "got ()", "non-empty")),
    Bad("negative lr", _train(agent={"actor_lr": -3e-4}), D, ("'agent.actor_lr'", "-0.0003", "a finite number > 0")),
    Bad("zero lr", _train(agent={"critic_lr": 0.0}), D, ("'agent.critic_lr'", "got 0.0", "a finite number > 0")),
    Bad("policy delay 0", _train(agent={"policy_delay": 0}), D, ("'agent.policy_delay'", "got 0", "an integer >= 1")),
    Bad("agent discount", _train(agent={"discount": 1.5}), D, ("'agent.discount'", "got 1.5", "in [0, 1]")),
    Bad("frozen targets", _train(agent={"tau": 0.0}), D, ("'agent.tau'", "got 0.0", "in (0, 1]")),
    Bad("negative noise", _train(agent={"policy_noise": -0.1}), D, ("'agent.policy_noise'", "-0.1", ">= 0")),
    Bad("negative alpha", _train(agent={"alpha": -1.0}), D, ("'agent.alpha'", "got -1.0", ">= 0")),
    Bad("alpha past float32", _train(agent={"alpha": 1e39}), D, ("'agent.alpha'", "1e+39", "a finite number")),
    Bad("swept past float32", _train(sweep="alpha=1e39"), D, ("'sweep.alpha'", "1e+39", "a finite number")),
    Bad("bcq lambda", _train("bcq", agent={"lmbda": 1.5}, sweep=""), D, ("'agent.lmbda'", "got 1.5", "in [0, 1]")),
    Bad("bcq samples", _train("bcq", agent={"num_target_samples": 0}, sweep=""), D,
        ("'agent.num_target_samples'", "got 0", ">= 1")),
    Bad("cql temperature", _train("cql", agent={"temperature": 0.0}, sweep=""), D,
        ("'agent.temperature'", "0.0", "> 0")),
    Bad("cql string bool", _train("cql", agent={"with_lagrange": "no"}, sweep=""), D,
        ("'agent.with_lagrange'", "'no'", "True or False")),
    Bad("cql warm-up", _train("cql", agent={"policy_eval_start": -1}, sweep=""), D,
        ("'agent.policy_eval_start'", "-1", ">= 0")),
    Bad("uwac kernel", _train("uwac", agent={"kernel": "cosine"}, sweep=""), D,
        ("'agent.kernel'", "'cosine'", "one of ['gaussian', 'laplacian']")),
    Bad("uwac clamp", _train("uwac", agent={"clip_bottom": 0.9, "clip_top": 0.1}, sweep=""), D,
        ("'agent.clip_bottom' and 'agent.clip_top'", "0.9 and 0.1", "clip_bottom <= clip_top")),
    Bad("uwac passes", _train("uwac", agent={"num_dropout_samples": 1}, sweep=""), D,
        ("'agent.num_dropout_samples'", "got 1", ">= 2")),
    Bad("uwac dropout", _train("uwac", agent={"dropout_rate": 1.0}, sweep=""), D,
        ("'agent.dropout_rate'", "1.0", "in [0, 1)")),
    # --- the discrete track: agents and datasets of the other action space, discrete agents' fields
    Bad("discrete agent on continuous data", _train("cql_dqn", sweep=""), D,
        ("'algo'", "got 'cql_dqn'", "expected a continuous agent")),
    Bad("continuous agent on discrete data", _train("td3", sweep="", dataset=DISCRETE), D,
        ("'algo'", "got 'td3'", "expected a discrete agent")),
    Bad("bcq_discrete threshold", _train("bcq_discrete", agent={"threshold": 1.5}, sweep="", dataset=DISCRETE), D,
        ("'agent.threshold'", "got 1.5", "in [0, 1]")),
    Bad("cql_dqn alpha", _train("cql_dqn", agent={"alpha": -1.0}, sweep="", dataset=DISCRETE), D,
        ("'agent.alpha'", "got -1.0", ">= 0")),
    Bad("dqn interval", _train("dqn", agent={"target_update_interval": 0}, sweep="", dataset=DISCRETE), D,
        ("'agent.target_update_interval'", "got 0", ">= 1")),
    # --- datasets
    Bad("ids restart", lambda w: from_arrays(_restarted()), DatasetError,
        ("'episode_ids'", "episode id 0 again at row 10", "expected an episode's rows to stop at its end flag")),
    Bad("terminal mid-episode", _bad_data(terminals=_set({2: 1.0})), DatasetError,
        ("'episode_ids'", "at row 3 after its end", "stop at its end flag")),
    Bad("timeout mid-episode", _bad_data(timeouts=_set({6: 1.0})), DatasetError,
        ("'episode_ids'", "episode id 1 again at row 7", "stop at its end flag")),
    Bad("NaN reward", _bad_data(rewards=_set({3: np.nan})), DatasetError,
        ("'rewards'", "NaN or Inf (first at transition 3)", "expected finite values")),
    Bad("action outside", _bad_data(actions=_set({1: 1.5})), DatasetError,
        ("'actions'", "max |a| = 1.5", "expected values in [-1, 1]")),
    Bad("half terminal", _bad_data(terminals=_set({4: 0.5})), DatasetError, ("'terminals'", "got 0.5", "0 or 1")),
    Bad("missing rewards", _bad_data(rewards=None), DatasetError, ("'rewards'", "missing", "expected an array")),
    Bad("float ids", _bad_data(episode_ids=lambda a: a.astype(np.float32)), DatasetError,
        ("'episode_ids'", "got float32", "expected an integer dtype")),
    Bad("short rewards", _bad_data(rewards=lambda a: a[:9]), DatasetError,
        ("'rewards'", "length 9", "expected 10 rows")),
    Bad("narrow next obs", _bad_data(next_observations=lambda a: a[:, :2]), DatasetError,
        ("'next_observations'", "width 2", "expected 3")),
    Bad("discrete action out of range", lambda w: from_arrays(_episodes(actions=_int_actions({3: 5})), num_actions=3),
        DatasetError, ("'actions'", "got 5 at transition 3", "expected discrete actions in [0, 3)")),
    Bad("integer actions, no num_actions", lambda w: from_arrays(_episodes(actions=_int_actions({}))), DatasetError,
        ("'num_actions'", "missing for integer actions", "expected the number of discrete actions")),
    Bad("tampered file", _tampered_file, DatasetError, ("'rewards'", "checksum does not match", "expected")),
    # --- run directories and checkpoints (resuming the base run)
    Bad("other algo", _train("td3", sweep=""), checkpoint.CheckpointError,
        ("'algo'", "got 'td3'", "the saved 'td3_bc'"),
        _base_copy, True),
    Bad("other agent", _train(agent={"critic_hidden_dims": (16, 16)}), checkpoint.CheckpointError,
        ("'agent.critic_hidden_dims'", "got [16, 16] in this run", "the saved [32, 32]"), _base_copy, True),
    Bad("normalisation", _train(normalize_observations=False), checkpoint.CheckpointError,
        ("'normalize_observations'", "got False", "the saved True"), _base_copy, True),
    Bad("other data", _train(dataset=one_step_dataset(256, 3, 2, seed=1)), checkpoint.CheckpointError,
        ("'dataset_checksum'", "got '", "the saved '"), _base_copy, True),
    Bad("other sweep", _train(sweep="discount=0.9,0.99"), checkpoint.CheckpointError,
        ("'hparam_settings'", "0.9", "the saved [{'alpha': 2.5}, {'alpha': 5.0}]"), _base_copy, True),
    Bad("other seeds", _train(num_seeds=2), checkpoint.CheckpointError, ("'seeds'", "got [0, 1]", "the saved [0]"),
        _base_copy, True),
    Bad("other batch", _train(batch_size=32), checkpoint.CheckpointError, ("'batch_size'", "got 32", "the saved 16"),
        _base_copy, True),
    Bad("other chunk", _train(chunk_size=5), checkpoint.CheckpointError, ("'chunk_size'", "got 5", "the saved 10"),
        _base_copy, True),
    Bad("checkpoint record", _train(num_seeds=2), checkpoint.CheckpointError,
        ("'seeds' in /", "got [0, 1]", "the saved [0]"), lambda w, b: (_base_copy(w, b), _without_record(w)), True),
    Bad("damaged log line", _train(), rundir.RunDirError,
        ("metrics.jsonl", "at line 1", "expected one JSON object per line"),
        lambda w, b: (_base_copy(w, b), _damage_line(w)), True),
    Bad("damaged record", _train(), rundir.RunDirError, ("run_record.json", "invalid JSON", "expected a JSON document"),
        lambda w, b: (_base_copy(w, b), _damage_record(w)), True),
    Bad("no readable checkpoint", _train(), checkpoint.CheckpointError,
        ("checkpoints", "got no readable checkpoint (30: ", "expected at least one that restores"),
        lambda w, b: (_base_copy(w, b), _damage_checkpoint_records(w)), True),
    Bad("logs, no checkpoint", _train(), checkpoint.CheckpointError,
        ("its logs reach update 30 but it holds no checkpoint", "force_new_run=True"),
        lambda w, b: (_base_copy(w, b), shutil.rmtree(os.path.join(w, "checkpoints"))), True),
    Bad("workdir held", _train(), workdir_lock.WorkdirLocked,
        ("run directory", f"pid {os.getpid()} on host", "expected no other launcher"), _HeldLock()),
    Bad("workdir a file", _train(), rundir.RunDirError, ("run directory", "got a file", "expected a directory"),
        _a_file),
    # --- evaluation inputs and policies
    Bad("no users", _evaluate(num_users=0), EvaluationError, ("'num_users'", "got 0", "an integer >= 1")),
    Bad("eval discount arg", _evaluate(discount=1.2), EvaluationError, ("'discount'", "got 1.2", "in [0, 1]")),
    Bad("policy not callable", _evaluate(policy="greedy"), EvaluationError,
        ("'policy_fn'", "got 'greedy'", "expected a callable policy")),
    Bad("policy action shape", _evaluate(policy=lambda p, o, k: jnp.zeros(3)), EvaluationError,
        ("'policy_fn'", "shape (3,)", f"expected shape ({ACT_DIM},)")),
    Bad("policy on a batch", _evaluate(policy=lambda p, o, k: jnp.zeros(ACT_DIM) + o[:, 0]), EvaluationError,
        ("'policy_fn'", "fails on one observation", "expected a callable policy")),
    Bad("eval_fn users", lambda w: evaluation.make_eval_fn(ENV, 0, 0.99), EvaluationError,
        ("'num_users'", "got 0", ">= 1")),
    Bad("evaluator discount", lambda w: evaluation.make_agent_evaluator(None, ENV, 8, -0.1), EvaluationError,
        ("'discount'", "got -0.1", "in [0, 1]")),
]


def _snapshot(root: str) -> dict:
    """Every path under root (or root itself, a file) with the hash of its content; {} if nothing is there."""
    if os.path.isfile(root):
        return {"": hashlib.sha256(open(root, "rb").read()).hexdigest()}
    out = {}
    for path in glob.glob(os.path.join(root, "**"), recursive=True):
        rel = os.path.relpath(path, root)
        out[rel] = hashlib.sha256(open(path, "rb").read()).hexdigest() if os.path.isfile(path) else "dir"
    return out


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    """A finished run (TD3+BC, 1 seed x alpha 2.5, 5; 30 updates; checkpoints at 10, 20, 30) and its final state."""
    workdir = str(tmp_path_factory.mktemp("base") / "run")
    summary = training.train(_config(), TINY, workdir)
    return workdir, summary["state"]


def test_every_bad_input_gets_one_line_and_writes_nothing(base_run, tmp_path):
    assert len(CASES) >= 40 and len({c.name for c in CASES}) == len(CASES)
    for i, case in enumerate(CASES):
        workdir = str(tmp_path / f"case{i}")
        if case.setup is not None:
            case.setup(workdir, base_run[0]) if case.uses_base else case.setup(workdir)
        before = _snapshot(workdir)
        with pytest.raises(case.error) as err:
            case.act(workdir)
        message = str(err.value)
        assert "\n" not in message, (case.name, message)
        for needle in case.needles:
            assert needle in message, (case.name, needle, message)
        assert _snapshot(workdir) == before, case.name
        if isinstance(case.setup, _HeldLock):
            case.setup.done()


# ----------------------------------------------------------------- what a run survives


def _assert_equal_trees(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _flip_bytes(path: str) -> None:
    with open(path, "r+b") as f:
        f.seek(os.path.getsize(path) // 2)
        chunk = f.read(16)
        f.seek(os.path.getsize(path) // 2)
        f.write(bytes(b ^ 0xFF for b in chunk))


def test_corrupt_checkpoints_a_partial_line_and_a_stale_lock_are_survived(base_run, tmp_path, caplog):
    """Newest checkpoint truncated, the next flipped: the run resumes from the third and ends exactly as the
    uninterrupted run; the half-written last log line goes, and a killed launcher's lock is taken over."""
    base, final_state = base_run
    workdir = str(tmp_path / "run")
    shutil.copytree(base, workdir)
    for path in _data_files(workdir, 30):
        os.truncate(path, os.path.getsize(path) // 2)
    _flip_bytes(_data_files(workdir, 20)[-1])
    with open(os.path.join(workdir, "metrics.jsonl"), "a") as f:
        f.write('{"step": 40, "seed": 0, "crit')  # a kill in the middle of a write
    dead = {"pid": 999999, "host": "gone-host", "started": "2026-01-01T00:00:00Z"}
    open(os.path.join(workdir, workdir_lock.LOCK_FILE), "w").write(json.dumps(dead))
    with caplog.at_level("WARNING"):
        assert len(analysis.load_run(workdir)["metrics"]) == 3 * 2  # the reader skips the partial line
        summary = training.train(_config(), TINY, workdir)
    assert summary["finished"] and summary["step"] == 30
    _assert_equal_trees(summary["state"], final_state)
    log = caplog.text
    for needle in ("checkpoint 30 in", "checkpoint 20 in", "skipped a partial last line", "removed a partial last line",
                   "took over the lock left by pid 999999 on host gone-host"):
        assert needle in log, needle
    assert rundir.read_jsonl(os.path.join(workdir, "metrics.jsonl")) == rundir.read_jsonl(
        os.path.join(base, "metrics.jsonl"))
    assert sorted(os.listdir(os.path.join(workdir, "checkpoints.corrupt"))) and len(os.listdir(
        os.path.join(workdir, "checkpoints.corrupt"))) == 2
    assert open(os.path.join(workdir, workdir_lock.LOCK_FILE)).read() == ""  # released cleanly


def test_a_checkpoint_that_fails_its_checksum_is_skipped(tmp_path):
    """Contents that restore but are not what was saved (here: a checksum of other contents): skipped."""
    state = {"w": jnp.arange(6.0).reshape(2, 3), "step": jnp.asarray(3, jnp.int32)}
    other = {"w": state["w"] + 1, "step": state["step"]}
    ckpt = checkpoint.Checkpointer(str(tmp_path / "ckpt"))
    ckpt.save(10, state, {"algo": "td3"})
    ckpt.save(20, other, {"algo": "td3"})
    ckpt.close()
    meta_file = tmp_path / "ckpt" / "20" / "meta" / "metadata"
    meta_file.write_text(json.dumps({"algo": "td3", "checksum": checkpoint.state_checksum(state)}))
    ckpt = checkpoint.Checkpointer(str(tmp_path / "ckpt"))
    step, restored = ckpt.restore_latest(jax.tree.map(np.zeros_like, state), {"algo": "td3"})
    assert step == 10 and ckpt.skipped == [20]
    _assert_equal_trees(restored, state)
    # Reading a policy for evaluation verifies it too, and refuses rather than falling back.
    like = jax.tree.map(np.zeros_like, state)
    with pytest.raises(checkpoint.CheckpointError, match=r"checkpoint 20 in .*does not match its checksum"):
        ckpt.restore_for_evaluation(like, 20)
    _assert_equal_trees(ckpt.restore_for_evaluation(like, 10)[1], state)
    ckpt.close()
    assert checkpoint.state_checksum(state) != checkpoint.state_checksum({"w": state["w"][::-1], "step": state["step"]})


def test_a_checkpoint_without_a_checksum_restores_with_a_warning(tmp_path, caplog):
    state = {"w": jnp.arange(6.0).reshape(2, 3)}
    ckpt = checkpoint.Checkpointer(str(tmp_path / "ckpt"))
    ckpt.save(10, state, {"algo": "td3"})
    ckpt.close()
    (tmp_path / "ckpt" / "10" / "meta" / "metadata").write_text(json.dumps({"algo": "td3"}))
    ckpt = checkpoint.Checkpointer(str(tmp_path / "ckpt"))
    with caplog.at_level("WARNING"):
        step, restored = ckpt.restore_latest(jax.tree.map(np.zeros_like, state), {"algo": "td3"})
        ckpt.restore_for_evaluation(jax.tree.map(np.zeros_like, state))
    ckpt.close()
    assert step == 10 and caplog.text.count("checkpoint 10 in") == 2 and "no checksum in its record" in caplog.text
    _assert_equal_trees(restored, state)


def test_force_new_run_starts_afresh(base_run, tmp_path):
    """A run that would be refused (other seeds) starts afresh with force_new_run: the old files are deleted."""
    workdir = str(tmp_path / "run")
    shutil.copytree(base_run[0], workdir)
    run = training.set_up(_config(num_seeds=2, force_new_run=True), TINY, workdir)
    run.checkpointer.close()
    run.lock.release()
    assert run.step == 0
    assert not os.path.exists(os.path.join(workdir, "metrics.jsonl"))
    assert os.listdir(os.path.join(workdir, "checkpoints")) == []
    assert rundir.read_json(os.path.join(workdir, record_lib.RECORD_FILE))["seeds"] == [0, 1]


def _actor_size_eval(send_sigint_at=None):
    """A stand-in evaluation ([S, H] sums of |actor params|) that sends this process SIGINT at one step."""

    def eval_fn(agent, agent_states, step):
        if step == send_sigint_at:
            os.kill(os.getpid(), signal.SIGINT)
        return {"actor_abs": sum(jnp.abs(x).sum(axis=tuple(range(2, x.ndim)))
                                 for x in jax.tree.leaves(agent_states.actor))}

    return eval_fn


def test_divergence_is_reported_and_isolated_and_sigint_resumes_exactly(base_run, tmp_path, caplog):
    """alpha = 3e38 overflows float32 in TD3+BC's lambda * Q within two updates. That setting is flagged
    (metrics, eval, summary, a warning); the other setting equals, bit for bit, the base run (whose second
    setting is alpha 5), although this run was also stopped by SIGINT at update 10 and resumed."""
    workdir = str(tmp_path / "nan")
    config = _config(sweep="alpha=2.5,3e38", eval_every=10, checkpoint_every=0)
    with pytest.raises(loop.Preempted) as stopped:
        training.train(config, TINY, workdir, eval_fn=_actor_size_eval(send_sigint_at=10))
    assert stopped.value.step == 10 and stopped.value.signum == signal.SIGINT
    assert os.listdir(os.path.join(workdir, "checkpoints")) == ["10"]  # checkpoint_every=0: the stop's own
    with caplog.at_level("WARNING"):
        summary = training.train(config, TINY, workdir, eval_fn=_actor_size_eval())
    _assert_equal_trees(jax.tree.map(lambda x: x[0, 0], summary["state"].agent.replace(step=None)),
                        jax.tree.map(lambda x: x[0, 0], base_run[1].agent.replace(step=None)))
    diverged = {(r["seed"], r["hparam_index"]): r["diverged_at_step"] for r in summary["diverged_at_step"]}
    assert diverged == {(0, 0): None, (0, 1): 2}
    assert json.load(open(os.path.join(workdir, "summary.json")))["diverged_at_step"] == summary["diverged_at_step"]
    for r in rundir.read_jsonl(os.path.join(workdir, "metrics.jsonl")):
        assert r["diverged_at_step"] == diverged[(r["seed"], r["hparam_index"])]
    evals = rundir.read_jsonl(os.path.join(workdir, "eval.jsonl"))
    assert [r["step"] for r in evals] == [10] * 2 + [20] * 2 + [30] * 2
    for r in evals:
        if diverged[(r["seed"], r["hparam_index"])] is None:
            assert np.isfinite(r["actor_abs"])
        else:
            assert r["actor_abs"] is None and r["diverged_at_step"] == 2
    assert "hparam_index=1 diverged at update 2" in caplog.text


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _launcher(workdir, num_updates):
    return [
        sys.executable, "-m", "launch.train", "--config=launch/configs/td3.py", "--config.dataset=synthetic:one_step",
        "--config.num_seeds=1", f"--config.num_updates={num_updates}", "--config.chunk_size=100",
        "--config.checkpoint_every=0", "--config.eval_every=0", "--config.batch_size=32",
        "--config.agent.actor_hidden_dims=(16,16)", "--config.agent.critic_hidden_dims=(16,16)", f"--workdir={workdir}",
    ]


def test_launcher_sigterm_checkpoints_and_a_second_launcher_is_refused(tmp_path):
    """A launcher that would run for hours: a second one on its workdir fails at once naming it; SIGTERM makes
    it finish its chunk, checkpoint, log one line and exit 143; the same command (shortened to end one
    chunk later: num_updates is not part of the run record) then resumes from there."""
    workdir = tmp_path / "run"
    first = subprocess.Popen(_launcher(workdir, 10**7), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             text=True)
    deadline = time.time() + 240
    while time.time() < deadline and first.poll() is None and not (workdir / "metrics.jsonl").exists():
        time.sleep(0.2)
    assert first.poll() is None, first.stderr.read()[-2000:]
    # The second launcher is this process (a launcher's library call, refused before it compiles anything).
    config = small_config("td3", hidden=(16, 16), num_seeds=1, num_updates=10**7, chunk_size=100,
                          checkpoint_every=0, batch_size=32)
    config.dataset = "synthetic:one_step"
    with pytest.raises(workdir_lock.WorkdirLocked, match=f"got a lock held by pid {first.pid} on host"):
        pipeline.train_from_config(config, str(workdir))
    first.send_signal(signal.SIGTERM)
    _, stderr = first.communicate(timeout=240)
    assert first.returncode == 128 + signal.SIGTERM, stderr[-2000:]
    stopped = [line for line in stderr.splitlines() if "stopped by SIGTERM at update" in line]
    assert len(stopped) == 1, stderr[-2000:]
    step = max(r["step"] for r in rundir.read_jsonl(workdir / "metrics.jsonl"))
    assert f"at update {step};" in stopped[0] and os.listdir(workdir / "checkpoints") == [str(step)]
    done = subprocess.run(_launcher(workdir, step + 100), cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0 and f"resumed from the checkpoint at update {step}" in done.stderr, done.stderr[-2000:]
    steps = [r["step"] for r in rundir.read_jsonl(workdir / "metrics.jsonl")]
    assert steps == list(range(100, step + 101, 100))  # every chunk once
